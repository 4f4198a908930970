"""Training infrastructure: schedule, data order, EMA, pickle-free checkpoints, exact resume, hooks,
recipes and the `vidgen train` CLI."""

from __future__ import annotations

import dataclasses
import itertools
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
    base = {"steps": 8, "batch_size": 4, "grad_accum": 2, "lr": 3e-3, "warmup_steps": 2, "ema_decay": 0.9,
            "seed": 7, "device": "cpu", "log_every": 2, "checkpoint_every": 3, "keep_checkpoints": 2,
            "weight_decay": 0.01}
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
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


# ----------------------------------------------------------------------------- schedule, data order, EMA


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=12, lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(13)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[8] == pytest.approx(0.1 + 0.45)  # half-way through the cosine
    assert lrs[12] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))


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


def test_lr_schedule_restart_continues_from_the_old_rate():
    cfg = TrainConfig(steps=20, lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    old = TrainConfig(steps=12, lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    start_lr = lr_at(8, old)  # 0.55, half-way through the old cosine
    lrs = [lr_at(s, cfg, (8, start_lr)) for s in range(21)]
    assert lrs[:8] == [lr_at(s, cfg) for s in range(8)]  # before the restart: the plain schedule
    assert lrs[8] == pytest.approx(0.55) and lrs[14] == pytest.approx(0.1 + 0.225) and lrs[20] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lrs[8:]))
    assert lr_at(8, cfg) > 0.55  # what the plain 20-step schedule would have jumped to


def test_extending_a_run_keeps_the_learning_rate_continuous(tmp_path):
    logged = []

    def trainer(folder, objective=noisy_objective, resume=False, **overrides):
        return Trainer(tiny_model(), objective, toy_dataset(), config(log_every=1, **overrides),
                       tmp_path / folder / "run", resume=resume, progress=False, log_fn=logged.append)

    def stopped_at_6(folder):  # an 8-step run that died in step 7: checkpoints at steps 3 and 6
        with pytest.raises(RuntimeError, match="simulated crash"):
            trainer(folder, CrashAt(2 * 6 + 1)).train()

    # Resumed with train.steps 8 -> 16 in mid-decay: the rate goes on from its step-6 value (not up to where
    # a 16-step schedule would be at step 6), down to the minimum at step 16.
    stopped_at_6("a")
    extended = trainer("a", resume=True, steps=16)
    start_lr = lr_at(6, config())
    assert extended.lr_restart == (6, pytest.approx(start_lr)) and start_lr < 0.5 * lr_at(6, config(steps=16))
    assert any("train.steps 8 -> 16: the learning rate continues from" in line for line in logged)
    extended.train()
    records = [json.loads(line) for line in (tmp_path / "a" / "run" / "log.jsonl").read_text().splitlines()]
    rates = {r["step"]: r["lr"] for r in records}  # logged step k ran with the rate of step index k - 1
    assert rates[7] == pytest.approx(start_lr)
    assert rates[16] == pytest.approx(lr_at(15, config(steps=16), extended.lr_restart))
    assert lr_at(16, config(steps=16), extended.lr_restart) == pytest.approx(config().lr * config().min_lr_ratio)
    assert all(rates[k] >= rates[k + 1] for k in range(3, 16))
    # The restart is checkpointed: the extended run stopped (in step 13) and resumed ends bit-identical.
    stopped_at_6("b")
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer("b", CrashAt(2 * (12 - 6) + 1), resume=True, steps=16).train()  # checkpoints at 9 and 12
    resumed = trainer("b", resume=True, steps=16)
    assert resumed.step == 12 and resumed.lr_restart == extended.lr_restart
    resumed.train()
    assert_identical(weights(extended), weights(resumed))


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


class StatefulObjective(nn.Module):
    """Keeps a running mean of the loss that feeds back into the loss (like a GAN discriminator's
    state): exact resume needs it checkpointed through state_tensors / load_state_tensors."""

    def __init__(self, crash_at: int = 0):
        super().__init__()
        self.crash_at, self.seen = crash_at, 0
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("running", torch.zeros(()))

    def forward(self, model, batch, generator):
        self.seen += 1
        if self.seen == self.crash_at:
            raise RuntimeError("simulated crash")
        out = noisy_objective(model, batch, generator)
        if self.training and torch.is_grad_enabled():
            self.calls += 1
            self.running.mul_(0.5).add_(0.5 * out["loss"].detach())
        return {"loss": out["loss"] * (1 + self.running), "running": self.running.clone(),
                "per_sample": torch.zeros(4)}

    def state_tensors(self):
        return {k: v.clone() for k, v in self.state_dict().items()}

    def load_state_tensors(self, tensors):
        self.load_state_dict(tensors)


def test_stateful_objective_is_checkpointed_and_resumed(tmp_path):
    straight_objective = StatefulObjective()
    straight = make_trainer(tmp_path / "a", objective=straight_objective)
    straight.train()
    crashing = make_trainer(tmp_path / "b", objective=StatefulObjective(crash_at=9))
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.train()
    assert (tmp_path / "b" / "run" / "checkpoints" / "step_00000003" / "objective.safetensors").is_file()
    resumed_objective = StatefulObjective()
    resumed = make_trainer(tmp_path / "b", resume=True, objective=resumed_objective)
    assert int(resumed_objective.calls) == 6
    resumed.train()
    assert int(resumed_objective.calls) == int(straight_objective.calls) == 16
    assert torch.equal(resumed_objective.running, straight_objective.running)
    assert_identical(weights(straight), weights(resumed))
    records = [json.loads(line) for line in (tmp_path / "a" / "run" / "log.jsonl").read_text().splitlines()]
    assert "running" in records[-1] and "per_sample" not in records[-1]


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
    handler_before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    result = first.train()
    assert result.interrupted and result.step == 3 and result.export_dir is None
    assert result.checkpoint.name == "step_00000003"
    assert signal.getsignal(signal.SIGINT) is handler_before  # handler restored
    second = make_trainer(tmp_path / "b", resume=True, checkpoint_every=0)
    done = second.train()
    assert not done.interrupted and done.step == 8
    assert_identical(weights(straight), weights(second))


def test_worker_processes_do_not_change_the_run(tmp_path):
    in_process = make_trainer(tmp_path / "a", steps=4)
    in_process.train()
    with_workers = make_trainer(tmp_path / "b", steps=4, num_workers=2)
    with_workers.train()
    assert_identical(weights(in_process), weights(with_workers))


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


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_checkpoint_files_get_the_usual_permissions(tmp_path):
    # safetensors (like mkstemp) creates 0600 files; checkpoints must be readable like any other file.
    previous = os.umask(0o027)
    try:
        make_trainer(tmp_path, steps=2, checkpoint_every=2).train()
    finally:
        os.umask(previous)
    files = [p for p in (tmp_path / "run" / "checkpoints").rglob("*") if p.is_file()]
    assert len(files) >= 6 and {oct(p.stat().st_mode & 0o777) for p in files} == {"0o640"}


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
    raw = load_safetensors(tmp_path / "run" / "final_raw" / "model.safetensors")
    assert torch.equal(raw["net.0.weight"], trainer.model.net[0].weight.detach().to(torch.bfloat16))


