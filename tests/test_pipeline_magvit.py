"""MagvitPipeline: every task on a tiny random pipeline folder, condition pixels, seeds, input checks,
the catalogue entry and the web app's code path.

The folder holds a 4x16x16-clip tokenizer (2x4x4 tokens of 128 codes) and a tiny transformer with 4
classes and 8-d text from a stub text encoder (MiniLM would cost seconds to load), so a task runs in
well under a second.
"""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vidgen.catalogue import describe_model
from vidgen.errors import CheckpointError, VideoReadError, VidgenError
from vidgen.generators.masked_transformer import MaskedTokenTransformer, magvit_transformer_tiny
from vidgen.io import frames_to_tensor, read_video, write_video
from vidgen.modeling import read_json, write_json
from vidgen.pipelines import load_pipeline
from vidgen.pipelines.magvit import TASK_MODES, MagvitPipeline
from vidgen.tasks import get_task
from vidgen.text.encoders import TextEmbeddings
from vidgen.tokenizers.magvit_vq import magvit_vq_tiny
from vidgen.web import app as webapp
from vidgen.web.limits import Limits

T, H, W = 4, 16, 16
CLASS_NAMES = ["red circle moving left", "blue square moving up", "green triangle moving right", "digit 3"]


class StubTextEncoder:
    """`encode(prompts) -> TextEmbeddings` with 8-d states that depend on the prompt only."""

    dim = 8

    def __init__(self):
        self.prompts = []

    def encode(self, prompts):
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        self.prompts += prompts
        states = torch.stack([torch.randn(3, 8, generator=torch.Generator().manual_seed(sum(map(ord, p))))
                              for p in prompts])
        return TextEmbeddings(states, torch.ones(len(prompts), 3, dtype=torch.bool), states.mean(1))


def make_magvit_folder(folder: Path, num_classes: int = 4, text_dim: int = 8, **settings) -> Path:
    """A tiny random MAGVIT pipeline folder in the spec's layout."""
    torch.manual_seed(0)
    tokenizer = magvit_vq_tiny(base_channels=4, channel_multipliers=(1, 1, 2), temporal_downsample=(True, False),
                               norm_groups=2)
    transformer = MaskedTokenTransformer(magvit_transformer_tiny(codebook_size=128, grid=(2, 4, 4),
                                                                 num_classes=num_classes, text_dim=text_dim))
    tokenizer.save_pretrained(folder / "tokenizer")
    transformer.save_pretrained(folder / "transformer")
    write_json(folder / "pipeline.json", {
        "_class_name": "MagvitPipeline", "system": "MAGVIT", "text_encoder": "minilm", "text_max_length": 16,
        "num_frames": T, "height": H, "width": W, "fps": 8.0, "default_steps": 3, "default_guidance": 2.0,
        "choice_temperature": 4.5, "class_names": CLASS_NAMES[:num_classes],
        "tasks": {task: list(modes) for task, modes in TASK_MODES.items()},
        "recipe": "magvit-test.toml", "description": "tiny random MAGVIT for tests", **settings})
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_magvit_folder(tmp_path_factory.mktemp("magvit") / "tiny-magvit")


@pytest.fixture(scope="module")
def pipe(folder):
    return load_pipeline(folder, device="cpu", text_encoder=StubTextEncoder())


