"""The vidgen web app (gradio): text-to-video and video tasks in the browser.

    from vidgen.web import Limits, build_app, launch
    demo = build_app(["cogvideox-shapes", "./runs/x/pipeline"], Limits(max_frames=17))
    launch(demo, host="127.0.0.1", port=7860)

Tabs
    Text to video   prompt, negative prompt, model, seed, steps, guidance, autoguidance (models with a
                    weak transformer), temperature and top-p (models that sample tokens: MAGVIT), frames
                    and size (only the values the chosen model takes, within the server's limits) -> a
                    playable mp4, plus mp4 and GIF downloads. Example prompts fill the prompt box.
    Video tasks     predict / interpolate / inpaint / outpaint an uploaded video, for models whose
                    pipeline offers tasks (see below). Without such a model the tab says which are needed.
    Class to video  class-conditional models (MAGVIT): class, seed, steps, guidance, temperature, top-p.

Protecting the machine: one job runs at a time (every event shares one concurrency slot of size 1, the
rest wait in a bounded queue); frames, size, steps and uploads are capped by `Limits`; pipelines are
loaded on first use and cached (at most `max_loaded` at once). Errors reach the page as messages
(gr.Error with the VidgenError text), never as stack traces; unexpected failures are logged on the server.

Video-task pipeline interface
-----------------------------
The Video tasks tab drives any pipeline that `vidgen.pipelines.load_pipeline` returns and that has

    tasks: Mapping[str, Sequence[str]]
        task name -> the modes it offers, first = default. Task names are those of
        `vidgen.catalogue.VIDEO_TASKS` ("predict", "interpolate", "inpaint", "outpaint"); e.g.
        {"predict": ["first frame"], "outpaint": ["central", "vertical", "horizontal", "dynamic"]}.
    settings: dict
        its pipeline.json: "num_frames", "height", "width", "fps" give the clip it takes, and "tasks"
        (a list of task names, or the same {task: [modes]} map) lets the catalogue and this page list
        the model's tasks without loading it.
    run_task(task: str, video_frames: np.ndarray, mode: str, seed: int, steps: int, guidance: float,
             callback: Callable[[dict], None] | None = None) -> GeneratedVideo
        video_frames: uint8 (T, H, W, 3), the upload read at the model's fps and center-cropped to its
        height x width, T = its num_frames (the first T frames; a short clip repeats its last frame).
        The pipeline keeps the frames its task conditions on (e.g. the first frame for "predict") and
        generates the rest. callback, if given, is called after each step with {"i", "num_steps"}.
        Bad arguments raise VidgenError with a message for the user.
        A mode whose name contains "class" (MAGVIT's "class + first frame") also gets
        `class_label=<a name from pipeline.json "class_names">`, chosen in the page's Class menu.

A model offers video tasks when its pipeline.json lists them (`tasks`) or its class is a MAGVIT
pipeline (see `vidgen.catalogue`). `vidgen.pipelines.magvit.MagvitPipeline` implements this interface;
it also does text-to-video (listed in the Text to video tab), at its one clip shape (the catalogue's
`fixed_shape`: the frames and size menus offer only that).
"""

from __future__ import annotations

import collections
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.catalogue import VIDEO_TASKS, ModelEntry, describe_model, format_bytes, format_count
from vidgen.errors import VidgenError
from vidgen.web.limits import (
    Limits,
    check_limits,
    check_seed,
    frame_choices,
    nearest_choice,
    size_choices,
    validate_upload,
)

log = logging.getLogger("vidgen.web")
# No network at run time: gradio would otherwise report usage and check PyPI for updates on launch.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

EXAMPLE_PROMPTS = [
    "a red circle moving left",
    "a blue square moving up",
    "a yellow triangle moving right",
    "a green circle moving down and a magenta square moving left",
]
# Modes shown for a task when the model's pipeline.json does not list its own.
DEFAULT_TASK_MODES = {
    "predict": ["first frame"],
    "interpolate": ["first and last frames"],
    "inpaint": ["central", "dynamic"],
    "outpaint": ["central", "vertical", "horizontal", "dynamic"],
}
TASK_HELP = {
    "predict": "keeps the first frame(s) of your clip and generates what follows",
    "interpolate": "keeps the first and last frames and generates the frames in between",
    "inpaint": "regenerates a region inside the frame (central box, or a moving box)",
    "outpaint": "keeps a region and regenerates the rest of the frame around it",
}
# Every event runs under this id with limit 1: one generation at a time on the whole server.
CONCURRENCY_ID = "vidgen-job"
KEEP_OUTPUTS = 8  # output folders of past requests kept on disk (gradio has copied them to its cache)
# Page styling: tiny videos scaled up without blur; no web fonts (the app works offline).
CSS = """
#t2v-video video, #task-video video { image-rendering: pixelated; }
footer { display: none !important; }
"""