def test_bf16_autocast_and_non_finite_loss(tmp_path, monkeypatch):
    dtypes = []

    def objective(model, batch, generator):
        pred = model(batch["x"])
        dtypes.append(pred.dtype)
        return {"loss": (pred.float() - batch["y"]).pow(2).mean()}

    # train.bf16 = true autocasts where bf16 is native (vidgen.devices.bf16_is_fast) ...
    monkeypatch.setattr("vidgen.training.trainer.bf16_is_fast", lambda device: True)
    trainer = Trainer(tiny_model(), objective, toy_dataset(), config(steps=2, bf16=True), tmp_path / "a",
                      progress=False, log_fn=lambda s: None)
    result = trainer.train()
    assert set(dtypes) == {torch.bfloat16} and math.isfinite(result.losses["loss"])
    assert trainer.model.net[0].weight.dtype == torch.float32  # weights stay fp32
    # ... and trains in float32, saying so, where it would be emulated (~100x slower).
    monkeypatch.setattr("vidgen.training.trainer.bf16_is_fast", lambda device: False)
    dtypes.clear()
    said = []
    Trainer(tiny_model(), objective, toy_dataset(), config(steps=2, bf16=True), tmp_path / "c",
            progress=False, log_fn=said.append).train()
    assert set(dtypes) == {torch.float32}
    assert any("train.bf16 = true, but bf16 is not native" in line and "float32" in line for line in said)

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


# ----------------------------------------------------------------------------- recipes and the CLI

from vidgen.training import recipes as recipes_module
from vidgen.training.recipes import (
    BuildContext,
    RecipeKind,
    TrainingSetup,
    load_recipe,
    parse_recipe,
    register_kind,
)


class TinyVideoNet(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(3, width, 1), nn.GELU(), nn.Conv3d(width, 3, 1))

    def forward(self, video):
        return self.net(video)


def _toy_build(recipe, context: BuildContext) -> TrainingSetup:
    from vidgen.training.data import SelectKeys
    from vidgen.training.recipes import build_model

    calls = {"n": 0}

    def objective(model, batch, generator):
        calls["n"] += 1
        if calls["n"] == recipe.sections["toy"].interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C during this step
        video = batch["video"]
        noisy = video + 0.1 * torch.randn(video.shape, generator=generator)
        return {"loss": (model(noisy) - video).pow(2).mean()}

    def sample_fn(model, step, samples_dir):
        (samples_dir / f"{step}.txt").write_text(recipe.sections["toy"].note)

    return TrainingSetup(model=build_model(recipe), objective=objective,
                         dataset=SelectKeys(recipe.data.build(split="train"), ("video",)), sample_fn=sample_fn)


@dataclasses.dataclass
class ToyOptions:
    note: str = "hello"
    level: int = 1
    interrupt_at: int = 0


register_kind(RecipeKind(name="toy-test", description="a test kind", sizes=lambda: {"small": TinyVideoNet},
                         build=_toy_build, sections={"toy": ToyOptions}, resumable_changes=("toy.note",)))

TOY_RECIPE = """
kind = "toy-test"
description = "toy"
[model]
size = "small"
width = 4
[data]
name = "shapes"
num_items = 6
size = 16
num_frames = 1
[train]
steps = 4
batch_size = 2
lr = 1e-2
log_every = 2
checkpoint_every = 2
sample_every = 4
device = "cpu"
[output]
dir = "runs/toy"
[toy]
level = 2
"""


def write_toy(tmp_path, text=TOY_RECIPE):
    path = tmp_path / "toy.toml"
    path.write_text(text)
    return path


def test_recipe_parsing_and_overrides(tmp_path):
    recipe = load_recipe(write_toy(tmp_path), ["train.lr=5e-3", "toy.note=hi there", "model.width=8",
                                               "data.seed=3"])
    assert recipe.kind == "toy-test" and recipe.name == "toy"
    assert recipe.train.lr == 5e-3 and recipe.train.steps == 4 and recipe.train.ema  # defaults filled in
    assert recipe.model.size == "small" and recipe.model.overrides == {"width": 8}
    assert recipe.data.name == "shapes" and recipe.data.options["seed"] == 3
    assert recipe.sections["toy"].note == "hi there" and recipe.sections["toy"].level == 2
    resolved = recipe.to_dict()
    assert resolved["train"]["lr"] == 5e-3
    assert resolved["toy"] == {"note": "hi there", "level": 2, "interrupt_at": 0}
    # ints are accepted where floats are expected
    assert load_recipe(write_toy(tmp_path), ["train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize("override, message", [
    (["train.lr=-1"], r"train.lr = -1"),
    (["train.steps=\"ten\""], r"train.steps = 'ten' must be an integer"),
    (["train.bogus=1"], r"unknown key\(s\) train.bogus; \[train\] allows: steps, batch_size"),
    (["toy.level=1.5"], r"toy.level = 1.5 must be an integer"),
    (["model.size=\"huge\""], r"model.size = 'huge' is not a size of 'toy-test'; allowed: small"),
    (["data.name=\"nope\""], r"data.name = 'nope' is not a dataset; allowed: shapes"),
    (["data.colour=1"], r"unknown option\(s\) data.colour for dataset 'shapes'; allowed: num_items"),
    (["extra.x=1"], r"unknown key\(s\) extra for kind 'toy-test'; allowed: kind, description, model"),
    (["kind=\"nope\""], r"unknown recipe kind 'nope'; available kinds: .*cogvideox-vae"),
    (["train.export_dtype=\"float16\""], r"train.export_dtype = 'float16' is not valid: expected 'float32' or"),
    (["trainlr"], r"expected SECTION.KEY=VALUE"),
])
def test_recipe_errors_name_key_and_allowed_values(tmp_path, override, message):
    with pytest.raises(VidgenError, match=message):
        load_recipe(write_toy(tmp_path), override)