def clip(frames: int = T, size: tuple[int, int] = (H, W), seed: int = 0) -> np.ndarray:
    """uint8 (frames, H, W, 3): a bright square moving right on a dark, slightly noisy background."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 40, (frames, *size, 3), dtype=np.uint8)
    for t in range(frames):
        out[t, 4:10, 2 + 2 * t:8 + 2 * t] = (230, 40, 40)
    return out


def test_load_pipeline_gives_a_magvit_pipeline_with_the_spec_tasks(pipe):
    assert isinstance(pipe, MagvitPipeline)
    assert pipe.tasks == {task: list(modes) for task, modes in TASK_MODES.items()}
    assert (pipe.num_frames, pipe.height, pipe.width, pipe.default_steps) == (T, H, W, 3)
    assert pipe.class_names == CLASS_NAMES and pipe.max_steps == 32


@pytest.mark.parametrize("task", ["predict", "interpolate", "outpaint", "inpaint"])
def test_every_video_task_and_mode_runs(pipe, task):
    frames = clip()
    for mode in pipe.tasks[task]:
        seen = []
        label = "blue square moving up" if "class" in mode else None
        video = pipe.run_task(task, frames, mode, seed=1, steps=3, guidance=2.0, callback=seen.append,
                              class_label=label)
        assert video.tensor.shape == (3, T, H, W) and video.fps == 8.0
        assert video.tensor.min() >= -1 and video.tensor.max() <= 1
        assert [s["i"] for s in seen] == [0, 1, 2] and all(s["num_steps"] == 3 for s in seen)
        info = video.info
        assert (info["task"], info["mode"], info["seed"], info["steps"], info["guidance_scale"]) == \
               (task, mode, 1, 3, 2.0)
        assert info["abbreviation"] == TASK_MODES[task][mode] and info["seconds"] >= 0
        if label:
            assert (info["class_id"], info["class_name"]) == (1, label)


def test_text_and_class_generation(pipe):
    video = pipe("a red circle moving left", seed=2, progress=False)
    assert video.tensor.shape == (3, T, H, W)
    assert video.info["task"] == "text-to-video" and video.info["prompt"] == "a red circle moving left"
    assert video.info["steps"] == 3 and video.info["guidance_scale"] == 2.0  # the pipeline.json defaults
    assert pipe.text_encoder.prompts[-1] == "a red circle moving left"
    by_name = pipe.generate_class("Green  Triangle moving RIGHT", seed=2, progress=False)
    by_id = pipe.generate_class(2, seed=2, progress=False)
    by_digits = pipe.generate_class("2", seed=2, progress=False)
    assert by_name.info["class_id"] == 2 and by_name.info["class_name"] == "green triangle moving right"
    assert torch.equal(by_name.tensor, by_id.tensor) and torch.equal(by_id.tensor, by_digits.tensor)
    assert not torch.equal(by_id.tensor, pipe.generate_class(0, seed=2, progress=False).tensor)


def test_classes_the_model_never_trained_on_are_refused_everywhere(tmp_path, capsys):
    """pipeline.json's untrained_classes (held-out classes: untrained embeddings) are refused by CG and CFP
    with an error naming the class and the way out (text-to-video); menus and `vidgen info` offer only the
    trained ones; a bad list fails at load."""
    from vidgen.cli.main import main as cli_main

    folder = make_magvit_folder(tmp_path / "heldout", untrained_classes=[1])
    pipe = load_pipeline(folder, device="cpu", text_encoder=StubTextEncoder())
    assert pipe.untrained_classes == [1] and pipe.trained_class_names == [CLASS_NAMES[0], *CLASS_NAMES[2:]]
    for label in (1, "1", CLASS_NAMES[1]):
        with pytest.raises(VidgenError, match=f"class 1 \\('{CLASS_NAMES[1]}'\\) was held out .* text-to-video"):
            pipe.generate_class(label, seed=0, progress=False)
    with pytest.raises(VidgenError, match="was held out"):
        pipe.predict(clip(), class_label=1, seed=0, progress=False)
    assert pipe.generate_class(2, seed=0, progress=False).info["class_id"] == 2
    entry = describe_model(folder)
    assert entry.untrained_classes == [1] and entry.trained_class_names == pipe.trained_class_names
    demo = webapp.build_app([str(folder)], Limits(max_frames=9, max_size=64))
    props = {c["props"].get("elem_id"): c["props"] for c in demo.get_config_file()["components"]}
    assert [c[1] for c in props["class-class"]["choices"]] == pipe.trained_class_names
    assert cli_main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^not trained +1 \(held out", out, re.MULTILINE) and out.count(CLASS_NAMES[1]) >= 2  # the row + pipeline.json
    for bad in ([4], ["a"], 1, [True]):
        settings = read_json(folder / "pipeline.json")
        (folder / "pipeline.json").write_text(json.dumps({**settings, "untrained_classes": bad}))
        with pytest.raises(CheckpointError, match="untrained_classes"):
            load_pipeline(folder, device="cpu", text_encoder=StubTextEncoder())


def test_sampling_temperature_defaults_per_task_and_overrides(folder, tmp_path):
    """pipeline.json's `pixel_temperature` / `pixel_guidance` / `pixel_choice_temperature` decode the tasks
    given pixels, `temperature` / `default_guidance` / `choice_temperature` the class- and text-conditioned
    ones; a call's temperature= and guidance_scale= win; without the pixel_* keys every task uses the
    model-wide values; bad values are refused before any work."""
    frames = clip()
    plain = load_pipeline(folder, device="cpu", text_encoder=StubTextEncoder())  # no pixel_* keys
    info = plain.predict(frames, seed=3, progress=False).info
    assert (info["temperature"], info["guidance_scale"], info["choice_temperature"]) == (1.0, 2.0, 4.5)
    argmax_folder = make_magvit_folder(tmp_path / "argmax", pixel_temperature=0.0, temperature=1.0,
                                       pixel_guidance=1.0, pixel_choice_temperature=1.5)
    argmax = load_pipeline(argmax_folder, device="cpu", text_encoder=StubTextEncoder())
    for task, mode in (("predict", "first frame"), ("interpolate", None), ("outpaint", "central"),
                       ("inpaint", "dynamic")):
        default = argmax.run_task(task, frames, mode, seed=3)
        info = default.info
        assert (info["temperature"], info["guidance_scale"], info["choice_temperature"]) == (0.0, 1.0, 1.5), task
        plain.settings["choice_temperature"] = 1.5  # the same decoding through the model-wide keys
        same = plain.run_task(task, frames, mode, seed=3, temperature=0.0, guidance=1.0)
        plain.settings["choice_temperature"] = 4.5
        assert torch.equal(default.tensor, same.tensor), task
        argmax.settings["pixel_choice_temperature"] = 4.5
        sampled = argmax.run_task(task, frames, mode, seed=3, temperature=1.0, guidance=2.0)
        argmax.settings["pixel_choice_temperature"] = 1.5
        assert torch.equal(sampled.tensor, plain.run_task(task, frames, mode, seed=3).tensor), task
    assert not torch.equal(argmax.predict(frames, seed=3, progress=False).tensor,
                           plain.predict(frames, seed=3, progress=False).tensor)
    # Class- and text-conditioned generation keep sampling at `temperature`.
    info = argmax.generate_class(1, seed=2, progress=False).info
    assert (info["temperature"], info["guidance_scale"], info["choice_temperature"]) == (1.0, 2.0, 4.5)
    assert torch.equal(argmax.generate_class(1, seed=2, progress=False).tensor,
                       plain.generate_class(1, seed=2, progress=False).tensor)
    assert argmax("a red circle moving left", seed=2, progress=False).info["temperature"] == 1.0
    assert argmax("a red circle moving left", seed=2, progress=False, temperature=0.0).info["temperature"] == 0.0
    for key, bad in (("pixel_temperature", "cold"), ("pixel_guidance", -1.0), ("choice_temperature", None)):
        broken = make_magvit_folder(tmp_path / f"bad-{key}", **{key: bad})
        if bad is None:  # a key that is absent or null takes its default
            video = load_pipeline(broken, device="cpu", text_encoder=StubTextEncoder()).predict(frames, progress=False)
            assert video.info["choice_temperature"] == 4.5
            continue
        with pytest.raises(CheckpointError, match=f"pipeline.json: {key} = .* must be a number >= 0"):
            load_pipeline(broken, device="cpu", text_encoder=StubTextEncoder())
    for bad in (-0.5, float("nan"), 11.0, "hot", True):
        with pytest.raises(VidgenError, match=r"temperature=.* must be a number in \[0, 10\]"):
            argmax.predict(frames, seed=0, temperature=bad, progress=False)
        with pytest.raises(VidgenError, match="temperature="):
            argmax.generate_class(0, temperature=bad, progress=False)


def test_top_p_defaults_per_task_and_overrides(folder, tmp_path):
    """pipeline.json's `top_p` (nucleus sampling) decodes the class- and text-conditioned tasks and
    `pixel_top_p` the tasks given pixels; absent = 1 (off, the same clip bit for bit); a call's top_p= wins;
    bad values are refused at load or before any work."""
    frames = clip()
    plain = load_pipeline(folder, device="cpu", text_encoder=StubTextEncoder())  # no top_p keys
    nucleus = load_pipeline(make_magvit_folder(tmp_path / "nucleus", top_p=0.5, pixel_top_p=1.0, pixel_temperature=1.0),
                            device="cpu", text_encoder=StubTextEncoder())
    assert plain.generate_class(1, seed=2, progress=False).info["top_p"] == 1.0
    cg = nucleus.generate_class(1, seed=2, progress=False)
    assert cg.info["top_p"] == 0.5
    assert not torch.equal(cg.tensor, plain.generate_class(1, seed=2, progress=False).tensor)
    assert torch.equal(cg.tensor, plain.generate_class(1, seed=2, progress=False, top_p=0.5).tensor)
    assert torch.equal(nucleus.generate_class(1, seed=2, progress=False, top_p=1.0).tensor,
                       plain.generate_class(1, seed=2, progress=False).tensor)
    assert nucleus("a red circle moving left", seed=2, progress=False).info["top_p"] == 0.5
    assert nucleus("a red circle moving left", seed=2, progress=False, top_p=0.8).info["top_p"] == 0.8
    predicted = nucleus.predict(frames, seed=3, progress=False)
    assert predicted.info["top_p"] == 1.0  # pixel_top_p
    assert torch.equal(predicted.tensor, plain.predict(frames, seed=3, progress=False).tensor)
    assert nucleus.inpaint(frames, "central", seed=3, progress=False, top_p=0.3).info["top_p"] == 0.3
    for key, bad in (("top_p", 0.0), ("top_p", 1.5), ("pixel_top_p", -0.2), ("top_p", "most")):
        broken = make_magvit_folder(tmp_path / f"bad-{key}-{bad}", **{key: bad})
        with pytest.raises(CheckpointError, match=rf"pipeline.json: {key} = .* must be a number in \(0, 1\]"):
            load_pipeline(broken, device="cpu", text_encoder=StubTextEncoder())
    for bad in (0, -0.5, 1.01, float("nan"), "all", True):
        with pytest.raises(VidgenError, match=r"top_p=.* must be a number in \(0, 1\]"):
            nucleus.predict(frames, seed=0, top_p=bad, progress=False)
        with pytest.raises(VidgenError, match="top_p="):
            nucleus.generate_class(0, top_p=bad, progress=False)


def test_unmasking_schedule_per_task_from_pipeline_json(folder, tmp_path):
    """pipeline.json's `schedule` sets how many tokens stay masked after each decoding step for the class- and
    text-conditioned tasks and `pixel_schedule` for the tasks given pixels (absent: cosine); an unknown name
    fails at load."""
    def masked_after_each_step(pipe, call):
        counts = []
        result = call(pipe, lambda state: counts.append(state["masked"]))
        return counts, result.info["schedule"]

    plain = load_pipeline(folder, device="cpu", text_encoder=StubTextEncoder())
    sqrt = load_pipeline(make_magvit_folder(tmp_path / "sqrt", schedule="sqrt", pixel_schedule="linear"),
                         device="cpu", text_encoder=StubTextEncoder())
    frames = torch.rand(3, T, H, W) * 2 - 1
    cg = lambda p, cb: p.generate_class(1, seed=2, progress=False, callback=cb)
    fp = lambda p, cb: p.predict(frames, seed=2, progress=False, callback=cb)
    n = 2 * 4 * 4  # the tiny transformer's grid; 3 steps
    assert masked_after_each_step(plain, cg) == ([int(math.cos(math.pi / 6) * n), int(math.cos(math.pi / 3) * n + 1e-9), 0],
                                                 "cosine")
    assert masked_after_each_step(sqrt, cg) == ([int((1 - math.sqrt(1 / 3)) * n), int((1 - math.sqrt(2 / 3)) * n), 0],
                                                "sqrt")
    # pixel_schedule wins for the tasks given pixels (COMMIT decodes every position, condition ones included)
    assert masked_after_each_step(sqrt, fp) == ([int(2 / 3 * n), int(1 / 3 * n + 1e-9), 0], "linear")
    assert masked_after_each_step(plain, fp)[1] == "cosine"
    for key in ("schedule", "pixel_schedule"):
        broken = make_magvit_folder(tmp_path / f"bad-{key}", **{key: "cubic"})
        with pytest.raises(CheckpointError, match=rf"pipeline.json: {key} = 'cubic' must be one of \['cosine'"):
            load_pipeline(broken, device="cpu", text_encoder=StubTextEncoder())


def test_negative_prompt_replaces_the_null_text_of_guidance(pipe):
    """A negative prompt changes the clip (guidance pushes away from it instead of from no text) and is
    recorded; an empty one is the null text, bit for bit; without guidance it cannot matter."""
    # Strong guidance: the random tiny model reads its text weakly, and (s - 1) scales the negative's effect.
    plain = pipe("a red circle moving left", seed=4, progress=False, guidance_scale=20.0)
    negative = pipe("a red circle moving left", seed=4, progress=False, guidance_scale=20.0,
                    negative_prompt="a blue square")
    assert negative.info["negative_prompt"] == "a blue square" and "negative_prompt" not in plain.info
    assert not torch.equal(plain.tensor, negative.tensor)
    assert torch.equal(plain.tensor, pipe("a red circle moving left", seed=4, progress=False, guidance_scale=20.0,
                                          negative_prompt=" ").tensor)
    unguided = [pipe("a red circle moving left", seed=4, progress=False, guidance_scale=1.0, negative_prompt=n).tensor
                for n in (None, "a blue square")]
    assert torch.equal(*unguided)


def test_condition_pixels_are_kept_exactly(pipe):
    frames = clip()
    # predict: frame 0 is the input's frame 0, byte for byte after writing uint8 frames.
    predicted = pipe.predict(frames, seed=0, progress=False)
    assert np.array_equal(predicted.frames[0], frames[0])
    assert not np.array_equal(predicted.frames[1:], frames[1:])  # the rest is generated
    # interpolate: first and last frames kept.
    between = pipe.interpolate(frames, seed=0, progress=False)
    assert np.array_equal(between.frames[0], frames[0]) and np.array_equal(between.frames[-1], frames[-1])
    # central outpainting keeps the centre box [H/4, 3H/4) x [W/4, 3W/4); inpainting keeps the border.
    out = pipe.outpaint(frames, mode="central", seed=0, progress=False).frames
    assert np.array_equal(out[:, 4:12, 4:12], frames[:, 4:12, 4:12])
    assert not np.array_equal(out[:, :4], frames[:, :4])
    inpainted = pipe.inpaint(frames, mode="central", seed=0, progress=False).frames
    assert np.array_equal(inpainted[:, :4], frames[:, :4]) and np.array_equal(inpainted[:, :, 12:], frames[:, :, 12:])
    assert not np.array_equal(inpainted[:, 4:12, 4:12], frames[:, 4:12, 4:12])
    # keep_condition=False shows the model's own decoding of the kept region.
    raw = pipe.predict(frames, seed=0, keep_condition=False, progress=False)
    assert not np.array_equal(raw.frames[0], frames[0])
    assert torch.equal(raw.tensor[:, 1:], predicted.tensor[:, 1:])


def test_float_tensor_input_keeps_its_exact_values(pipe):
    video = frames_to_tensor(clip())  # (3, T, H, W) in [-1, 1]
    for given in (video, video[None]):
        out = pipe.predict(given, seed=0, progress=False)
        assert torch.equal(out.tensor[:, 0], video[:, 0])


def test_seeds_reproduce_bit_for_bit_and_differ(pipe):
    frames = clip()
    for task, mode in (("outpaint", "dynamic"), ("inpaint", "dynamic"), ("predict", "first frame")):
        a = pipe.run_task(task, frames, mode, seed=7, steps=3, guidance=2.0)
        b = pipe.run_task(task, frames, mode, seed=7, steps=3, guidance=2.0)
        c = pipe.run_task(task, frames, mode, seed=8, steps=3, guidance=2.0)
        assert torch.equal(a.tensor, b.tensor), task
        assert not torch.equal(a.tensor, c.tensor), task
    assert torch.equal(pipe.generate_class(1, seed=5, progress=False).tensor,
                       pipe.generate_class(1, seed=5, progress=False).tensor)


def test_dynamic_regions_follow_the_seed_or_the_caller(pipe):
    """Without `region=` a dynamic mode's region is the first draw of torch.Generator().manual_seed(seed)
    (the convention the task evaluation relies on); with it, the caller's region is kept."""
    frames = clip()
    for task, abbreviation in (("outpaint", "OPD"), ("inpaint", "IPD")):
        for seed in (0, 3):
            given = get_task(abbreviation).condition_region((T, H, W), torch.Generator().manual_seed(seed))
            out = pipe.run_task(task, frames, "dynamic", seed=seed, steps=2, guidance=1.0)
            assert np.array_equal(out.frames[given.numpy()], frames[given.numpy()])
            assert not np.array_equal(out.frames[~given.numpy()], frames[~given.numpy()])
            # The region used is reported (the evaluation reads it), and the repr stays short.
            assert torch.equal(out.info["region"], given) and "<tensor (4, 16, 16) bool>" in repr(out)
    mine = torch.zeros(T, H, W, dtype=torch.bool)
    mine[:, :, :5] = True  # keep the left 5 columns
    video = pipe.outpaint(frames, mode="dynamic", region=mine, seed=0, progress=False)
    assert torch.equal(video.info["region"], mine)
    out = video.frames
    assert np.array_equal(out[:, :, :5], frames[:, :, :5]) and not np.array_equal(out[:, :, 5:], frames[:, :, 5:])
    with pytest.raises(VidgenError, match=r"region must be a \(T, H, W\) = \(4, 16, 16\) bool array"):
        pipe.inpaint(frames, region=mine[:2], progress=False)
    with pytest.raises(VidgenError, match="region must give some pixels and leave some to generate"):
        pipe.inpaint(frames, region=torch.ones(T, H, W, dtype=torch.bool), progress=False)


