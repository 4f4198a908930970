"""vidgen.devices: bf16 autocast only where bf16 is native."""

import torch

from vidgen import devices


def test_bf16_is_fast_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(devices.torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.bf16_is_fast("cpu")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)  # AVX512 without its bf16 extension
    assert not devices.bf16_is_fast("cpu")
    monkeypatch.setattr(devices.torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert not devices.bf16_is_fast(torch.device("cpu"))
    assert not devices.bf16_is_fast("meta")


def test_autocast_context_is_bf16_or_nothing():
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with devices.autocast_context(torch.device("cpu"), True):
        assert layer(x).dtype == torch.bfloat16
    with devices.autocast_context(torch.device("cpu"), False):
        assert layer(x).dtype == torch.float32