def test_recipe_extra_datasets_are_concatenated(tmp_path):
    text = TOY_RECIPE.replace("[train]", "[[data.extra]]\nname = \"digits\"\nnum_items = 3\nsize = 16\n"
                              "num_frames = 1\n[train]")
    recipe = load_recipe(write_toy(tmp_path, text))
    assert [spec.name for spec in recipe.data.extra] == ["digits"]
    assert recipe.to_dict()["data"]["extra"] == [{"name": "digits", "num_items": 3, "size": 16, "num_frames": 1}]
    dataset = recipe.data.build(split="train")
    assert len(dataset) == 6 + 3 and dataset[7]["video"].shape == (3, 1, 16, 16)
    with pytest.raises(VidgenError, match=r"unknown option\(s\) data.extra.colour for dataset 'digits'"):
        load_recipe(write_toy(tmp_path, text), ["data.extra=[{name = \"digits\", colour = 1}]"])


def test_cache_key_follows_vae_weights_and_data(tmp_path):
    from vidgen.tokenizers.cogvideox_vae import cogvideox_vae_tiny
    from vidgen.training.latent_cache import cache_key

    torch.manual_seed(0)
    a = cogvideox_vae_tiny().save_pretrained(tmp_path / "a")
    torch.manual_seed(1)
    b = cogvideox_vae_tiny().save_pretrained(tmp_path / "b")
    data = {"name": "shapes", "num_items": 8}
    key = cache_key(a, data, "minilm", 16)
    assert key == cache_key(a, dict(data), "minilm", 16)
    assert len({key, cache_key(b, data, "minilm", 16), cache_key(a, {**data, "num_items": 9}, "minilm", 16),
                cache_key(a, data, "minilm", 32)}) == 4
    # A decoder-only fine-tune leaves every latent as it was: same key. Any encoder weight changes it.
    from vidgen.modeling import atomic_save_safetensors as save_safetensors
    from vidgen.modeling import load_safetensors

    weights = load_safetensors(a / "model.safetensors")
    decoder_name = next(k for k in weights if k.startswith("decoder."))
    encoder_name = next(k for k in weights if k.startswith("encoder."))
    save_safetensors({**weights, decoder_name: weights[decoder_name] + 1}, a / "model.safetensors")
    assert cache_key(a, data, "minilm", 16) == key
    save_safetensors({**weights, encoder_name: weights[encoder_name] + 1e-3}, a / "model.safetensors")
    assert cache_key(a, data, "minilm", 16) != key
    (a / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(VidgenError, match="not a readable .safetensors file"):
        cache_key(a, data, "minilm", 16)


def test_recipe_lookup_errors(tmp_path):
    with pytest.raises(VidgenError, match="neither a TOML file nor a shipped recipe; shipped recipes: .*smoke"):
        load_recipe("no-such-recipe")
    bad = tmp_path / "bad.toml"
    bad.write_text("kind = \n")
    with pytest.raises(VidgenError, match="not valid TOML"):
        load_recipe(bad)
    with pytest.raises(VidgenError, match=r"missing the \[output\] table"):
        parse_recipe({"kind": "toy-test", "model": {"size": "small"}, "data": {"name": "shapes"}})


def test_shipped_recipes_parse():
    shipped = recipes_module.shipped_recipes()
    names = {p.stem for p in shipped}
    assert {"cogvideox-shapes-vae", "cogvideox-shapes-transformer", "cogvideox-shapes-vae-smoke",
            "cogvideox-shapes-transformer-smoke", "magvit-shapes-vq2d", "magvit-shapes-vq",
            "magvit-shapes-transformer"} <= names
    for path in shipped:
        recipe = load_recipe(path.stem)
        assert recipe.kind in {kind.name for kind in recipes_module.list_kinds()}
        assert recipe.kind in ("cogvideox-vae", "cogvideox-transformer", "magvit-vq", "magvit-transformer")
        assert recipe.output.dir == f"runs/{path.stem}"


def cli(*argv) -> int:
    """`vidgen ARGV` through the real entry point, with only the train and export commands registered (so
    that this file tests them, whatever state the other commands are in)."""
    from vidgen.cli import main as cli_main

    saved = cli_main.COMMAND_MODULES
    assert "vidgen.cli.train" in saved and "vidgen.cli.export" in saved
    cli_main.COMMAND_MODULES = ["vidgen.cli.train", "vidgen.cli.export"]
    try:
        return cli_main.main(list(argv))
    finally:
        cli_main.COMMAND_MODULES = saved


def test_cli_train_toy_resume_and_refusals(tmp_path, capsys):
    path = write_toy(tmp_path)
    out = tmp_path / "run"
    assert cli("train", str(path), "--output", str(out), "--steps", "2", "--no-progress") == 0
    assert (out / "final" / "model.safetensors").is_file() and (out / "recipe.json").is_file()
    assert [s for s, _ in checkpoint_dirs(out / "checkpoints")] == [2]
    # Without --resume an existing run is never overwritten.
    assert cli("train", str(path), "--output", str(out), "--no-progress") == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    # A change that the checkpoint cannot follow is refused, naming the key.
    assert cli("train", str(path), "--output", str(out), "--resume", "--set", "model.width=8", "--no-progress") == 2
    err = capsys.readouterr().err
    assert "model.width: 4 -> 8" in err and "cannot resume" in err
    # Harmless changes (steps, sample notes) are fine; training continues to step 4.
    assert cli("train", str(path), "--output", str(out), "--resume", "--set", "toy.note=\"x\"",
               "--no-progress") == 0
    assert "resumed from" in capsys.readouterr().out
    assert [s for s, _ in checkpoint_dirs(out / "checkpoints")] == [2, 4]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert (out / "samples" / "4.txt").is_file()


def test_cli_ctrl_c_writes_a_checkpoint_and_exits_130(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli("train", str(write_toy(tmp_path)), "--output", str(out), "--set", "toy.interrupt_at=3",
               "--set", "train.checkpoint_every=0", "--no-progress")
    assert code == 130
    assert "interrupted at step 3" in capsys.readouterr().out
    assert [s for s, _ in checkpoint_dirs(out / "checkpoints")] == [3]
    assert not (out / "final").exists()
    assert cli("train", str(write_toy(tmp_path)), "--output", str(out), "--resume", "--set", "toy.interrupt_at=3",
               "--set", "train.checkpoint_every=0", "--no-progress") == 0
    assert (out / "final" / "model.safetensors").is_file()


def test_cli_list_and_help(capsys):
    assert cli("train", "--list") == 0
    listing = capsys.readouterr().out
    assert "cogvideox-shapes-vae" in listing and "[cogvideox-transformer]" in listing
    with pytest.raises(SystemExit):
        cli("train", "--help")
    assert "--resume" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the CogVideoX kinds


@pytest.fixture(scope="module")
def vae_smoke_run(tmp_path_factory):
    """`vidgen train cogvideox-shapes-vae-smoke` once (4 steps of the tiny VAE on 8 clips)."""
    run = tmp_path_factory.mktemp("vae") / "run"
    assert cli("train", "cogvideox-shapes-vae-smoke", "--output", str(run), "--no-progress") == 0
    return run


@pytest.fixture(scope="module")
def tiny_vae_dir(vae_smoke_run):
    return vae_smoke_run / "final"


def test_vae_smoke_recipe_end_to_end(vae_smoke_run):
    from vidgen.modeling import load_safetensors
    from vidgen.tokenizers.cogvideox_vae import CogVideoXVAE

    records = [json.loads(line) for line in (vae_smoke_run / "log.jsonl").read_text().splitlines()]
    train_records = [r for r in records if not r.get("eval")]
    evals = [r for r in records if r.get("eval")]
    assert [r["step"] for r in train_records] == [2, 4] and [r["step"] for r in evals] == [2, 4]
    assert {"loss", "l1", "kl", "psnr", "grad_norm", "lr"} <= set(train_records[0])
    assert all(0 < r["psnr"] < 100 for r in evals)
    assert all(0.0 <= r["shape_acc"] <= 1.0 for r in evals)   # Shapes clips: the evaluator judges them too
    assert sorted(p.name for p in (vae_smoke_run / "samples").iterdir()) == ["step_0000004_recon_0.gif"]
    vae = CogVideoXVAE.from_pretrained(vae_smoke_run / "final")
    ema = load_safetensors(vae_smoke_run / "checkpoints" / "step_00000004" / "ema.safetensors")
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in ema.items())  # final/ = the EMA weights
    video = torch.zeros(1, 3, 9, 32, 32)
    assert vae.decode(vae.encode(video)).shape == video.shape


def test_vae_random_crop_is_per_clip_and_seeded():
    from vidgen.training.augment import random_crop

    video = torch.arange(2 * 1 * 9 * 8 * 8, dtype=torch.float32).view(2, 1, 9, 8, 8)
    a = random_crop(video, 4, 5, torch.Generator().manual_seed(1))
    b = random_crop(video, 4, 5, torch.Generator().manual_seed(1))
    assert a.shape == (2, 1, 5, 4, 4) and torch.equal(a, b)
    for i in range(2):  # each crop is a contiguous window of its own clip
        t0, y0, x0 = int(a[i, 0, 0, 0, 0]) // 64 % 9, int(a[i, 0, 0, 0, 0]) % 64 // 8, int(a[i, 0, 0, 0, 0]) % 8
        assert torch.equal(a[i], video[i, :, t0:t0 + 5, y0:y0 + 4, x0:x0 + 4])
    assert random_crop(video, 0, 0, torch.Generator()) is video
    with pytest.raises(VidgenError, match="larger than the clips"):
        random_crop(video, 16, 5, torch.Generator())


def smoke_args(vae_dir) -> list[str]:
    return ["--set", f"condition.vae=\"{vae_dir}\"", "--no-progress"]


@pytest.fixture(scope="module")
def transformer_smoke_run(tmp_path_factory, tiny_vae_dir):
    """`vidgen train cogvideox-shapes-transformer-smoke` once (4 steps), shared by the tests below."""
    run = tmp_path_factory.mktemp("transformer") / "straight"
    assert cli("train", "cogvideox-shapes-transformer-smoke", "--output", str(run), *smoke_args(tiny_vae_dir)) == 0
    return run


def test_transformer_smoke_recipe_exports_a_loadable_pipeline(transformer_smoke_run):
    from vidgen.modeling import load_safetensors, read_json

    run = transformer_smoke_run
    pipeline = run / "pipeline"
    settings = read_json(pipeline / "pipeline.json")
    cache = read_json(next((run / "cache").iterdir()) / "cache.json")
    assert cache["num_clips"] == 8 and cache["captions"][0] == "" and len(cache["captions"]) > 2
    # The pipeline folder follows the format that CogVideoXPipeline reads.
    assert settings["_class_name"] == "CogVideoXPipeline" and settings["text_encoder"] == "minilm"
    assert settings["text_max_length"] == 16 and settings["default_steps"] == 2
    assert settings["latent_scaling_factor"] == pytest.approx(cache["scaling_factor"])
    assert settings["latent_scaling_factor"] == pytest.approx(1.0 / cache["latent_std"])
    assert (settings["num_frames"], settings["height"], settings["width"]) == (9, 32, 32)
    assert settings["recipe"] == "cogvideox-shapes-transformer-smoke.toml"
    assert read_json(pipeline / "vae" / "config.json")["scaling_factor"] == pytest.approx(
        settings["latent_scaling_factor"])
    weights = load_safetensors(pipeline / "transformer" / "model.safetensors")
    assert all(v.dtype == torch.bfloat16 for v in weights.values() if v.is_floating_point())
    assert sorted(p.suffix for p in (run / "samples").iterdir()) == [".gif"]

    from vidgen.pipelines import load_pipeline

    video = load_pipeline(pipeline, device="cpu")("a red circle moving left", num_inference_steps=2,
                                                  num_frames=9, height=32, width=32, progress=False)
    assert tuple(video.tensor.shape) == (3, 9, 32, 32) and torch.isfinite(video.tensor).all()


def test_transformer_smoke_resume_is_exact_and_reuses_cache(tmp_path, tiny_vae_dir, transformer_smoke_run, capsys):
    from conftest import rewound_copy
    from vidgen.modeling import load_safetensors

    # The 4-step run interrupted after its step-2 checkpoint, then --resume: the same weights as 4 straight
    # steps (posterior samples, caption dropout and timesteps all come from the checkpointed generator),
    # and the cache is reused.
    # A fresh run encodes the clips once ...
    assert cli("train", "cogvideox-shapes-transformer-smoke", "--output", str(tmp_path / "fresh"), "--steps", "0",
               *smoke_args(tiny_vae_dir)) == 0
    assert "latent cache: encoding 8 of 8 clips" in capsys.readouterr().out
    # ... and a resumed one reuses its cache.
    split = rewound_copy(transformer_smoke_run, tmp_path / "split", 2)
    assert cli("train", "cogvideox-shapes-transformer-smoke", "--output", str(split), "--resume",
               *smoke_args(tiny_vae_dir)) == 0
    out = capsys.readouterr().out
    assert "latent cache: reusing" in out and "resumed from" in out and "step_00000002" in out
    a = load_safetensors(transformer_smoke_run / "final" / "model.safetensors")
    b = load_safetensors(split / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_accepts_a_decoder_only_vae_change_and_refuses_another_encoder(tmp_path, tiny_vae_dir,
                                                                               transformer_smoke_run, capsys):
    from conftest import rewound_copy
    from vidgen.modeling import load_safetensors
    from vidgen.tokenizers.cogvideox_vae import CogVideoXVAE

    def perturbed(part: str):
        vae = CogVideoXVAE.from_pretrained(tiny_vae_dir)
        with torch.no_grad():
            for name, p in vae.named_parameters():
                if name.startswith(part):
                    p.add_(0.01)
        return vae.save_pretrained(tmp_path / part)

    run = rewound_copy(transformer_smoke_run, tmp_path / "run", 4)
    base = ["train", "cogvideox-shapes-transformer-smoke", "--output", str(run), "--no-progress", "--resume"]
    # A new decoder (same encoder, same latents): the finished run re-exports with it, cache reused.
    assert cli(*base, "--set", f"condition.vae=\"{perturbed('decoder')}\"") == 0
    assert "latent cache: reusing" in capsys.readouterr().out
    shipped = load_safetensors(run / "pipeline" / "vae" / "model.safetensors")
    new = load_safetensors(tmp_path / "decoder" / "model.safetensors")
    assert all(torch.equal(shipped[k], new[k]) for k in new if k.startswith("decoder"))
    assert not all(torch.equal(shipped[k], v) for k, v in load_safetensors(tiny_vae_dir / "model.safetensors").items()
                   if k.startswith("decoder"))
    # A new encoder would change every latent: refused, nothing re-encoded.
    assert cli(*base, "--set", f"condition.vae=\"{perturbed('encoder')}\"") == 2
    assert "encodes the clips differently" in capsys.readouterr().err
    assert len(list((run / "cache").iterdir())) == 1


def test_stop_at_pauses_and_resume_ends_as_the_straight_run(tmp_path, tiny_vae_dir, transformer_smoke_run, capsys):
    from vidgen.modeling import load_safetensors

    run = tmp_path / "paused"
    args = ["train", "cogvideox-shapes-transformer-smoke", "--output", str(run), *smoke_args(tiny_vae_dir)]
    assert cli(*args, "--stop-at", "3") == 0
    out = capsys.readouterr().out
    assert "paused at step 3 (--stop-at)" in out and "--resume" in out
    assert (run / "checkpoints" / "step_00000003").is_dir() and not (run / "final").exists()
    assert cli(*args, "--resume", "--stop-at", "2") == 2  # nothing left before that step
    assert "already at step 3" in capsys.readouterr().err
    assert cli(*args, "--resume") == 0
    a = load_safetensors(transformer_smoke_run / "final" / "model.safetensors")
    b = load_safetensors(run / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert cli(*args[:3], str(tmp_path / "zero"), *args[4:], "--stop-at", "0") == 2
    assert "stop_at = 0" in capsys.readouterr().err


def test_autoguidance_recipe_keeps_the_early_model_and_ships_it(tmp_path, tiny_vae_dir, capsys):
    from vidgen.modeling import load_safetensors, read_json
    from vidgen.pipelines import load_pipeline

    run = tmp_path / "ag"
    args = ["train", "cogvideox-shapes-transformer-smoke", "--output", str(run), *smoke_args(tiny_vae_dir),
            "--steps", "6", "--set", "train.checkpoint_every=4", "--set", "train.keep_checkpoints=1",
            "--set", "train.sample_every=0"]
    assert cli(*args, "--set", "autoguidance.step=1", "--set", "autoguidance.scale=1.5") == 0
    # step 1 is checkpointed although checkpoint_every is 4, and never pruned (keep_checkpoints = 1)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000001", "step_00000006"]
    settings = read_json(run / "pipeline" / "pipeline.json")
    assert settings["default_autoguidance"] == 1.5 and "step 1" in settings["autoguidance"]
    ema1 = load_safetensors(run / "checkpoints" / "step_00000001" / "ema.safetensors")
    weak = load_safetensors(run / "pipeline" / "autoguidance_transformer" / "model.safetensors")
    assert weak.keys() == ema1.keys() and all(torch.equal(weak[k], v.to(torch.bfloat16)) for k, v in ema1.items())
    final = load_safetensors(run / "pipeline" / "transformer" / "model.safetensors")
    assert not all(torch.equal(final[k], weak[k]) for k in weak)
    pipe = load_pipeline(run / "pipeline", device="cpu", bf16=False)
    request = {"seed": 0, "num_inference_steps": 2, "num_frames": 9, "height": 32, "width": 32, "progress": False}
    guided, plain = pipe("a red circle moving left", **request), pipe("a red circle moving left", autoguidance_scale=0,
                                                                       **request)
    assert guided.info["autoguidance_scale"] == 1.5 and not torch.equal(guided.tensor, plain.tensor)
    # `vidgen export` of a later step ships the same weak model
    assert cli("export", str(run)) == 0
    again = load_safetensors(run / "exports" / "step_00000006" / "pipeline" / "autoguidance_transformer" /
                             "model.safetensors")
    assert all(torch.equal(again[k], weak[k]) for k in weak)
    # The weak model may instead be any transformer folder: re-exporting the finished run (--resume) with
    # step 1's export as autoguidance.transformer ships the same weights.
    assert cli("export", str(run), "--step", "1", "--output", str(tmp_path / "step1")) == 0
    assert cli(*args, "--resume", "--set", "autoguidance.scale=1.5",
               "--set", f"autoguidance.transformer=\"{tmp_path / 'step1' / 'final'}\"") == 0
    settings = read_json(run / "pipeline" / "pipeline.json")
    assert "step1" in settings["autoguidance"] and settings["default_autoguidance"] == 1.5
    from_folder = load_safetensors(run / "pipeline" / "autoguidance_transformer" / "model.safetensors")
    assert all(torch.equal(from_folder[k], weak[k]) for k in weak)
    # a pipeline folder holding both transformers gives its main one (as train.init_from does)
    from vidgen.modeling import resolve_component
    assert resolve_component(run / "pipeline", "CogVideoXTransformer").name == "transformer"
    capsys.readouterr()
    assert cli(*args, "--resume", "--set", "autoguidance.step=1",
               "--set", f"autoguidance.transformer=\"{tmp_path / 'step1' / 'final'}\"") == 2
    assert "give one weak model, not both" in capsys.readouterr().err

    # `vidgen export --set`: export-time settings (here the weak model and the default guidance) ...
    assert cli("export", str(run), "--step", "6", "--output", str(tmp_path / "set"), "--set", "sample.guidance=2.5",
               "--set", f"autoguidance.transformer=\"{tmp_path / 'step1' / 'final'}\"", "--set",
               "autoguidance.step=0") == 0
    exported = read_json(tmp_path / "set" / "pipeline" / "pipeline.json")
    assert exported["default_guidance"] == 2.5 and "step1" in exported["autoguidance"]
    # ... but nothing that the weights depend on
    capsys.readouterr()
    assert cli("export", str(run), "--set", "train.lr=1.0") == 2
    assert "train.lr" in capsys.readouterr().err

    # Bad settings are refused before any training.
    assert cli(*args[:-6], "--output", str(tmp_path / "x"), "--set", "autoguidance.scale=2") == 2
    assert "needs autoguidance.step > 0" in capsys.readouterr().err
    assert cli(*args, "--set", "autoguidance.step=6") == 2
    assert "must be below train.steps" in capsys.readouterr().err
    assert cli(*args, "--set", "train.keep_steps=[0]") == 2
    assert "train.keep_steps" in capsys.readouterr().err
    # Asking on resume for a step whose checkpoint was pruned fails at once, not at the export.
    assert cli(*args, "--steps", "8", "--resume", "--set", "autoguidance.step=4") == 2
    assert "checkpoint was not kept" in capsys.readouterr().err


def test_export_writes_a_checkpoint_as_the_run_would(tmp_path, transformer_smoke_run, vae_smoke_run, capsys):
    from vidgen.modeling import load_safetensors, read_json

    run = transformer_smoke_run
    # The latest checkpoint (step 4, the end of the run): the same pipeline as the run's own export,
    # built from the run's cache (not re-encoded).
    assert cli("export", str(run)) == 0
    out = capsys.readouterr().out
    assert "latent cache: reusing" in out and "exported: " in out
    exported = run / "exports" / "step_00000004"
    assert read_json(exported / "export.json")["step"] == 4 and read_json(exported / "export.json")["weights"] == "ema"
    for part in ("transformer/model.safetensors", "vae/model.safetensors"):
        a, b = load_safetensors(run / "pipeline" / part), load_safetensors(exported / "pipeline" / part)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_json(exported / "pipeline" / "pipeline.json")["latent_scaling_factor"] == \
        read_json(run / "pipeline" / "pipeline.json")["latent_scaling_factor"]
    # The export names the recipe that made the run (kept in recipe.json), not the run folder's file.
    assert read_json(exported / "pipeline" / "pipeline.json")["recipe"] == \
        read_json(run / "pipeline" / "pipeline.json")["recipe"] == "cogvideox-shapes-transformer-smoke.toml"
    # An earlier step: its checkpoint's EMA weights (stored bf16 in the pipeline), not the last ones.
    assert cli("export", str(run), "--step", "2") == 0
    ema2 = load_safetensors(run / "checkpoints" / "step_00000002" / "ema.safetensors")
    step2 = load_safetensors(run / "exports" / "step_00000002" / "pipeline" / "transformer" / "model.safetensors")
    assert all(torch.equal(step2[k], v.to(step2[k].dtype)) for k, v in ema2.items())
    last = load_safetensors(exported / "pipeline" / "transformer" / "model.safetensors")
    assert not all(torch.equal(step2[k], last[k]) for k in last)
    # --raw: the raw weights, as the run's final_raw/ (export_dtype bf16 in both)
    assert cli("export", str(run), "--raw", "--output", str(tmp_path / "raw")) == 0
    raw = load_safetensors(tmp_path / "raw" / "final" / "model.safetensors")
    final_raw = load_safetensors(run / "final_raw" / "model.safetensors")
    assert all(torch.equal(raw[k], final_raw[k]) for k in final_raw)
    assert not all(torch.equal(raw[k].float(), load_safetensors(run / "final" / "model.safetensors")[k].float())
                   for k in raw)  # EMA and raw weights differ, so the flag did something
    # A kind without a pipeline (the VAE): final/ only, equal to the run's EMA export.
    assert cli("export", str(vae_smoke_run), "--output", str(tmp_path / "vae")) == 0
    a, b = (load_safetensors(p / "final" / "model.safetensors") for p in (vae_smoke_run, tmp_path / "vae"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    # Clear errors: a step that is not kept, a folder that is not a run.
    assert cli("export", str(run), "--step", "3") == 2
    assert "no checkpoint of step 3; it has steps [2, 4]" in capsys.readouterr().err
    assert cli("export", str(tmp_path)) == 2
    assert "is not a training run folder (no recipe.json)" in capsys.readouterr().err


def test_transformer_objective_caption_dropout_uses_empty_prompt():
    from vidgen.diffusion import NoiseSchedule
    from vidgen.diffusion.latent_norm import LatentNormalizer
    from vidgen.training.cogvideox import ConditionOptions, TransformerObjective
    from vidgen.training.latent_cache import LatentCache

    cache = LatentCache(mean=torch.zeros(4, 2, 1, 2, 2), std=torch.ones(4, 2, 1, 2, 2),
                        caption_index=torch.tensor([1, 2, 1, 2]), text_embeddings=torch.arange(3.0).view(3, 1, 1),
                        text_mask=torch.ones(3, 1, dtype=torch.bool), captions=["", "a", "b"],
                        scaling_factor=0.5, fps=8.0, path=None)
    seen = []

    def model(z, text, t, text_mask=None):
        seen.append(text[:, 0, 0].tolist())
        return torch.zeros_like(z)

    for dropout, expected in ((0.0, [[1, 2, 1, 2]]), (1.0, [[0, 0, 0, 0]])):
        seen.clear()
        objective = TransformerObjective(cache, NoiseSchedule(), ConditionOptions(cond_dropout=dropout), "uniform",
                                         torch.device("cpu"), LatentNormalizer.from_scaling_factor(0.5, 2))
        batch = {"mean": cache.mean, "std": cache.std, "caption_index": cache.caption_index}
        out = objective(model, batch, torch.Generator().manual_seed(0))
        assert seen == expected and out["loss"].ndim == 0 and torch.isfinite(out["loss"])


def test_whitened_latents_recipe_fits_the_map_to_the_cache_and_trains_on_it(tmp_path, tiny_vae_dir):
    from vidgen.diffusion import NoiseSchedule
    from vidgen.diffusion.latent_norm import LatentNormalizer
    from vidgen.modeling import read_json
    from vidgen.pipelines import load_pipeline
    from vidgen.training.cogvideox import ConditionOptions, TransformerObjective
    from vidgen.training.latent_cache import load_cache

    run = tmp_path / "whiten"
    assert cli("train", "cogvideox-shapes-transformer-smoke", "--output", str(run), "--steps", "1",
               "--set", "condition.latent_norm=whiten", *smoke_args(tiny_vae_dir)) == 0
    settings = read_json(run / "pipeline" / "pipeline.json")
    cache = load_cache(next((run / "cache").iterdir()))
    expected = LatentNormalizer.fit(cache.mean, cache.std, "whiten", 0.01)
    stored = LatentNormalizer.from_dict(settings["latent_normalization"])
    assert stored.mode == "whiten" and torch.allclose(stored.matrix, expected.matrix)
    assert torch.allclose(stored.mean, expected.mean)
    pipe = load_pipeline(run / "pipeline", device="cpu")
    assert pipe.latent_norm.mode == "whiten" and torch.allclose(pipe.latent_norm.inverse, expected.inverse)

    # The objective trains on normalize(z): with std 0 and a model that returns the true v, the loss is
    # 0 only if the target was built from the whitened latents (and a scale map gives a non-zero loss).
    schedule = NoiseSchedule()

    def oracle(norm):
        def model(z_t, text, t, text_mask=None):  # x0 = alpha z_t - sigma v  =>  v = (alpha z_t - x0) / sigma
            alpha, sigma = (c.view(-1, 1, 1, 1, 1).float() for c in schedule.alpha_sigma(t))
            return (alpha * z_t - norm.normalize(cache.mean[:2])) / sigma
        return model

    batch = {"mean": cache.mean[:2], "std": torch.zeros_like(cache.std[:2]), "caption_index": cache.caption_index[:2]}
    objective = TransformerObjective(cache, schedule, ConditionOptions(cond_dropout=0.0), "uniform",
                                     torch.device("cpu"), expected)
    assert objective(oracle(expected), batch, torch.Generator().manual_seed(0))["loss"] < 1e-8
    scale = LatentNormalizer.from_scaling_factor(cache.scaling_factor, expected.channels)
    assert objective(oracle(scale), batch, torch.Generator().manual_seed(0))["loss"] > 1e-3
    with pytest.raises(VidgenError, match="condition.latent_norm = 'pca': expected one of scale, channel, whiten"):
        ConditionOptions(latent_norm="pca")


def test_init_from_fine_tunes_from_a_model_or_pipeline_folder(tmp_path, tiny_vae_dir, transformer_smoke_run, capsys):
    from vidgen import CogVideoXTransformer
    from vidgen.modeling import load_safetensors
    from vidgen.training.checkpoint import initialise_from

    # 0 steps from the smoke run's pipeline folder: the export must be the stage-1 transformer exactly
    # (bf16 storage both ways), so the weights were loaded and nothing else changed them.
    stage1 = transformer_smoke_run / "pipeline"
    run = tmp_path / "finetune"
    assert cli("train", "cogvideox-shapes-transformer-smoke", "--output", str(run), "--steps", "0",
               "--set", f'train.init_from="{stage1}"', *smoke_args(tiny_vae_dir)) == 0
    assert f"initial weights: {stage1 / 'transformer' / 'model.safetensors'}" in capsys.readouterr().out
    a = load_safetensors(stage1 / "transformer" / "model.safetensors")
    b = load_safetensors(run / "pipeline" / "transformer" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Two more steps from the model folder itself move the weights away from the start.
    run2 = tmp_path / "finetune2"
    assert cli("train", "cogvideox-shapes-transformer-smoke", "--output", str(run2), "--steps", "2",
               "--set", f'train.init_from="{transformer_smoke_run / "final"}"', *smoke_args(tiny_vae_dir)) == 0
    c = load_safetensors(run2 / "checkpoints" / "step_00000002" / "model.safetensors")
    start = load_safetensors(transformer_smoke_run / "final" / "model.safetensors")
    assert any(not torch.equal(c[k].to(start[k].dtype), start[k]) for k in start)

    # Wrong class or a folder without the model: clear errors naming the value.
    model = CogVideoXTransformer.from_pretrained(transformer_smoke_run / "final")
    with pytest.raises(VidgenError, match="holds a CogVideoXVAE; this recipe trains a CogVideoXTransformer"):
        initialise_from(model, str(tiny_vae_dir))
    with pytest.raises(VidgenError, match="no model.safetensors and no sub-folder"):
        initialise_from(model, str(tmp_path))
    with pytest.raises(VidgenError, match="neither a local folder nor a bundled model"):
        initialise_from(model, str(tmp_path / "missing"))


@pytest.mark.parametrize("trained, frozen", [("decoder", "encoder"), ("encoder", "decoder")])
def test_vae_one_sided_fine_tune_keeps_the_other_side(tmp_path, vae_smoke_run, trained, frozen):
    """vae.train_decoder_only keeps every latent bit-identical; vae.train_encoder_only keeps the decoder."""
    from vidgen.modeling import load_safetensors

    start = load_safetensors(vae_smoke_run / "final" / "model.safetensors")
    run = tmp_path / trained
    assert cli("train", "cogvideox-shapes-vae-smoke", "--output", str(run), "--steps", "2", "--no-progress",
               "--set", f"vae.train_{trained}_only=true", "--set", f'train.init_from="{vae_smoke_run / "final"}"') == 0
    after = load_safetensors(run / "checkpoints" / "step_00000002" / "model.safetensors")
    frozen_keys = [k for k in start if k.startswith(f"{frozen}.")]
    trained_keys = [k for k in start if k.startswith(f"{trained}.")]
    assert frozen_keys and trained_keys and len(frozen_keys) + len(trained_keys) == len(start)
    assert all(torch.equal(after[k], start[k]) for k in frozen_keys)           # frozen: bit-identical
    assert any(not torch.equal(after[k], start[k]) for k in trained_keys)      # the other side learned
    # Freezing a random part would make no sense: it asks for init_from.
    recipe = load_recipe("cogvideox-shapes-vae-smoke", overrides=[f"vae.train_{trained}_only=true",
                                                                   f'output.dir="{tmp_path / "bad"}"'])
    with pytest.raises(VidgenError, match=f"train_{trained}_only = true freezes the {frozen}"):
        recipes_module.run_recipe(recipe, progress=False)


def test_vae_decoder_only_fine_tune_keeps_the_cache_key(tmp_path, vae_smoke_run):
    """A decoder-only fine-tune keeps the source's scaling factor, so its encoder digest (the latent-cache
    key) is the source's and transformers trained on the old latents can use the new decoder."""
    import shutil

    from vidgen.modeling import read_json, write_json
    from vidgen.training.latent_cache import encoder_digest

    source = tmp_path / "source"
    shutil.copytree(vae_smoke_run / "final", source)
    config = read_json(source / "config.json")
    write_json(source / "config.json", {**config, "scaling_factor": 0.5})  # as a transformer export writes it
    run = tmp_path / "decoder"
    assert cli("train", "cogvideox-shapes-vae-smoke", "--output", str(run), "--steps", "2", "--no-progress",
               "--set", "vae.train_decoder_only=true", "--set", f'train.init_from="{source}"') == 0
    assert read_json(run / "final" / "config.json")["scaling_factor"] == 0.5
    assert encoder_digest(run / "final") == encoder_digest(source)


def test_vae_cannot_freeze_both_sides():
    with pytest.raises(VidgenError, match="train_decoder_only and vae.train_encoder_only are both true"):
        load_recipe("cogvideox-shapes-vae-smoke", overrides=["vae.train_decoder_only=true",
                                                             "vae.train_encoder_only=true"])


def test_vae_shape_metrics_see_rounded_corners():
    """The VAE eval's shape metrics: real squares score fill ~1 and are judged right; blurring the same
    clips (what a VAE that cuts corners does) lowers the fill of every square."""
    from vidgen.data.shapes import ShapesDataset
    from vidgen.training.cogvideox import shape_metrics

    dataset = ShapesDataset("train", num_items=48, size=64, num_frames=9, max_objects=1, seed=3)
    items = [item for item in (dataset[i] for i in range(48)) if item["labels"]["shape_id"] == 1][:3]
    assert len(items) == 3
    videos = torch.stack([item["video"] for item in items])
    objects = [item["labels"]["objects"] for item in items]
    real = shape_metrics(videos, objects)
    assert real["shape_acc"] == 1.0 and real["square_fill"] > 0.97
    blurred = torch.nn.functional.avg_pool3d(videos, (1, 5, 5), stride=1, padding=(0, 2, 2), count_include_pad=False)
    rounded = shape_metrics(blurred, objects)
    assert rounded["square_fill"] < real["square_fill"] - 0.02


def test_vae_gan_decoder_fine_tune_resumes_exactly(tmp_path, vae_smoke_run):
    """The VAE kind's [gan] table (CogVideoX trains its VAE with a 3D discriminator): the discriminator
    sees the 4k frames after the first, runs from gan.start_step, and its state resumes bit for bit."""
    from safetensors.torch import load_file

    from conftest import rewound_copy
    from vidgen.modeling import load_safetensors

    args = ["--no-progress", "--set", "gan.enabled=true", "--set", 'gan.discriminator="tiny"', "--set",
            "gan.adaptive_weight=true", "--set", "gan.start_step=1", "--set", "vae.decoder_noise=0.5",
            "--set", "vae.train_decoder_only=true", "--set", f'train.init_from="{vae_smoke_run / "final"}"']
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli("train", "cogvideox-shapes-vae-smoke", "--output", str(straight), *args) == 0
    log = (straight / "log.jsonl").read_text()
    assert '"disc_loss"' in log and '"gan_weight"' in log
    rewound_copy(straight, split, 2)  # interrupted after its step-2 checkpoint, then resumed
    assert cli("train", "cogvideox-shapes-vae-smoke", "--output", str(split), "--resume", *args) == 0
    def last(run):
        return max((run / "checkpoints").glob("step_*"))

    a, b = load_safetensors(last(straight) / "model.safetensors"), load_safetensors(last(split) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    da, db = load_file(str(last(straight) / "objective.safetensors")), load_file(str(last(split) / "objective.safetensors"))
    assert any(k.startswith("adversarial.discriminator.") for k in da)
    assert da.keys() == db.keys() and all(torch.equal(da[k], db[k]) for k in da)
    start = load_safetensors(vae_smoke_run / "final" / "model.safetensors")
    assert all(torch.equal(a[k], start[k]) for k in start if k.startswith("encoder."))  # decoder-only


def test_resume_allows_only_changes_the_checkpoint_can_follow():
    from vidgen.training.recipes import recipe_changes

    old = {"train": {"lr": 1e-3, "steps": 10, "init_from": "magvit-shapes"}, "model": {"size": "tiny"}}
    # More steps and another init_from (never read on resume) are fine; a new lr or model is not.
    assert recipe_changes(old, {"train": {"lr": 1e-3, "steps": 20, "init_from": "runs/x/pipeline"},
                                "model": {"size": "tiny"}}) == []
    changes = recipe_changes(old, {"train": {"lr": 5e-4, "steps": 10, "init_from": "magvit-shapes"},
                                   "model": {"size": "shapes"}})
    assert changes == ["model.size: 'tiny' -> 'shapes'", "train.lr: 0.001 -> 0.0005"]


def test_init_grow_spreads_the_blocks_and_keeps_the_function(tmp_path):
    """train.init_grow: a 2-block transformer loaded into a 4-block one puts its blocks at 0 and 2, the
    added blocks 1 and 3 start as the identity, so the grown model gives the same logits; fewer blocks
    than saved, or a plain load across depths, is refused."""
    from vidgen.generators.masked_transformer import MaskedTokenTransformer, magvit_transformer_tiny
    from vidgen.training.checkpoint import initialise_from

    def tiny(depth: int, seed: int) -> MaskedTokenTransformer:
        torch.manual_seed(seed)
        return MaskedTokenTransformer(magvit_transformer_tiny(codebook_size=64, grid=(2, 4, 4), num_classes=4,
                                                              text_dim=0, depth=depth))

    source = tiny(2, 0)
    source.save_pretrained(tmp_path / "shallow")
    grown = tiny(4, 1)
    initialise_from(grown, str(tmp_path / "shallow"), grow=True)
    a, b = source.state_dict(), grown.state_dict()
    for key, value in a.items():
        target = key.replace("blocks.1.", "blocks.2.") if "blocks.1." in key else key
        assert torch.equal(b[target], value), key
    for index in (1, 3):
        block = grown.transformer.blocks[index]
        assert not block.attn.to_out.weight.any() and not block.mlp.fc2.weight.any()
        assert block.attn.to_q.weight.any()  # only the residual outputs are zeroed: the block can learn
    tokens = torch.randint(0, 64, (3, 2, 4, 4), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = source(tokens, task=1, class_labels=torch.tensor([0, 1, -1]))
        actual = grown(tokens, task=1, class_labels=torch.tensor([0, 1, -1]))
    assert torch.allclose(actual, expected, atol=1e-5)
    tiny(4, 1).save_pretrained(tmp_path / "deep")
    with pytest.raises(CheckpointError, match="growth only adds blocks"):
        initialise_from(tiny(2, 0), str(tmp_path / "deep"), grow=True)
    with pytest.raises(CheckpointError, match="missing keys"):
        initialise_from(tiny(4, 0), str(tmp_path / "shallow"))
    # Growth adds blocks only: a part the saved model lacks (here its text projection) is still refused.
    torch.manual_seed(3)
    with_text = MaskedTokenTransformer(magvit_transformer_tiny(codebook_size=64, grid=(2, 4, 4), num_classes=4,
                                                               text_dim=8, depth=4))
    with pytest.raises(CheckpointError, match="missing keys: .*text_projection"):
        initialise_from(with_text, str(tmp_path / "shallow"), grow=True)
