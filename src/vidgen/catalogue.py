"""The model catalogue: what each bundled model (or any local pipeline folder) is, without loading it.

Everything here reads small files only: `pipeline.json`, each component's `config.json`, and the
JSON *header* of each `model.safetensors` (shapes and dtypes, from which the parameter count follows),
so listing models costs milliseconds and no memory, whatever their size.

    list_models()                        -> [ModelEntry, ...] for the bundled models
    describe_model("cogvideox-shapes")   -> ModelEntry (a bundled name or a local folder)
    model_config("./runs/x/pipeline")    -> {"pipeline": {...}, "components": {"vae": {...}, ...}}
    find_recipe("cogvideox-shapes.toml") -> Path of the shipped recipe, or None

A pipeline folder is `pipeline.json` plus one sub-folder per component (`vae/`, `transformer/`, ...),
each a checkpoint (`config.json` + `model.safetensors`). A bare checkpoint folder (config.json +
model.safetensors, no pipeline.json) is described too, as a component with no task.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vidgen import modeling
from vidgen.errors import CheckpointError, VidgenError
from vidgen.modeling import CONFIG_NAME, WEIGHTS_NAME, read_json, resolve_model_path

PIPELINE_FILE = "pipeline.json"
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"

# What a pipeline class does when its pipeline.json does not list `tasks`.
TASKS_BY_CLASS = {
    "CogVideoXPipeline": ["text-to-video"],
    "MagvitPipeline": ["text-to-video", "class-to-video", "predict", "interpolate", "outpaint", "inpaint"],
}
# Pipelines that take exactly one clip shape (num_frames x height x width from pipeline.json): MAGVIT's
# transformer has one learned position per token of a fixed grid.
FIXED_SHAPE_CLASSES = ("MagvitPipeline",)
# Pipelines that draw discrete tokens (temperature and top-p apply) rather than denoise.
TOKEN_SAMPLING_CLASSES = ("MagvitPipeline",)
# The video-to-video tasks the web app offers (MAGVIT's conditional tasks, grouped by what the user does).
VIDEO_TASKS = ("predict", "interpolate", "inpaint", "outpaint")

# A safetensors file starts with an 8-byte little-endian header length, then that many bytes of JSON.
# Real headers are kilobytes to a few megabytes; anything larger means the file is not safetensors.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass
class ModelEntry:
    """One row of the catalogue.

    frame_step / size_step: the model takes `frame_step * k + 1` frames and heights/widths that are
    multiples of `size_step` (both None when the folder does not say, e.g. a bare checkpoint).
    task_modes: task -> the modes the pipeline offers for it (from pipeline.json when it gives them).
    fixed_shape: the model takes only its num_frames x height x width (e.g. MAGVIT).
    class_names: the class names of a class-conditional model (pipeline.json `class_names`), by class id.
    untrained_classes: class ids its training data never had (pipeline.json `untrained_classes`); the
        pipeline rejects them, so menus offer `trained_class_names`.
    temperature / top_p: the token sampling defaults of the class- and text-conditioned generation of a
        pipeline that draws tokens (pipeline.json `temperature` / `top_p`, else 1 and 1); None for the
        others (diffusion), which have no such settings.
    """

    name: str
    path: str
    bundled: bool
    system: str
    pipeline_class: str | None
    tasks: list[str]
    task_modes: dict[str, list[str]] = field(default_factory=dict)
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    fps: float | None = None
    max_frames: int | None = None
    max_size: int | None = None
    frame_step: int | None = None
    size_step: int | None = None
    default_steps: int | None = None
    default_guidance: float | None = None
    pixel_guidance: float | None = None  # MAGVIT: the default of the tasks given pixels, when it differs
    default_autoguidance: float | None = None  # diffusion models with a weak transformer (autoguidance)
    parameters: int = 0
    disk_bytes: int = 0
    components: list[str] = field(default_factory=list)
    recipe: str | None = None
    fixed_shape: bool = False
    class_names: list[str] = field(default_factory=list)
    untrained_classes: list[int] = field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None

    @property
    def samples_tokens(self) -> bool:
        return self.temperature is not None

    @property
    def trained_class_names(self) -> list[str]:
        untrained = set(self.untrained_classes)
        return [n for i, n in enumerate(self.class_names) if i not in untrained]

    @property
    def resolution(self) -> str:
        if self.height is None or self.width is None:
            return "-"
        frames = f"{self.num_frames}x" if self.num_frames is not None else ""
        return f"{frames}{self.height}x{self.width}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- reading without loading


def safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a safetensors file: {tensor name: {"dtype", "shape", "data_offsets"}, ...}."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path}: too short to be a safetensors file ({len(prefix)} bytes)")
            (length,) = struct.unpack("<Q", prefix)
            if length > _MAX_HEADER_BYTES:
                raise CheckpointError(f"{path}: not a safetensors file (header length {length} bytes)")
            raw = f.read(length)
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error}") from None
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (its header is not a JSON object)")
    return header


def count_parameters(path: str | os.PathLike) -> int:
    """Number of values stored in one safetensors file, from its header (no weights are read)."""
    total = 0
    for name, info in safetensors_header(path).items():
        if name == "__metadata__":
            continue
        try:
            total += math.prod(int(d) for d in info["shape"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has no valid shape in the header") from None
    return total


def folder_parameters(folder: str | os.PathLike) -> int:
    """Sum of `count_parameters` over every model.safetensors under `folder`."""
    return sum(count_parameters(p) for p in sorted(Path(folder).rglob(WEIGHTS_NAME)) if p.is_file())


def disk_bytes(folder: str | os.PathLike) -> int:
    """Bytes of all files under `folder` (what installing or copying the model costs)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def component_folders(folder: str | os.PathLike) -> dict[str, Path]:
    """Sub-folders of a pipeline folder that are checkpoints (hold a config.json), by name."""
    folder = Path(folder)
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and (p / CONFIG_NAME).is_file()}