# ----------------------------------------------------------------------------- models and their loading


@dataclass
class ServedModel:
    """A model the page offers: the key shown in the menus, what to load, and its catalogue entry."""

    key: str
    source: str
    entry: ModelEntry

    @property
    def label(self) -> str:
        """Shown in the model menus: the bundled name, or a folder's name and the path it was given as."""
        return self.key if self.entry.bundled else f"{self.entry.name} ({self.source})"

    @property
    def frame_step(self) -> int:
        return self.entry.frame_step or 1

    @property
    def size_step(self) -> int:
        return self.entry.size_step or 8

    @property
    def video_tasks(self) -> list[str]:
        return [t for t in self.entry.tasks if t in VIDEO_TASKS]

    def task_modes(self, task: str) -> list[str]:
        return list(self.entry.task_modes.get(task) or DEFAULT_TASK_MODES.get(task, ["default"]))


def mode_needs_class(mode: str | None) -> bool:
    """Modes such as MAGVIT's "class + first frame" also take a class label."""
    return isinstance(mode, str) and "class" in mode.lower()


class PipelineCache:
    """Loads pipelines on first use and keeps the `max_loaded` most recently used ones."""

    def __init__(self, device: str | None = None, max_loaded: int = 2,
                 loader: Callable[..., Any] | None = None):
        self.device = device
        self.max_loaded = max(1, int(max_loaded))
        self._loader = loader
        self._pipes: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: str) -> Any:
        with self._lock:
            if source in self._pipes:
                self._pipes.move_to_end(source)
                return self._pipes[source]
            loader = self._loader
            if loader is None:
                from vidgen.pipelines import load_pipeline as loader
            pipe = loader(source, device=self.device)
            self._pipes[source] = pipe
            while len(self._pipes) > self.max_loaded:
                self._pipes.popitem(last=False)
            return pipe

    def put(self, source: str, pipe: Any) -> None:
        """Register an already built pipeline (tests, or a caller that built one in memory)."""
        with self._lock:
            self._pipes[source] = pipe

    def __contains__(self, source: str) -> bool:
        return source in self._pipes


def served_models(models: Sequence[str]) -> list[ServedModel]:
    """Describe each model (bundled name or local folder) from its files, loading no weights.

    Raises VidgenError for a name that is neither a bundled model nor a model folder.
    """
    served, seen = [], set()
    for source in models:
        source = str(source)
        entry = describe_model(source)
        if entry.path in seen:
            continue
        seen.add(entry.path)
        key = entry.name if entry.bundled else source
        served.append(ServedModel(key=key, source=source, entry=entry))
    return served


# ----------------------------------------------------------------------------- the handlers (no gradio state)


def _slug(text: str, length: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length].strip("-") or "video"


