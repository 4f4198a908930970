"""`vidgen predict | interpolate | outpaint | inpaint` and `vidgen generate --class` on a tiny random
MAGVIT pipeline folder (see test_pipeline_magvit.py), run in-process through `vidgen.cli.main`."""

import numpy as np
import pytest

from test_pipeline_magvit import CLASS_NAMES, H, T, W, clip, make_magvit_folder
from vidgen.cli.main import build_parser, main
from vidgen.io import read_video, write_video
from vidgen.modeling import write_json


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    # No text conditioning: nothing here needs a text encoder.
    return make_magvit_folder(tmp_path_factory.mktemp("cli") / "tiny-magvit", text_dim=0)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("clips") / "clip.mkv", clip(frames=6), fps=8.0)  # lossless


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command, extra", [
    ("predict", []),
    ("predict", ["--class", "digit 3"]),
    ("interpolate", []),
    ("outpaint", ["--mode", "vertical"]),
    ("inpaint", ["--mode", "dynamic"]),
])
def test_task_commands_write_mp4_and_gif(folder, video, tmp_path, capsys, command, extra):
    mp4, gif = tmp_path / "out.mp4", tmp_path / "sub" / "out.gif"
    code, out, err = run([command, video, "--model", folder, "-o", mp4, "-o", gif, "--steps", 2, "--seed", 3,
                          "--guidance", 1.5, "--no-progress", *extra], capsys)
    assert code == 0, err
    for path in (mp4, gif):
        assert read_video(path).frames.shape == (T, H, W, 3)
    assert f"wrote {mp4} ({T} frames, {H}x{W}, {command} (" in out and "seed 3, 2 steps, guidance 1.5" in out
    assert "temperature 1," in out  # the tiny folder's model-wide default
    if extra[:1] == ["--class"]:
        assert "class 'digit 3'" in out


def test_predict_keeps_the_first_frame_and_seeds_reproduce(folder, video, tmp_path, capsys):
    outputs = []
    for seed, name in ((5, "a.mkv"), (5, "b.mkv"), (6, "c.mkv")):
        code, _, err = run(["predict", video, "--model", folder, "-o", tmp_path / name, "--seed", seed,
                            "--no-progress"], capsys)
        assert code == 0, err
        outputs.append(read_video(tmp_path / name).frames)
    assert np.array_equal(outputs[0][0], read_video(video).frames[0])  # lossless in and out: exact
    assert np.array_equal(outputs[0], outputs[1]) and not np.array_equal(outputs[0], outputs[2])


def test_temperature_option_reaches_the_decoder(folder, video, tmp_path, capsys):
    """--temperature 0 (the most likely token) decodes another clip than the default sampling (same seed),
    and the output line reports the temperature used."""
    outputs = {}
    for name, extra, said in (("sampled", [], "temperature 1, top-p 1,"),
                              ("argmax", ["--temperature", 0], "temperature 0, top-p 1,"),
                              ("nucleus", ["--top-p", 0.2], "temperature 1, top-p 0.2,")):
        code, out, err = run(["outpaint", video, "--model", folder, "-o", tmp_path / f"{name}.mkv", "--seed", 4,
                              "--no-progress", *extra], capsys)
        assert code == 0, err
        assert said in out, out
        outputs[name] = read_video(tmp_path / f"{name}.mkv").frames
    assert not np.array_equal(outputs["sampled"], outputs["argmax"])
    assert not np.array_equal(outputs["sampled"], outputs["nucleus"])