def test_short_and_long_clips(pipe, tmp_path):
    frames = clip()
    # predict takes a single image (a one-frame clip) ...
    image = tmp_path / "first.png"
    write_video(image, frames[:1])  # .png of one frame: a 1x1 contact sheet, i.e. the frame itself
    from_image = pipe.predict(image, seed=0, progress=False)
    assert np.array_equal(from_image.frames[0], frames[0]) and from_image.info["input_frames"] == 1
    # ... interpolate puts the first and last frames of a short clip at the ends ...
    two = np.stack([frames[0], frames[-1]])
    between = pipe.interpolate(two, seed=0, progress=False)
    assert np.array_equal(between.frames[0], frames[0]) and np.array_equal(between.frames[-1], frames[-1])
    assert "placed at frames 0 and 3" in between.info["frames_note"]
    # ... outpaint / inpaint need every frame unless pad=True repeats the last one.
    with pytest.raises(VidgenError, match="outpaint keeps part of every frame, so it needs 4 frames; the video "
                                          "has 2 .*pad=True"):
        pipe.outpaint(frames[:2], progress=False)
    padded = pipe.outpaint(frames[:2], pad=True, seed=0, progress=False)
    assert np.array_equal(padded.frames[3, 4:12, 4:12], frames[1, 4:12, 4:12])
    # A longer clip is cut to the model's first num_frames frames.
    longer = pipe.predict(clip(frames=9), seed=0, progress=False)
    assert longer.tensor.shape == (3, T, H, W) and longer.info["input_frames"] == T


