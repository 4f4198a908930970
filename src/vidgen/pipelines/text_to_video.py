"""CogVideoX text-to-video: prompt -> text encoder -> expert transformer (v-prediction diffusion in the
VAE's latent space) -> 3D causal VAE decoder -> video.

A pipeline folder (bundled or local) holds

    pipeline.json     which text encoder, the noise schedule, the latent scaling factor, defaults
    vae/              a `CogVideoXVAE` checkpoint (config.json + model.safetensors)
    transformer/      a `CogVideoXTransformer` checkpoint
    autoguidance_transformer/   optional: a weaker version of the transformer (e.g. an early checkpoint of
                      the same run) for autoguidance (`vidgen.diffusion.guidance`)

`pipeline.json` keys: `_class_name` ("CogVideoXPipeline"), `system`, `text_encoder` (a name for
`load_text_encoder`, e.g. "minilm", or a folder relative to the pipeline folder), `text_max_length`,
`latent_scaling_factor`, `schedule` (`NoiseSchedule` fields), `default_steps`, `default_guidance`,
`num_frames`, `height`, `width`, `fps`, and optionally `recipe`, `sampler`, `max_frames`,
`default_autoguidance` (the autoguidance scale used when the call gives none; 0 without the weak model),
`autoguidance` (where the weak model came from, informational) and `latent_normalization` (a
`LatentNormalizer.to_dict()`: how VAE latents map to the transformer's data; without it, latents are
multiplied by `latent_scaling_factor`, as LDM and CogVideoX do).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vidgen.devices import autocast_context, bf16_is_fast, default_device
from vidgen.diffusion.guidance import cfg_model_fn
from vidgen.diffusion.latent_norm import LatentNormalizer
from vidgen.diffusion.rng import randn
from vidgen.diffusion.samplers import SAMPLERS, timesteps_for
from vidgen.diffusion.schedules import NoiseSchedule
from vidgen.errors import VidgenError
from vidgen.generators.expert_transformer import CogVideoXTransformer
from vidgen.modeling import read_json, resolve_model_path, write_json
from vidgen.pipelines.output import GeneratedVideo
from vidgen.text import load_text_encoder
from vidgen.tokenizers.cogvideox_vae import CogVideoXVAE

PIPELINE_FILE = "pipeline.json"
AUTOGUIDANCE_FOLDER = "autoguidance_transformer"
MAX_PROMPT_CHARS = 2000
MAX_STEPS = 1000


def check_weak_transformer(transformer: CogVideoXTransformer, weak: CogVideoXTransformer, what: str) -> None:
    """An autoguidance model must read the same latents and text as the transformer (its size may differ)."""
    for key in ("in_channels", "text_dim", "patch_size", "patch_size_t"):
        if getattr(weak.config, key) != getattr(transformer.config, key):
            raise VidgenError(f"{what} has {key}={getattr(weak.config, key)!r} but the transformer has "
                              f"{getattr(transformer.config, key)!r}: it must read the same latents and text")


class CogVideoXPipeline:
    """`pipe(prompt, seed=0, num_inference_steps=..., guidance_scale=..., negative_prompt=None,
    num_frames=17, height=64, width=64) -> GeneratedVideo`."""

    def __init__(self, vae: CogVideoXVAE, transformer: CogVideoXTransformer, text_encoder_name: str,
                 schedule: NoiseSchedule, latent_scaling_factor: float, settings: dict[str, Any] | None = None,
                 device: str | torch.device | None = None, bf16: bool | None = None, name: str = "cogvideox",
                 latent_norm: LatentNormalizer | None = None,
                 autoguidance_transformer: CogVideoXTransformer | None = None):
        self.device = torch.device(device) if device is not None else default_device()
        self.vae = vae.to(self.device).eval()
        self.transformer = transformer.to(self.device).eval()
        self.autoguidance_transformer = None
        if autoguidance_transformer is not None:
            check_weak_transformer(transformer, autoguidance_transformer, "the autoguidance transformer")
            self.autoguidance_transformer = autoguidance_transformer.to(self.device).eval()
        self.schedule = schedule
        self.latent_scaling_factor = float(latent_scaling_factor)
        self.latent_norm = latent_norm or LatentNormalizer.from_scaling_factor(
            self.latent_scaling_factor, vae.config.latent_channels)
        if self.latent_norm.channels != vae.config.latent_channels:
            raise VidgenError(f"latent normalisation is for {self.latent_norm.channels} channels; the VAE has "
                              f"{vae.config.latent_channels}")
        self.settings = dict(settings or {})
        self.name = name
        self.text_encoder_name = text_encoder_name
        self.text_encoder = load_text_encoder(text_encoder_name, max_length=int(self.settings.get("text_max_length", 32)),
                                              device=self.device)
        # bf16 autocast pays on CPUs with AVX512-bf16 and on GPUs; it is off on other CPUs.
        self.bf16 = bf16_is_fast(self.device) if bf16 is None else bool(bf16)

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device | None = None,
                        bf16: bool | None = None) -> CogVideoXPipeline:
        folder = resolve_model_path(name_or_path)
        settings = read_json(folder / PIPELINE_FILE)
        if settings.get("_class_name") != "CogVideoXPipeline":
            raise VidgenError(f"{folder / PIPELINE_FILE} describes a {settings.get('_class_name')!r}, "
                              "not a CogVideoXPipeline")
        for key in ("schedule", "latent_scaling_factor", "text_encoder"):
            if key not in settings:
                raise VidgenError(f"{folder / PIPELINE_FILE} lacks the key {key!r}")
        text_encoder = settings["text_encoder"]
        if (folder / text_encoder).is_dir():
            text_encoder = str(folder / text_encoder)
        try:
            schedule = NoiseSchedule(**settings["schedule"])
        except TypeError as error:
            raise VidgenError(f"{folder / PIPELINE_FILE}: bad schedule {settings['schedule']}: {error}") from None
        latent_norm = None
        if "latent_normalization" in settings:
            try:
                latent_norm = LatentNormalizer.from_dict(settings["latent_normalization"])
            except VidgenError as error:
                raise VidgenError(f"{folder / PIPELINE_FILE}: {error}") from None
        vae = CogVideoXVAE.from_pretrained(folder / "vae")
        transformer = CogVideoXTransformer.from_pretrained(folder / "transformer")
        weak = None
        if (folder / AUTOGUIDANCE_FOLDER).is_dir():
            weak = CogVideoXTransformer.from_pretrained(folder / AUTOGUIDANCE_FOLDER)
        elif float(settings.get("default_autoguidance", 0)) > 0:
            raise VidgenError(f"{folder / PIPELINE_FILE} sets default_autoguidance = "
                              f"{settings['default_autoguidance']} but {folder / AUTOGUIDANCE_FOLDER} is missing")
        return cls(vae, transformer, text_encoder, schedule, settings["latent_scaling_factor"], settings,
                   device=device, bf16=bf16, name=Path(str(name_or_path)).name, latent_norm=latent_norm,
                   autoguidance_transformer=weak)

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.vae.save_pretrained(folder / "vae")
        self.transformer.save_pretrained(folder / "transformer")
        if self.autoguidance_transformer is not None:
            self.autoguidance_transformer.save_pretrained(folder / AUTOGUIDANCE_FOLDER)
        settings = {**self.settings, "_class_name": "CogVideoXPipeline", "text_encoder": self.text_encoder_name,
                    "latent_scaling_factor": self.latent_scaling_factor, "schedule": self.schedule.to_dict()}
        settings.pop("latent_normalization", None)
        if self.latent_norm.mode != "scale":
            settings["latent_normalization"] = self.latent_norm.to_dict()
        write_json(folder / PIPELINE_FILE, settings)
        return folder

    # ------------------------------------------------------------------ defaults and checks

    @property
    def default_steps(self) -> int:
        return int(self.settings.get("default_steps", 30))

    @property
    def default_guidance(self) -> float:
        return float(self.settings.get("default_guidance", 6.0))

    @property
    def default_autoguidance(self) -> float:
        """The autoguidance scale a call without one uses: pipeline.json's, 0 without a weak model."""
        if self.autoguidance_transformer is None:
            return 0.0
        return float(self.settings.get("default_autoguidance", 0.0))

    @property
    def fps(self) -> float:
        return float(self.settings.get("fps", 8))

    @property
    def max_frames(self) -> int:
        return int(self.settings.get("max_frames", 49))

    def allowed_sizes(self) -> tuple[int, int, int]:
        """(multiple, smallest, largest) allowed height/width in pixels."""
        multiple = self.vae.config.spatial_compression * self.transformer.config.patch_size
        return multiple, multiple, int(self.settings.get("max_size", 256))

    def check_request(self, prompt: Any, num_frames: int, height: int, width: int, num_inference_steps: int,
                      guidance_scale: float, negative_prompt: Any = None, autoguidance_scale: float = 0.0) -> None:
        """Raise VidgenError naming the bad value and what is allowed."""
        for label, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if text is None and label == "negative_prompt":
                continue
            if not isinstance(text, str):
                raise VidgenError(f"{label} must be a string, got {type(text).__name__}")
            if label == "prompt" and not text.strip():
                raise VidgenError("prompt is empty: describe the video, e.g. \"a red circle moving left\"")
            if len(text) > MAX_PROMPT_CHARS:
                raise VidgenError(f"{label} has {len(text)} characters; at most {MAX_PROMPT_CHARS} are allowed")
        t = self.vae.config.temporal_compression
        if not isinstance(num_frames, int) or num_frames < 1 or (num_frames - 1) % t or num_frames > self.max_frames:
            allowed = ", ".join(str(1 + t * k) for k in range((self.max_frames - 1) // t + 1))
            raise VidgenError(f"num_frames={num_frames} is not allowed: this model takes {t}k+1 frames up to "
                              f"{self.max_frames} ({allowed})")
        multiple, smallest, largest = self.allowed_sizes()
        for label, size in (("height", height), ("width", width)):
            if not isinstance(size, int) or size % multiple or not smallest <= size <= largest:
                raise VidgenError(f"{label}={size} is not allowed: use a multiple of {multiple} "
                                  f"between {smallest} and {largest}")
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= MAX_STEPS:
            raise VidgenError(f"num_inference_steps={num_inference_steps} must be an integer in 1..{MAX_STEPS}")
        if not isinstance(guidance_scale, (int, float)) or not 0 <= guidance_scale <= 50:
            raise VidgenError(f"guidance_scale={guidance_scale} must be a number in [0, 50]")
        if not isinstance(autoguidance_scale, (int, float)) or not 0 <= autoguidance_scale <= 50:
            raise VidgenError(f"autoguidance_scale={autoguidance_scale} must be a number in [0, 50] (0 = off)")
        if autoguidance_scale > 0 and self.autoguidance_transformer is None:
            raise VidgenError(f"autoguidance_scale={autoguidance_scale}: this model has no weak transformer "
                              f"({AUTOGUIDANCE_FOLDER}/ in its folder); use 0")

    # ------------------------------------------------------------------ generation

    def guided_model(self, prompt: str, negative_prompt: str | None, guidance_scale: float,
                     dynamic: bool = False, num_steps: int | None = None,
                     autoguidance_scale: float = 0.0) -> Callable:
        """The sampler's model: (x (B, C, T', H', W'), t) -> v with classifier-free guidance between the
        prompt and the negative (default empty) prompt, plus autoguidance by the weak transformer when
        autoguidance_scale > 0; the transformers run under bf16 autocast when on."""
        cond = self.text_encoder.encode([prompt])
        uncond = self.text_encoder.encode([negative_prompt or ""])
        length = max(cond.seq_len, uncond.seq_len)
        cond, uncond = cond.pad_to(length).to(self.device), uncond.pad_to(length).to(self.device)

        def runner(transformer: CogVideoXTransformer) -> Callable:
            def model(x, t, text_embeddings, text_mask):
                with autocast_context(self.device, self.bf16):
                    return transformer(x, text_embeddings, t, text_mask=text_mask).float()
            return model

        weak = self.autoguidance_transformer
        return cfg_model_fn(runner(self.transformer), {"text_embeddings": cond.embeddings, "text_mask": cond.mask},
                            {"text_embeddings": uncond.embeddings, "text_mask": uncond.mask},
                            guidance_scale, dynamic=dynamic, num_steps=num_steps,
                            weak_model=runner(weak) if weak is not None else None,
                            autoguidance_scale=autoguidance_scale)

    @torch.no_grad()
    def __call__(self, prompt: str, seed: int = 0, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, negative_prompt: str | None = None, num_frames: int = 17,
                 height: int = 64, width: int = 64, sampler: str | None = None, use_dynamic_cfg: bool = False,
                 progress: bool = True, callback: Callable[[dict], None] | None = None,
                 autoguidance_scale: float | None = None) -> GeneratedVideo:
        """Generate one video.

        seed: the same seed, settings and machine give the same video bit for bit.
        autoguidance_scale: guidance away from the weak transformer (None = the pipeline's default, 0 = off;
            > 0 needs a pipeline with autoguidance_transformer/).
        callback: called after every denoising step with {"i", "t", "x", "denoised", "num_steps"}.
        """
        steps = self.default_steps if num_inference_steps is None else num_inference_steps
        guidance = self.default_guidance if guidance_scale is None else guidance_scale
        sampler = sampler or self.settings.get("sampler", "dpm++")
        if sampler not in SAMPLERS:
            raise VidgenError(f"sampler={sampler!r} is not one of {', '.join(SAMPLERS)}")
        autoguidance = self.default_autoguidance if autoguidance_scale is None else autoguidance_scale
        self.check_request(prompt, num_frames, height, width, steps, guidance, negative_prompt, autoguidance)
        if not isinstance(seed, int) or seed < 0:
            raise VidgenError(f"seed={seed!r} must be a non-negative integer")
        started = time.perf_counter()

        model_fn = self.guided_model(prompt, negative_prompt, guidance, dynamic=use_dynamic_cfg, num_steps=steps,
                                     autoguidance_scale=autoguidance)
        latent_t, latent_h, latent_w = self.vae.latent_shape(num_frames, height, width)
        generator = torch.Generator("cpu").manual_seed(seed)
        noise = randn((1, self.vae.config.latent_channels, latent_t, latent_h, latent_w), generator, self.device)
        timesteps = timesteps_for(self.schedule, steps, spacing="trailing")

        def on_step(state: dict) -> None:
            if callback is not None:
                callback({**state, "num_steps": steps})

        latents = SAMPLERS[sampler](model_fn, noise, self.schedule, timesteps, generator=generator,
                                    callback=on_step, progress=progress)
        latents = self.latent_norm.denormalize(latents)  # float32, outside autocast
        with autocast_context(self.device, self.bf16):
            video = self.vae.decode(latents)
        video = video.float().clamp(-1, 1)[0]
        info = {"prompt": prompt, "negative_prompt": negative_prompt, "seed": seed, "steps": steps,
                "guidance_scale": guidance, "autoguidance_scale": autoguidance, "sampler": sampler, "model": self.name,
                "seconds": round(time.perf_counter() - started, 3)}
        return GeneratedVideo(video, fps=self.fps, info=info)
