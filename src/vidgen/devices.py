"""Where models run and in which precision: the default device, and bf16 autocast only where it is fast.

    default_device()                 -> cuda when available, else cpu
    bf16_is_fast(device)             -> bf16 matmuls are native here (recent GPUs; CPUs with AVX512-bf16 or AMX)
    autocast_context(device, on)     -> bf16 autocast, or nothing (never fp16: ~100x slower on CPU)

On a CPU without native bf16 (e.g. AVX2 only) PyTorch emulates bf16 matmuls: measured on a 2-core AMD
EPYC with AVX2, a 1024x1024 matmul took 18 ms in float32 and 2.2 s in bf16. Pipelines and the trainer
therefore ask `bf16_is_fast` before turning autocast on.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext

import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether bf16 autocast speeds `device` up: CUDA GPUs that support bf16, CPUs with AVX512-bf16 or AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            capability = torch.backends.cpu.get_cpu_capability()
        except AttributeError:
            return False
        return capability.startswith("AVX512") and cpu_has_native_bf16()
    return False


@functools.cache
def cpu_has_native_bf16() -> bool:
    """The CPU flags (Linux /proc/cpuinfo) name avx512_bf16 or amx_bf16; False when they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_context(device: torch.device, enabled: bool):
    """bf16 autocast when `enabled` (callers decide with `bf16_is_fast`); never fp16 on CPU."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