class WebApp:
    """What the page does, as plain methods (the gradio layer only wires widgets to them).

    Each handler returns values for the page or raises VidgenError with a message for the user.
    """

    def __init__(self, models: Sequence[ServedModel], limits: Limits, cache: PipelineCache | None = None,
                 output_dir: str | Path | None = None):
        self.models = {m.key: m for m in models}
        self.limits = limits
        self.cache = cache or PipelineCache()
        # Results must live in a folder gradio may serve (it copies them from the system temp folder).
        self.output_dir = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="vidgen-web-"))
        self._output_lock = threading.Lock()

    # ---- model lists and options

    def text_models(self) -> list[ServedModel]:
        return [m for m in self.models.values() if "text-to-video" in m.entry.tasks]

    def task_models(self) -> list[ServedModel]:
        return [m for m in self.models.values() if m.video_tasks]

    def class_models(self) -> list[ServedModel]:
        """Class-conditional models (MAGVIT's CG task): they list their class names."""
        return [m for m in self.models.values() if "class-to-video" in m.entry.tasks and m.entry.trained_class_names]

    def model(self, key: str | None) -> ServedModel:
        if not key or key not in self.models:
            raise VidgenError(f"model {key!r} is not served here; choose one of: {', '.join(self.models) or '(none)'}")
        return self.models[key]

    def text_options(self, key: str) -> dict[str, Any]:
        """Choices and defaults of the text-to-video controls for one model."""
        model = self.model(key)
        e = model.entry
        frames = frame_choices(model.frame_step, e.max_frames or self.limits.max_frames, self.limits)
        sizes = size_choices(model.size_step, e.max_size or self.limits.max_size, self.limits)
        if e.fixed_shape and e.num_frames and e.height and e.width:
            # One clip shape only (MAGVIT); above the server's limits the request is refused by check_limits.
            frames, sizes = [e.num_frames], sorted({e.height, e.width})
        return {
            "frames": frames, "sizes": sizes,
            "num_frames": nearest_choice(e.num_frames, frames),
            "height": nearest_choice(e.height, sizes), "width": nearest_choice(e.width, sizes),
            "steps": min(e.default_steps or 30, self.limits.max_steps),
            "guidance": e.default_guidance if e.default_guidance is not None else 6.0,
            # Autoguidance needs the pipeline's weak transformer; without it the control stays at 0, locked.
            "has_autoguidance": has_autoguidance(e),
            "autoguidance": (e.default_autoguidance or 0.0) if has_autoguidance(e) else 0.0,
            # Token sampling (MAGVIT): temperature and top-p; diffusion models have none (locked at 1 and 1).
            **sampling_options(e),
        }

    def describe(self, key: str) -> str:
        """A one-paragraph markdown summary of a model for the page."""
        e = self.model(key).entry
        where = "bundled" if e.bundled else f"folder `{e.path}`"
        return (f"**{e.name}** ({where}): {e.system}, {', '.join(e.tasks) or 'no tasks'}; "
                f"default {e.resolution} (frames x height x width)"
                + (f" at {e.fps:g} fps" if e.fps else "")
                + f"; {format_count(e.parameters)} parameters, {format_bytes(e.disk_bytes)} on disk.")

    def limits_text(self) -> str:
        lim = self.limits
        return (f"Server limits: up to {lim.max_frames} frames, {lim.max_size} px, {lim.max_steps} steps, "
                f"uploads up to {lim.max_upload_mb:g} MB and {lim.max_upload_seconds:g} s. "
                "One job runs at a time; others wait in the queue.")

    # ---- outputs

    def _new_output_dir(self) -> Path:
        with self._output_lock:
            folder = self.output_dir / f"{uuid.uuid4().hex[:12]}"
            folder.mkdir(parents=True)
            older = sorted((p for p in self.output_dir.iterdir() if p.is_dir() and p != folder),
                           key=lambda p: p.stat().st_mtime)
            for old in older[:max(0, len(older) - (KEEP_OUTPUTS - 1))]:
                shutil.rmtree(old, ignore_errors=True)
            return folder

    def _save(self, video, stem: str) -> tuple[Path, Path]:
        folder = self._new_output_dir()
        mp4 = video.save(folder / f"{stem}.mp4")  # H.264 yuv420p: plays in every browser
        gif = video.save(folder / f"{stem}.gif")
        return mp4, gif

    # ---- text to video

    def generate(self, prompt: str, negative_prompt: str | None, model_key: str, seed, steps, guidance,
                 num_frames, height, width, autoguidance=None, progress: Callable[..., Any] | None = None,
                 temperature=None, top_p=None) -> tuple[str, list[str], str]:
        """-> (mp4 path for the player, [mp4, gif] for download, status markdown).

        autoguidance: the autoguidance scale (None = the model's default; only models with a weak
        transformer take one above 0).
        temperature, top_p: token sampling of a model that draws tokens (MAGVIT; None = its pipeline.json
        defaults); a diffusion model takes only None or 1 (off)."""
        model = self.model(model_key)
        if "text-to-video" not in model.entry.tasks:
            raise VidgenError(f"model {model_key!r} does not do text-to-video (its tasks: "
                              f"{', '.join(model.entry.tasks) or 'none'})")
        num_frames, height, width, steps = check_limits(self.limits, num_frames, height, width, steps)
        seed = check_seed(seed)
        if guidance is None:
            raise VidgenError("guidance is missing: give a number (1 = no guidance)")
        guidance = float(guidance)
        extra = {}  # only pipelines with a weak transformer know the autoguidance argument
        if has_autoguidance(model.entry):
            extra["autoguidance_scale"] = (float(autoguidance) if autoguidance is not None
                                           else model.entry.default_autoguidance or 0.0)
        elif autoguidance is not None and float(autoguidance) != 0:
            raise VidgenError(f"autoguidance={float(autoguidance):g}: model {model.entry.name!r} has no weak "
                              "transformer (autoguidance_transformer/), so only 0 (off) is allowed")
        sampling = sampling_arguments(model.entry, temperature, top_p)  # token models only
        prompt = prompt if isinstance(prompt, str) else ""
        negative_prompt = negative_prompt.strip() if isinstance(negative_prompt, str) else ""
        negative_prompt = negative_prompt or None
        if progress is not None:
            progress(0.0, desc=f"loading {model.key}" if model.source not in self.cache else "starting")
        pipe = self.cache.get(model.source)
        # The pipeline's own rules (prompt, 4k+1 frames, size multiples), before any heavy work.
        pipe.check_request(prompt, num_frames, height, width, steps, guidance, negative_prompt, **extra)

        def on_step(state: dict) -> None:
            if progress is not None:
                total = int(state.get("num_steps", steps))
                progress((int(state["i"]) + 1, total), desc="denoising", unit="steps")

        video = pipe(prompt, seed=seed, num_inference_steps=steps, guidance_scale=guidance,
                     negative_prompt=negative_prompt, num_frames=num_frames, height=height, width=width,
                     progress=False, callback=on_step, **extra, **sampling)
        if progress is not None:
            progress(1.0, desc="encoding mp4 and GIF")
        mp4, gif = self._save(video, f"{_slug(prompt)}-seed{seed}")
        autoguided = f", autoguidance {extra['autoguidance_scale']:g}" if extra.get("autoguidance_scale") else ""
        status = (f"Generated {video.num_frames} frames at {height}x{width} in {video.info.get('seconds', 0):.1f} s "
                  f"with **{model.entry.name}** (seed {seed}, {steps} steps, guidance {guidance:g}{autoguided}"
                  f"{sampling_text(video.info)}).")
        return str(mp4), [str(mp4), str(gif)], status

    # ---- class to video

    def generate_class(self, model_key: str, class_label: str | int | None, seed, steps, guidance,
                       progress: Callable[..., Any] | None = None, temperature=None, top_p=None
                       ) -> tuple[str, list[str], str]:
        """Class-conditional generation -> (mp4 path for the player, [mp4, gif] for download, status).
        temperature, top_p: token sampling (None = the model's pipeline.json defaults)."""
        model = self.model(model_key)
        if model not in self.class_models():
            raise VidgenError(f"model {model_key!r} does not do class-to-video (its tasks: "
                              f"{', '.join(model.entry.tasks) or 'none'})")
        if class_label is None or not str(class_label).strip():
            raise VidgenError("choose a class in the Class menu")
        e = model.entry
        _, _, _, steps = check_limits(self.limits, e.num_frames or 16, e.height or 64, e.width or 64, steps)
        seed = check_seed(seed)
        guidance = float(guidance) if guidance is not None else 0.0
        sampling = sampling_arguments(e, temperature, top_p)
        if progress is not None:
            progress(0.0, desc=f"loading {model.key}" if model.source not in self.cache else "starting")
        pipe = self.cache.get(model.source)

        def on_step(state: dict) -> None:
            if progress is not None and "i" in state:
                progress((int(state["i"]) + 1, int(state.get("num_steps", steps))), desc="decoding", unit="steps")

        video = pipe.generate_class(class_label, seed=seed, num_inference_steps=steps, guidance_scale=guidance,
                                    progress=False, callback=on_step, **sampling)
        name = video.info.get("class_name", class_label)
        mp4, gif = self._save(video, f"class-{_slug(str(name))}-seed{seed}")
        status = (f"Class {name!r} with **{e.name}**: {video.num_frames} frames in {video.info.get('seconds', 0):.1f} s "
                  f"(seed {seed}, {steps} steps, guidance {guidance:g}{sampling_text(video.info)}).")
        return str(mp4), [str(mp4), str(gif)], status

    # ---- video tasks

    def run_video_task(self, model_key: str, upload: str | None, task: str, mode: str, seed, steps, guidance,
                       progress: Callable[..., Any] | None = None, class_label: str | int | None = None
                       ) -> tuple[str, list[str], str]:
        """-> (mp4 path for the player, [mp4, gif] for download, status markdown).

        class_label: for modes that take a class ("class + first frame"); ignored by the others.
        """
        model = self.model(model_key)
        if task not in model.video_tasks:
            raise VidgenError(f"task {task!r} is not offered by {model_key!r}; it offers: "
                              f"{', '.join(model.video_tasks) or 'none'}")
        e = model.entry
        num_frames, height, width = e.num_frames or 17, e.height or 64, e.width or 64
        _, _, _, steps = check_limits(self.limits, num_frames, height, width, steps)
        seed = check_seed(seed)
        guidance = float(guidance) if guidance is not None else 0.0
        needs_class = mode_needs_class(mode)
        if needs_class and (class_label is None or not str(class_label).strip()):
            raise VidgenError(f"mode {mode!r} needs a class: choose one in the Class menu")
        frames = validate_upload(upload, self.limits, num_frames=num_frames, fps=e.fps, size=(height, width))
        if progress is not None:
            progress(0.0, desc=f"loading {model.key}" if model.source not in self.cache else "starting")
        pipe = self.cache.get(model.source)
        offered = getattr(pipe, "tasks", None)
        if not callable(getattr(pipe, "run_task", None)) or not offered:
            raise VidgenError(f"the pipeline of {model_key!r} ({type(pipe).__name__}) does not run video tasks")
        if task not in offered:
            raise VidgenError(f"task {task!r} is not offered by {model_key!r}; it offers: {', '.join(offered)}")
        modes = list(offered[task]) if isinstance(offered, dict) else []
        if modes and mode not in modes:
            raise VidgenError(f"mode {mode!r} is not one of {', '.join(modes)} for {task}")

        def on_step(state: dict) -> None:
            if progress is not None and "i" in state:
                progress((int(state["i"]) + 1, int(state.get("num_steps", steps))), desc=task, unit="steps")

        extra = {"class_label": class_label} if needs_class else {}
        video = pipe.run_task(task, frames, mode=mode, seed=seed, steps=steps, guidance=guidance, callback=on_step,
                              **extra)
        mp4, gif = self._save(video, f"{task}-{_slug(mode)}-seed{seed}")
        with_class = f", class {class_label}" if needs_class else ""
        status = (f"{task} ({mode}) with **{model.entry.name}**: {video.num_frames} frames (seed {seed}, {steps} steps"
                  f"{with_class}).")
        return str(mp4), [str(mp4), str(gif)], status


