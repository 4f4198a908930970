"""Training infrastructure: schedule, data order, EMA, pickle-free checkpoints, exact resume, hooks,
recipes and the `vidgen train` CLI."""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from vidgen.errors import CheckpointError, VidgenError
from vidgen.training import EMA, TrainConfig, Trainer, lr_at
from vidgen.training.checkpoint import (
    checkpoint_dirs,
    flatten_optimizer_state,
    load_checkpoint,
    unflatten_optimizer_state,
)
from vidgen.training.data import ResumableBatchSampler, epoch_permutation

# ----------------------------------------------------------------------------- a tiny model and data


class TinyNet(nn.Module):
    """An MLP with dropout (so the global RNG matters) and a buffer (so EMA copies buffers)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Dropout(0.2), nn.Linear(16, 2))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def tiny_model(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def toy_dataset(n: int = 13) -> list[dict]:
    g = torch.Generator().manual_seed(123)
    xs = torch.randn(n, 6, generator=g)
    return [{"x": xs[i], "y": xs[i, :2] * 2 - xs[i, 2:4], "index": i} for i in range(n)]


def noisy_objective(model, batch, generator):
    # Input noise from the trainer's generator: the objective is random but resumable.
    noise = torch.randn(batch["x"].shape, generator=generator, device=batch["x"].device)
    pred = model(batch["x"] + 0.1 * noise)
    mse = (pred.float() - batch["y"]).pow(2).mean()
    return {"loss": mse, "mse": mse}


def config(**overrides) -> TrainConfig:
    base = dict(steps=8, batch_size=4, grad_accum=2, lr=3e-3, warmup_steps=2, ema_decay=0.9, seed=7,
                device="cpu", log_every=2, checkpoint_every=3, keep_checkpoints=2, weight_decay=0.01)
    base.update(overrides)
    return TrainConfig(**base)


def make_trainer(tmp_path, resume=False, objective=noisy_objective, **overrides):
    return Trainer(tiny_model(), objective, toy_dataset(), config(**overrides), tmp_path / "run",
                   resume=resume, progress=False, log_fn=lambda s: None)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    state.update({f"ema.{k}": v.clone() for k, v in trainer.ema.model.state_dict().items()})
    return state


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------------------- schedule, data order, EMA


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=12, lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(13)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[8] == pytest.approx(0.1 + 0.45)  # half-way through the cosine
    assert lrs[12] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))


def test_batch_order_is_seeded_and_resumable():
    n, bs = 10, 4
    stream = ResumableBatchSampler(n, bs, seed=3)
    first = [b for _, b in zip(range(12), stream)]
    # Each epoch is a permutation, batches straddle epochs, no example is dropped.
    flat = [i for b in first for i in b]
    for epoch in range(4):
        assert sorted(flat[epoch * n:(epoch + 1) * n]) == list(range(n))
    assert flat[:n] == epoch_permutation(n, 3, 0).tolist()
    assert flat[n:2 * n] == epoch_permutation(n, 3, 1).tolist()
    assert flat[:n] != flat[n:2 * n]
    # Starting at batch 5 gives exactly the tail of the uninterrupted stream.
    resumed = [b for _, b in zip(range(7), ResumableBatchSampler(n, bs, seed=3, start_batch=5))]
    assert resumed == first[5:]
    # Another seed, another order; the global RNG plays no part.
    torch.manual_seed(0)
    again = [b for _, b in zip(range(3), ResumableBatchSampler(n, bs, seed=3))]
    assert again == first[:3]
    assert [b for _, b in zip(range(3), ResumableBatchSampler(n, bs, seed=4))] != first[:3]


def test_ema_warmup_and_update():
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.99, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, torch.full((1, 3), 0.9))
    assert ema.current_decay() == pytest.approx(2 / 11)
    assert not ema.model.weight.requires_grad and not ema.model.training
    ema_plain = EMA(model, decay=0.5, warmup=False)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema_plain.update(model)
    assert torch.allclose(ema_plain.model.weight, torch.full((1, 3), 2.0))
    with pytest.raises(VidgenError, match="decay"):
        EMA(model, decay=1.0)


def test_optimizer_state_round_trips_without_pickle():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    tensors, meta = flatten_optimizer_state(opt.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    json.dumps(meta)  # everything else is plain JSON
    restored = unflatten_optimizer_state(tensors, json.loads(json.dumps(meta)))
    assert restored["param_groups"][0]["betas"] == (0.8, 0.95)

    clone = nn.Linear(4, 3)
    clone.load_state_dict(model.state_dict())
    opt2 = torch.optim.AdamW(clone.parameters(), lr=1.0)
    opt2.load_state_dict(restored)
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (clone, opt2)):
        m(x).pow(2).mean().backward()
        o.step()
    assert torch.equal(model.weight, clone.weight) and torch.equal(model.bias, clone.bias)


# ----------------------------------------------------------------------------- exact resume


class CrashAt:
    """An objective that raises on its `n`-th call, as if the machine died mid-run."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self, model, batch, generator):
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("simulated crash")
        return noisy_objective(model, batch, generator)


