"""Checkpoints: every vidgen model is a config dataclass plus safetensors weights.

A checkpoint folder holds
    config.json          the model's config dataclass as JSON, plus `"_class_name"`
    model.safetensors    the weights (never a pickle)

`from_pretrained` takes a local folder or the name of a bundled model (a folder under
`vidgen/bundled/`, or a sub-folder of one such as `cogvideox-shapes/vae`). Writes are atomic: each
file goes to a temporary name in the same folder and is renamed over the target, so an interrupted
save never leaves a half-written checkpoint (`atomic_write_dir` does the same for a whole folder).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vidgen.errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"

C = TypeVar("C")


# ----------------------------------------------------------------------------- atomic file writes


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary path in the folder of `path`, then rename it over `path`.

    The temporary name keeps the extension (`.name.XXXX.tmp.ext`), for writers that choose the format
    by it. An interrupted or failing write leaves `path` as it was and removes the temporary file.
    The file gets the usual permissions (0666 minus the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)  # the only way to read the umask is to set it
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_dir(folder: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` to fill a new private folder next to `folder`, then put it in place of `folder`.

    An existing `folder` is replaced only once the new one is complete (moved aside, the new one renamed
    in, the old one deleted), so a crash leaves either the old or the new folder, never a mix; a
    failing `write` leaves `folder` as it was and removes the temporary folder. Returns `folder`.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp_{folder.name}_{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        _fsync_dir(tmp)
        if folder.exists():
            old = folder.parent / f".old_{folder.name}_{uuid.uuid4().hex[:8]}"
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
        _fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                            metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file`, made atomic (temp file + rename)."""
    # safetensors refuses tensors that share memory or are non-contiguous: give it clean copies.
    clean = {k: v.detach().contiguous().clone() if _shares_storage(v, tensors) else v.detach().contiguous()
             for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(clean, str(tmp), metadata=metadata))


def _shares_storage(t: torch.Tensor, tensors: dict[str, torch.Tensor]) -> bool:
    ptr = t.untyped_storage().data_ptr()
    return sum(1 for v in tensors.values() if v.untyped_storage().data_ptr() == ptr) > 1


def load_safetensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file with an error that names the file when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read weights file {path}: not a valid safetensors file ({error})") from None


# ----------------------------------------------------------------------------- configs as data


