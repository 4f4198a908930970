"""Web app (`vidgen serve`): limits, upload validation, handlers, the gradio page, and a real browser.

The browser test starts `vidgen serve` on a tiny random pipeline and drives headless Chromium (Debian's
`chromium` + `chromium-driver`; `make browser` installs them). It saves a screenshot to
`test-output/web-screenshot.png`.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from vidgen.diffusion.schedules import NoiseSchedule
from vidgen.errors import VideoReadError, VidgenError
from vidgen.generators.expert_transformer import cogvideox_transformer_tiny
from vidgen.io import frames_to_tensor, read_video, write_video
from vidgen.modeling import write_json
from vidgen.pipelines import GeneratedVideo
from vidgen.tokenizers.cogvideox_vae import cogvideox_vae_tiny
from vidgen.web import app as webapp
from vidgen.web.limits import (
    Limits,
    check_limits,
    check_seed,
    frame_choices,
    nearest_choice,
    size_choices,
    validate_upload,
)

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def make_text_pipeline(folder: Path, **settings) -> Path:
    """A tiny random CogVideoX pipeline folder that `load_pipeline` can load."""
    torch.manual_seed(0)
    vae = cogvideox_vae_tiny()
    transformer = cogvideox_transformer_tiny(in_channels=vae.config.latent_channels, text_dim=384)
    for p in transformer.parameters():  # zero-initialised output layers would give a flat grey video
        p.data.add_(0.02 * torch.randn_like(p))
    vae.save_pretrained(folder / "vae")
    transformer.save_pretrained(folder / "transformer")
    write_json(folder / "pipeline.json", {
        "_class_name": "CogVideoXPipeline", "system": "CogVideoX", "text_encoder": "minilm", "text_max_length": 16,
        "latent_scaling_factor": 0.7, "schedule": NoiseSchedule.cogvideox().to_dict(), "default_steps": 2,
        "default_guidance": 3.0, "num_frames": 9, "height": 32, "width": 48, "fps": 8, **settings})
    return folder


def make_task_folder(folder: Path) -> Path:
    """A pipeline.json declaring video tasks (the pipeline itself is faked in the tests)."""
    write_json(folder / "pipeline.json", {
        "_class_name": "FakeTaskPipeline", "system": "MAGVIT", "num_frames": 5, "height": 32, "width": 32,
        "fps": 8, "default_steps": 3, "tasks": {"predict": ["first frame"], "outpaint": ["central", "vertical"]}})
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    return make_text_pipeline(root / "tiny-t2v"), make_task_folder(root / "tiny-tasks")


class FakeTextPipeline:
    """Stands in for CogVideoXPipeline: same call and checks, random frames, reports each step."""

    def __init__(self):
        self.calls = []

    def check_request(self, prompt, num_frames, height, width, num_inference_steps, guidance_scale,
                      negative_prompt=None):
        if not prompt.strip():
            raise VidgenError("prompt is empty: describe the video")
        if (num_frames - 1) % 4:
            raise VidgenError(f"num_frames={num_frames} is not allowed: this model takes 4k+1 frames")

    def __call__(self, prompt, seed, num_inference_steps, guidance_scale, negative_prompt, num_frames, height,
                 width, progress, callback):
        self.calls.append({"prompt": prompt, "seed": seed, "steps": num_inference_steps, "guidance": guidance_scale,
                           "negative": negative_prompt, "frames": num_frames, "size": (height, width)})
        for i in range(num_inference_steps):
            callback({"i": i, "num_steps": num_inference_steps})
        generator = torch.Generator().manual_seed(seed)
        tensor = torch.rand(3, num_frames, height, width, generator=generator) * 2 - 1
        return GeneratedVideo(tensor, fps=8, info={"seconds": 0.01})


class FakeTaskPipeline:
    """The video-task interface documented in vidgen/web/app.py."""

    def __init__(self):
        self.tasks = {"predict": ["first frame"], "outpaint": ["central", "vertical"]}
        self.calls = []

    def run_task(self, task, video_frames, mode, seed, steps, guidance, callback=None):
        self.calls.append({"task": task, "frames": video_frames, "mode": mode, "seed": seed, "steps": steps})
        for i in range(steps):
            callback({"i": i, "num_steps": steps})
        return GeneratedVideo(frames_to_tensor(video_frames[::-1].copy()), fps=8)


def make_app(folders, tmp_path, limits=None, text=None, tasks=None):
    text_folder, task_folder = folders
    pipes = {str(text_folder): text or FakeTextPipeline(), str(task_folder): tasks or FakeTaskPipeline()}
    loads = []

    def loader(source, device=None):
        loads.append(source)
        return pipes[source]

    cache = webapp.PipelineCache(loader=loader)
    app = webapp.WebApp(webapp.served_models([str(text_folder), str(task_folder)]), limits or Limits(max_frames=9,
                        max_size=64, max_steps=10), cache, output_dir=tmp_path / "out")
    return app, pipes, loads


def write_clip(path, frames=12, size=(40, 40), fps=8.0):
    t = np.arange(frames)[:, None, None, None]
    frames = ((t * 20 + np.zeros((frames, *size, 3))) % 256).astype(np.uint8)
    return write_video(path, frames, fps=fps)


# ----------------------------------------------------------------------------- limits


def test_check_limits_accepts_within_and_names_the_limit_above():
    limits = Limits(max_frames=17, max_size=64, max_steps=20)
    assert check_limits(limits, 17.0, 64, 32, 20) == (17, 64, 32, 20)  # gradio sends floats
    with pytest.raises(VidgenError, match="frames=21 is above this server's limit of 17 frames.*--max-frames"):
        check_limits(limits, 21, 32, 32, 4)
    with pytest.raises(VidgenError, match="width=128 is above this server's limit of 64 pixels.*--max-size"):
        check_limits(limits, 5, 32, 128, 4)
    with pytest.raises(VidgenError, match="steps=50 is above this server's limit of 20"):
        check_limits(limits, 5, 32, 32, 50)
    with pytest.raises(VidgenError, match="steps=0 must be at least 1"):
        check_limits(limits, 5, 32, 32, 0)
    with pytest.raises(VidgenError, match="height is missing"):
        check_limits(limits, 5, None, 32, 4)
    with pytest.raises(VidgenError, match="frames=4.5 must be a whole number"):
        check_limits(limits, 4.5, 32, 32, 4)
    assert check_seed(7.0) == 7
    with pytest.raises(VidgenError, match="seed=-1"):
        check_seed(-1)
    with pytest.raises(VidgenError, match="max_frames=0 must be a positive integer"):
        Limits(max_frames=0)
    with pytest.raises(VidgenError, match="max_upload_mb=-1"):
        Limits(max_upload_mb=-1)


def test_choices_follow_the_model_and_the_limits():
    limits = Limits(max_frames=20, max_size=100)
    assert frame_choices(4, 49, limits) == [1, 5, 9, 13, 17]
    assert frame_choices(4, 9, limits) == [1, 5, 9]  # the model's own maximum is lower
    assert size_choices(16, 256, limits) == [16, 32, 48, 64, 80, 96]
    assert size_choices(16, 48, limits) == [16, 32, 48]
    assert nearest_choice(49, [1, 5, 9]) == 9 and nearest_choice(40, [16, 32, 48]) == 32
    assert nearest_choice(None, [16, 32]) == 16 and nearest_choice(3, []) is None


# ----------------------------------------------------------------------------- upload validation


def test_validate_upload_reads_the_model_clip(tmp_path):
    path = write_clip(tmp_path / "in.mp4", frames=12, size=(40, 60))
    frames = validate_upload(path, Limits(), num_frames=5, fps=8, size=(32, 32))
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    # frames follow the source in time (each source frame is 20 grey levels brighter)
    means = frames.reshape(5, -1).mean(axis=1)
    assert np.all(np.diff(means) > 10)
    longer = validate_upload(path, Limits(), num_frames=20, fps=8, size=(32, 32))
    assert longer.shape[0] == 20 and np.array_equal(longer[12:], np.repeat(longer[11:12], 8, axis=0))
    everything = validate_upload(path, Limits())
    assert everything.shape == (12, 40, 60, 3)


def test_validate_upload_refuses_with_clear_messages(tmp_path):
    path = write_clip(tmp_path / "in.mp4", frames=24, fps=8.0)  # 3 seconds
    with pytest.raises(VidgenError, match="no video uploaded"):
        validate_upload(None, Limits())
    with pytest.raises(VideoReadError, match="missing on the server"):
        validate_upload(tmp_path / "gone.mp4", Limits())
    size_mb = path.stat().st_size / 2**20
    with pytest.raises(VidgenError, match=r"the uploaded file is .* MB; this server takes at most .*--max-upload-mb"):
        validate_upload(path, Limits(max_upload_mb=size_mb / 2))
    with pytest.raises(VidgenError, match=r"lasts 3.0 s; this server takes at most 2 s"):
        validate_upload(path, Limits(max_upload_seconds=2))
    gif = write_clip(tmp_path / "in.gif", frames=24, fps=8.0)  # no container duration: measured after decoding
    with pytest.raises(VidgenError, match=r"lasts (2.9|3.0) s"):  # GIF delays are whole centiseconds
        validate_upload(gif, Limits(max_upload_seconds=2))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(VideoReadError, match="the upload is not a readable video"):
        validate_upload(junk, Limits())
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(VideoReadError, match="unsupported file type"):
        validate_upload(text, Limits())


# ----------------------------------------------------------------------------- handlers (fake pipelines)


def test_generate_checks_limits_before_loading_and_uses_the_pipeline_checks(folders, tmp_path):
    app, pipes, loads = make_app(folders, tmp_path)
    key = str(folders[0])
    with pytest.raises(VidgenError, match="frames=13 is above this server's limit of 9"):
        app.generate("a red circle", "", key, 0, 2, 3.0, 13, 32, 32)
    assert loads == []  # refused before any model is loaded
    with pytest.raises(VidgenError, match="prompt is empty"):
        app.generate("  ", "", key, 0, 2, 3.0, 5, 32, 32)
    with pytest.raises(VidgenError, match="num_frames=6 is not allowed"):
        app.generate("a red circle", "", key, 0, 2, 3.0, 6, 32, 32)
    with pytest.raises(VidgenError, match="model 'nope' is not served here"):
        app.generate("a red circle", "", "nope", 0, 2, 3.0, 5, 32, 32)
    with pytest.raises(VidgenError, match="does not do text-to-video"):
        app.generate("a red circle", "", str(folders[1]), 0, 2, 3.0, 5, 32, 32)
    assert loads == [key] and pipes[key].calls == []  # loaded once (cached), never generated


def test_generate_writes_h264_mp4_and_gif_and_reports_progress(folders, tmp_path):
    import av

    app, pipes, _ = make_app(folders, tmp_path)
    key = str(folders[0])
    seen = []
    video, files, status = app.generate("a red circle moving left", "  ", key, 3.0, 4.0, 2.5, 5.0, 32.0, 48.0,
                                        progress=lambda value, desc=None, unit=None: seen.append(value))
    call = pipes[key].calls[0]
    assert call == {"prompt": "a red circle moving left", "seed": 3, "steps": 4, "guidance": 2.5, "negative": None,
                    "frames": 5, "size": (32, 48)}
    assert seen[0] == 0.0 and seen[1:5] == [(1, 4), (2, 4), (3, 4), (4, 4)] and seen[-1] == 1.0
    assert files == [video, video.replace(".mp4", ".gif")] and Path(video).name == "a-red-circle-moving-left-seed3.mp4"
    with av.open(video) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert read_video(video).frames.shape == (5, 32, 48, 3)
    assert read_video(files[1]).frames.shape == (5, 32, 48, 3)
    assert "Generated 5 frames at 32x48" in status and "seed 3" in status
    for _ in range(webapp.KEEP_OUTPUTS + 3):  # old outputs are pruned
        app._new_output_dir()
    assert len(list((tmp_path / "out").iterdir())) == webapp.KEEP_OUTPUTS


def test_text_options_follow_model_and_limits(folders, tmp_path):
    app, _, _ = make_app(folders, tmp_path, limits=Limits(max_frames=5, max_size=32, max_steps=10))
    options = app.text_options(str(folders[0]))
    assert options["frames"] == [1, 5] and options["num_frames"] == 5  # the model default (9) is above the limit
    assert options["sizes"] == [16, 32] and (options["height"], options["width"]) == (32, 32)
    assert options["steps"] == 2 and options["guidance"] == 3.0
    assert [m.key for m in app.text_models()] == [str(folders[0])]
    assert [m.key for m in app.task_models()] == [str(folders[1])]
    # A diffusion model samples no tokens: temperature and top-p stay at 1 (off).
    assert (options["samples_tokens"], options["temperature"], options["top_p"]) == (False, 1.0, 1.0)


def test_token_sampling_is_refused_for_a_diffusion_model(folders, tmp_path):
    app, pipes, _ = make_app(folders, tmp_path)
    key = str(folders[0])
    for name, value in (("temperature", 0.5), ("top_p", 0.8)):
        with pytest.raises(VidgenError, match=rf"{name}={value:g}: model .* does not sample tokens.*only 1 \(off\)"):
            app.generate("a red circle", "", key, 0, 2, 3.0, 5, 32, 32, **{name: value})
    assert pipes[key].calls == []
    # The page's locked sliders send 1 and 1: accepted, and nothing extra reaches the pipeline.
    _, _, status = app.generate("a red circle", "", key, 0, 2, 3.0, 5, 32, 32, temperature=1.0, top_p=1.0)
    assert len(pipes[key].calls) == 1 and "top-p" not in status


def test_autoguidance_control_follows_the_weak_transformer(folders, tmp_path):
    # A real tiny pipeline with a weak transformer (autoguidance_transformer/) and default_autoguidance.
    root = tmp_path / "autoguided"
    make_text_pipeline(root, default_autoguidance=1.5)
    torch.manual_seed(1)
    weak = cogvideox_transformer_tiny(in_channels=cogvideox_vae_tiny().config.latent_channels, text_dim=384)
    weak.save_pretrained(root / "autoguidance_transformer")
    calls = []

    def loader(source, device=None):
        from vidgen.pipelines import load_pipeline

        pipe = load_pipeline(source, device=device)

        def recording(*args, **kwargs):  # records the arguments the page passes
            calls.append(kwargs)
            return pipe(*args, **kwargs)

        return _CallThrough(pipe, recording)

    app = webapp.WebApp(webapp.served_models([str(root), str(folders[0])]), Limits(max_frames=9, max_size=64,
                        max_steps=10), webapp.PipelineCache(loader=loader), output_dir=tmp_path / "out")
    options = app.text_options(str(root))
    assert options["has_autoguidance"] and options["autoguidance"] == 1.5
    plain = app.text_options(str(folders[0]))
    assert not plain["has_autoguidance"] and plain["autoguidance"] == 0.0

    _, _, status = app.generate("a red circle", "", str(root), 0, 2, 3.0, 5, 32, 32)  # the model's default
    assert calls[-1]["autoguidance_scale"] == 1.5 and "autoguidance 1.5" in status
    video, _, status = app.generate("a red circle", "", str(root), 0, 2, 3.0, 5, 32, 32, 0.0)
    assert calls[-1]["autoguidance_scale"] == 0.0 and "autoguidance" not in status
    with pytest.raises(VidgenError, match=r"autoguidance_scale=60.0 must be a number in \[0, 50\]"):
        app.generate("a red circle", "", str(root), 0, 2, 3.0, 5, 32, 32, 60.0)
    # The weak model changes the video: same seed, autoguidance on vs off.
    on, _, _ = app.generate("a red circle", "", str(root), 0, 2, 3.0, 5, 32, 32, 2.0)
    assert not np.array_equal(read_video(on).frames, read_video(video).frames)

    # A model without the weak transformer takes only 0, and gets no autoguidance argument.
    fake_app, pipes, _ = make_app(folders, tmp_path / "fake")
    with pytest.raises(VidgenError, match="autoguidance=2: model .* has no weak transformer.*only 0"):
        fake_app.generate("a red circle", "", str(folders[0]), 0, 2, 3.0, 5, 32, 32, 2.0)
    fake_app.generate("a red circle", "", str(folders[0]), 0, 2, 3.0, 5, 32, 32, 0.0)
    assert len(pipes[str(folders[0])].calls) == 1


class _CallThrough:
    """A pipeline whose calls go through a recorder (instances cannot override __call__ themselves)."""

    def __init__(self, pipe, call):
        self._pipe, self._call = pipe, call

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._pipe, name)


def test_video_task_runs_through_the_interface(folders, tmp_path):
    app, pipes, _ = make_app(folders, tmp_path)
    key = str(folders[1])
    upload = write_clip(tmp_path / "in.mp4", frames=12, size=(40, 40))
    seen = []
    video, files, status = app.run_video_task(key, str(upload), "predict", "first frame", 1, 3, 0.0,
                                              progress=lambda value, desc=None, unit=None: seen.append(value))
    call = pipes[key].calls[0]
    assert call["frames"].shape == (5, 32, 32, 3) and call["frames"].dtype == np.uint8  # the model's clip
    assert (call["task"], call["mode"], call["seed"], call["steps"]) == ("predict", "first frame", 1, 3)
    assert seen[1:] == [(1, 3), (2, 3), (3, 3)]
    assert read_video(video).frames.shape == (5, 32, 32, 3) and files[1].endswith(".gif")
    assert "predict (first frame)" in status
    with pytest.raises(VidgenError, match="mode 'dynamic' is not one of central, vertical for outpaint"):
        app.run_video_task(key, str(upload), "outpaint", "dynamic", 1, 3, 0.0)
    with pytest.raises(VidgenError, match="task 'inpaint' is not offered.*predict, outpaint"):
        app.run_video_task(key, str(upload), "inpaint", "central", 1, 3, 0.0)
    with pytest.raises(VidgenError, match="no video uploaded"):
        app.run_video_task(key, None, "predict", "first frame", 1, 3, 0.0)
    with pytest.raises(VidgenError, match="steps=11 is above"):
        app.run_video_task(key, str(upload), "predict", "first frame", 1, 11, 0.0)
    assert len(pipes[key].calls) == 1


def test_video_task_refuses_a_pipeline_without_tasks(folders, tmp_path):
    app, _, _ = make_app(folders, tmp_path, tasks=FakeTextPipeline())
    upload = write_clip(tmp_path / "in.mp4")
    with pytest.raises(VidgenError, match="does not run video tasks"):
        app.run_video_task(str(folders[1]), str(upload), "predict", "first frame", 1, 3, 0.0)


def test_page_layout_queue_and_missing_task_model_message(folders):
    demo = webapp.build_app([str(folders[0])], Limits(max_frames=9, max_size=64))
    props = {c["props"].get("elem_id"): c["props"] for c in demo.get_config_file()["components"]}
    assert "No video-task model is loaded" in props["tasks-missing"]["value"]
    assert str(folders[0]) in props["tasks-missing"]["value"] and "task-upload" not in props
    assert [c[1] for c in props["t2v-frames"]["choices"]] == [1, 5, 9] and props["t2v-frames"]["value"] == 9
    assert [c[1] for c in props["t2v-height"]["choices"]] == [16, 32, 48, 64]
    assert props["t2v-autoguidance"]["value"] == 0.0 and props["t2v-autoguidance"]["interactive"] is False
    assert props["t2v-top-p"]["value"] == 1.0 and props["t2v-top-p"]["interactive"] is False
    assert props["t2v-temperature"]["interactive"] is False
    jobs = [fn for fn in demo.fns.values() if fn.name == "on_generate"]
    assert jobs and all(fn.concurrency_limit == 1 and fn.concurrency_id == webapp.CONCURRENCY_ID for fn in jobs)

    both = webapp.build_app([str(f) for f in folders])
    props = {c["props"].get("elem_id"): c["props"] for c in both.get_config_file()["components"]}
    assert "tasks-missing" not in props and "task-upload" in props
    assert [c[1] for c in props["task-task"]["choices"]] == ["predict", "outpaint"]
    runs = [fn for fn in both.fns.values() if fn.name in ("on_generate", "on_run")]
    assert {fn.concurrency_id for fn in runs} == {webapp.CONCURRENCY_ID}  # one slot shared by both tabs


def test_no_model_at_all_is_a_clear_error(tmp_path):
    with pytest.raises(VidgenError, match="neither a local folder nor a bundled model"):
        webapp.served_models([str(tmp_path / "missing")])


# ----------------------------------------------------------------------------- the real thing, in Chromium


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vidgen serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"vidgen serve did not answer at {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def _chrome(user_data_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,1000", f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.mark.browser
def test_browser_generates_a_playable_video_and_shows_errors(folders, tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed: run `make browser` (apt-get install chromium "
                    "chromium-driver)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "serve.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    with open(log, "w") as log_file:
        server = subprocess.Popen([sys.executable, "-m", "vidgen.cli.main", "serve", "--model", str(folders[0]),
                                   "--port", str(port), "--max-frames", "16", "--max-size", "64", "--max-steps", "10"],
                                  stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    driver = None
    try:
        driver = _chrome(Path(tempfile.mkdtemp(prefix="chrome-", dir=tmp_path)))  # starts while the server boots
        _wait_for_server(url, server, log)
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        prompt = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#t2v-prompt textarea"))

        # An example prompt fills the prompt box.
        example = "a blue square moving up"
        driver.find_element(By.XPATH, f"//*[normalize-space(text())='{example}']").click()
        wait.until(lambda d: prompt.get_attribute("value") == example)
        prompt.send_keys(Keys.CONTROL, "a")
        prompt.send_keys("a red circle moving left")
        driver.find_element(By.CSS_SELECTOR, "#t2v-generate").click()

        # The result plays in the page: a <video> with an mp4 source the browser has decoded.
        video = WebDriverWait(driver, 150).until(
            lambda d: next((v for v in d.find_elements(By.CSS_SELECTOR, "#t2v-video video") if v.get_attribute("src")),
                           None))
        state = WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "const v = arguments[0]; return v.readyState >= 1 && v.duration > 0 ? "
            "[v.readyState, v.duration, v.videoWidth, v.videoHeight] : null", video))
        assert state[1] == pytest.approx(9 / 8, abs=0.2) and state[2:] == [48, 32]  # 9 frames at 8 fps, 32x48
        with urllib.request.urlopen(video.get_attribute("src"), timeout=10) as response:
            assert response.read(12)[4:8] == b"ftyp"  # an mp4 container
        files = driver.find_element(By.CSS_SELECTOR, "#t2v-files").text.replace("\n", "")  # name and extension wrap
        assert "a-red-circle-moving-left-seed0.mp4" in files and "a-red-circle-moving-left-seed0.gif" in files
        status = driver.find_element(By.CSS_SELECTOR, "#t2v-status").text
        assert "Generated 9 frames at 32x48" in status

        # Works offline: the page fetched nothing from another host (no web fonts, CDNs or analytics).
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources and not [r for r in resources if not r.startswith(f"http://127.0.0.1:{port}/")]

        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.5)  # let the player paint a frame
        driver.save_screenshot(str(tmp_path / "web-screenshot.png"))
        (REPO / "test-output").mkdir(exist_ok=True)
        shutil.copy(tmp_path / "web-screenshot.png", REPO / "test-output" / "web-screenshot.png")
        assert (tmp_path / "web-screenshot.png").stat().st_size > 10_000

        # Errors reach the page as a message, not a stack trace.
        prompt.send_keys(Keys.CONTROL, "a")
        prompt.send_keys(Keys.DELETE)
        driver.find_element(By.CSS_SELECTOR, "#t2v-generate").click()
        toast = wait.until(lambda d: next((t for t in d.find_elements(By.CSS_SELECTOR, "[data-testid='toast-text']")
                                           if "prompt is empty" in t.text), None))
        assert "describe the video" in toast.text
        assert "Traceback" not in driver.find_element(By.TAG_NAME, "body").text

        # Video tasks tab (the bundled magvit-shapes is served too): upload a clip, predict, and the
        # result plays in the page.
        from vidgen.data import get_dataset
        from vidgen.io.video import write_video

        clip = get_dataset("shapes", split="heldout", num_items=1, num_frames=16, size=64, max_objects=1)[0]["video"]
        upload_path = tmp_path / "upload.mp4"
        write_video(upload_path, ((clip.permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy(), fps=8)
        tab = next(b for b in driver.find_elements(By.XPATH, "//button[@role='tab']") if
                   b.is_displayed() and b.text.strip() == "Video tasks")
        tab.click()
        file_input = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#task-upload input[type='file']"))
        file_input.send_keys(str(upload_path))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#task-upload video"))
        driver.find_element(By.CSS_SELECTOR, "#task-run").click()
        from selenium.common.exceptions import TimeoutException

        try:
            result = WebDriverWait(driver, 240).until(
                lambda d: next((v for v in d.find_elements(By.CSS_SELECTOR, "#task-video video")
                                if v.get_attribute("src")), None))
        except TimeoutException:
            (REPO / "test-output").mkdir(exist_ok=True)
            driver.save_screenshot(str(REPO / "test-output" / "web-tasks-timeout.png"))
            pytest.fail("no task result after 240 s; page: " + driver.find_element(By.TAG_NAME, "body").text[-1500:]
                        + "\nserver log: " + log.read_text()[-3000:])
        state = WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "const v = arguments[0]; return v.readyState >= 1 && v.duration > 0 ? "
            "[v.readyState, v.duration, v.videoWidth, v.videoHeight] : null", result))
        assert state[1] == pytest.approx(16 / 8, abs=0.3) and state[2:] == [64, 64]  # 16 frames at 8 fps, 64x64
        assert "Traceback" not in driver.find_element(By.TAG_NAME, "body").text
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", result)
        time.sleep(0.5)  # let the player paint a frame
        driver.save_screenshot(str(tmp_path / "web-tasks-screenshot.png"))
        shutil.copy(tmp_path / "web-tasks-screenshot.png", REPO / "test-output" / "web-tasks-screenshot.png")
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
