"""MAGVIT: one masked token transformer, many tasks. Condition -> COMMIT tokens -> 12-step
non-autoregressive decoding with classifier-free guidance -> 3D-VQ decoder -> video.

    pipe = vidgen.load_pipeline("magvit-shapes")
    pipe("a red circle moving left", seed=0)                 # text-to-video (T2V)
    pipe.generate_class("red circle moving right")            # class-conditional generation (CG)
    pipe.predict("clip.mp4")                                 # frame prediction from the first frame (FP)
    pipe.predict("clip.mp4", class_label=5)                  # ... of a given class (CFP)
    pipe.interpolate("clip.mp4")                             # frames between the first and last (FI)
    pipe.outpaint("clip.mp4", mode="vertical")               # OPC / OPV / OPH / OPD
    pipe.inpaint("clip.mp4", mode="dynamic")                 # IPC / IPD
    pipe.run_task("outpaint", frames, mode="central", seed=0, steps=12, guidance=2.0)   # the web app's call

Every call returns a `GeneratedVideo` whose `.info` records the task, mode, steps, guidance, seed and
seconds. The condition pixels the task gives (the first frame for "predict", the centre for central
outpainting, ...) are pasted back into the output unchanged (`keep_condition=False` shows the model's
own reconstruction of them instead).

A pipeline folder (bundled or local) holds

    pipeline.json     settings (below)
    tokenizer/        a `MagvitVQ` checkpoint (config.json + model.safetensors)
    transformer/      a `MaskedTokenTransformer` checkpoint

`pipeline.json` keys: `_class_name` ("MagvitPipeline"), `system`, `text_encoder` ("minilm" or a folder
relative to the pipeline folder), `text_max_length`, `num_frames`, `height`, `width`, `fps`,
`default_steps`, `default_guidance`, `choice_temperature`, optionally `temperature` (token sampling,
default 1; 0 = the most likely token), `top_p` (nucleus sampling, default 1 = off; magvit-shapes: 0.8),
`schedule` (the unmasking schedule of decoding: "cosine", MaskGIT's and the default, "linear", "square" or
"sqrt", which decides most tokens early and the last few one small group at a time),
`pixel_guidance`, `pixel_temperature`, `pixel_choice_temperature`, `pixel_top_p` and `pixel_schedule` (the same five for
the tasks given pixels: predict, interpolate, outpaint, inpaint; each defaults to the model-wide one;
magvit-shapes sets `pixel_temperature = 0`, the most likely tokens, which score far closer to the true
clip) and `condition_frames`
(frames given to predict / kept at each end by interpolate, default 1),
`class_names` (one per class id), `tasks` ({task: [modes]}, see `TASK_MODES`), `recipe`, `description`.

Input videos (the `video` argument) may be a file path (any format `vidgen.io.read_video` reads; it is
read at the model's fps and resized + center-cropped to its height x width), a uint8 `(T, H, W, 3)`
array, or a float tensor `(3, T, H, W)` / `(1, 3, T, H, W)` in [-1, 1]. Arrays and tensors must already
have the model's height and width. Frame count: the first `num_frames` frames are used. A shorter clip
is fine for predict (only its first frame(s) are used) and interpolate (its first and last frames are
placed at the ends of the model's clip); outpaint and inpaint keep a region of every frame, so they
need `num_frames` frames, or `pad=True` to repeat the last frame (as the web app does with uploads).

Regions: "dynamic" modes draw the motion of their region (axis and direction) from the seed: it is the
first draw of `torch.Generator().manual_seed(seed)`, so a seed fixes it. Any video task also takes
`region=` (T, H, W) bool (True = given pixel) to use a region of your own.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidgen.devices import autocast_context, bf16_is_fast, default_device
from vidgen.errors import CheckpointError, VidgenError
from vidgen.generators.decoding import decode_nonautoregressive
from vidgen.generators.masked_transformer import MaskedTokenTransformer
from vidgen.modeling import read_json, resolve_model_path, write_json
from vidgen.pipelines.output import GeneratedVideo
from vidgen.tasks import Task, class_frame_prediction, frame_interpolation, frame_prediction, get_task
from vidgen.tasks.commit import prepare_condition
from vidgen.tasks.masking import SCHEDULES
from vidgen.tasks.registry import USER_TASK_MODES
from vidgen.tokenizers.magvit_vq import MagvitVQ

PIPELINE_FILE = "pipeline.json"
MAX_PROMPT_CHARS = 2000
MAX_GUIDANCE = 50.0
MAX_TEMPERATURE = 10.0  # token sampling: beyond this the choice is near-uniform noise
# Decoding settings with a model-wide default in pipeline.json (key, value when absent); `pixel_<name>`
# overrides one for the tasks given pixels (`MagvitPipeline.decoding_default`).
DECODING_KEYS = {"guidance": ("default_guidance", 1.0), "temperature": ("temperature", 1.0),
                 "choice_temperature": ("choice_temperature", 4.5), "top_p": ("top_p", 1.0)}

TASK_MODES = USER_TASK_MODES  # (task, mode) -> registry task; defined with the tasks
# Other spellings users (and the web app's defaults) may use for a mode.
MODE_ALIASES = {"first and last frames": "first and last frame", "first frames": "first frame",
                "class+first frame": "class + first frame", "class + first frames": "class + first frame"}

Callback = Callable[[dict], None]


def _finite_number(value: Any) -> bool:
    """A real, finite number (not a bool): what every decoding setting must be."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def decoding_default(settings: Mapping[str, Any], spec: Task, name: str) -> float:
    """pipeline.json's default `name` ("guidance", "temperature", "choice_temperature" or "top_p") for a task:
    `pixel_<name>` for the tasks given pixels when `settings` sets it, else the model-wide value
    (`default_guidance`, `temperature`, `choice_temperature`, `top_p`; `DECODING_KEYS` when absent)."""
    key, fallback = DECODING_KEYS[name]
    return float(_task_setting(settings, spec, key, f"pixel_{name}", fallback))