def test_resume_after_crash_is_bit_identical(tmp_path):
    straight = make_trainer(tmp_path / "a")
    result = straight.train()
    assert result.step == 8 and not result.interrupted

    # Crash during step 5 (micro-batch 9 with grad_accum=2): the last checkpoint is step 3.
    crashing = make_trainer(tmp_path / "b", objective=CrashAt(9))
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.train()
    assert [s for s, _ in checkpoint_dirs(tmp_path / "b" / "run" / "checkpoints")] == [3]
    resumed = make_trainer(tmp_path / "b", resume=True)
    assert resumed.step == 3 and resumed.batches_consumed == 6
    torch.manual_seed(999)  # the global RNG at resume time must not matter: it is restored
    np.random.seed(5)
    resumed.train()
    assert_identical(weights(straight), weights(resumed))
    # The training changed the weights at all (the comparison is not vacuous).
    assert not torch.equal(weights(straight)["model.net.0.weight"], tiny_model().net[0].weight)


def test_ctrl_c_checkpoints_then_resume_is_identical(tmp_path):
    straight = make_trainer(tmp_path / "a", checkpoint_every=0)
    straight.train()

    calls = {"n": 0}

    def interrupting(model, batch, generator):
        calls["n"] += 1
        if calls["n"] == 5:  # first micro-batch of step 3
            os.kill(os.getpid(), signal.SIGINT)
        return noisy_objective(model, batch, generator)

    first = make_trainer(tmp_path / "b", objective=interrupting, checkpoint_every=0)
    result = first.train()
    assert result.interrupted and result.step == 3 and result.export_dir is None
    assert result.checkpoint.name == "step_00000003"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    second = make_trainer(tmp_path / "b", resume=True, checkpoint_every=0)
    done = second.train()
    assert not done.interrupted and done.step == 8
    assert_identical(weights(straight), weights(second))