def config_to_dict(config: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    return dataclasses.asdict(config)


def config_from_dict(config_class: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Build a config dataclass from a dict, rejecting unknown keys with a clear message.

    Tuples are restored from JSON lists so configs compare equal after a round trip.
    """
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    data = {k: v for k, v in data.items() if not k.startswith("_")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CheckpointError(
            f"{source}: unknown keys for {config_class.__name__}: {unknown}; allowed keys: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        if isinstance(value, list) and "tuple" in str(fields[name].type):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    try:
        return config_class(**kwargs)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: invalid {config_class.__name__}: {error}") from None


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot parse {path} as JSON: {error}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


# ----------------------------------------------------------------------------- bundled models


def bundled_names() -> list[str]:
    """Names of the models shipped inside the package (top-level folders of `vidgen/bundled`)."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A local folder is used as is; otherwise the name is looked up among bundled models.

    `"cogvideox-shapes/vae"` names a sub-folder of a bundled model.
    """
    names = bundled_names()
    if not str(name_or_path).strip():
        # Path("") is the current folder: an empty (e.g. unset) name must not load whatever is there.
        raise CheckpointError(f"model name is empty; give a local folder or a bundled model: "
                              f"{', '.join(names) if names else '(none)'}")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    bundled = BUNDLED_DIR / str(name_or_path)
    if bundled.is_dir() and BUNDLED_DIR.resolve() in bundled.resolve().parents:
        return bundled
    raise CheckpointError(
        f"model {str(name_or_path)!r} is neither a local folder nor a bundled model; "
        f"bundled models: {', '.join(names) if names else '(none)'}")


MAIN_COMPONENTS = ("transformer", "vae", "tokenizer")  # a pipeline's own sub-folders (others are auxiliary)


def resolve_component(name_or_path: str | os.PathLike, class_name: str) -> Path:
    """The folder of a `class_name` model's weights: `name_or_path` itself (a local folder or bundled name)
    when it holds model.safetensors, else, for a pipeline folder, its one sub-folder whose config.json
    names that class (e.g. a MAGVIT pipeline's tokenizer/ for "MagvitVQ"; of several, the pipeline's main
    component, e.g. transformer/ rather than autoguidance_transformer/); CheckpointError otherwise.
    The class of a folder given directly is left to the loader (`from_pretrained` checks it)."""
    folder = resolve_model_path(name_or_path)
    if not (folder / WEIGHTS_NAME).is_file():
        matches = [sub for sub in sorted(folder.iterdir()) if (sub / CONFIG_NAME).is_file()
                   and read_json(sub / CONFIG_NAME).get("_class_name") == class_name]
        main = [sub for sub in matches if sub.name in MAIN_COMPONENTS]
        if len(matches) > 1 and len(main) == 1:
            matches = main
        if len(matches) != 1:
            raise CheckpointError(
                f"{folder} has no {WEIGHTS_NAME} and {'no' if not matches else len(matches)} sub-folder(s) "
                f"holding a {class_name}; give the folder of the model itself (config.json + {WEIGHTS_NAME})")
        folder = matches[0]
    return folder


# ----------------------------------------------------------------------------- the base class


class PretrainedModel(nn.Module):
    """Base of every vidgen model: built from one config dataclass, saved as config.json + safetensors.

    Subclasses set `config_class` and take the config as the single argument of `__init__`.
    """

    config_class: ClassVar[type]

    def __init__(self, config: Any):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config

    # ---- saving

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Write `config.json` and `model.safetensors` to `directory` (atomically), optionally casting
        floating-point weights to `dtype` (e.g. torch.bfloat16 to halve the size on disk)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {}
        for key, value in self.state_dict().items():
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            state[key] = value.cpu()
        atomic_save_safetensors(state, directory / WEIGHTS_NAME, metadata={"format": "pt"})
        write_json(directory / CONFIG_NAME, {"_class_name": type(self).__name__, **config_to_dict(self.config)})
        return directory

    # ---- loading

    @classmethod
    def load_config(cls, directory: str | os.PathLike) -> Any:
        path = Path(directory) / CONFIG_NAME
        data = read_json(path)
        class_name = data.get("_class_name")
        if class_name is not None and class_name != cls.__name__:
            raise CheckpointError(f"{path} describes a {class_name}, not a {cls.__name__}")
        return config_from_dict(cls.config_class, data, source=str(path))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> Self:
        """Load a model saved by `save_pretrained` from a local folder or a bundled model name."""
        directory = resolve_model_path(name_or_path)
        config = cls.load_config(directory)
        model = cls(config)
        state = load_safetensors(directory / WEIGHTS_NAME)
        model.load_state_dict_strict(state, source=str(directory / WEIGHTS_NAME))
        model = model.to(device=device)
        if dtype is not None:
            model = model.to(dtype=dtype)
        return model.eval()

    def load_state_dict_strict(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load weights, failing with a message that lists missing, unexpected and mis-shaped keys.

        Stored dtypes (e.g. bf16) are cast to the model's parameter dtype.
        """
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        mis_shaped = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                            for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or mis_shaped:
            parts = []
            for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                 ("shape mismatches", mis_shaped)):
                if items:
                    shown = ", ".join(items[:20]) + (f", ... ({len(items) - 20} more)" if len(items) > 20 else "")
                    parts.append(f"{label}: {shown}")
            raise CheckpointError(f"weights in {source} do not match {type(self).__name__}: " + "; ".join(parts))
        cast = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
        self.load_state_dict(cast, strict=True)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