def no_task_model_message(app: WebApp) -> str:
    """What the Video tasks tab says when no served model offers video tasks."""
    served = ", ".join(f"`{k}`" for k in app.models) or "none"
    return (
        "### No video-task model is loaded\n"
        f"Predict, interpolate, inpaint and outpaint need a model whose pipeline offers video tasks "
        f"(a MAGVIT task model: its `pipeline.json` lists `tasks` such as {', '.join(VIDEO_TASKS)}). "
        f"The models served here ({served}) only do text-to-video.\n\n"
        "Start the server with one, e.g. `vidgen serve --model ./runs/magvit-shapes/pipeline`; "
        "`vidgen models` lists the bundled models and their tasks."
    )


# ----------------------------------------------------------------------------- the gradio page


def _user_error(error: Exception) -> Exception:
    import gradio as gr

    if isinstance(error, VidgenError):
        return gr.Error(str(error), duration=None, print_exception=False)
    log.exception("unexpected failure in the web app")
    return gr.Error(f"something went wrong on the server ({type(error).__name__}: {error}); "
                    "the server log has the details", duration=None, print_exception=False)


def build_app(models: Sequence[str] | None = None, limits: Limits | None = None, device: str | None = None,
              cache: PipelineCache | None = None, title: str = "vidgen"):
    """Build the page (a `gr.Blocks`, queued with one worker) for these models (bundled names or local
    folders; default: every bundled model). No model is loaded until a request needs it.

    The returned Blocks has `.vidgen` (the `WebApp`), so tests and callers can reach the handlers.
    """
    import gradio as gr

    from vidgen.modeling import bundled_names

    limits = limits or Limits()
    app = WebApp(served_models(list(models) if models else bundled_names()), limits,
                 cache or PipelineCache(device=device))
    text_models = app.text_models()
    task_models = app.task_models()

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown("# vidgen\nVideo generation with the models in this library. " + app.limits_text())
        with gr.Tabs():
            with gr.Tab("Text to video", id="t2v"):
                _text_to_video_tab(gr, app, text_models)
            with gr.Tab("Video tasks", id="tasks"):
                _video_tasks_tab(gr, app, task_models)
            if app.class_models():
                with gr.Tab("Class to video", id="class"):
                    _class_to_video_tab(gr, app, app.class_models())
    # One job at a time on the whole server; a bounded number wait.
    demo.queue(default_concurrency_limit=1, max_size=limits.queue_size)
    demo.vidgen = app
    return demo