def test_files_are_read_at_the_model_size(pipe, tmp_path):
    frames = clip(frames=6, size=(24, 40))
    path = write_video(tmp_path / "wide.mkv", frames, fps=8.0)  # lossless: the centre crop is predictable
    video = pipe.outpaint(path, mode="central", seed=0, progress=False)
    assert video.tensor.shape == (3, T, H, W)
    expected = read_video(path, fps=8.0, size=(H, W)).frames[:T]
    assert np.array_equal(video.frames[:, 4:12, 4:12], expected[:, 4:12, 4:12])
    later = pipe.predict(path, start=0.25, seed=0, progress=False)  # 2 frames at 8 fps skipped
    assert np.array_equal(later.frames[0], expected[2])


def test_bad_input_is_refused_with_clear_messages(pipe, tmp_path):
    frames = clip()
    with pytest.raises(VidgenError, match=r"the video is 20x16 \(height x width\) but this model takes 16x16"):
        pipe.predict(clip(size=(20, 16)), progress=False)
    with pytest.raises(VidgenError, match="must be uint8 \\(T, H, W, 3\\)"):
        pipe.predict(frames.astype(np.float32), progress=False)
    with pytest.raises(VidgenError, match=r"values must be in \[-1, 1\]"):
        pipe.predict(torch.rand(3, T, H, W) * 255, progress=False)
    with pytest.raises(VidgenError, match="a video tensor must be float \\(3, T, H, W\\)"):
        pipe.predict(torch.zeros(4, T, H, W), progress=False)
    with pytest.raises(VidgenError, match="video must be a file path"):
        pipe.predict([1, 2, 3], progress=False)
    with pytest.raises(VidgenError, match="start=1.0 applies to video files"):
        pipe.predict(frames, start=1.0, progress=False)
    with pytest.raises(VidgenError, match="interpolate .* needs at least 2 frames; the video has 1"):
        pipe.interpolate(frames[:1], progress=False)
    with pytest.raises(VidgenError, match="unknown mode 'diagonal' for outpaint: this model offers central, "
                                          "vertical, horizontal, dynamic"):
        pipe.outpaint(frames, mode="diagonal", progress=False)
    with pytest.raises(VidgenError, match="unknown mode 'vertical' for inpaint: this model offers central, dynamic"):
        pipe.run_task("inpaint", frames, "vertical", seed=0, steps=3, guidance=1.0)
    with pytest.raises(VidgenError, match="unknown task 'colorize': this model offers text-to-video, "):
        pipe.run_task("colorize", frames, None, seed=0, steps=3, guidance=1.0)
    with pytest.raises(VidgenError, match="text-to-video takes no video"):
        pipe.run_task("text-to-video", frames, None, seed=0, steps=3, guidance=1.0)
    with pytest.raises(VidgenError, match="needs a class"):
        pipe.run_task("predict", frames, "class + first frame", seed=0, steps=3, guidance=1.0)
    with pytest.raises(VidgenError, match="takes no class"):
        pipe.run_task("predict", frames, "first frame", seed=0, steps=3, guidance=1.0, class_label=1)
    with pytest.raises(VidgenError, match="unknown class 'red circle moving lft'.*did you mean 'red circle moving left'"):
        pipe.generate_class("red circle moving lft", progress=False)
    with pytest.raises(VidgenError, match="class id 4 is out of range: this model has classes 0..3"):
        pipe.predict(frames, class_label=4, progress=False)
    with pytest.raises(VidgenError, match="prompt is empty"):
        pipe("   ", progress=False)
    with pytest.raises(VidgenError, match="negative prompt has 2001 characters; at most"):
        pipe("a red circle", negative_prompt="x" * 2001, progress=False)
    with pytest.raises(VidgenError, match="negative_prompt must be a string or None, got int"):
        pipe("a red circle", negative_prompt=3, progress=False)
    with pytest.raises(VidgenError, match=r"num_frames=8 is not allowed: this model generates 4x16x16 clips"):
        pipe("a red circle", num_frames=8, progress=False)
    with pytest.raises(VidgenError, match=r"steps=0 must be an integer in 1..32"):
        pipe.predict(frames, num_inference_steps=0, progress=False)
    with pytest.raises(VidgenError, match=r"steps=33 must be an integer in 1..32"):
        pipe.generate_class(0, num_inference_steps=33, progress=False)
    with pytest.raises(VidgenError, match=r"guidance=-1.0 must be a number in \[0, 50\]"):
        pipe.outpaint(frames, guidance_scale=-1.0, progress=False)
    with pytest.raises(VidgenError, match="seed=-3 must be an integer"):
        pipe.inpaint(frames, seed=-3, progress=False)
    with pytest.raises(VideoReadError, match="no such file"):
        pipe.predict(tmp_path / "missing.mp4", progress=False)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(VideoReadError):
        pipe.predict(junk, progress=False)


