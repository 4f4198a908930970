"""One training loop for every vidgen model: flat, honest, exactly resumable.

    trainer = Trainer(model, objective, dataset, TrainConfig(steps=1000, batch_size=8), run_dir="runs/x")
    result = trainer.train()          # resumes from run_dir/checkpoints/ when resume=True

Each model family supplies only an *objective*: `objective(model, batch, generator) -> dict` of named
scalar losses, `"loss"` being the total to minimise (other scalar entries are logged). Every random
draw inside it (noise, timesteps, condition dropout, posterior samples) must come from `generator`,
whose state is checkpointed. An objective with state of its own (a GAN discriminator and its
optimiser, a step counter) exposes it as `state_tensors() -> dict` / `load_state_tensors(dict)` and
is checkpointed too; an `nn.Module` objective is moved to the device and put in train mode. The
global torch/python/numpy RNGs (dropout layers) are checkpointed, and the data order is a function
of (seed, batches consumed) (see `vidgen.training.data`). Together this makes "train N steps" and
"train k steps, crash, resume, train N - k steps" produce bit-identical weights in float32.

What one step does, in order:
    lr <- warmup + cosine schedule(step)
    for each of grad_accum micro-batches: loss = objective(...) / grad_accum; loss.backward()
        (inside bf16 autocast when enabled)
    clip the global gradient norm; AdamW step; EMA update; step += 1
    every log_every steps: print + append to run_dir/log.jsonl
    every eval_every / sample_every steps: eval hook / sample hook on the EMA model, with the RNGs
        saved and restored around them so that hooks never change the training run
    every checkpoint_every steps: checkpoint (atomic, last `keep_checkpoints` kept, plus those of `keep_steps`)
At the end: a last checkpoint, then the export (EMA or raw weights, via `save_pretrained`) in
run_dir/final/ (and the raw weights in run_dir/final_raw/ when final/ holds the EMA). Ctrl-C finishes the current step, writes a checkpoint and returns (a second Ctrl-C
quits at once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vidgen.devices import autocast_context, bf16_is_fast
from vidgen.errors import CheckpointError, VidgenError
from vidgen.modeling import PretrainedModel, atomic_save_safetensors
from vidgen.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from vidgen.training.data import make_loader
from vidgen.training.ema import EMA

Objective = Callable[[nn.Module, Any, torch.Generator], Mapping[str, torch.Tensor]]
SampleHook = Callable[[nn.Module, int, Path], Any]  # (model, step, samples_dir)
EvalHook = Callable[[nn.Module, int], Mapping[str, float]]  # (model, step) -> metrics
ExportHook = Callable[[nn.Module, Path], Path]  # (model to export, run_dir) -> export folder


@dataclasses.dataclass
class TrainConfig:
    """Everything about *how* to train (the `[train]` table of a recipe).

    Intervals are in optimiser steps; 0 turns the action off (except checkpoints at the end).
    """

    steps: int = 1000
    batch_size: int = 8               # per micro-batch; the optimiser sees batch_size * grad_accum
    grad_accum: int = 1
    lr: float = 1e-4
    min_lr_ratio: float = 0.1         # cosine decays lr to lr * min_lr_ratio at `steps`
    warmup_steps: int = 0             # linear warm-up from 0
    weight_decay: float = 0.0         # applied to matrices only (ndim >= 2), as in nanoGPT
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0            # max global gradient norm; 0 = no clipping
    ema: bool = True
    ema_decay: float = 0.999
    ema_warmup: bool = True
    bf16: bool = False                # bf16 autocast for forward/backward (weights stay float32) where
                                      # bf16 is native (vidgen.devices.bf16_is_fast); float32 elsewhere
    seed: int = 0
    device: str = "auto"              # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    num_workers: int = 0              # DataLoader worker processes
    log_every: int = 10
    eval_every: int = 0
    sample_every: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    keep_steps: list[int] = dataclasses.field(default_factory=list)  # steps whose checkpoints are written
                                      # and never pruned (e.g. an early model kept for autoguidance)
    export: str = "ema"               # "ema" or "raw": which weights go to run_dir/final/
    export_dtype: str = "float32"     # "float32" or "bfloat16" storage of the exported weights
    init_from: str = ""               # fine-tuning: a model folder or bundled name (a pipeline folder
                                      # is searched for the sub-folder of the model's class) whose
                                      # weights replace the fresh ones before step 0; "" = from scratch
    init_grow: bool = False           # init_from a shallower model: its transformer blocks are spread over
                                      # this one's and the added blocks start as the identity

    @property
    def export_torch_dtype(self) -> torch.dtype | None:
        """The storage dtype of exported weights (None = as trained, float32)."""
        return torch.bfloat16 if self.export_dtype == "bfloat16" else None

    def __post_init__(self) -> None:
        _check(self.steps >= 0, "train.steps", self.steps, "an integer >= 0")
        _check(self.batch_size >= 1, "train.batch_size", self.batch_size, "an integer >= 1")
        _check(self.grad_accum >= 1, "train.grad_accum", self.grad_accum, "an integer >= 1")
        _check(self.lr > 0, "train.lr", self.lr, "a number > 0")
        _check(0 <= self.min_lr_ratio <= 1, "train.min_lr_ratio", self.min_lr_ratio, "a number in [0, 1]")
        _check(self.warmup_steps >= 0, "train.warmup_steps", self.warmup_steps, "an integer >= 0")
        _check(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "a number >= 0")
        _check(0 <= self.beta1 < 1, "train.beta1", self.beta1, "a number in [0, 1)")
        _check(0 <= self.beta2 < 1, "train.beta2", self.beta2, "a number in [0, 1)")
        _check(self.grad_clip >= 0, "train.grad_clip", self.grad_clip, "a number >= 0 (0 = off)")
        _check(0 <= self.ema_decay < 1, "train.ema_decay", self.ema_decay, "a number in [0, 1)")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               "train.device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
        _check(self.num_workers >= 0, "train.num_workers", self.num_workers, "an integer >= 0")
        for name in ("log_every", "eval_every", "sample_every", "checkpoint_every"):
            _check(getattr(self, name) >= 0, f"train.{name}", getattr(self, name), "an integer >= 0 (0 = off)")
        _check(self.keep_checkpoints >= 1, "train.keep_checkpoints", self.keep_checkpoints, "an integer >= 1")
        _check(all(isinstance(s, int) and s >= 1 for s in self.keep_steps), "train.keep_steps", self.keep_steps,
               "a list of steps >= 1")
        _check(self.export in ("ema", "raw"), "train.export", self.export, "'ema' or 'raw'")
        _check(self.export_dtype in ("float32", "bfloat16"), "train.export_dtype", self.export_dtype,
               "'float32' or 'bfloat16'")
        _check(self.export == "raw" or self.ema, "train.export", self.export, "'raw' when train.ema = false")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise VidgenError(f"{key} = {value!r} is not valid: expected {allowed}")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VidgenError(f"device {device!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    return torch.device(device)


def lr_at(step: int, config: TrainConfig, restart: tuple[int, float] | None = None) -> float:
    """Learning rate of optimiser step `step` (0-based): linear warm-up, then cosine decay to
    lr * min_lr_ratio at `config.steps` (constant after that).

    restart = (start_step, start_lr): the schedule of a run whose `train.steps` changed when it was
    resumed at start_step. From there the rate decays by a cosine from start_lr (its value under the old
    schedule) to lr * min_lr_ratio at the new `config.steps`, so it continues where it was instead of
    jumping to where a schedule laid out over the new length would have it (a jump up can undo a run).
    """
    if restart is not None and step >= restart[0]:
        start, start_lr = restart
    elif config.warmup_steps > 0 and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    else:
        start, start_lr = config.warmup_steps, config.lr
    min_lr = config.lr * config.min_lr_ratio
    progress = min(1.0, (step - start) / max(1, config.steps - start))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (start_lr - min_lr)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors anywhere inside dicts/lists/tuples go to `device`; other values are left alone."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Run a block (a sample or eval hook) without changing any global RNG the training run uses."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@dataclasses.dataclass
class TrainResult:
    step: int                         # optimiser steps done in total
    interrupted: bool                 # True if Ctrl-C (or stop_at) stopped the run before train.steps
    checkpoint: Path | None           # the last checkpoint written
    export_dir: Path | None           # run_dir/final (None when interrupted)
    losses: dict[str, float]          # the mean losses of the last step


class Trainer:
    """Trains `model` on `dataset` by minimising `objective` (see the module docstring).

    dataset:    a map-style dataset (len + getitem); batches are made by `collate_fn`.
    run_dir:    where log.jsonl, samples/, checkpoints/ and final/ go.
    resume:     True = continue from the latest checkpoint in run_dir/checkpoints (an error if none);
                False = start fresh (an error if checkpoints already exist there, so a run is never
                silently overwritten).
    sample_fn:  (model, step, samples_dir) -> None, writes sample videos; gets the EMA model.
    eval_fn:    (model, step) -> {metric: value}, logged to log.jsonl.
    export_fn:  (model, run_dir) -> folder; default: `save_pretrained(run_dir / "final")`.
    """

    def __init__(self, model: nn.Module, objective: Objective, dataset: Any, config: TrainConfig,
                 run_dir: str | Path, *, collate_fn: Callable[[Sequence[Any]], Any] | None = None,
                 sample_fn: SampleHook | None = None, eval_fn: EvalHook | None = None,
                 export_fn: ExportHook | None = None, resume: bool = False, progress: bool = True,
                 log_fn: Callable[[str], None] = print, keep_steps: Sequence[int] = (),
                 stop_at: int | None = None):
        """keep_steps: steps whose checkpoints are kept besides `config.keep_steps` (what a kind's export needs).
        stop_at: pause after this step (checkpoint, no export), as if Ctrl-C came then; --resume continues
            exactly, so a run can be trained in time-boxed pieces with the schedule of the whole run."""
        if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, int) or stop_at < 1):
            raise VidgenError(f"stop_at = {stop_at!r}: expected a step >= 1")
        self.stop_at = stop_at
        self.config = config
        self.keep_steps = frozenset(config.keep_steps) | frozenset(int(s) for s in keep_steps)
        self.device = resolve_device(config.device)
        # bf16 autocast only where it is fast: emulated bf16 (CPUs without AVX512-bf16/AMX) is ~100x slower.
        self.bf16 = bool(config.bf16) and bf16_is_fast(self.device)
        self.run_dir = Path(run_dir)
        self.checkpoint_root = self.run_dir / "checkpoints"
        self.objective = objective
        if isinstance(objective, nn.Module):
            objective.to(self.device).train()
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.sample_fn, self.eval_fn, self.export_fn = sample_fn, eval_fn, export_fn
        self.progress = progress
        self.log_fn = log_fn

        self.model = model.to(self.device).train()
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        if not decay and not no_decay:
            raise VidgenError(f"{type(model).__name__} has no trainable parameters")
        groups = [{"params": decay, "weight_decay": config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr,
                                           betas=(config.beta1, config.beta2))
        self.ema = EMA(self.model, config.ema_decay, config.ema_warmup) if config.ema else None
        # Every random draw of the objective comes from this generator; its state is checkpointed.
        self.generator = torch.Generator(device=self.device)

        self.step = 0
        self.batches_consumed = 0
        self.lr_restart: tuple[int, float] | None = None  # set when a resume changes train.steps (lr_at)
        self.last_checkpoint: Path | None = None
        self._stop_requested = False
        # RNG states are set when `train()` starts, not here, so that whatever the caller does
        # between building the Trainer and training (building a sample pipeline, ...) cannot shift them.
        self._pending_rng: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None

        existing = latest_checkpoint(self.checkpoint_root)
        if resume:
            if existing is None:
                raise CheckpointError(f"cannot resume: no checkpoint in {self.checkpoint_root}")
            self._load(existing)
        else:
            if existing is not None:
                raise VidgenError(
                    f"{self.run_dir} already holds checkpoints (latest: {existing.name}); resume it "
                    f"(--resume), choose another output folder, or delete that folder")
            self._pending_rng = ({}, {"seed": config.seed})

    # ------------------------------------------------------------------ state

    def _apply_pending_rng(self) -> None:
        if self._pending_rng is None:
            return
        tensors, info = self._pending_rng
        if "seed" in info:
            seed = info["seed"]
            torch.manual_seed(seed)  # also seeds every CUDA device
            random.seed(seed)
            np.random.seed(seed % 2**32)
            self.generator.manual_seed(seed)
        else:
            restore_rng_state(tensors, info, self.generator)
        self._pending_rng = None

    def _trainer_state(self) -> dict[str, Any]:
        return {"step": self.step, "batches_consumed": self.batches_consumed,
                "ema_num_updates": self.ema.num_updates if self.ema else 0,
                "lr_restart": list(self.lr_restart) if self.lr_restart else None,
                "train_config": dataclasses.asdict(self.config)}

    def save_checkpoint(self) -> Path:
        self.last_checkpoint = save_checkpoint(
            self.checkpoint_root, self.step, model=self.model, optimizer=self.optimizer,
            ema_state=self.ema.state_dict() if self.ema else None, generator=self.generator,
            state=self._trainer_state(), keep=self.config.keep_checkpoints, protect=self.keep_steps,
            objective_state=self.objective.state_tensors() if hasattr(self.objective, "state_tensors") else None)
        return self.last_checkpoint

    def _load(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        state = ckpt["state"]
        saved = state.get("train_config", {})
        for key in ("batch_size", "grad_accum", "seed"):  # these define the data order
            if key in saved and saved[key] != getattr(self.config, key):
                raise CheckpointError(
                    f"cannot resume from {path}: train.{key} was {saved[key]!r} there and is "
                    f"{getattr(self.config, key)!r} now; resuming needs the same value")
        if "ema" in saved and saved["ema"] != self.config.ema:
            raise CheckpointError(f"cannot resume from {path}: train.ema was {saved['ema']} and is "
                                  f"{self.config.ema} now")
        load_model_weights(self.model, ckpt["model"], path / "model.safetensors")
        if self.ema is not None:
            if ckpt["ema"] is None:
                raise CheckpointError(f"{path} has no ema.safetensors but train.ema is on")
            self.ema.load_state_dict(ckpt["ema"], state["ema_num_updates"])
        if hasattr(self.objective, "load_state_tensors"):
            if ckpt["objective"] is None:
                raise CheckpointError(f"{path} has no objective.safetensors, but this objective keeps state")
            self.objective.load_state_tensors(ckpt["objective"])
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, RuntimeError) as error:
            raise CheckpointError(f"cannot load the optimiser state of {path}: {error}") from None
        self._pending_rng = (ckpt["rng_tensors"], state)
        self.step = int(state["step"])
        self.batches_consumed = int(state["batches_consumed"])
        restart = state.get("lr_restart")
        self.lr_restart = (int(restart[0]), float(restart[1])) if restart else None
        saved_steps = saved.get("steps", self.config.steps)
        if saved_steps != self.config.steps and self.step >= self.config.warmup_steps:
            # A longer (or shorter) run: continue from the rate this step had, decaying over the new length.
            old_schedule = dataclasses.replace(self.config, steps=int(saved_steps))
            self.lr_restart = (self.step, lr_at(self.step, old_schedule, self.lr_restart))
            self.log_fn(f"train.steps {saved_steps} -> {self.config.steps}: the learning rate continues from "
                        f"{self.lr_restart[1]:.3g} at step {self.step} and decays to "
                        f"{self.config.lr * self.config.min_lr_ratio:.3g} at step {self.config.steps}")
        self.last_checkpoint = path
        self.log_fn(f"resumed from {path} (step {self.step})")

    # ------------------------------------------------------------------ the loop

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast_context(self.device, self.bf16)

    def _eval_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.model

    def _request_stop(self, signum: int, frame: Any) -> None:
        self._stop_requested = True
        # A second Ctrl-C should quit at once: give SIGINT back its default behaviour.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.log_fn(f"\ninterrupt: finishing step {self.step + 1}, then writing a checkpoint "
                    f"(Ctrl-C again to quit without one)")

    def train(self) -> TrainResult:
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous_handler = signal.signal(signal.SIGINT, self._request_stop) if in_main_thread else None
        self._stop_requested = False
        self._apply_pending_rng()
        try:
            return self._train_loop()
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous_handler)

    def _train_loop(self) -> TrainResult:
        config = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.run_dir / "log.jsonl"
        losses: dict[str, float] = {}
        window: dict[str, float] = {}
        counts: dict[str, int] = {}  # an objective may report some entries only on some steps
        window_steps, window_time = 0, 0.0
        if config.bf16 and not self.bf16 and self.step < config.steps:
            self.log_fn(f"train.bf16 = true, but bf16 is not native on {self.device} (a CPU needs AVX512-bf16 "
                        f"or AMX; emulated bf16 is ~100x slower): training in float32")
        bar = None
        if self.progress and self.step < config.steps:
            from tqdm.auto import tqdm
            bar = tqdm(total=config.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        loader = make_loader(self.dataset, config.batch_size, config.seed, start_batch=self.batches_consumed,
                             num_workers=config.num_workers, collate_fn=self.collate_fn,
                             pin_memory=self.device.type == "cuda")
        self.model.train()
        try:
            end = config.steps if self.stop_at is None else min(config.steps, self.stop_at)
            if self.step >= end and self.step < config.steps:
                raise VidgenError(f"stop at step {self.stop_at}: the run is already at step {self.step}; "
                                  f"give a later step (train.steps is {config.steps})")
            while self.step < end and not self._stop_requested:
                started = time.perf_counter()
                lr = lr_at(self.step, config, self.lr_restart)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                losses = {}
                for _ in range(config.grad_accum):
                    batch = move_to_device(next(loader), self.device)
                    with self._autocast():
                        out = self.objective(self.model, batch, self.generator)
                    if "loss" not in out:
                        raise VidgenError(f"the objective must return a dict with a 'loss' entry; got "
                                          f"keys {sorted(out)}")
                    (out["loss"] / config.grad_accum).backward()
                    for name, value in out.items():
                        if torch.is_tensor(value) and value.numel() != 1:
                            continue  # per-sample values are not logged
                        value = float(value.detach().float()) if torch.is_tensor(value) else float(value)
                        losses[name] = losses.get(name, 0.0) + value / config.grad_accum
                if not math.isfinite(losses["loss"]):
                    raise VidgenError(
                        f"the loss became {losses['loss']} at step {self.step + 1}; try a lower train.lr "
                        f"(now {config.lr}), more warm-up, or train.bf16 = false")
                if config.grad_clip > 0:
                    grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
                    losses["grad_norm"] = float(grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                if self.ema is not None:
                    self.ema.update(self.model)
                self.step += 1
                self.batches_consumed += config.grad_accum
                elapsed = time.perf_counter() - started

                for name, value in losses.items():
                    window[name] = window.get(name, 0.0) + value
                    counts[name] = counts.get(name, 0) + 1
                window_steps += 1
                window_time += elapsed
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses['loss']:.4f}", lr=f"{lr:.2e}")
                if config.log_every and (self.step % config.log_every == 0 or self.step == config.steps):
                    record = {"step": self.step, **{k: v / counts[k] for k, v in window.items()},
                              "lr": lr, "sec_per_step": window_time / window_steps}
                    self._append_log(log_path, record)
                    text = " | ".join(f"{k} {v:.4g}" for k, v in record.items()
                                      if k not in ("step", "lr", "sec_per_step"))
                    self._print(bar, f"step {self.step}/{config.steps} | {text} | lr {lr:.2e} | "
                                     f"{record['sec_per_step']:.3f} s/step")
                    window, counts, window_steps, window_time = {}, {}, 0, 0.0

                last = self.step == config.steps
                if self.eval_fn is not None and config.eval_every and (self.step % config.eval_every == 0 or last):
                    self._run_eval(log_path, bar)
                if self.sample_fn is not None and config.sample_every and (
                        self.step % config.sample_every == 0 or last):
                    self._run_samples()
                periodic = config.checkpoint_every and self.step % config.checkpoint_every == 0
                if (periodic or self.step in self.keep_steps) and not last:
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            del loader  # shuts DataLoader workers down

        interrupted = self.step < config.steps
        if self.last_checkpoint is None or _step_of(self.last_checkpoint) != self.step:
            self.save_checkpoint()
        if interrupted:
            self.log_fn(f"stopped at step {self.step}; checkpoint {self.last_checkpoint}; "
                        f"continue with --resume")
            return TrainResult(self.step, True, self.last_checkpoint, None, losses)
        export_dir = self.export()
        return TrainResult(self.step, False, self.last_checkpoint, export_dir, losses)

    # ------------------------------------------------------------------ hooks

    def _print(self, bar: Any, text: str) -> None:
        if bar is not None:
            bar.write(text)
        else:
            self.log_fn(text)

    @staticmethod
    def _append_log(path: Path, record: dict[str, Any]) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _run_eval(self, log_path: Path, bar: Any) -> None:
        model = self._eval_model()
        model.eval()
        with preserved_rng(self.device), torch.no_grad():
            metrics = dict(self.eval_fn(model, self.step))
        if self.ema is None:
            self.model.train()
        record = {"step": self.step, "eval": True, **{k: float(v) for k, v in metrics.items()}}
        self._append_log(log_path, record)
        self._print(bar, f"eval step {self.step} | " + " | ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def _run_samples(self) -> None:
        model = self._eval_model()
        model.eval()
        samples_dir = self.run_dir / "samples"
        samples_dir.mkdir(parents=True, exist_ok=True)
        with preserved_rng(self.device), torch.no_grad():
            self.sample_fn(model, self.step, samples_dir)
        if self.ema is None:
            self.model.train()

    def export(self) -> Path:
        """Write the final model (EMA or raw, see `TrainConfig.export`) and return its folder. With
        EMA export the raw weights are written alongside, to run_dir/final_raw/ (for comparisons)."""
        model = self.model
        if self.config.export == "ema" and self.ema is not None:
            model = self.ema.model
            export_model(self.model, self.run_dir / "final_raw", self.config.export_torch_dtype)
        return write_final(model, self.run_dir, self.config, self.export_fn)


def write_final(model: nn.Module, directory: Path, config: TrainConfig, export_fn: ExportHook | None = None) -> Path:
    """A run's final export of `model` into `directory`: the kind's `export_fn` (e.g. final/ + pipeline/)
    or else directory/final/, in `config.export_dtype`. Returns the exported folder."""
    if export_fn is not None:
        return Path(export_fn(model, directory))
    return export_model(model, directory / "final", config.export_torch_dtype)


def load_model_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: Path) -> None:
    """Load a full state dict saved from `model`'s class; a vidgen model lists missing or mis-shaped keys."""
    if isinstance(model, PretrainedModel):
        model.load_state_dict_strict(dict(state), source=str(source))
    else:
        model.load_state_dict(state, strict=True)


def load_checkpoint_weights(model: nn.Module, checkpoint_dir: Path, config: TrainConfig, raw: bool = False) -> bool:
    """Load into `model` the weights a run exports from this checkpoint: the EMA ones when the run keeps
    them and `config.export` is "ema" (and not `raw`), else the raw ones. Returns True for EMA."""
    checkpoint = load_checkpoint(checkpoint_dir)
    use_ema = not raw and config.export == "ema" and checkpoint["ema"] is not None
    load_model_weights(model, checkpoint["ema"] if use_ema else checkpoint["model"],
                       checkpoint_dir / ("ema.safetensors" if use_ema else "model.safetensors"))
    return use_ema


def export_model(model: nn.Module, directory: Path, dtype: torch.dtype | None = None) -> Path:
    """`save_pretrained` for vidgen models; a bare `model.safetensors` for any other module."""
    if isinstance(model, PretrainedModel):
        return model.save_pretrained(directory, dtype=dtype)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).cpu()
             for k, v in model.state_dict().items()}
    atomic_save_safetensors(state, directory / "model.safetensors", metadata={"format": "pt"})
    return directory


def _step_of(path: Path) -> int:
    return int(path.name.split("_")[-1])