def _text_to_video_tab(gr, app: WebApp, models: list[ServedModel]) -> None:
    if not models:
        gr.Markdown("### No text-to-video model is loaded\nStart the server with one, e.g. "
                    "`vidgen serve --model ./runs/cogvideox-shapes/pipeline` (`vidgen models` lists the "
                    "bundled ones).", elem_id="t2v-missing")
        return
    first = models[0].key
    opts = app.text_options(first)
    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(label="Prompt", placeholder="a red circle moving left", lines=2, elem_id="t2v-prompt")
            negative = gr.Textbox(label="Negative prompt (optional)", placeholder="what the video should not show",
                                  elem_id="t2v-negative")
            model = gr.Dropdown([(m.label, m.key) for m in models], value=first, label="Model", elem_id="t2v-model")
            model_info = gr.Markdown(app.describe(first), elem_id="t2v-model-info")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="t2v-seed")
                steps = gr.Slider(1, app.limits.max_steps, value=opts["steps"], step=1, label="Steps",
                                  elem_id="t2v-steps")
                guidance = gr.Slider(0.0, 20.0, value=opts["guidance"], step=0.5, label="Guidance",
                                     elem_id="t2v-guidance")
                autoguidance = gr.Slider(0.0, 10.0, value=opts["autoguidance"], step=0.5,
                                         label="Autoguidance (away from the weak model)",
                                         interactive=opts["has_autoguidance"], elem_id="t2v-autoguidance")
            temperature, top_p = _sampling_row(gr, opts, "t2v")
            with gr.Row():
                frames = gr.Dropdown(opts["frames"], value=opts["num_frames"], label="Frames", elem_id="t2v-frames")
                height = gr.Dropdown(opts["sizes"], value=opts["height"], label="Height", elem_id="t2v-height")
                width = gr.Dropdown(opts["sizes"], value=opts["width"], label="Width", elem_id="t2v-width")
            button = gr.Button("Generate", variant="primary", elem_id="t2v-generate")
            gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt], label="Example prompts")
        with gr.Column(scale=1):
            video = gr.Video(label="Result", interactive=False, autoplay=True, loop=True, height=320,
                             elem_id="t2v-video")
            files = gr.File(label="Download (mp4, GIF)", file_count="multiple", interactive=False,
                            elem_id="t2v-files")
            status = gr.Markdown("", elem_id="t2v-status")

    def on_model(key):
        try:
            o = app.text_options(key)
        except Exception as error:  # noqa: BLE001 -- every failure becomes a message in the page
            raise _user_error(error) from None
        return (gr.update(choices=o["frames"], value=o["num_frames"]), gr.update(choices=o["sizes"], value=o["height"]),
                gr.update(choices=o["sizes"], value=o["width"]), gr.update(value=o["steps"]),
                gr.update(value=o["guidance"]),
                gr.update(value=o["autoguidance"], interactive=o["has_autoguidance"]), app.describe(key),
                *_sampling_updates(gr, o))

    model.change(on_model, inputs=[model],
                 outputs=[frames, height, width, steps, guidance, autoguidance, model_info, temperature, top_p],
                 queue=False, api_visibility="private")

    def on_generate(prompt_, negative_, key, seed_, steps_, guidance_, frames_, height_, width_, autoguidance_,
                    temperature_=None, top_p_=None,
                    progress=gr.Progress()):  # noqa: B008 -- gradio's way to ask for a progress bar
        try:
            return app.generate(prompt_, negative_, key, seed_, steps_, guidance_, frames_, height_, width_,
                                autoguidance_, progress=progress, temperature=temperature_, top_p=top_p_)
        except Exception as error:  # noqa: BLE001 -- every failure becomes a message in the page
            raise _user_error(error) from None

    inputs = [prompt, negative, model, seed, steps, guidance, frames, height, width, autoguidance, temperature, top_p]
    event = {"fn": on_generate, "inputs": inputs, "outputs": [video, files, status], "concurrency_limit": 1,
             "concurrency_id": CONCURRENCY_ID, "api_name": "generate"}
    button.click(**event)
    prompt.submit(**{**event, "api_name": "generate_on_enter", "api_visibility": "private"})