def test_checkpoint_contents_pruning_and_refusals(tmp_path):
    trainer = make_trainer(tmp_path, steps=10, checkpoint_every=2, keep_checkpoints=2)
    trainer.train()
    root = tmp_path / "run" / "checkpoints"
    assert [s for s, _ in checkpoint_dirs(root)] == [8, 10]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp folders left
    files = sorted(p.name for p in (root / "step_00000010").iterdir())
    assert files == ["ema.safetensors", "model.safetensors", "optimizer.json", "optimizer.safetensors",
                     "rng.safetensors", "trainer_state.json"]
    ckpt = load_checkpoint(root / "step_00000010")
    assert ckpt["state"]["step"] == 10 and ckpt["state"]["batches_consumed"] == 20
    assert torch.equal(ckpt["model"]["net.0.weight"], trainer.model.net[0].weight.detach())
    # No pickle anywhere: every file is safetensors or JSON.
    for path in (root / "step_00000010").iterdir():
        head = path.read_bytes()[:1]
        assert path.suffix in (".json", ".safetensors") and head != b"\x80"

    with pytest.raises(VidgenError, match="already holds checkpoints"):
        make_trainer(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        make_trainer(tmp_path / "empty", resume=True)
    with pytest.raises(CheckpointError, match="batch_size"):
        make_trainer(tmp_path, resume=True, steps=12, batch_size=2)
    # Resuming with more steps continues from the last checkpoint.
    more = make_trainer(tmp_path, resume=True, steps=12, checkpoint_every=2)
    assert more.step == 10 and more.train().step == 12


def test_log_samples_eval_and_export(tmp_path):
    seen = []

    def sample_fn(model, step, samples_dir):
        seen.append((step, model.training, model is trainer.ema.model))
        torch.randn(100)  # hooks may use the global RNG freely: it is restored afterwards
        np.random.rand(3)
        (samples_dir / f"step_{step}.txt").write_text("ok")

    def eval_fn(model, step):
        return {"psnr": 20.0 + step}

    trainer = Trainer(tiny_model(), noisy_objective, toy_dataset(), config(sample_every=3, eval_every=4,
                      export_dtype="bfloat16"), tmp_path / "run", sample_fn=sample_fn, eval_fn=eval_fn,
                      progress=False, log_fn=lambda s: None)
    result = trainer.train()
    assert [s for s, _, _ in seen] == [3, 6, 8]
    assert all(not training and is_ema for _, training, is_ema in seen)
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == [
        "step_3.txt", "step_6.txt", "step_8.txt"]

    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train_records = [r for r in records if not r.get("eval")]
    assert [r["step"] for r in train_records] == [2, 4, 6, 8]
    assert {"loss", "mse", "lr", "sec_per_step", "grad_norm"} <= set(train_records[0])
    assert all(math.isfinite(r["loss"]) for r in train_records)
    assert [(r["step"], r["psnr"]) for r in records if r.get("eval")] == [(4, 24.0), (8, 28.0)]

    # Hooks do not perturb training: same weights as a run without them.
    plain = make_trainer(tmp_path / "plain")
    plain.train()
    assert_identical(weights(plain), weights(trainer))

    # The export holds the EMA weights in bf16 storage.
    from vidgen.modeling import load_safetensors
    exported = load_safetensors(result.export_dir / "model.safetensors")
    assert result.export_dir == tmp_path / "run" / "final"
    assert exported["net.0.weight"].dtype == torch.bfloat16
    assert torch.equal(exported["net.0.weight"], trainer.ema.model.net[0].weight.detach().to(torch.bfloat16))
    assert not torch.equal(trainer.ema.model.net[0].weight, trainer.model.net[0].weight)


def test_bf16_autocast_and_non_finite_loss(tmp_path):
    dtypes = []

    def objective(model, batch, generator):
        pred = model(batch["x"])
        dtypes.append(pred.dtype)
        return {"loss": (pred.float() - batch["y"]).pow(2).mean()}

    trainer = Trainer(tiny_model(), objective, toy_dataset(), config(steps=2, bf16=True), tmp_path / "a",
                      progress=False, log_fn=lambda s: None)
    result = trainer.train()
    assert set(dtypes) == {torch.bfloat16} and math.isfinite(result.losses["loss"])
    assert trainer.model.net[0].weight.dtype == torch.float32  # weights stay fp32

    def nan_objective(model, batch, generator):
        return {"loss": model(batch["x"]).sum() * float("nan")}

    with pytest.raises(VidgenError, match="loss became nan at step 1"):
        Trainer(tiny_model(), nan_objective, toy_dataset(), config(), tmp_path / "b",
                progress=False, log_fn=lambda s: None).train()


def test_train_config_rejects_bad_values():
    with pytest.raises(VidgenError, match=r"train.lr = -1.*> 0"):
        TrainConfig(lr=-1)
    with pytest.raises(VidgenError, match="train.export_dtype = 'float16'"):
        TrainConfig(export_dtype="float16")
    with pytest.raises(VidgenError, match="train.device"):
        TrainConfig(device="tpu")