def test_models_without_text_or_classes_offer_fewer_tasks(tmp_path):
    folder = make_magvit_folder(tmp_path / "plain", num_classes=0, text_dim=0)
    plain = MagvitPipeline.from_pretrained(folder, device="cpu")
    assert list(plain.tasks) == ["predict", "interpolate", "outpaint", "inpaint"]
    assert plain.tasks["predict"] == ["first frame"]
    with pytest.raises(VidgenError, match="does not do text-to-video"):
        plain("a red circle", progress=False)
    with pytest.raises(VidgenError, match="is not class-conditional"):
        plain.generate_class(0, progress=False)
    assert plain.predict(clip(), seed=0, progress=False).tensor.shape == (3, T, H, W)


def test_folder_checks_and_save_round_trip(pipe, folder, tmp_path):
    copy = pipe.save_pretrained(tmp_path / "copy")
    again = MagvitPipeline.from_pretrained(copy, device="cpu", text_encoder=StubTextEncoder())
    frames = clip()
    assert torch.equal(again.predict(frames, seed=3, progress=False).tensor,
                       pipe.predict(frames, seed=3, progress=False).tensor)
    settings = json.loads((copy / "pipeline.json").read_text())
    (copy / "pipeline.json").write_text(json.dumps({**settings, "num_frames": 8}))
    with pytest.raises(CheckpointError, match=r"a 8x16x16 clip gives a \(4, 4, 4\) token grid but the transformer "
                                              r"takes \(2, 4, 4\)"):
        MagvitPipeline.from_pretrained(copy, device="cpu")
    (copy / "pipeline.json").write_text(json.dumps({**settings, "class_names": ["a", "b"]}))
    with pytest.raises(CheckpointError, match="lists 2 class_names but the transformer has 4 classes"):
        MagvitPipeline.from_pretrained(copy, device="cpu")
    (copy / "pipeline.json").write_text(json.dumps({**settings, "_class_name": "CogVideoXPipeline"}))
    with pytest.raises(VidgenError, match="not a MagvitPipeline"):
        MagvitPipeline.from_pretrained(copy, device="cpu")