def has_autoguidance(entry: Any) -> bool:
    """Whether a model folder holds a weak transformer for autoguidance (CogVideoX pipelines may)."""
    from vidgen.pipelines.text_to_video import AUTOGUIDANCE_FOLDER

    return AUTOGUIDANCE_FOLDER in entry.components


def sampling_options(entry: Any) -> dict[str, Any]:
    """The token-sampling controls of a model: {"samples_tokens", "temperature", "top_p"} (its pipeline.json
    defaults; 1 and 1, locked, for a model that does not draw tokens)."""
    if not entry.samples_tokens:
        return {"samples_tokens": False, "temperature": 1.0, "top_p": 1.0}
    return {"samples_tokens": True, "temperature": entry.temperature, "top_p": entry.top_p}


def sampling_arguments(entry: Any, temperature: Any, top_p: Any) -> dict[str, float]:
    """The temperature= / top_p= keywords to pass a pipeline ({} = its defaults). The pipeline checks the
    ranges; here only that a model which draws no tokens gets none (1 = off is accepted, as the page's
    locked sliders send it)."""
    given = {name: value for name, value in (("temperature", temperature), ("top_p", top_p)) if value is not None}
    for name, value in given.items():
        try:
            given[name] = float(value)
        except (TypeError, ValueError):
            raise VidgenError(f"{name}={value!r} is not a number") from None
    if entry.samples_tokens:
        return given
    for name, value in given.items():
        if value != 1.0:
            raise VidgenError(f"{name}={value:g}: model {entry.name!r} does not sample tokens ({entry.system} "
                              f"denoises), so only 1 (off) is allowed")
    return {}


