"""Pipelines: the glue users call. `load_pipeline(name_or_folder)` returns a callable pipeline.

    pipe = vidgen.load_pipeline("cogvideox-shapes")
    video = pipe("a red circle moving left", seed=0)
    video.save("out.mp4")
"""

from __future__ import annotations

from pathlib import Path

from vidgen.errors import VidgenError
from vidgen.modeling import read_json, resolve_model_path
from vidgen.pipelines.output import GeneratedVideo

PIPELINE_CLASSES = {
    "CogVideoXPipeline": "vidgen.pipelines.text_to_video:CogVideoXPipeline",
    "MagvitPipeline": "vidgen.pipelines.magvit:MagvitPipeline",
}


def pipeline_class(class_name: str):
    import importlib

    if class_name not in PIPELINE_CLASSES:
        raise VidgenError(f"unknown pipeline class {class_name!r}; known: {', '.join(PIPELINE_CLASSES)}")
    module, attr = PIPELINE_CLASSES[class_name].split(":")
    return getattr(importlib.import_module(module), attr)


def load_pipeline(name_or_path: str | Path, device=None, **kwargs):
    """Load a bundled pipeline by name (e.g. "cogvideox-shapes") or a local pipeline folder."""
    folder = resolve_model_path(name_or_path)
    if not (folder / "pipeline.json").is_file():
        raise VidgenError(f"{folder} is not a pipeline folder: it has no pipeline.json")
    class_name = read_json(folder / "pipeline.json").get("_class_name")
    return pipeline_class(class_name).from_pretrained(folder, device=device, **kwargs)


__all__ = ["GeneratedVideo", "load_pipeline", "pipeline_class"]
