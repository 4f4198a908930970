"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is one folder `run_dir/checkpoints/step_00001000/`:

    model.safetensors        raw weights
    ema.safetensors          EMA weights (absent when EMA is off)
    optimizer.safetensors    every tensor of the optimiser state, named `state.<param id>.<key>`
    optimizer.json           the rest of the optimiser state dict: param_groups (hyper-parameters,
                             parameter ids) and non-tensor per-parameter entries
    rng.safetensors          torch CPU RNG, each CUDA device's RNG, and the objective's generator
    objective.safetensors    the objective's own state, if it has one (e.g. a GAN discriminator, its
                             optimiser and step counter: `objective.state_tensors()`)
    trainer_state.json       step, batches consumed, EMA update count, python `random` and numpy
                             RNG states, the train config

The folder is written under a temporary name in the same parent and renamed into place, so a crash
while saving leaves either the previous checkpoints or a complete new one, never half of one; the
folder with the highest step among complete ones is the latest. Only the last `keep` are kept.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidgen.errors import CheckpointError
from vidgen.modeling import atomic_save_safetensors, atomic_write_dir, load_safetensors, read_json, write_json

FORMAT_VERSION = 1
STATE_NAME = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


# ----------------------------------------------------------------------------- optimiser state


def _encode_json(value: Any, where: str) -> Any:
    """JSON-able copy of a param-group value; tuples are tagged so they come back as tuples."""
    if isinstance(value, tuple):
        return {"__tuple__": [_encode_json(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode_json(v, where) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"cannot store optimiser value {where} of type {type(value).__name__} in JSON")


def _decode_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"__tuple__"}:
        return tuple(_decode_json(v) for v in value["__tuple__"])
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    return value


def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split `optimizer.state_dict()` into named tensors and a JSON-able structure.

    Returns (tensors, meta): tensors `state.<param id>.<key>`; meta holds `param_groups` and the
    non-tensor per-parameter values under `scalars`.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param_id}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(param_id), {})[key] = _encode_json(value, f"state[{param_id}][{key}]")
    groups = [{k: _encode_json(v, f"param_groups[{i}][{k}]") for k, v in group.items()}
              for i, group in enumerate(state_dict["param_groups"])]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        prefix, param_id, key = name.split(".", 2)
        if prefix != "state":
            raise CheckpointError(f"unexpected optimiser tensor name {name!r}")
        state.setdefault(int(param_id), {})[key] = tensor
    for param_id, entries in meta.get("scalars", {}).items():
        for key, value in entries.items():
            state.setdefault(int(param_id), {})[key] = _decode_json(value)
    groups = [{k: _decode_json(v) for k, v in group.items()} for group in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ----------------------------------------------------------------------------- RNG state


def capture_rng_state(generator: torch.Generator | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG a training step may draw from: (tensors for safetensors, JSON-able dict)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda.{i}"] = s
    if generator is not None:
        tensors["objective"] = generator.get_state()
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    info = {"python_random": [version, list(internal), gauss],
            "numpy_random": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    return tensors, info


def restore_rng_state(tensors: dict[str, torch.Tensor], info: dict[str, Any],
                      generator: torch.Generator | None) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = sorted((k for k in tensors if k.startswith("torch_cuda.")), key=lambda k: int(k.split(".")[1]))
    if cuda:
        if torch.cuda.is_available():
            for key in cuda[: torch.cuda.device_count()]:
                torch.cuda.set_rng_state(tensors[key], device=int(key.split(".")[1]))
        else:
            warnings.warn("the checkpoint holds CUDA RNG states but CUDA is not available: resuming on "
                          "CPU, so the run will not be bit-identical to an uninterrupted one")
    if generator is not None:
        if "objective" not in tensors:
            raise CheckpointError("the checkpoint has no state for the objective's generator")
        generator.set_state(tensors["objective"])
    version, internal, gauss = info["python_random"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = info["numpy_random"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ----------------------------------------------------------------------------- folders


def checkpoint_dirs(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root` as (step, folder), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir() and (path / STATE_NAME).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    found = checkpoint_dirs(root)
    return found[-1][1] if found else None


def save_checkpoint(root: str | os.PathLike, step: int, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, ema_state: dict[str, torch.Tensor] | None,
                    generator: torch.Generator | None, state: dict[str, Any], keep: int = 2,
                    objective_state: dict[str, torch.Tensor] | None = None,
                    protect: Collection[int] = ()) -> Path:
    """Write the checkpoint of `step` atomically under `root` and prune all but the newest `keep` (and those
    of the steps in `protect`, which are never pruned).

    `state` is the trainer's JSON-able state (step, batches consumed, ...); RNG states are added here.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"

    def write(tmp: Path) -> None:
        # The files go through modeling's writer for the usual permissions (safetensors creates 0600
        # files); the atomic commit is the folder swap of `atomic_write_dir`.
        atomic_save_safetensors(_cpu(model.state_dict()), tmp / "model.safetensors")
        if ema_state is not None:
            atomic_save_safetensors(_cpu(ema_state), tmp / "ema.safetensors")
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
        atomic_save_safetensors(opt_tensors, tmp / "optimizer.safetensors")
        write_json(tmp / "optimizer.json", opt_meta)
        if objective_state is not None:
            atomic_save_safetensors(_cpu(objective_state), tmp / "objective.safetensors")
        rng_tensors, rng_info = capture_rng_state(generator)
        atomic_save_safetensors(rng_tensors, tmp / "rng.safetensors")
        write_json(tmp / STATE_NAME, {"format_version": FORMAT_VERSION, **state, **rng_info})

    # Re-saving the same step (e.g. Ctrl-C right after a periodic checkpoint) replaces it atomically.
    atomic_write_dir(final, write)
    for old_step, old_dir in checkpoint_dirs(root)[:-keep] if keep > 0 else []:
        if old_step not in protect:
            shutil.rmtree(old_dir, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint folder: {"model", "ema" (or None), "optimizer" (a state dict), "rng_tensors",
    "objective" (or None), "state" (trainer_state.json)}."""
    path = Path(path)
    if not (path / STATE_NAME).is_file():
        raise CheckpointError(f"{path} is not a training checkpoint (no {STATE_NAME})")
    state = read_json(path / STATE_NAME)
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format_version')!r} is not supported "
                              f"(this vidgen reads format {FORMAT_VERSION})")
    ema_path = path / "ema.safetensors"
    objective_path = path / "objective.safetensors"
    return {
        "model": load_safetensors(path / "model.safetensors"),
        "ema": load_safetensors(ema_path) if ema_path.is_file() else None,
        "optimizer": unflatten_optimizer_state(load_safetensors(path / "optimizer.safetensors"),
                                               read_json(path / "optimizer.json")),
        "rng_tensors": load_safetensors(path / "rng.safetensors"),
        "objective": load_safetensors(objective_path) if objective_path.is_file() else None,
        "state": state,
    }


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Tied weights share storage; safetensors refuses shared tensors, so each gets its own copy.
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


_BLOCK_KEY = re.compile(r"(^|\.)blocks\.(\d+)\.")


def _block_count(keys) -> int:
    indices = [int(m.group(2)) for k in keys if (m := _BLOCK_KEY.search(k))]
    return max(indices) + 1 if indices else 0


def grow_state(state: dict[str, torch.Tensor], model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Spread a shallower network's transformer blocks over `model`'s deeper stack (`train.init_grow`).

    Source block i becomes block floor(i * depth / source_depth) of the model (6 -> 12: blocks 0, 2, ...,
    10); every other key must match as in a plain load. Returns (the full state dict for `model`, with the
    new blocks' freshly initialised weights, and the new block indices). The caller zeroes the new blocks'
    residual outputs (`TransformerBlock.zero_residual_`), so the grown model computes what the source did.
    """
    own = model.state_dict()
    source_depth, depth = _block_count(state), _block_count(own)
    if source_depth == 0 or depth == 0:
        raise CheckpointError("train.init_grow needs transformer blocks (keys '...blocks.<i>....') in both the "
                              "saved weights and the model")
    if depth < source_depth:
        raise CheckpointError(f"train.init_grow: the saved model has {source_depth} blocks, more than this "
                              f"model's {depth}; growth only adds blocks")
    placed = {i: i * depth // source_depth for i in range(source_depth)}
    new_blocks = sorted(set(range(depth)) - set(placed.values()))
    # Only the added blocks keep the model's fresh weights; everything else comes from the saved state,
    # so the strict load still reports what the saved model lacks.
    grown = {k: v for k, v in own.items() if (m := _BLOCK_KEY.search(k)) and int(m.group(2)) in new_blocks}
    for key, value in state.items():
        match = _BLOCK_KEY.search(key)
        if match:
            start, end = match.span(2)
            key = key[:start] + str(placed[int(match.group(2))]) + key[end:]
        grown[key] = value
    return grown, new_blocks


def initialise_from(model: torch.nn.Module, name_or_path: str, grow: bool = False) -> Path:
    """Copy the weights saved at `name_or_path` into `model` (fine-tuning: `train.init_from`).

    name_or_path: a `save_pretrained` folder (config.json + model.safetensors) or a bundled name; a
    pipeline folder (e.g. "cogvideox-shapes" or a run's pipeline/) is searched for the one sub-folder
    whose config.json names the model's class. Stored bf16 weights are cast to the model's dtype.
    grow: the saved model may have fewer transformer blocks (`grow_state`): they are spread over the
    model's, and the added blocks start as the identity, so the grown model computes what the saved one
    did (`train.init_grow`). Returns the weights file used.
    """
    from vidgen.modeling import CONFIG_NAME, WEIGHTS_NAME, PretrainedModel, resolve_component

    class_name = type(model).__name__
    try:
        folder = resolve_component(name_or_path, class_name)
    except CheckpointError as error:
        raise CheckpointError(f"train.init_from = {name_or_path!r}: {error}") from None
    saved_class = read_json(folder / CONFIG_NAME).get("_class_name") if (folder / CONFIG_NAME).is_file() else None
    if saved_class is not None and saved_class != class_name:  # the weights are loaded directly, not by from_pretrained
        raise CheckpointError(f"train.init_from = {name_or_path!r} holds a {saved_class}; this recipe trains a "
                              f"{class_name}")
    path = folder / WEIGHTS_NAME
    state = load_safetensors(path)
    new_blocks: list[int] = []
    if grow:
        state, new_blocks = grow_state(state, model)
    # Paths that start at zero (e.g. MAGVIT's code geometry) keep the model's values when the saved model lacks them.
    own = model.state_dict()
    for key in getattr(model, "zero_start_keys", list)():
        state.setdefault(key, own[key])
    if isinstance(model, PretrainedModel):
        model.load_state_dict_strict(state, source=str(path))  # lists missing / mis-shaped keys
    else:
        try:
            model.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"weights in {path} do not match the recipe's model: {error}") from None
    if new_blocks:
        from vidgen.layers.transformer import TransformerBlock

        blocks = {int(m.group(2)): module for name, module in model.named_modules()
                  if isinstance(module, TransformerBlock) and (m := _BLOCK_KEY.search(name + "."))}
        for index in new_blocks:
            blocks[index].zero_residual_()
    return path