def sampling_text(info: dict[str, Any]) -> str:
    """", temperature 1, top-p 0.8" for the status line of a token-sampling result, else ""."""
    if "top_p" not in info or "temperature" not in info:
        return ""
    return f", temperature {float(info['temperature']):g}, top-p {float(info['top_p']):g}"


def default_guidance(entry: Any, video_tasks: bool = False) -> float:
    """The guidance a model's page starts with: pipeline.json's default (for the video tasks its
    `pixel_guidance` where set)."""
    if video_tasks and entry.pixel_guidance is not None:
        return entry.pixel_guidance
    return entry.default_guidance or 0.0


def _seed_steps_guidance(gr, app: WebApp, model: ServedModel, video_tasks: bool = False) -> tuple[Any, Any, Any]:
    """One row: seed, steps (the model's default, clipped to the limits) and guidance (the model's default;
    with `video_tasks`, its default for the tasks given a video where it has one)."""
    with gr.Row():
        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
        steps = gr.Slider(1, app.limits.max_steps, value=min(model.entry.default_steps or 12, app.limits.max_steps),
                          step=1, label="Steps")
        guidance = gr.Slider(0.0, 20.0, value=default_guidance(model.entry, video_tasks), step=0.5,
                             label="Guidance")
    return seed, steps, guidance


def _sampling_row(gr, options: dict[str, Any], prefix: str) -> tuple[Any, Any]:
    """Token sampling: temperature and top-p sliders, editable only for a model that draws tokens (MAGVIT);
    for the others they stay at 1 and 1 (off), locked."""
    with gr.Row():
        temperature = gr.Slider(0.0, 2.0, value=options["temperature"], step=0.05,
                                label="Temperature (token sampling; 0 = most likely)",
                                interactive=options["samples_tokens"], elem_id=f"{prefix}-temperature")
        top_p = gr.Slider(0.05, 1.0, value=options["top_p"], step=0.05, label="Top-p (nucleus; 1 = off)",
                          interactive=options["samples_tokens"], elem_id=f"{prefix}-top-p")
    return temperature, top_p


def _sampling_updates(gr, options: dict[str, Any]) -> tuple[Any, Any]:
    return (gr.update(value=options["temperature"], interactive=options["samples_tokens"]),
            gr.update(value=options["top_p"], interactive=options["samples_tokens"]))


def _result_column(gr, prefix: str) -> tuple[Any, Any, Any]:
    """The right-hand column: player, mp4/GIF downloads, status line."""
    with gr.Column(scale=1):
        video = gr.Video(label="Result", interactive=False, autoplay=True, loop=True, height=320,
                         elem_id=f"{prefix}-video")
        files = gr.File(label="Download (mp4, GIF)", file_count="multiple", interactive=False)
        status = gr.Markdown("", elem_id=f"{prefix}-status")
    return video, files, status