def decoding_schedule(settings: Mapping[str, Any], spec: Task) -> str:
    """pipeline.json's unmasking schedule for a task: `pixel_schedule` for the tasks given pixels when
    `settings` sets it, else `schedule`, else "cosine" (`vidgen.tasks.masking.mask_schedule`)."""
    return str(_task_setting(settings, spec, "schedule", "pixel_schedule", "cosine"))


def decoding_settings(settings: Mapping[str, Any], spec: Task) -> dict[str, Any]:
    """pipeline.json's decoding of a task as `decode_nonautoregressive` keywords (no caller overrides):
    num_steps (`default_steps`), temperature, top_p, choice_temperature, guidance_scale and schedule."""
    return {"num_steps": int(settings.get("default_steps", 12)),
            "temperature": decoding_default(settings, spec, "temperature"),
            "top_p": decoding_default(settings, spec, "top_p"),
            "choice_temperature": decoding_default(settings, spec, "choice_temperature"),
            "guidance_scale": decoding_default(settings, spec, "guidance"),
            "schedule": decoding_schedule(settings, spec)}


def _task_setting(settings: Mapping[str, Any], spec: Task, key: str, pixel_key: str, fallback: Any) -> Any:
    """`settings[pixel_key]` for a task given pixels when set, else `settings[key]`, else `fallback`."""
    if spec.uses_pixels and settings.get(pixel_key) is not None:
        return settings[pixel_key]
    value = settings.get(key)
    return fallback if value is None else value


@dataclasses.dataclass(frozen=True)
class GivenRegion:
    """A caller's own condition region: `(T, H, W)` bool, True = given pixel (a `Task.region`)."""

    mask: torch.Tensor

    def __call__(self, grid: tuple[int, int, int], generator: torch.Generator | None = None) -> torch.Tensor:
        if tuple(grid) != tuple(self.mask.shape):
            raise VidgenError(f"region is {tuple(self.mask.shape)} but the clip is {tuple(grid)} (T, H, W)")
        return self.mask.clone()


