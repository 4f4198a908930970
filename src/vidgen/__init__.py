"""vidgen: readable, trainable implementations of modern video-generation systems.

    import vidgen
    pipe = vidgen.load_pipeline("cogvideox-shapes")
    pipe("a red circle moving left", seed=0).save("out.mp4")

Heavy modules are imported on first use, so `import vidgen` (and the CLI) start fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> "module:attribute"
_LAZY = {
    "load_pipeline": "vidgen.pipelines:load_pipeline",
    "GeneratedVideo": "vidgen.pipelines.output:GeneratedVideo",
    "CogVideoXPipeline": "vidgen.pipelines.text_to_video:CogVideoXPipeline",
    "CogVideoXVAE": "vidgen.tokenizers.cogvideox_vae:CogVideoXVAE",
    "CogVideoXVAEConfig": "vidgen.tokenizers.cogvideox_vae:CogVideoXVAEConfig",
    "CogVideoXTransformer": "vidgen.generators.expert_transformer:CogVideoXTransformer",
    "CogVideoXTransformerConfig": "vidgen.generators.expert_transformer:CogVideoXTransformerConfig",
    "MagvitVQ": "vidgen.tokenizers.magvit_vq:MagvitVQ",
    "MagvitPipeline": "vidgen.pipelines.magvit:MagvitPipeline",
    "MaskedTokenTransformer": "vidgen.generators.masked_transformer:MaskedTokenTransformer",
    "NoiseSchedule": "vidgen.diffusion.schedules:NoiseSchedule",
    "load_text_encoder": "vidgen.text:load_text_encoder",
    "get_dataset": "vidgen.data:get_dataset",
    "read_video": "vidgen.io:read_video",
    "write_video": "vidgen.io:write_video",
    "VidgenError": "vidgen.errors:VidgenError",
}

__all__ = ["__version__", *list(_LAZY)]  # noqa: PLE0604 (the lazy names are strings)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'vidgen' has no attribute {name!r}")
    module, attribute = _LAZY[name].split(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