def _video_tasks_tab(gr, app: WebApp, models: list[ServedModel]) -> None:
    if not models:
        gr.Markdown(no_task_model_message(app), elem_id="tasks-missing")
        return
    first = models[0]
    first_task = first.video_tasks[0]
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.Video(label="Your video", sources=["upload"], elem_id="task-upload")
            model = gr.Dropdown([(m.label, m.key) for m in models], value=first.key, label="Model",
                                elem_id="task-model")
            model_info = gr.Markdown(app.describe(first.key))
            task = gr.Radio(first.video_tasks, value=first_task, label="Task", elem_id="task-task")
            task_info = gr.Markdown(TASK_HELP.get(first_task, ""))
            mode = gr.Dropdown(first.task_modes(first_task), value=first.task_modes(first_task)[0], label="Mode",
                               elem_id="task-mode")
            # Shown for modes that take a class (MAGVIT's "class + first frame").
            class_box = gr.Dropdown(first.entry.trained_class_names, value=None, label="Class", elem_id="task-class",
                                    visible=mode_needs_class(first.task_modes(first_task)[0]))
            seed, steps, guidance = _seed_steps_guidance(gr, app, first, video_tasks=True)
            button = gr.Button("Run task", variant="primary", elem_id="task-run")
        video, files, status = _result_column(gr, "task")

    def on_model(key):
        m = app.model(key)
        t = m.video_tasks[0]
        return (gr.update(choices=m.video_tasks, value=t), gr.update(choices=m.task_modes(t), value=m.task_modes(t)[0]),
                app.describe(key), TASK_HELP.get(t, ""),
                gr.update(choices=m.entry.trained_class_names, value=None, visible=mode_needs_class(m.task_modes(t)[0])),
                gr.update(value=default_guidance(m.entry, video_tasks=True)))

    def on_mode(mode_):
        return gr.update(visible=mode_needs_class(mode_))

    def on_task(key, t):
        m = app.model(key)
        if t not in m.video_tasks:
            return gr.update(), gr.update()
        return gr.update(choices=m.task_modes(t), value=m.task_modes(t)[0]), TASK_HELP.get(t, "")

    model.change(on_model, inputs=[model], outputs=[task, mode, model_info, task_info, class_box, guidance], queue=False,
                 api_visibility="private")
    task.change(on_task, inputs=[model, task], outputs=[mode, task_info], queue=False, api_visibility="private")
    mode.change(on_mode, inputs=[mode], outputs=[class_box], queue=False, api_visibility="private")

    def on_run(key, upload_, task_, mode_, seed_, steps_, guidance_, class_,
               progress=gr.Progress()):  # noqa: B008 -- gradio's way to ask for a progress bar
        try:
            return app.run_video_task(key, upload_, task_, mode_, seed_, steps_, guidance_, progress=progress,
                                      class_label=class_)
        except Exception as error:  # noqa: BLE001 -- every failure becomes a message in the page
            raise _user_error(error) from None

    button.click(on_run, inputs=[model, upload, task, mode, seed, steps, guidance, class_box],
                 outputs=[video, files, status],
                 concurrency_limit=1, concurrency_id=CONCURRENCY_ID, api_name="video_task")


def _class_to_video_tab(gr, app: WebApp, models: list[ServedModel]) -> None:
    first = models[0]
    with gr.Row():
        with gr.Column(scale=1):
            model = gr.Dropdown([(m.label, m.key) for m in models], value=first.key, label="Model",
                                elem_id="class-model")
            model_info = gr.Markdown(app.describe(first.key))
            class_box = gr.Dropdown(first.entry.trained_class_names, value=first.entry.trained_class_names[0], label="Class",
                                    elem_id="class-class")
            seed, steps, guidance = _seed_steps_guidance(gr, app, first)
            temperature, top_p = _sampling_row(gr, sampling_options(first.entry), "class")
            button = gr.Button("Generate", variant="primary", elem_id="class-generate")
        video, files, status = _result_column(gr, "class")

    def on_model(key):
        m = app.model(key)
        return (gr.update(choices=m.entry.trained_class_names, value=m.entry.trained_class_names[0]), app.describe(key),
                *_sampling_updates(gr, sampling_options(m.entry)))

    model.change(on_model, inputs=[model], outputs=[class_box, model_info, temperature, top_p], queue=False,
                 api_visibility="private")

    def on_generate(key, class_, seed_, steps_, guidance_, temperature_=None, top_p_=None,
                    progress=gr.Progress()):  # noqa: B008 -- gradio's way to ask for a progress bar
        try:
            return app.generate_class(key, class_, seed_, steps_, guidance_, progress=progress,
                                      temperature=temperature_, top_p=top_p_)
        except Exception as error:  # noqa: BLE001 -- every failure becomes a message in the page
            raise _user_error(error) from None

    button.click(on_generate, inputs=[model, class_box, seed, steps, guidance, temperature, top_p],
                 outputs=[video, files, status],
                 concurrency_limit=1, concurrency_id=CONCURRENCY_ID, api_name="class_to_video")


def launch(demo, host: str = "127.0.0.1", port: int = 7860, limits: Limits | None = None,
           prevent_thread_lock: bool = False, quiet: bool = False):
    """Serve a page built by `build_app` (blocks unless `prevent_thread_lock`)."""
    import gradio as gr

    limits = limits or demo.vidgen.limits
    # System fonts only: the default theme would fetch Google fonts, and the app must work offline.
    theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                           font_mono=["ui-monospace", "monospace"])
    return demo.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                       prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=False,
                       max_file_size=int(limits.max_upload_mb * 2**20), ssr_mode=False,
                       footer_links=[], theme=theme, css=CSS, allowed_paths=[str(demo.vidgen.output_dir)],
                       enable_monitoring=False)