class MagvitPipeline:
    """MAGVIT's tasks on one pretrained tokenizer + masked transformer (see the module docstring).

    tasks: {task: [modes]} this model offers (first mode = default), e.g. {"predict": ["first frame",
        "class + first frame"], "outpaint": ["central", "vertical", "horizontal", "dynamic"], ...}.
    settings: the pipeline.json dict.
    class_names: one name per class id (may be empty for a model without classes).
    untrained_classes: class ids the training data never had (pipeline.json "untrained_classes", e.g. the
        held-out Shapes triples): their embeddings are untrained, so class-conditional calls reject them.
    """

    def __init__(self, tokenizer: MagvitVQ, transformer: MaskedTokenTransformer,
                 settings: dict[str, Any] | None = None, device: str | torch.device | None = None,
                 bf16: bool | None = None, name: str = "magvit", text_encoder: Any = None):
        self.device = torch.device(device) if device is not None else default_device()
        self.tokenizer = tokenizer.to(self.device).eval()
        self.transformer = transformer.to(self.device).eval()
        self.settings = dict(settings or {})
        self.name = name
        # bf16 autocast for the transformer where it is fast (AVX512-bf16 CPUs, recent GPUs); never fp16.
        self.bf16 = bf16_is_fast(self.device) if bf16 is None else bool(bf16)
        # The text encoder (90 MB for MiniLM) is loaded on the first text-to-video call only.
        self._text_encoder = text_encoder
        self._check_components()
        self._check_decoding_settings()
        self.class_names = [str(c) for c in self.settings.get("class_names") or []]
        # Classes the training data never had: their embeddings are untrained, so `class_id` rejects them.
        self.untrained_classes = sorted({int(i) for i in self.settings.get("untrained_classes") or []})
        self.tasks = self._offered_tasks()

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str | torch.device | None = None,
                        bf16: bool | None = None, text_encoder: Any = None) -> MagvitPipeline:
        """Load a bundled pipeline by name ("magvit-shapes") or a local pipeline folder.

        text_encoder: an object with `encode(list[str]) -> TextEmbeddings` to use instead of the one
        pipeline.json names (tests, or an encoder already in memory).
        """
        folder = resolve_model_path(name_or_path)
        settings = read_json(folder / PIPELINE_FILE)
        if settings.get("_class_name") != "MagvitPipeline":
            raise VidgenError(f"{folder / PIPELINE_FILE} describes a {settings.get('_class_name')!r}, "
                              "not a MagvitPipeline")
        for component in ("tokenizer", "transformer"):
            if not (folder / component).is_dir():
                raise CheckpointError(f"{folder} has no {component}/ folder: a MAGVIT pipeline folder holds "
                                      "pipeline.json, tokenizer/ and transformer/")
        encoder_name = settings.get("text_encoder", "minilm")
        if isinstance(encoder_name, str) and (folder / encoder_name).is_dir():
            settings["text_encoder"] = str(folder / encoder_name)
        tokenizer = MagvitVQ.from_pretrained(folder / "tokenizer")
        transformer = MaskedTokenTransformer.from_pretrained(folder / "transformer")
        return cls(tokenizer, transformer, settings, device=device, bf16=bf16,
                   name=Path(str(name_or_path)).name, text_encoder=text_encoder)

    def save_pretrained(self, folder: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Write pipeline.json, tokenizer/ and transformer/ (weights optionally cast, e.g. to bf16)."""
        folder = Path(folder)
        self.tokenizer.save_pretrained(folder / "tokenizer", dtype=dtype)
        self.transformer.save_pretrained(folder / "transformer", dtype=dtype)
        write_json(folder / PIPELINE_FILE, {**self.settings, "_class_name": "MagvitPipeline"})
        return folder

    def _check_decoding_settings(self) -> None:
        """pipeline.json's decoding defaults must be non-negative numbers and known schedules (a typo fails at
        load, not mid-run)."""
        for setting in ("schedule", "pixel_schedule"):
            value = self.settings.get(setting)
            if value is not None and value not in SCHEDULES:
                raise CheckpointError(f"pipeline.json: {setting} = {value!r} must be one of {list(SCHEDULES)}")
        for name, (key, _) in DECODING_KEYS.items():
            for setting in (key, f"pixel_{name}"):
                value = self.settings.get(setting)
                if value is None:
                    continue
                number = _finite_number(value)
                if name == "top_p" and not (number and 0 < value <= 1):
                    raise CheckpointError(f"pipeline.json: {setting} = {value!r} must be a number in (0, 1] "
                                          "(1 = off)")
                if not number or value < 0:
                    raise CheckpointError(f"pipeline.json: {setting} = {value!r} must be a number >= 0")

    def _check_components(self) -> None:
        """The tokenizer and the transformer must agree on the codebook and on the token grid."""
        tok, cfg = self.tokenizer.config, self.transformer.config
        if tok.codebook_size != cfg.codebook_size:
            raise CheckpointError(f"the tokenizer has {tok.codebook_size} codes but the transformer models "
                                  f"{cfg.codebook_size}: they were not trained together")
        grid = self.tokenizer.latent_shape(self.num_frames, self.height, self.width)
        if tuple(grid) != tuple(cfg.grid):
            raise CheckpointError(f"a {self.num_frames}x{self.height}x{self.width} clip gives a {grid} token grid "
                                  f"but the transformer takes {tuple(cfg.grid)}: fix num_frames/height/width "
                                  "in pipeline.json")
        names = self.settings.get("class_names") or []
        if names and len(names) != cfg.num_classes:
            raise CheckpointError(f"pipeline.json lists {len(names)} class_names but the transformer has "
                                  f"{cfg.num_classes} classes")
        untrained = self.settings.get("untrained_classes") or []
        if not isinstance(untrained, list) or not all(
                isinstance(i, numbers.Integral) and not isinstance(i, bool) and 0 <= i < cfg.num_classes
                for i in untrained):
            raise CheckpointError(f"pipeline.json: untrained_classes = {untrained!r} must be a list of class ids "
                                  f"in 0..{cfg.num_classes - 1}")

    # ------------------------------------------------------------------ settings

    @property
    def num_frames(self) -> int:
        return int(self.settings.get("num_frames", 16))

    @property
    def height(self) -> int:
        return int(self.settings.get("height", 64))

    @property
    def width(self) -> int:
        return int(self.settings.get("width", 64))

    @property
    def fps(self) -> float:
        return float(self.settings.get("fps", 8.0))

    @property
    def default_steps(self) -> int:
        return int(self.settings.get("default_steps", 12))

    @property
    def default_guidance(self) -> float:
        return float(self.settings.get("default_guidance", 1.0))

    @property
    def max_steps(self) -> int:
        """More steps than visual tokens decide nothing new: each step fixes at least one token."""
        return self.transformer.config.num_visual_tokens

    @property
    def condition_frames(self) -> int:
        return int(self.settings.get("condition_frames", 1))

    @property
    def num_classes(self) -> int:
        return self.transformer.config.num_classes

    @property
    def takes_text(self) -> bool:
        return self.transformer.config.text_dim > 0

    @property
    def text_encoder(self) -> Any:
        if self._text_encoder is None:
            from vidgen.text import load_text_encoder

            self._text_encoder = load_text_encoder(self.settings.get("text_encoder", "minilm"),
                                                   max_length=int(self.settings.get("text_max_length", 32)),
                                                   device=self.device)
        return self._text_encoder

    def _offered_tasks(self) -> dict[str, list[str]]:
        """pipeline.json's {task: [modes]} (all of `TASK_MODES` if it lists none), keeping only the
        tasks and modes this transformer can do (classes for CG / CFP, text for T2V)."""
        declared = self.settings.get("tasks")
        if isinstance(declared, Mapping):
            wanted = {str(t): [str(m) for m in (modes or [])] for t, modes in declared.items()}
        elif isinstance(declared, (list, tuple)):
            wanted = {str(t): list(TASK_MODES.get(str(t), {})) for t in declared}
        else:
            wanted = {t: list(modes) for t, modes in TASK_MODES.items()}
        offered = {}
        for task, modes in wanted.items():
            if task not in TASK_MODES:
                continue
            usable = [m for m in (modes or list(TASK_MODES[task])) if self._mode_usable(task, m)]
            if usable:
                offered[task] = usable
        return offered

    def _mode_usable(self, task: str, mode: str) -> bool:
        abbreviation = TASK_MODES[task].get(MODE_ALIASES.get(mode.strip().lower(), mode.strip().lower()))
        if abbreviation is None:
            return False
        spec = get_task(abbreviation)
        if spec.token >= self.transformer.config.num_task_tokens:
            return False
        return not ((spec.uses_class and self.num_classes == 0) or (spec.uses_text and not self.takes_text))

    # ------------------------------------------------------------------ checks

    def resolve_task(self, task: str, mode: str | None = None) -> tuple[str, str, Task]:
        """(task, mode) as the user gives them -> (task name, canonical mode, registry Task).

        Raises VidgenError naming the bad task or mode and what this model offers.
        """
        if not isinstance(task, str) or task.strip().lower() not in self.tasks:
            raise VidgenError(f"unknown task {task!r}: this model offers {', '.join(self.tasks) or 'no tasks'}")
        task = task.strip().lower()
        offered = self.tasks[task]
        if mode is None or (isinstance(mode, str) and not mode.strip()):
            mode = offered[0]
        if not isinstance(mode, str):
            raise VidgenError(f"mode must be a string, got {type(mode).__name__}; {task} modes: {', '.join(offered)}")
        key = MODE_ALIASES.get(mode.strip().lower(), mode.strip().lower())
        by_abbreviation = {a.lower(): m for m, a in TASK_MODES[task].items()}
        key = by_abbreviation.get(key, key)
        if key not in offered:
            raise VidgenError(f"unknown mode {mode!r} for {task}: this model offers {', '.join(offered)}")
        spec = get_task(TASK_MODES[task][key])
        # predict / interpolate keep `condition_frames` frames (the registry default is 1).
        n = self.condition_frames
        if n != 1 and spec.abbreviation in ("FP", "FI", "CFP"):
            spec = {"FP": frame_prediction, "FI": frame_interpolation, "CFP": class_frame_prediction}[
                spec.abbreviation](n)
        return task, key, spec

    @property
    def trained_class_names(self) -> list[str]:
        """The names of the classes this model can generate (its training data had them)."""
        untrained = set(self.untrained_classes)
        return [n for i, n in enumerate(self.class_names) if i not in untrained]

    def class_id(self, class_label: int | str) -> int:
        """A class id (int, or a digit string) or a class name (case-insensitive) -> the class id.
        Rejects ids out of range, unknown names and classes the model was never trained on."""
        label = self._lookup_class(class_label)
        if label in self.untrained_classes:
            named = label < len(self.class_names)
            name = f" ({self.class_names[label]!r})" if named else ""
            prompt = f"'a {self.class_names[label]}'" if named else "a prompt"
            raise VidgenError(f"class {label}{name} was held out of the training data of {self.name!r}, so its class "
                              f"embedding is untrained and would give noise; it can generate "
                              f"{self.num_classes - len(self.untrained_classes)} of its {self.num_classes} classes "
                              f"(`vidgen info {self.name}` lists them). For an unseen combination use "
                              f"text-to-video: vidgen generate {prompt} --model {self.name}")
        return label

    def _lookup_class(self, class_label: int | str) -> int:
        if self.num_classes == 0:
            raise VidgenError(f"model {self.name!r} is not class-conditional (it has no classes)")
        if isinstance(class_label, bool):
            raise VidgenError(f"class {class_label!r} must be a class id or a class name")
        if isinstance(class_label, str) and class_label.strip().lstrip("-").isdigit():
            class_label = int(class_label.strip())
        if isinstance(class_label, numbers.Integral):
            if not 0 <= int(class_label) < self.num_classes:
                raise VidgenError(f"class id {int(class_label)} is out of range: this model has classes "
                                  f"0..{self.num_classes - 1}")
            return int(class_label)
        if not isinstance(class_label, str) or not class_label.strip():
            raise VidgenError(f"class must be a class id (0..{self.num_classes - 1}) or a class name, got "
                              f"{class_label!r}")
        wanted = " ".join(class_label.lower().split())
        lowered = [n.lower() for n in self.class_names]
        if wanted in lowered:
            return lowered.index(wanted)
        close = difflib.get_close_matches(wanted, lowered, n=3, cutoff=0.6)
        hint = (f"; did you mean {', '.join(repr(self.class_names[lowered.index(c)]) for c in close)}?" if close
                else f"; e.g. {', '.join(repr(n) for n in self.class_names[:3])}" if self.class_names else "")
        raise VidgenError(f"unknown class {class_label!r}: give a class id 0..{self.num_classes - 1} or one of "
                          f"the model's {len(self.class_names)} class names (`vidgen info {self.name}` lists "
                          f"them){hint}")

    def decoding_default(self, spec: Task, name: str) -> float:
        """This pipeline's default decoding setting `name` for a task (module-level `decoding_default`)."""
        return decoding_default(self.settings, spec, name)

    def decoding_schedule(self, spec: Task) -> str:
        """This pipeline's unmasking schedule for a task (module-level `decoding_schedule`)."""
        return decoding_schedule(self.settings, spec)

    def sampling_temperature(self, spec: Task, temperature: Any = None) -> float:
        """The token sampling temperature of a call: `temperature` if given, else pipeline.json's default for
        the task (`decoding_default`). 0 = argmax."""
        if temperature is None:
            temperature = self.decoding_default(spec, "temperature")
        if not _finite_number(temperature) or not 0 <= temperature <= MAX_TEMPERATURE:
            raise VidgenError(f"temperature={temperature!r} must be a number in [0, {MAX_TEMPERATURE:g}] "
                              "(0 = always the most likely token, 1 = sample the model's distribution)")
        return float(temperature)

    def sampling_top_p(self, spec: Task, top_p: Any = None) -> float:
        """The nucleus of a call: `top_p` if given, else pipeline.json's default for the task
        (`decoding_default`). 1 = off (sample from every token)."""
        if top_p is None:
            top_p = self.decoding_default(spec, "top_p")
        if not _finite_number(top_p) or not 0 < top_p <= 1:
            raise VidgenError(f"top_p={top_p!r} must be a number in (0, 1] (nucleus sampling: draw only from the "
                              "most likely tokens holding this much probability; 1 = off)")
        return float(top_p)

    def _steps_and_guidance(self, steps: Any, guidance: Any, spec: Task) -> tuple[int, float]:
        steps = self.default_steps if steps is None else steps
        guidance = self.decoding_default(spec, "guidance") if guidance is None else guidance
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= self.max_steps:
            raise VidgenError(f"steps={steps!r} must be an integer in 1..{self.max_steps} (the number of tokens "
                              f"this model decodes); default {self.default_steps}")
        if not _finite_number(guidance) or not 0 <= guidance <= MAX_GUIDANCE:
            raise VidgenError(f"guidance={guidance!r} must be a number in [0, {MAX_GUIDANCE:g}] "
                              "(1 = no guidance, 0 = unconditional)")
        return int(steps), float(guidance)

    @staticmethod
    def _check_seed(seed: Any) -> int:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
            raise VidgenError(f"seed={seed!r} must be an integer in 0 .. 2**63 - 1")
        return int(seed)

    def check_request(self, prompt: Any, num_frames: int | None, height: int | None, width: int | None,
                      num_inference_steps: int | None, guidance_scale: float | None,
                      negative_prompt: Any = None) -> None:
        """Text-to-video arguments, checked before any work (the web app calls this first).

        Raises VidgenError naming the bad value and what is allowed.
        """
        if "text-to-video" not in self.tasks:
            raise VidgenError(f"model {self.name!r} does not do text-to-video (it has no text conditioning); "
                              f"its tasks: {', '.join(self.tasks)}")
        if not isinstance(prompt, str):
            raise VidgenError(f"prompt must be a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise VidgenError("prompt is empty: describe the video, e.g. \"a red circle moving left\"")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise VidgenError(f"prompt has {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed")
        if negative_prompt is not None:
            if not isinstance(negative_prompt, str):
                raise VidgenError(f"negative_prompt must be a string or None, got {type(negative_prompt).__name__}")
            if len(negative_prompt) > MAX_PROMPT_CHARS:
                raise VidgenError(f"negative prompt has {len(negative_prompt)} characters; at most "
                                  f"{MAX_PROMPT_CHARS} are allowed")
        for label, value, allowed in (("num_frames", num_frames, self.num_frames), ("height", height, self.height),
                                      ("width", width, self.width)):
            if value is not None and value != allowed:
                raise VidgenError(f"{label}={value} is not allowed: this model generates "
                                  f"{self.num_frames}x{self.height}x{self.width} clips (frames x height x width) "
                                  f"only, so {label} must be {allowed}")
        self._steps_and_guidance(num_inference_steps, guidance_scale, get_task("T2V"))

    # ------------------------------------------------------------------ input videos

    def load_video(self, video: Any, start: float = 0.0) -> torch.Tensor:
        """A path, uint8 (T, H, W, 3) array or float (3, T, H, W) / (1, 3, T, H, W) tensor in [-1, 1]
        -> float (3, T', H, W) in [-1, 1] at the model's height and width (T' frames as given, at most
        `num_frames`; files are read at the model's fps and resized + center-cropped)."""
        from vidgen.io import frames_to_tensor, read_video

        h, w = self.height, self.width
        if start and not isinstance(video, (str, os.PathLike)):
            raise VidgenError(f"start={start} applies to video files; slice an array or tensor yourself")
        if isinstance(video, (str, os.PathLike)):
            # Read a little past num_frames at most: only the first num_frames are used.
            clip = read_video(video, fps=self.fps, size=(h, w), start=start, audio=False)
            frames = frames_to_tensor(clip.frames[: self.num_frames])
        elif isinstance(video, np.ndarray) or (isinstance(video, torch.Tensor) and video.dtype == torch.uint8):
            array = video.cpu().numpy() if isinstance(video, torch.Tensor) else video
            if array.ndim == 3 and array.shape[-1] == 3:
                array = array[None]  # one image = a one-frame clip
            if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
                raise VidgenError(f"video frames must be uint8 (T, H, W, 3), got {array.dtype} {tuple(array.shape)}")
            frames = frames_to_tensor(array[: self.num_frames])
        elif isinstance(video, torch.Tensor):
            frames = video.detach()
            if frames.dim() == 5 and frames.shape[0] == 1:
                frames = frames[0]
            if frames.dim() != 4 or frames.shape[0] != 3 or not frames.is_floating_point() or frames.shape[1] == 0:
                raise VidgenError(f"a video tensor must be float (3, T, H, W) or (1, 3, T, H, W) in [-1, 1], "
                                  f"got {frames.dtype} {tuple(video.shape)}")
            frames = frames[:, : self.num_frames].float().cpu()
            if not torch.isfinite(frames).all() or frames.min() < -1.001 or frames.max() > 1.001:
                raise VidgenError(f"video tensor values must be in [-1, 1], got [{frames.min().item():.3g}, "
                                  f"{frames.max().item():.3g}] (convert uint8 frames with vidgen.io.frames_to_tensor)")
            frames = frames.clamp(-1, 1)
        else:
            raise VidgenError(f"video must be a file path, a uint8 (T, H, W, 3) array or a float (3, T, H, W) "
                              f"tensor in [-1, 1], got {type(video).__name__}")
        if tuple(frames.shape[2:]) != (h, w):
            raise VidgenError(f"the video is {frames.shape[2]}x{frames.shape[3]} (height x width) but this model "
                              f"takes {h}x{w} frames: pass a file path (it is resized and center-cropped) or "
                              f"resize the frames first")
        return frames

    def _fit_frames(self, frames: torch.Tensor, task: str, spec: Task, pad: bool) -> tuple[torch.Tensor, str | None]:
        """(3, T', H, W) -> (3, num_frames, H, W) for `spec`, and a note when frames were filled in."""
        t, total = frames.shape[1], self.num_frames
        if t >= total:
            return frames[:, :total], None
        n = self.condition_frames
        if spec.abbreviation in ("FP", "CFP"):
            if t < n:
                raise VidgenError(f"{task} keeps the first {n} frame(s), but the video has {t}")
            # Only the first n frames are seen; the rest is padding the task never reads.
            return torch.cat([frames, frames[:, -1:].expand(-1, total - t, -1, -1)], 1), None
        if spec.abbreviation == "FI":
            if t < 2 * n:
                raise VidgenError(f"interpolate keeps the first and last {n} frame(s), so it needs at least "
                                  f"{2 * n} frames; the video has {t}")
            # The clip's first and last frames go to the ends of the model's clip; the middle is generated.
            middle = frames[:, n - 1:n].expand(-1, total - 2 * n, -1, -1)
            return torch.cat([frames[:, :n], middle, frames[:, t - n:]], 1), \
                f"first and last frames of a {t}-frame clip placed at frames 0 and {total - 1}"
        if not pad:
            raise VidgenError(f"{task} keeps part of every frame, so it needs {total} frames; the video has {t} "
                              f"(pass pad=True, or --pad on the command line, to repeat its last frame)")
        return torch.cat([frames, frames[:, -1:].expand(-1, total - t, -1, -1)], 1), \
            f"last frame repeated {total - t} times"

    def _check_region(self, region: Any) -> torch.Tensor:
        """A caller's region -> (T, H, W) bool on the CPU, or VidgenError."""
        shape = (self.num_frames, self.height, self.width)
        try:
            mask = torch.as_tensor(np.asarray(region) if not isinstance(region, torch.Tensor) else region)
        except (TypeError, ValueError):
            raise VidgenError(f"region must be a (T, H, W) = {shape} bool array, got {type(region).__name__}") from None
        if tuple(mask.shape) != shape or mask.is_floating_point() or mask.is_complex():
            raise VidgenError(f"region must be a (T, H, W) = {shape} bool array (True = given pixel), got "
                              f"{mask.dtype} {tuple(mask.shape)}")
        mask = mask.bool().cpu()
        if not mask.any() or mask.all():
            raise VidgenError("region must give some pixels and leave some to generate (it is all "
                              f"{'True' if mask.all() else 'False'})")
        return mask

    # ------------------------------------------------------------------ generation (one code path)

    @torch.no_grad()
    def _generate(self, task: str, mode: str, spec: Task, *, video: torch.Tensor | None = None,
                  class_label: int | None = None, prompt: str | None = None, seed: int = 0,
                  steps: int | None = None, guidance: float | None = None, temperature: float | None = None,
                  top_p: float | None = None, negative_prompt: str | None = None, keep_condition: bool = True,
                  progress: bool = True, callback: Callback | None = None, info: dict | None = None) -> GeneratedVideo:
        """Decode one clip for the registry task `spec` (condition already validated)."""
        from tqdm.auto import tqdm

        steps, guidance = self._steps_and_guidance(steps, guidance, spec)
        temperature = self.sampling_temperature(spec, temperature)
        top_p = self.sampling_top_p(spec, top_p)
        choice_temperature = self.decoding_default(spec, "choice_temperature")
        schedule = self.decoding_schedule(spec)
        seed = self._check_seed(seed)
        started = time.perf_counter()
        # One generator for every random draw (a dynamic region's motion, token sampling, confidence noise):
        # the same seed gives the same clip.
        generator = torch.Generator("cpu").manual_seed(seed)
        condition = None
        if spec.uses_pixels:
            # The tokenizer runs in float32: its nearest-code search is what the transformer was trained on.
            condition = prepare_condition(spec, video[None].to(self.device), self.tokenizer, generator)
        labels = torch.tensor([class_label], device=self.device) if spec.uses_class else None
        text = text_mask = negative = negative_mask = None
        if spec.uses_text:
            # A negative prompt replaces the null text of guidance; encoded with the prompt, one length.
            encoded = self.text_encoder.encode([prompt] + ([negative_prompt] if negative_prompt else []))
            embeddings, masks = encoded.embeddings.to(self.device), encoded.mask.to(self.device)
            text, text_mask = embeddings[:1], masks[:1]
            if negative_prompt:
                negative, negative_mask = embeddings[1:], masks[1:]
            if text.shape[-1] != self.transformer.config.text_dim:
                raise CheckpointError(f"the text encoder gives {text.shape[-1]}-d states but the transformer "
                                      f"takes {self.transformer.config.text_dim}-d text")

        bar = tqdm(total=steps, desc=f"MAGVIT {spec.abbreviation}", unit="step", disable=not progress)

        def on_step(step: int, state: dict[str, torch.Tensor]) -> None:
            bar.update(1)
            if callback is not None:
                callback({"i": step, "num_steps": steps, "tokens": state["sampled"],
                          "masked": int(state["masked"].sum())})

        try:
            with autocast_context(self.device, self.bf16):
                tokens = decode_nonautoregressive(
                    self.transformer, task=spec, class_labels=labels, text=text, text_mask=text_mask,
                    condition_tokens=None if condition is None else condition.tokens,
                    condition_mask=None if condition is None else condition.mask,
                    num_steps=steps, temperature=temperature, top_p=top_p, negative_text=negative,
                    negative_text_mask=negative_mask, choice_temperature=choice_temperature,
                    schedule=schedule, guidance_scale=guidance, generator=generator, callback=on_step)  # (1, t, h, w)
        finally:
            bar.close()
        out = self.tokenizer.decode_indices(tokens).float().clamp(-1, 1)[0].cpu()  # (3, T, H, W)
        if condition is not None and keep_condition:
            keep = condition.pixel_mask[0].cpu()[None]  # (1, T, H, W)
            out = torch.where(keep, video.cpu(), out)
        record = {"task": task, "mode": mode, "abbreviation": spec.abbreviation, "model": self.name,
                  "seed": seed, "steps": steps, "guidance_scale": guidance, "temperature": temperature,
                  "top_p": top_p, "choice_temperature": choice_temperature, "schedule": schedule, **(info or {}),
                  "seconds": round(time.perf_counter() - started, 3)}
        if condition is not None:  # the given pixels (T, H, W), True = kept: a dynamic region's draw included
            record["region"] = condition.pixel_mask[0].cpu()
        if spec.uses_class:
            record["class_id"] = class_label
            if self.class_names:
                record["class_name"] = self.class_names[class_label]
        return GeneratedVideo(out, fps=self.fps, info=record)

    def _video_task(self, task: str, mode: str | None, video: Any, *, class_label: int | str | None = None,
                    seed: int = 0, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                    temperature: float | None = None, top_p: float | None = None, pad: bool = False,
                    start: float = 0.0, keep_condition: bool = True, progress: bool = True,
                    callback: Callback | None = None, region: Any = None) -> GeneratedVideo:
        task, mode, spec = self.resolve_task(task, mode)
        if not spec.uses_pixels:
            raise VidgenError(f"{task} takes no video: use pipe(prompt) for text-to-video and "
                              "pipe.generate_class(class_label) for class-to-video")
        if spec.uses_class and class_label is None:
            raise VidgenError(f"{task} mode {mode!r} needs a class (class_label=, or --class on the command line)")
        label = self.class_id(class_label) if spec.uses_class else None
        if class_label is not None and not spec.uses_class:
            raise VidgenError(f"{task} mode {mode!r} takes no class; predict with a class uses the mode "
                              "'class + first frame'")
        # Cheap checks before reading the video.
        self._steps_and_guidance(num_inference_steps, guidance_scale, spec)
        self.sampling_temperature(spec, temperature)
        self.sampling_top_p(spec, top_p)
        self._check_seed(seed)
        frames = self.load_video(video, start=start)
        given = frames.shape[1]
        frames, note = self._fit_frames(frames, task, spec, pad)
        if region is not None:
            spec = dataclasses.replace(spec, region=GivenRegion(self._check_region(region)))
        info = {"input_frames": given, **({"frames_note": note} if note else {})}
        return self._generate(task, mode, spec, video=frames, class_label=label, seed=seed,
                              steps=num_inference_steps, guidance=guidance_scale, temperature=temperature,
                              top_p=top_p, keep_condition=keep_condition, progress=progress, callback=callback,
                              info=info)

    # ------------------------------------------------------------------ the tasks

    def __call__(self, prompt: str, seed: int = 0, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, negative_prompt: str | None = None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 progress: bool = True, callback: Callback | None = None,
                 temperature: float | None = None, top_p: float | None = None) -> GeneratedVideo:
        """Text-to-video (T2V). num_frames / height / width: None or the model's own (it takes one size).
        temperature: token sampling temperature (default pipeline.json's `temperature`, 1; 0 = argmax).
        top_p: nucleus sampling, only the most likely tokens holding this much probability are drawn
        (default pipeline.json's `top_p`, 0.8 for magvit-shapes; 1 = off).
        negative_prompt: what the video should not show: classifier-free guidance pushes away from it
        instead of from no text (None or "" = no text; it acts only when guidance_scale != 1).

        callback(state) after every decoding step: {"i", "num_steps", "tokens" (1, N), "masked" (int)}.
        """
        self.check_request(prompt, num_frames, height, width, num_inference_steps, guidance_scale, negative_prompt)
        negative_prompt = (negative_prompt or "").strip() or None  # empty = the null text, as without one
        info = {"prompt": prompt, **({"negative_prompt": negative_prompt} if negative_prompt else {})}
        return self._generate("text-to-video", "default", get_task("T2V"), prompt=prompt, seed=seed,
                              steps=num_inference_steps, guidance=guidance_scale, temperature=temperature,
                              top_p=top_p, negative_prompt=negative_prompt, progress=progress, callback=callback,
                              info=info)

    @torch.no_grad()
    def reconstruct(self, video: Any, start: float = 0.0) -> GeneratedVideo:
        """Tokenize a full clip and decode its tokens: what the transformer would produce if it predicted
        every token right (the tokenizer's ceiling on every task). video as in `load_video`, exactly
        `num_frames` frames. info["tokens"] holds the (T', H', W') code indices."""
        frames = self.load_video(video, start)
        if frames.shape[1] != self.num_frames:
            raise VidgenError(f"reconstruct takes a full clip of {self.num_frames} frames, got {frames.shape[1]}")
        tokens = self.tokenizer.encode(frames[None].to(self.device))
        out = self.tokenizer.decode_indices(tokens).float().clamp(-1, 1)[0].cpu()
        return GeneratedVideo(out, fps=self.fps, info={"task": "reconstruct", "model": self.name,
                                                       "tokens": tokens[0].cpu()})

    def generate_class(self, class_label: int | str, seed: int = 0, num_inference_steps: int | None = None,
                       guidance_scale: float | None = None, progress: bool = True,
                       callback: Callback | None = None, temperature: float | None = None,
                       top_p: float | None = None) -> GeneratedVideo:
        """Class-conditional generation (CG): a class id or name, e.g. "red circle moving right" (not one the model never trained on).
        temperature, top_p as in `__call__`."""
        label = self.class_id(class_label)
        task, mode, spec = self.resolve_task("class-to-video")
        return self._generate(task, mode, spec, class_label=label, seed=seed, steps=num_inference_steps,
                              guidance=guidance_scale, temperature=temperature, top_p=top_p, progress=progress,
                              callback=callback)

    def predict(self, video: Any, seed: int = 0, num_inference_steps: int | None = None,
                guidance_scale: float | None = None, class_label: int | str | None = None, start: float = 0.0,
                keep_condition: bool = True, progress: bool = True, callback: Callback | None = None,
                region: Any = None, temperature: float | None = None, top_p: float | None = None) -> GeneratedVideo:
        """Frame prediction (FP): keep the first frame(s), generate the rest; with `class_label`, the
        class-conditional variant (CFP).

        Common arguments of the video tasks: seed (same seed -> same clip, bit for bit, on one machine);
        num_inference_steps (decoding steps K, default pipeline.json's, 12 for magvit-shapes);
        guidance_scale (classifier-free guidance, 1 = off); temperature (token sampling temperature,
        default pipeline.json's `pixel_temperature`: 0 = the most likely token for magvit-shapes); top_p
        (nucleus sampling as in `__call__`; no effect at temperature 0); start (seconds of a video file
        to skip);
        keep_condition (paste the given pixels back); callback(state) after each step with
        {"i", "num_steps", "tokens", "masked"}; region: a (T, H, W) bool mask of given pixels to use
        instead of the task's own (e.g. a chosen motion for a dynamic mode).
        """
        mode = "class + first frame" if class_label is not None else "first frame"
        return self._video_task("predict", mode, video, class_label=class_label, seed=seed,
                                num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                temperature=temperature, top_p=top_p, start=start, keep_condition=keep_condition,
                                progress=progress, callback=callback, region=region)

    def interpolate(self, video: Any, seed: int = 0, num_inference_steps: int | None = None,
                    guidance_scale: float | None = None, start: float = 0.0, keep_condition: bool = True,
                    progress: bool = True, callback: Callback | None = None, region: Any = None,
                    temperature: float | None = None, top_p: float | None = None) -> GeneratedVideo:
        """Frame interpolation (FI): keep the first and last frame(s), generate the frames between."""
        return self._video_task("interpolate", None, video, seed=seed, num_inference_steps=num_inference_steps,
                                guidance_scale=guidance_scale, temperature=temperature, top_p=top_p, start=start,
                                keep_condition=keep_condition,
                                progress=progress, callback=callback, region=region)

    def outpaint(self, video: Any, mode: str = "central", seed: int = 0, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, pad: bool = False, start: float = 0.0,
                 keep_condition: bool = True, progress: bool = True, callback: Callback | None = None,
                 region: Any = None, temperature: float | None = None, top_p: float | None = None) -> GeneratedVideo:
        """Outpainting: keep a region of every frame, generate the rest. mode: "central" (the centre box),
        "vertical" (a vertical central strip), "horizontal" (a horizontal one) or "dynamic" (a moving
        half-frame strip whose direction follows the seed)."""
        return self._video_task("outpaint", mode, video, seed=seed, num_inference_steps=num_inference_steps,
                                guidance_scale=guidance_scale, temperature=temperature, top_p=top_p, pad=pad,
                                start=start, keep_condition=keep_condition,
                                progress=progress, callback=callback, region=region)

    def inpaint(self, video: Any, mode: str = "central", seed: int = 0, num_inference_steps: int | None = None,
                guidance_scale: float | None = None, pad: bool = False, start: float = 0.0,
                keep_condition: bool = True, progress: bool = True, callback: Callback | None = None,
                region: Any = None, temperature: float | None = None, top_p: float | None = None) -> GeneratedVideo:
        """Inpainting: regenerate a region of every frame. mode: "central" (the centre box) or "dynamic"
        (a moving box whose direction follows the seed)."""
        return self._video_task("inpaint", mode, video, seed=seed, num_inference_steps=num_inference_steps,
                                guidance_scale=guidance_scale, temperature=temperature, top_p=top_p, pad=pad,
                                start=start, keep_condition=keep_condition,
                                progress=progress, callback=callback, region=region)

    def run_task(self, task: str, video_frames: Any, mode: str | None = None, seed: int = 0,
                 steps: int | None = None, guidance: float | None = None, callback: Callback | None = None,
                 class_label: int | str | None = None, temperature: float | None = None) -> GeneratedVideo:
        """The web app's video-task interface (see `vidgen.web.app`): task in "predict", "interpolate",
        "outpaint", "inpaint"; video_frames uint8 (T, H, W, 3) at the model's size (a short clip has
        already been completed by repeating its last frame, so `pad` is on); no progress bar."""
        return self._video_task(task, mode, video_frames, class_label=class_label, seed=seed,
                                num_inference_steps=steps, guidance_scale=guidance, temperature=temperature,
                                pad=True, progress=False, callback=callback)

    def __repr__(self) -> str:
        return (f"MagvitPipeline({self.name!r}, {self.num_frames}x{self.height}x{self.width}, "
                f"tasks={list(self.tasks)}, device={self.device})")