def test_float32_path(folder):
    """bf16 autocast is chosen per machine; the float32 path must work everywhere."""
    p32 = MagvitPipeline.from_pretrained(folder, device="cpu", bf16=False)
    assert not p32.bf16
    a, b = (p32.generate_class(0, seed=4, num_inference_steps=2, progress=False) for _ in range(2))
    assert a.tensor.shape == (3, T, H, W) and torch.equal(a.tensor, b.tensor)


def test_catalogue_lists_a_magvit_folder_with_its_one_shape(folder):
    entry = describe_model(folder)
    assert entry.system == "MAGVIT" and entry.pipeline_class == "MagvitPipeline"
    assert entry.tasks == list(TASK_MODES) and entry.task_modes["outpaint"] == list(TASK_MODES["outpaint"])
    assert entry.fixed_shape and (entry.num_frames, entry.height, entry.width) == (T, H, W)
    assert (entry.max_frames, entry.max_size) == (T, H) and entry.class_names == CLASS_NAMES
    assert entry.components == ["tokenizer", "transformer"] and entry.parameters > 0


def test_cli_info_states_the_one_allowed_shape(folder, capsys):
    from vidgen.cli.main import main as vidgen_main

    assert vidgen_main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^allowed +exactly {T}x{H}x{W} frames x height x width", out, re.MULTILINE)