def find_recipe(name: str | None) -> Path | None:
    """The shipped recipe file a pipeline.json `recipe` names ("x.toml" or "x"), or None if not shipped."""
    if not name:
        return None
    stem = Path(str(name)).name
    for candidate in (stem, f"{stem}.toml"):
        path = RECIPES_DIR / candidate
        if path.is_file():
            return path
    return None


def _bundled_name(folder: Path) -> str | None:
    """The name a bundled folder is known by ("cogvideox-shapes", "cogvideox-shapes/vae"), else None."""
    bundled_dir = modeling.BUNDLED_DIR.resolve()
    if bundled_dir in folder.resolve().parents:
        return folder.resolve().relative_to(bundled_dir).as_posix()
    return None


def _pipeline_folder(name_or_path: str | os.PathLike) -> Path:
    folder = resolve_model_path(name_or_path)
    if not (folder / PIPELINE_FILE).is_file() and not (folder / CONFIG_NAME).is_file():
        raise VidgenError(f"{folder} is neither a pipeline folder (no {PIPELINE_FILE}) nor a checkpoint "
                          f"folder (no {CONFIG_NAME})")
    return folder


def _tasks(settings: dict[str, Any], class_name: str | None) -> tuple[list[str], dict[str, list[str]]]:
    """(task names, task -> modes). pipeline.json `tasks` is a list of names or a {task: [modes]} map."""
    declared = settings.get("tasks")
    if isinstance(declared, dict):
        modes = {str(k): [str(m) for m in (v or [])] for k, v in declared.items()}
        return list(modes), modes
    if isinstance(declared, (list, tuple)):
        return [str(t) for t in declared], {}
    if isinstance(declared, str):
        return [declared], {}
    if class_name in TASKS_BY_CLASS:
        return list(TASKS_BY_CLASS[class_name]), {}
    if class_name and "magvit" in class_name.lower():
        return list(VIDEO_TASKS), {}
    return [], {}


