"""CogVideoX text-to-video pipeline: reproducible seeds, checks, save/load, CLI (tiny random models)."""

import subprocess
import sys

import pytest
import torch

from vidgen.diffusion.schedules import NoiseSchedule
from vidgen.errors import VidgenError
from vidgen.generators.expert_transformer import cogvideox_transformer_tiny
from vidgen.pipelines import GeneratedVideo, load_pipeline
from vidgen.pipelines.text_to_video import CogVideoXPipeline
from vidgen.tokenizers.cogvideox_vae import cogvideox_vae_tiny


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    vae = cogvideox_vae_tiny()
    transformer = cogvideox_transformer_tiny(in_channels=vae.config.latent_channels, text_dim=384)
    for p in transformer.parameters():  # zero-initialised output layers would make every video the same
        p.data.add_(0.02 * torch.randn_like(p))
    settings = {"default_steps": 4, "default_guidance": 3.0, "num_frames": 5, "height": 32, "width": 32, "fps": 8}
    return CogVideoXPipeline(vae, transformer, "minilm", NoiseSchedule.cogvideox(), 0.7, settings, device="cpu")


def test_generates_video_with_requested_shape_and_reproducible_seed(pipe):
    video = pipe("a red circle moving left", seed=1, num_frames=5, height=32, width=32, progress=False)
    assert isinstance(video, GeneratedVideo)
    assert video.tensor.shape == (3, 5, 32, 32)
    assert video.frames.shape == (5, 32, 32, 3) and video.frames.dtype.name == "uint8"
    assert video.tensor.min() >= -1 and video.tensor.max() <= 1
    again = pipe("a red circle moving left", seed=1, num_frames=5, height=32, width=32, progress=False)
    assert torch.equal(video.tensor, again.tensor)
    other_seed = pipe("a red circle moving left", seed=2, num_frames=5, height=32, width=32, progress=False)
    assert not torch.equal(video.tensor, other_seed.tensor)
    other_prompt = pipe("a blue square moving up", seed=1, num_frames=5, height=32, width=32, progress=False)
    assert not torch.equal(video.tensor, other_prompt.tensor)
    negative = pipe("a red circle moving left", seed=1, num_frames=5, height=32, width=32, progress=False,
                    negative_prompt="a green triangle")
    assert not torch.equal(video.tensor, negative.tensor)
    assert video.info["seed"] == 1 and video.info["steps"] == 4


def test_callback_sees_every_step_and_samplers_differ(pipe):
    steps = []
    ddim = pipe("a red circle", seed=0, num_frames=1, height=32, width=32, num_inference_steps=5, sampler="ddim",
                progress=False, callback=lambda s: steps.append(s["i"]))
    assert steps == [0, 1, 2, 3, 4]
    # DPM-Solver++(2M) is first order (= DDIM) on its first two steps from zero SNR and its last: 5 steps differ
    dpm = pipe("a red circle", seed=0, num_frames=1, height=32, width=32, num_inference_steps=5, progress=False)
    assert ddim.tensor.shape == (3, 1, 32, 32) and not torch.equal(ddim.tensor, dpm.tensor)
    # The SDE variant adds fresh noise on each step: another video, reproduced by the seed.
    sde = pipe("a red circle", seed=0, num_frames=1, height=32, width=32, num_inference_steps=5,
               sampler="dpm++-sde", progress=False)
    again = pipe("a red circle", seed=0, num_frames=1, height=32, width=32, num_inference_steps=5,
                 sampler="dpm++-sde", progress=False)
    assert torch.equal(sde.tensor, again.tensor) and not torch.equal(sde.tensor, dpm.tensor)
    assert sde.info["sampler"] == "dpm++-sde"