def test_generate_class_with_magvit_and_refused_for_text_models(folder, tmp_path, capsys):
    out_path = tmp_path / "class.gif"
    code, out, err = run(["generate", "--class", CLASS_NAMES[0], "--model", folder, "-o", out_path, "--steps", 2,
                          "--no-progress"], capsys)
    assert code == 0, err
    assert read_video(out_path).frames.shape == (T, H, W, 3) and f"class {CLASS_NAMES[0]!r}" in out
    code, _, err = run(["generate", "--class", "1", "--model", folder, "-o", tmp_path / "id.mp4", "--no-progress"],
                       capsys)
    assert code == 0, err
    code, _, err = run(["generate", "--class", "1", "--model", folder, "-o", tmp_path / "id.mkv", "--no-progress",
                        "--top-p", "0.2"], capsys)
    assert code == 0, err
    code, _, err = run(["generate", "--class", "1", "--model", folder, "-o", tmp_path / "same.mkv",
                        "--no-progress"], capsys)
    assert code == 0, err
    assert not np.array_equal(read_video(tmp_path / "id.mkv").frames, read_video(tmp_path / "same.mkv").frames)
    code, out, err = run(["generate", "--class", "1", "--model", folder, "-o", tmp_path / "argmax.mkv",
                          "--no-progress", "--temperature", "0"], capsys)
    assert code == 0, err
    assert not np.array_equal(read_video(tmp_path / "argmax.mkv").frames, read_video(tmp_path / "same.mkv").frames)

    cog = tmp_path / "cog"
    cog.mkdir()
    write_json(cog / "pipeline.json", {"_class_name": "CogVideoXPipeline", "system": "CogVideoX"})
    code, _, err = run(["generate", "--class", "red circle", "--model", cog, "-o", tmp_path / "x.mp4"], capsys)
    assert code == 2 and "--class needs a class-conditional model such as magvit-shapes" in err
    assert "CogVideoXPipeline" in err and "text-to-video" in err
    code, _, err = run(["predict", tmp_path / "class.gif", "--model", cog, "-o", tmp_path / "x.mp4"], capsys)
    assert code == 2 and "does not predict; its tasks: text-to-video" in err


def test_cli_errors_are_one_clear_line(folder, video, tmp_path, capsys):
    base = ["--model", folder, "-o", tmp_path / "x.mp4", "--no-progress"]
    cases = [
        (["predict", tmp_path / "missing.mp4", *base], "no such file or folder"),
        (["outpaint", video, "--steps", 0, *base], "steps=0 must be an integer in 1..32"),
        (["inpaint", video, "--guidance", -1, *base], "guidance=-1.0 must be a number in [0, 50]"),
        (["interpolate", video, "--temperature", -1, *base], "temperature=-1.0 must be a number in [0, 10]"),
        (["predict", video, "--top-p", 0, *base], "top_p=0.0 must be a number in (0, 1]"),
        (["generate", "--class", "0", "--top-p", "1.5", *base], "top_p=1.5 must be a number in (0, 1]"),
        (["generate", "--class", "0", "--temperature", "-2", *base], "temperature=-2.0 must be a number in [0, 10]"),
        (["predict", video, "--class", "purple hexagon", *base], "unknown class 'purple hexagon'"),
        (["outpaint", video, "-o", tmp_path / "x.avi", "--model", folder], "output 'x.avi': use one of"),
        (["generate", "--class", "0", "a prompt", *base], "give a PROMPT or --class, not both"),
        (["generate", "--class", "0", "--frames", "9", *base], "--frames do not apply to --class"),
        (["generate", *base], "give a PROMPT (or --class"),
        (["generate", "a red circle", *base], "does not do text-to-video"),
        (["generate", "a red circle", "--sampler", "ddim", *base], "decodes tokens and has no sampler to choose"),
        (["generate", "a red circle", "--autoguidance", "1", *base], "--autoguidance applies to diffusion models"),
        (["generate", "--class", "0", "--autoguidance", "1", *base], "--autoguidance do not apply to --class"),
    ]
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
    code, _, err = run(["eval", "--model", folder, "--sets", "heldout", "--sampler", "ddim"], capsys)
    assert code == 2 and "--sampler applies to diffusion models" in err and "decodes tokens" in err
    short = write_video(tmp_path / "short.mkv", clip(frames=2), fps=8.0)
    code, _, err = run(["outpaint", short, *base], capsys)
    assert code == 2 and "needs 4 frames; the video has 2" in err and "--pad" in err
    code, out, err = run(["outpaint", short, "--pad", *base], capsys)
    assert code == 0 and "note: last frame repeated 2 times" in out
    with pytest.raises(SystemExit):  # argparse: unknown mode, with the allowed ones in its message
        main(["inpaint", str(video), "--mode", "vertical", "-o", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err
    assert "invalid choice: 'vertical'" in err and "central" in err and "dynamic" in err


def test_help_has_examples():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("predict", "interpolate", "outpaint", "inpaint", "generate"):
        text = sub.choices[name].format_help()
        assert "examples:" in text and f"vidgen {name} " in text
    assert "--class" in sub.choices["generate"].format_help() and "--mode" in sub.choices["outpaint"].format_help()