def test_pixel_guidance_reaches_the_catalogue_info_and_web_defaults(folder, tmp_path, capsys):
    from vidgen.cli.main import main as vidgen_main

    plain = describe_model(folder)
    assert plain.pixel_guidance is None and webapp.default_guidance(plain, video_tasks=True) == 2.0
    tuned = make_magvit_folder(tmp_path / "tuned", pixel_guidance=1.0)
    entry = describe_model(tuned)
    assert (entry.default_guidance, entry.pixel_guidance) == (2.0, 1.0)
    assert webapp.default_guidance(entry) == 2.0 and webapp.default_guidance(entry, video_tasks=True) == 1.0
    assert vidgen_main(["info", str(tuned)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^defaults +3 steps, guidance 2.0 \(tasks given a video: 1.0\)$", out, re.MULTILINE)
    assert re.search(r"^sampling +temperature 1, top-p 1 \(class- and text-conditioned", out, re.MULTILINE)


def test_web_app_runs_the_pipeline(folder, pipe, tmp_path):
    cache = webapp.PipelineCache(loader=lambda source, device=None: pipe)
    app = webapp.WebApp(webapp.served_models([str(folder)]), Limits(max_frames=9, max_size=64, max_steps=10), cache,
                        output_dir=tmp_path / "out")
    key = str(folder)
    # Both tabs list it; the text tab offers only the model's one clip shape.
    assert [m.key for m in app.text_models()] == [key] and [m.key for m in app.task_models()] == [key]
    options = app.text_options(key)
    assert (options["frames"], options["sizes"], options["num_frames"], options["height"]) == ([T], [H], T, H)
    assert (options["steps"], options["guidance"]) == (3, 2.0)
    assert app.model(key).video_tasks == ["predict", "interpolate", "outpaint", "inpaint"]

    upload = write_video(tmp_path / "upload.mp4", clip(frames=3, size=(32, 48)), fps=8.0)  # short and wide
    seen = []
    mp4, files, status = app.run_video_task(key, str(upload), "outpaint", "vertical", 2, 3, 1.5,
                                            progress=lambda value, desc=None, unit=None: seen.append(value))
    assert read_video(mp4).frames.shape == (T, H, W, 3) and files[1].endswith(".gif")
    assert seen[1:] == [(1, 3), (2, 3), (3, 3)] and "outpaint (vertical)" in status
    mp4, _, status = app.run_video_task(key, str(upload), "predict", "class + first frame", 0, 2, 2.0,
                                        class_label="digit 3")
    assert "class digit 3" in status
    with pytest.raises(VidgenError, match="needs a class: choose one in the Class menu"):
        app.run_video_task(key, str(upload), "predict", "class + first frame", 0, 2, 2.0)
    with pytest.raises(VidgenError, match="unknown class 'purple'"):
        app.run_video_task(key, str(upload), "predict", "class + first frame", 0, 2, 2.0, class_label="purple")

    mp4, files, status = app.generate("a red circle moving left", "", key, 1, 3, 2.0, T, H, W)
    assert read_video(files[1]).frames.shape == (T, H, W, 3) and f"Generated {T} frames" in status
    with pytest.raises(VidgenError, match="num_frames=5 is not allowed"):
        app.generate("a red circle moving left", "", key, 1, 3, 2.0, 5, H, W)

    # Class to video: its own tab and handler; the class is required and checked by the pipeline.
    assert [m.key for m in app.class_models()] == [key]
    mp4, files, status = app.generate_class(key, "digit 3", 4, 2, 2.0)
    assert read_video(mp4).frames.shape == (T, H, W, 3) and "Class 'digit 3'" in status
    by_id = app.generate_class(key, CLASS_NAMES.index("digit 3"), 4, 2, 2.0)[0]  # the same class by id, same seed
    assert np.array_equal(read_video(mp4).frames, read_video(by_id).frames)
    with pytest.raises(VidgenError, match="choose a class in the Class menu"):
        app.generate_class(key, None, 0, 2, 2.0)
    with pytest.raises(VidgenError, match="unknown class 'purple'"):
        app.generate_class(key, "purple", 0, 2, 2.0)
    with pytest.raises(VidgenError, match="steps"):
        app.generate_class(key, "digit 3", 0, 99, 2.0)


def test_web_app_token_sampling_controls(tmp_path):
    """The page's temperature and top-p reach the MAGVIT pipeline (defaults from pipeline.json), are named
    in the status line, and bad values are refused with the allowed range."""
    folder = make_magvit_folder(tmp_path / "nucleus", top_p=0.7, temperature=0.9)
    pipe = load_pipeline(folder, device="cpu", text_encoder=StubTextEncoder())
    cache = webapp.PipelineCache(loader=lambda source, device=None: pipe)
    app = webapp.WebApp(webapp.served_models([str(folder)]), Limits(max_frames=9, max_size=64, max_steps=10), cache,
                        output_dir=tmp_path / "out")
    key = str(folder)
    options = app.text_options(key)
    assert (options["samples_tokens"], options["temperature"], options["top_p"]) == (True, 0.9, 0.7)
    plain = webapp.sampling_options(describe_model(make_magvit_folder(tmp_path / "plain")))
    assert (plain["temperature"], plain["top_p"]) == (1.0, 1.0)  # MagvitPipeline's own defaults

    mp4, _, status = app.generate_class(key, "digit 3", 4, 2, 2.0, top_p=0.5, temperature=1.0)
    assert "temperature 1, top-p 0.5" in status
    direct = pipe.generate_class("digit 3", seed=4, num_inference_steps=2, guidance_scale=2.0, top_p=0.5,
                                 temperature=1.0, progress=False)
    assert np.array_equal(read_video(mp4).frames, read_video(direct.save(tmp_path / "cg.mp4")).frames)
    default_mp4, _, status = app.generate_class(key, "digit 3", 4, 2, 2.0)
    assert "temperature 0.9, top-p 0.7" in status
    assert not np.array_equal(read_video(default_mp4).frames, read_video(mp4).frames)

    mp4, _, status = app.generate("a red circle moving left", "", key, 1, 2, 2.0, T, H, W, top_p=0.5,
                                  temperature=0.0)
    assert "temperature 0, top-p 0.5" in status
    direct = pipe("a red circle moving left", seed=1, num_inference_steps=2, guidance_scale=2.0, top_p=0.5,
                  temperature=0.0, progress=False)
    assert np.array_equal(read_video(mp4).frames, read_video(direct.save(tmp_path / "t2v.mp4")).frames)
    with pytest.raises(VidgenError, match=r"top_p.*0.*\(0, 1\]"):
        app.generate("a red circle moving left", "", key, 1, 2, 2.0, T, H, W, top_p=0.0)
    with pytest.raises(VidgenError, match="temperature='hot' is not a number"):
        app.generate_class(key, "digit 3", 4, 2, 2.0, temperature="hot")

    demo = webapp.build_app([str(folder)], Limits(max_frames=9, max_size=64))
    props = {c["props"].get("elem_id"): c["props"] for c in demo.get_config_file()["components"]}
    for prefix in ("t2v", "class"):
        assert props[f"{prefix}-top-p"]["value"] == 0.7 and props[f"{prefix}-top-p"]["interactive"] is True
        assert props[f"{prefix}-temperature"]["value"] == 0.9


def test_web_page_shows_the_class_menu_for_magvit(folder):
    demo = webapp.build_app([str(folder)], Limits(max_frames=9, max_size=64))
    props = {c["props"].get("elem_id"): c["props"] for c in demo.get_config_file()["components"]}
    assert [c[1] for c in props["task-task"]["choices"]] == ["predict", "interpolate", "outpaint", "inpaint"]
    assert [c[1] for c in props["task-class"]["choices"]] == CLASS_NAMES and props["task-class"]["visible"] is False
    assert [c[1] for c in props["t2v-frames"]["choices"]] == [T] and [c[1] for c in props["t2v-height"]["choices"]] == [H]
    assert [c[1] for c in props["class-class"]["choices"]] == CLASS_NAMES and "class-generate" in props


@pytest.mark.slow
def test_text_to_video_with_minilm(tmp_path):
    """The default text encoder (MiniLM, 384-d) as pipeline.json names it."""
    folder = make_magvit_folder(tmp_path / "minilm", text_dim=384)
    pipe = load_pipeline(folder, device="cpu")
    a = pipe("a red circle moving left", seed=0, progress=False)
    assert a.tensor.shape == (3, T, H, W)
    assert torch.equal(a.tensor, pipe("a red circle moving left", seed=0, progress=False).tensor)