@pytest.mark.parametrize("kwargs, message", [
    ({"num_frames": 6}, "num_frames=6 is not allowed: this model takes 4k\\+1 frames"),
    ({"num_frames": 0}, "num_frames=0"),
    ({"height": 40}, "height=40 is not allowed: use a multiple of 16"),
    ({"width": 8}, "width=8 is not allowed"),
    ({"num_inference_steps": 0}, "num_inference_steps=0"),
    ({"guidance_scale": -1.0}, "guidance_scale=-1.0"),
    ({"sampler": "euler"}, "sampler='euler' is not one of dpm\\+\\+, dpm\\+\\+-sde, ddim"),
    ({"seed": -3}, "seed=-3"),
])
def test_bad_requests_get_clear_errors(pipe, kwargs, message):
    with pytest.raises(VidgenError, match=message):
        pipe("a red circle", progress=False, **kwargs)


def test_bad_prompts(pipe):
    with pytest.raises(VidgenError, match="prompt is empty"):
        pipe("   ", progress=False)
    with pytest.raises(VidgenError, match="at most 2000"):
        pipe("a" * 5000, progress=False)
    with pytest.raises(VidgenError, match="prompt must be a string"):
        pipe(42, progress=False)


def test_save_load_round_trip_and_cli(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "pipe")
    loaded = load_pipeline(folder, device="cpu")
    a = pipe("a red circle", seed=0, num_frames=5, height=32, width=32, progress=False)
    b = loaded("a red circle", seed=0, num_frames=5, height=32, width=32, progress=False)
    torch.testing.assert_close(a.tensor, b.tensor, atol=1e-5, rtol=0)
    out = tmp_path / "out.gif"
    result = subprocess.run([sys.executable, "-m", "vidgen.cli.main", "generate", "a red circle", "-o", str(out),
                             "-o", str(tmp_path / "sub" / "out.mp4"), "--model", str(folder), "--steps", "2",
                             "--no-progress"], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 100 and (tmp_path / "sub" / "out.mp4").stat().st_size > 100
    assert result.stdout.count("wrote") == 2
    bad = subprocess.run([sys.executable, "-m", "vidgen.cli.main", "generate", "a red circle", "-o",
                          str(tmp_path / "x.mp4"), "--model", str(folder), "--frames", "8"],
                         check=False, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "num_frames=8 is not allowed" in bad.stderr and "Traceback" not in bad.stderr
    for flag in ("--temperature", "--top-p"):  # token-sampling options are refused for a diffusion model
        refused = subprocess.run([sys.executable, "-m", "vidgen.cli.main", "generate", "a red circle", "-o",
                                  str(tmp_path / "x.mp4"), "--model", str(folder), flag, "0.5"],
                                 check=False, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2 and f"{flag} applies to token models" in refused.stderr, refused.stderr
    missing = subprocess.run([sys.executable, "-m", "vidgen.cli.main", "generate", "x", "-o", "x.mp4", "--model",
                              str(tmp_path / "nope")], check=False, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "neither a local folder nor a bundled model" in missing.stderr


def test_pipeline_decodes_through_its_latent_normalisation_and_keeps_it_on_save(pipe, tmp_path):
    from vidgen.diffusion.latent_norm import LatentNormalizer
    from vidgen.modeling import read_json

    channels = pipe.vae.config.latent_channels
    g = torch.Generator().manual_seed(3)
    sample = torch.randn(8, channels, 2, 4, 4, generator=g) * torch.linspace(0.1, 2, channels).view(1, -1, 1, 1, 1)
    norm = LatentNormalizer.fit(sample + 1.5, None, "whiten")
    whitened = CogVideoXPipeline(pipe.vae, pipe.transformer, "minilm", pipe.schedule, 0.7, pipe.settings,
                                 device="cpu", bf16=False, latent_norm=norm)
    final = {}
    video = whitened("a red circle", seed=0, num_frames=5, height=32, width=32, progress=False,
                     callback=lambda state: final.update(x=state["x"]))
    with torch.no_grad():
        expected = pipe.vae.decode(norm.denormalize(final["x"])).float().clamp(-1, 1)[0]
        scaled = pipe.vae.decode(final["x"] / 0.7).float().clamp(-1, 1)[0]
    torch.testing.assert_close(video.tensor, expected)
    assert (video.tensor - scaled).abs().max() > 1e-3  # the map matters: not the plain scaling factor

    folder = whitened.save_pretrained(tmp_path / "whitened")
    assert read_json(folder / "pipeline.json")["latent_normalization"]["mode"] == "whiten"
    loaded = load_pipeline(folder, device="cpu", bf16=False)  # as `whitened`: on AVX512-bf16 CPUs autocast is on by default
    assert torch.equal(loaded.latent_norm.inverse, norm.inverse)
    torch.testing.assert_close(loaded("a red circle", seed=0, num_frames=5, height=32, width=32,
                                      progress=False).tensor, video.tensor, atol=1e-5, rtol=0)
    # A scale-only pipeline writes no map (its pipeline.json stays as before).
    plain = pipe.save_pretrained(tmp_path / "plain")
    assert "latent_normalization" not in read_json(plain / "pipeline.json")


def test_autoguidance_weak_transformer_round_trip_defaults_and_errors(pipe, tmp_path):
    from vidgen.modeling import read_json

    torch.manual_seed(5)
    weak = cogvideox_transformer_tiny(in_channels=pipe.vae.config.latent_channels, text_dim=384)
    for p in weak.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    settings = {**pipe.settings, "default_autoguidance": 2.0}
    guided = CogVideoXPipeline(pipe.vae, pipe.transformer, "minilm", pipe.schedule, 0.7, settings, device="cpu",
                               bf16=False, autoguidance_transformer=weak)
    request = {"seed": 0, "num_frames": 5, "height": 32, "width": 32, "progress": False}
    plain = guided("a red circle", autoguidance_scale=0, **request)
    default = guided("a red circle", **request)
    assert default.info["autoguidance_scale"] == 2.0 and plain.info["autoguidance_scale"] == 0
    assert (default.tensor - plain.tensor).abs().max() > 1e-3  # the weak model steers the sample
    # a = 0 is exactly the pipeline without a weak model
    torch.testing.assert_close(plain.tensor, CogVideoXPipeline(
        pipe.vae, pipe.transformer, "minilm", pipe.schedule, 0.7, pipe.settings, device="cpu", bf16=False,
    )("a red circle", **request).tensor)

    folder = guided.save_pretrained(tmp_path / "guided")
    assert (folder / "autoguidance_transformer" / "model.safetensors").is_file()
    assert read_json(folder / "pipeline.json")["default_autoguidance"] == 2.0
    loaded = load_pipeline(folder, device="cpu", bf16=False)
    torch.testing.assert_close(loaded("a red circle", **request).tensor, default.tensor, atol=1e-5, rtol=0)

    with pytest.raises(VidgenError, match="autoguidance_scale=-1"):
        guided("a red circle", autoguidance_scale=-1, **request)
    with pytest.raises(VidgenError, match="has no weak transformer"):
        pipe("a red circle", autoguidance_scale=1.0, **request)
    assert pipe.default_autoguidance == 0.0
    # pipeline.json asks for autoguidance but the weak model is gone
    import shutil
    shutil.rmtree(folder / "autoguidance_transformer")
    with pytest.raises(VidgenError, match="autoguidance_transformer is missing"):
        load_pipeline(folder, device="cpu")
    wrong = cogvideox_transformer_tiny(in_channels=pipe.vae.config.latent_channels + 1, text_dim=384)
    with pytest.raises(VidgenError, match="in_channels"):
        CogVideoXPipeline(pipe.vae, pipe.transformer, "minilm", pipe.schedule, 0.7, settings, device="cpu",
                          autoguidance_transformer=wrong)


def test_generate_cli_autoguidance_flag(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "noweak")
    result = subprocess.run([sys.executable, "-m", "vidgen.cli.main", "generate", "a red circle", "-o",
                             str(tmp_path / "x.gif"), "--model", str(folder), "--steps", "2", "--autoguidance", "2",
                             "--no-progress"], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "has no weak transformer" in result.stderr and "Traceback" not in result.stderr