def _optional(settings: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    """settings[key] as `kind`; `default` when it is missing or not a `kind`."""
    value = settings.get(key)
    if value is None:
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        return default


def _steps(components: dict[str, dict[str, Any]]) -> tuple[int | None, int | None]:
    """(frame_step, size_step) from the component configs: the VAE's temporal compression, and its
    spatial compression times the transformer's patch size."""
    vae = components.get("vae")
    if vae is None:
        return None, None
    frame_step = int(vae.get("temporal_compression_ratio", 1))
    blocks = vae.get("block_out_channels")
    spatial = 2 ** (len(blocks) - 1) if isinstance(blocks, list) and blocks else 1
    patch = int(components.get("transformer", {}).get("patch_size", 1) or 1)
    return frame_step, spatial * patch


def describe_model(name_or_path: str | os.PathLike) -> ModelEntry:
    """Describe a bundled model (by name) or a local pipeline / checkpoint folder, loading no weights.

    Raises VidgenError (CheckpointError) naming the folder when it is missing or malformed; an unknown
    name lists the bundled models.
    """
    folder = _pipeline_folder(name_or_path)
    components = model_config(folder)["components"]
    is_pipeline = (folder / PIPELINE_FILE).is_file()
    settings = read_json(folder / PIPELINE_FILE) if is_pipeline else read_json(folder / CONFIG_NAME)
    class_name = settings.get("_class_name")
    tasks, task_modes = _tasks(settings, class_name) if is_pipeline else ([], {})
    system = settings.get("system") or (class_name or "unknown").removesuffix("Pipeline")
    frame_step, size_step = _steps(components) if is_pipeline else (None, None)
    bundled_name = _bundled_name(folder)
    bundled = bundled_name is not None
    name = bundled_name or folder.resolve().name
    num_frames = _optional(settings, "num_frames", int)
    height, width = _optional(settings, "height", int), _optional(settings, "width", int)
    fixed_shape = is_pipeline and class_name in FIXED_SHAPE_CLASSES
    samples_tokens = is_pipeline and class_name in TOKEN_SAMPLING_CLASSES
    max_frames = _optional(settings, "max_frames", int) or (49 if is_pipeline else None)
    max_size = _optional(settings, "max_size", int) or (256 if is_pipeline else None)
    if fixed_shape:
        max_frames = num_frames or max_frames
        max_size = max(height or 0, width or 0) or max_size
    class_names = settings.get("class_names") if is_pipeline else None
    untrained = settings.get("untrained_classes") if is_pipeline else None
    return ModelEntry(
        name=name,
        path=str(folder.resolve()),
        bundled=bundled,
        system=str(system),
        pipeline_class=class_name if is_pipeline else None,
        tasks=tasks,
        task_modes=task_modes,
        num_frames=num_frames,
        height=height,
        width=width,
        fps=_optional(settings, "fps", float),
        max_frames=max_frames,
        max_size=max_size,
        frame_step=frame_step,
        size_step=size_step,
        default_steps=_optional(settings, "default_steps", int),
        default_guidance=_optional(settings, "default_guidance", float),
        pixel_guidance=_optional(settings, "pixel_guidance", float),
        default_autoguidance=_optional(settings, "default_autoguidance", float),
        parameters=folder_parameters(folder),
        disk_bytes=disk_bytes(folder),
        components=list(components),
        recipe=settings.get("recipe") if is_pipeline else None,
        fixed_shape=fixed_shape,
        class_names=[str(c) for c in class_names] if isinstance(class_names, (list, tuple)) else [],
        untrained_classes=[int(i) for i in untrained if isinstance(i, int) and not isinstance(i, bool)]
        if isinstance(untrained, (list, tuple)) else [],
        temperature=_optional(settings, "temperature", float, 1.0) if samples_tokens else None,
        top_p=_optional(settings, "top_p", float, 1.0) if samples_tokens else None,
    )


def model_config(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """{"pipeline": pipeline.json (or None), "components": {name: config.json}} of a model folder.

    A bare checkpoint folder gives {"pipeline": None, "components": {folder name: its config.json}}.
    """
    folder = _pipeline_folder(name_or_path)
    if not (folder / PIPELINE_FILE).is_file():
        return {"pipeline": None, "components": {folder.name: read_json(folder / CONFIG_NAME)}}
    return {"pipeline": read_json(folder / PIPELINE_FILE),
            "components": {name: read_json(path / CONFIG_NAME) for name, path in component_folders(folder).items()}}


def list_models() -> list[ModelEntry]:
    """Every bundled model, described. A bundled folder that cannot be read is skipped with no error
    here (`describe_model` on it says what is wrong)."""
    entries = []
    for name in modeling.bundled_names():
        try:
            entries.append(describe_model(name))
        except VidgenError:
            continue
    return entries


# ----------------------------------------------------------------------------- formatting


def format_count(n: int) -> str:
    """12345678 -> "12.3M"."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def format_bytes(n: int) -> str:
    """12345678 -> "11.8 MiB"."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def format_table(entries: list[ModelEntry]) -> str:
    """A plain-text table: name, system, tasks, frames x height x width, parameters, size on disk."""
    header = ("NAME", "SYSTEM", "TASKS", "FRAMESxHxW", "PARAMS", "DISK")
    rows = [(e.name, e.system, ", ".join(e.tasks) or "-", e.resolution, format_count(e.parameters),
             format_bytes(e.disk_bytes)) for e in entries]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)
