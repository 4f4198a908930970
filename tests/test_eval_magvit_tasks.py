"""MAGVIT task evaluation: regions, baselines, region metrics, and the loop against fake pipelines."""

import math

import numpy as np
import pytest
import torch

from vidgen.data.shapes import class_id, render_objects, sample_objects
from vidgen.errors import VidgenError
from vidgen.evaluation import magvit_tasks as mt
from vidgen.evaluation.metrics import _gaussian_kernel
from vidgen.evaluation.shapes_eval import HUES
from vidgen.io import frames_to_tensor, tensor_to_frames
from vidgen.pipelines.output import GeneratedVideo


def shapes_frames(triple=("red", "square", "right"), size=32, num_frames=8, seed=0) -> np.ndarray:
    objects = sample_objects([triple], size, num_frames, np.random.default_rng(seed))
    frames, _, _ = render_objects(objects, size, num_frames)
    return (frames.transpose(1, 2, 3, 0) * 255).round().astype(np.uint8)


def shapes_clip(triple=("red", "square", "right"), seed=0, size=32, num_frames=8) -> mt.EvalClip:
    frames = shapes_frames(triple, size, num_frames, seed)
    objects = [dict(zip(("colour", "shape", "motion"), triple))]
    return mt.EvalClip(frames, frames_to_tensor(frames), "shapes", seed, class_id(*triple), "", objects)


def noise_clip(seed=0, size=32, num_frames=8) -> mt.EvalClip:
    frames = np.random.default_rng(seed).integers(0, 256, (num_frames, size, size, 3), dtype=np.uint8)
    return mt.EvalClip(frames, frames_to_tensor(frames), "digits", seed, 72, "", [])


class FakePipeline:
    """Keeps the given pixels of the region it is handed; fills the rest with the truth ("oracle") or
    mid-grey ("grey"). `takes_region=False`: draws dynamic regions itself from `seed + region_offset`
    (0 = MagvitPipeline's convention) and reports them in info["region"] only if `reports_region`."""

    def __init__(self, fill="oracle", takes_region=True, reports_region=True, region_offset=1000):
        self.fill, self.takes_region, self.reports_region = fill, takes_region, reports_region
        self.region_offset = region_offset
        self.calls = []

    def _run(self, task, video, seed, region):
        truth = frames_to_tensor(video)
        if region is None:
            dynamic = mt.get_task(task).dynamic
            generator = torch.Generator().manual_seed(self.region_offset + seed) if dynamic else None
            region = mt.get_task(task).condition_region(tuple(truth.shape[1:]), generator)
        out = truth if self.fill == "oracle" else torch.where(region[None], truth, torch.zeros_like(truth))
        self.calls.append((task, seed))
        return GeneratedVideo(out, info={"region": region} if self.reports_region else {})

    def predict(self, video, seed=0, num_inference_steps=None, guidance_scale=None, class_label=None, **kw):
        self.last_class = class_label
        return self._run("CFP" if class_label is not None else "FP", video, seed, kw.get("region"))

    def interpolate(self, video, seed=0, num_inference_steps=None, guidance_scale=None, **kw):
        return self._run("FI", video, seed, kw.get("region"))

    def outpaint(self, video, mode="central", seed=0, num_inference_steps=None, guidance_scale=None, **kw):
        task = {"central": "OPC", "vertical": "OPV", "horizontal": "OPH", "dynamic": "OPD"}[mode]
        return self._run(task, video, seed, kw.get("region"))

    def inpaint(self, video, mode="central", seed=0, num_inference_steps=None, guidance_scale=None, **kw):
        return self._run({"central": "IPC", "dynamic": "IPD"}[mode], video, seed, kw.get("region"))

    def __getattribute__(self, name):
        method = object.__getattribute__(self, name)
        if name in ("predict", "interpolate", "outpaint", "inpaint") and not object.__getattribute__(self, "takes_region"):
            def without_region(video, seed=0, num_inference_steps=None, guidance_scale=None, mode=None,
                               class_label=None):
                kwargs = {"mode": mode} if mode is not None else {}
                if class_label is not None:
                    kwargs["class_label"] = class_label
                return method(video, seed=seed, **kwargs)
            return without_region
        return method


# ----------------------------------------------------------------------------- regions and baselines


def test_dynamic_regions_are_reproducible_and_differ_between_clips():
    grid = (8, 32, 32)
    a, b = mt.task_region("OPD", grid, 3, 7), mt.task_region("OPD", grid, 3, 7)
    assert torch.equal(a, b)
    drawn = {mt.task_region("IPD", grid, i, 7).numpy().tobytes() for i in range(8)}
    assert len(drawn) > 1  # the motion is drawn per clip
    assert torch.equal(mt.task_region("OPC", grid, 0), mt.task_region("OPC", grid, 5, 9))  # static


def test_baselines_copy_blend_and_replicate():
    video = torch.rand(3, 5, 16, 16) * 2 - 1
    fp = mt.baseline_fill("FP", video, mt.task_region("FP", (5, 16, 16)))
    assert torch.equal(fp[:, 0], video[:, 0]) and all(torch.equal(fp[:, t], video[:, 0]) for t in range(5))
    fi = mt.baseline_fill("FI", video, mt.task_region("FI", (5, 16, 16)))
    assert torch.equal(fi[:, 4], video[:, 4])
    assert torch.allclose(fi[:, 2], 0.5 * (video[:, 0] + video[:, 4]), atol=1e-6)
    assert torch.allclose(fi[:, 1], 0.75 * video[:, 0] + 0.25 * video[:, 4], atol=1e-6)
    opc = mt.baseline_fill("OPC", video, mt.task_region("OPC", (5, 16, 16)))  # centre [4, 12)
    assert torch.equal(opc[:, :, 0, 0], video[:, :, 4, 4]) and torch.equal(opc[:, :, 15, 8], video[:, :, 11, 8])
    assert torch.equal(opc[:, :, 4:12, 4:12], video[:, :, 4:12, 4:12])
    ipc = mt.baseline_fill("IPC", video, mt.task_region("IPC", (5, 16, 16)))  # hole [4, 12): nearest row
    assert torch.equal(ipc[:, :, 5, 6], video[:, :, 3, 6]) and torch.equal(ipc[:, :, 10, 6], video[:, :, 12, 6])
    region = mt.task_region("OPD", (5, 16, 16), 0, 0)
    opd = mt.baseline_fill("OPD", video, region)
    assert torch.equal(opd[:, region], video[:, region])
    # Spatial baselines never copy across time: a frame depends on its own given pixels only.
    changed = video.clone()
    changed[:, 1:] = 0.3
    assert torch.equal(mt.baseline_fill("OPD", changed, region)[:, 0], opd[:, 0])
    with pytest.raises(VidgenError, match="no pixel baseline"):
        mt.baseline_fill("CG", video, region)


# ----------------------------------------------------------------------------- region metrics


def naive_region_ssim(x: torch.Tensor, y: torch.Tensor, generated: torch.Tensor, size=11) -> float:
    """SSIM window by window, averaged over windows touching `generated` (composite as in the module)."""
    x = torch.where(generated[None], x, y).double() + 1
    y = y.double() + 1
    g = _gaussian_kernel(size, 1.5, "cpu")
    g = g[:, None] * g[None, :]  # the 2D window
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    values = []
    _, t, h, w = x.shape
    for f in range(t):
        for i in range(h - size + 1):
            for j in range(w - size + 1):
                if not generated[f, i:i + size, j:j + size].any():
                    continue
                per_channel = []
                for c in range(3):
                    a, b = x[c, f, i:i + size, j:j + size], y[c, f, i:i + size, j:j + size]
                    ma, mb = (g * a).sum(), (g * b).sum()
                    va, vb = (g * a * a).sum() - ma**2, (g * b * b).sum() - mb**2
                    cov = (g * a * b).sum() - ma * mb
                    per_channel.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
                values.append(float(np.mean(per_channel)))
    return float(np.mean(values))


def test_region_ssim_matches_a_window_by_window_computation():
    torch.manual_seed(0)
    truth = torch.rand(3, 2, 16, 16) * 2 - 1
    output = (truth + 0.3 * torch.randn_like(truth)).clamp(-1, 1)
    generated = torch.zeros(2, 16, 16, dtype=torch.bool)
    generated[0, :3] = True  # a border band in frame 0 ...
    generated[1, 10:, 12:] = True  # ... and a corner in frame 1
    expected = naive_region_ssim(output, truth, generated)
    assert mt.region_ssim(output, truth, generated) == pytest.approx(expected, abs=1e-9)
    # Pixels outside the generated region are ignored (the truth is pasted back there).
    tampered = output.clone()
    tampered[:, 0, 8:] = -1
    assert mt.region_ssim(tampered, truth, generated) == pytest.approx(expected, abs=1e-9)
    assert mt.region_ssim(truth, truth, generated) == pytest.approx(1.0, abs=1e-12)


def test_region_psnr_uses_only_generated_pixels():
    truth = torch.zeros(3, 2, 16, 16)
    output = truth.clone()
    generated = torch.zeros(2, 16, 16, dtype=torch.bool)
    generated[1] = True
    output[:, 1] = 0.2  # error 0.2 everywhere in the generated frame: PSNR = 10 log10(4 / 0.04) = 20 dB
    output[:, 0] = 1.0  # a large error in the given frame must not count
    assert mt.region_psnr(output, truth, generated) == pytest.approx(20.0, abs=1e-5)
    with pytest.raises(VidgenError, match="generated region is empty"):
        mt.region_psnr(output, truth, torch.zeros_like(generated))


def test_trajectory_error_is_zero_for_the_truth_and_grows_for_a_frozen_clip():
    frames = shapes_frames(("red", "square", "right"), size=32, num_frames=8)
    later = np.arange(1, 8)
    assert mt.trajectory_error(frames, frames, "red", later) == 0.0
    frozen = np.repeat(frames[:1], 8, axis=0)
    assert mt.trajectory_error(frozen, frames, "red", later) > 2.0
    assert mt.trajectory_error(np.zeros_like(frames), frames, "red", later) == math.inf  # object lost
    assert math.isnan(mt.trajectory_error(frames, frames, "blue", later))  # nothing to compare


# ----------------------------------------------------------------------------- the loop with fake pipelines


def test_oracle_beats_every_baseline_and_grey_does_not():
    clips = [shapes_clip(seed=1), noise_clip(seed=2)]
    oracle = mt.evaluate_tasks(FakePipeline("oracle"), clips, log=None)
    assert list(oracle) == list(mt.DEFAULT_TASKS)
    for abbreviation, report in oracle.items():
        assert report["n"] == 2 and report["model"]["psnr"] == 100.0
        assert report["model"]["ssim"] == pytest.approx(1.0)
        assert all(report["beats_baseline"].values()), abbreviation
    fp = oracle["FP"]["trajectory"]
    assert fp["n"] == 1 and fp["model"] == 0.0 and fp["baseline"] > 1.0 and fp["model_lost"] == 0
    grey = mt.evaluate_tasks(FakePipeline("grey"), clips, tasks=["OPC", "FP"], log=None)
    assert not grey["OPC"]["beats_baseline"]["psnr"]
    assert grey["FP"]["trajectory"]["model_lost"] == 1 and not grey["FP"]["beats_baseline"]["trajectory"]
    table = mt.markdown_table(oracle)
    assert table.count("\n") == 2 + len(mt.DEFAULT_TASKS) - 1 and "| FP | copy the last given frame |" in table


def test_generation_seeds_and_regions_are_passed_through():
    pipe = FakePipeline("grey")
    clips = [noise_clip(seed=s) for s in range(3)]
    report = mt.evaluate_pixel_task(pipe, "IPD", clips, seed=10, region_seed=5)
    assert [s for _, s in pipe.calls] == [10, 11, 12]
    for row, position in zip(report["rows"], range(3)):
        expected = mt.task_region("IPD", (8, 32, 32), position, 5)
        assert row["given_fraction"] == pytest.approx(float(expected.float().mean()))


def test_dynamic_tasks_need_the_region_passed_or_reported():
    clips = [noise_clip(seed=0)]
    # The pipeline draws its own region but reports it: scored on the pipeline's region.
    reported = mt.evaluate_tasks(FakePipeline("grey", takes_region=False), clips, tasks=["OPD"], log=None)
    pipe_region = mt.get_task("OPD").condition_region((8, 32, 32), torch.Generator().manual_seed(1000))
    assert reported["OPD"]["rows"][0]["given_fraction"] == pytest.approx(float(pipe_region.float().mean()))
    assert reported["OPD"]["model"]["psnr"] < 100
    # Neither, but MagvitPipeline's convention (region drawn first from the generation seed): the region
    # is recomputed and checked against the pasted-back input.
    convention = FakePipeline("grey", takes_region=False, reports_region=False, region_offset=0)
    scored = mt.evaluate_tasks(convention, clips, tasks=["IPD"], seed=4, log=None)
    expected = mt.seed_convention_region("IPD", (8, 32, 32), 4)
    assert scored["IPD"]["rows"][0]["given_fraction"] == pytest.approx(float(expected.float().mean()))
    assert scored["IPD"]["model"]["psnr"] < 100
    # Another convention: static tasks are still scored, dynamic ones are reported as not scored.
    silent = mt.evaluate_tasks(FakePipeline("grey", takes_region=False, reports_region=False), clips,
                               tasks=["OPC", "OPD"], log=None)
    assert silent["OPC"]["n"] == 1
    assert "takes no region=" in silent["OPD"]["error"]
    assert "not scored" in mt.markdown_table(silent)


def test_class_frame_prediction_passes_the_clip_class():
    pipe = FakePipeline("oracle")
    clip = shapes_clip(("green", "circle", "up"), seed=3)
    report = mt.evaluate_pixel_task(pipe, "CFP", [clip])
    assert pipe.last_class == class_id("green", "circle", "up") and report["beats_baseline"]["psnr"]


def test_class_generation_and_text_sets_are_judged_by_the_evaluator(monkeypatch):
    class Generator:
        def generate_class(self, label, seed=0):  # takes no steps/guidance/progress: they are not passed
            from vidgen.data.shapes import class_triple

            return GeneratedVideo(frames_to_tensor(shapes_frames(class_triple(label), 32, 8, seed)))

        def __call__(self, prompt, seed=0):
            words = prompt.split()  # "a <colour> <shape> moving <direction>"
            triple = (words[1], words[2], words[4])
            return GeneratedVideo(frames_to_tensor(shapes_frames(triple, 32, 8, seed)))

    labels = [class_id("red", "circle", "right"), class_id("blue", "triangle", "down")]
    cg = mt.evaluate_class_generation(Generator(), labels, seeds=(0, 1), steps=12, guidance=2.0)
    assert cg["n"] == 4 and cg["colour"] == cg["shape"] == cg["direction"] == 1.0

    from vidgen.evaluation import text_to_video

    prompts = [("a cyan square moving left", [{"colour": "cyan", "shape": "square", "motion": "left"}]),
               ("a yellow circle moving down", [{"colour": "green", "shape": "circle", "motion": "down"}])]
    monkeypatch.setattr(text_to_video, "prompt_set", lambda name: prompts)
    t2v = mt.evaluate_text_sets(Generator(), ["heldout"], seeds=(0,), steps=12, log=None)
    assert t2v["heldout"]["n"] == 2 and t2v["heldout"]["colour"] == 0.5 and t2v["heldout"]["shape"] == 1.0


def test_heldout_clips_are_fixed_and_mixed():
    clips = mt.heldout_clips(num_shapes=2, num_digits=1, num_frames=4, size=16, seed=3)
    again = mt.heldout_clips(num_shapes=2, num_digits=1, num_frames=4, size=16, seed=3)
    assert [c.source for c in clips] == ["shapes", "shapes", "digits"]
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(clips, again))
    assert clips[0].frames.shape == (4, 16, 16, 3) and clips[0].objects[0]["colour"] in HUES
    assert torch.equal(clips[2].video, frames_to_tensor(clips[2].frames)) and clips[2].class_id >= 72
    assert np.array_equal(tensor_to_frames(clips[0].video), clips[0].frames)
    with pytest.raises(VidgenError, match="at least one clip"):
        mt.heldout_clips(0, 0)


def test_cli_eval_scores_video_tasks_of_a_task_model(monkeypatch, tmp_path, capsys):
    import json

    from vidgen.cli import evaluate
    from vidgen.cli.main import build_parser

    class CliPipeline(FakePipeline):
        num_frames, height = 8, 32

        def run_task(self, *args, **kwargs):  # marks a task model
            raise AssertionError("the evaluation calls the task methods")

        def generate_class(self, label, seed=0, progress=True):
            from vidgen.data.shapes import class_triple

            return GeneratedVideo(frames_to_tensor(shapes_frames(class_triple(label), 32, 8, seed)))

    monkeypatch.setattr("vidgen.pipelines.load_pipeline", lambda model, device=None: CliPipeline("oracle"))
    monkeypatch.setattr("vidgen.data.shapes.TRAIN_TRIPLES", (("red", "circle", "left"),))
    report = tmp_path / "report.json"
    args = build_parser().parse_args(["eval", "--model", "fake", "--tasks", "opc", "CG", "--clips", "2", "--sets",
                                      "--seeds", "0", "--json", str(report)])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out.split("report written to")[1].split("\n", 1)[1])
    assert summary["OPC"]["beats_baseline"] == {"psnr": True, "ssim": True}
    assert summary["CG (training classes)"]["colour"] == 1.0 and summary["CG (training classes)"]["n"] == 1
    saved = json.loads(report.read_text())
    assert saved["reports"] == {} and saved["tasks"]["OPC"]["n"] == 2
    with pytest.raises(VidgenError, match="unknown task 'XX'"):
        evaluate._video_tasks(["XX"])
    assert evaluate._video_tasks(["all"]) == (list(mt.DEFAULT_TASKS), True)


def test_every_pixel_task_runs_on_a_tiny_magvit_pipeline():
    """The real MagvitPipeline (random tiny weights): regions agree, dynamic ones via the seed convention."""
    from vidgen.generators.masked_transformer import MaskedTokenTransformer, magvit_transformer_tiny
    from vidgen.pipelines.magvit import TASK_MODES, MagvitPipeline
    from vidgen.tokenizers.magvit_vq import magvit_vq_tiny

    torch.manual_seed(0)
    tokenizer = magvit_vq_tiny(base_channels=4, channel_multipliers=(1, 1, 2), temporal_downsample=(True, False),
                               norm_groups=2)
    transformer = MaskedTokenTransformer(magvit_transformer_tiny(codebook_size=128, grid=(2, 4, 4), num_classes=4,
                                                                 text_dim=0))
    settings = {"num_frames": 4, "height": 16, "width": 16, "default_steps": 2, "default_guidance": 2.0,
                "tasks": {task: list(modes) for task, modes in TASK_MODES.items()}}
    pipe = MagvitPipeline(tokenizer, transformer, settings, device="cpu", bf16=False)
    clips = [noise_clip(seed=s, size=16, num_frames=4) for s in range(2)]
    calls = []
    reconstruct = pipe.reconstruct
    pipe.reconstruct = lambda video: calls.append(1) or reconstruct(video)
    reports = mt.evaluate_tasks(pipe, clips, log=None)
    assert all("error" not in r for r in reports.values()), reports
    assert len(calls) == len(clips)  # one tokenizer pass per clip, shared by every task's ceiling
    pipe.reconstruct = reconstruct
    for abbreviation, report in reports.items():
        for row, position in zip(report["rows"], range(2)):
            task = mt.get_task(abbreviation)
            region = (mt.seed_convention_region(task, (4, 16, 16), position) if task.dynamic
                      else mt.task_region(task, (4, 16, 16)))
            assert row["given_fraction"] == pytest.approx(float(region.float().mean())), abbreviation
        assert 0 < report["model"]["psnr"] < 60 and -1 <= report["model"]["ssim"] <= 1
    again = mt.evaluate_pixel_task(pipe, "IPD", clips)
    assert again["model"] == reports["IPD"]["model"]  # seeded: the same numbers

    # The tokenizer's ceiling: the clip tokenized and decoded, scored on the same generated region.
    recon = pipe.reconstruct(clips[0].video)
    assert torch.equal(recon.info["tokens"], pipe.tokenizer.encode(clips[0].video[None])[0])
    row = reports["OPC"]["rows"][0]
    generated = ~mt.task_region("OPC", (4, 16, 16))
    assert row["tokenizer"]["psnr"] == pytest.approx(mt.region_psnr(recon.tensor, clips[0].video, generated))
    assert row["tokenizer"]["ssim"] == pytest.approx(mt.region_ssim(recon.tensor, clips[0].video, generated))
    assert "tokenizer ceiling" in mt.format_task_line(reports["OPC"])
    assert "tokenizer" not in mt.evaluate_tasks(FakePipeline(), clips, ["OPC"], log=None)["OPC"]
    with pytest.raises(VidgenError, match="reconstruct takes a full clip of 4 frames, got 3"):
        pipe.reconstruct(clips[0].video[:, :3])


def test_tokenizer_ceiling_scores_reconstructions_like_the_task_evaluation():
    clips = [shapes_clip(seed=1), noise_clip(seed=2)]
    perfect = mt.tokenizer_ceiling(lambda video: video, clips, ["OPC", "IPD"])
    grey = mt.tokenizer_ceiling(lambda video: torch.zeros_like(video), clips, ["OPC", "IPD"])
    oracle = mt.evaluate_tasks(FakePipeline("oracle"), clips, ["OPC", "IPD"], log=None)
    for task in ("OPC", "IPD"):
        assert perfect[task]["n"] == 2 and perfect[task]["tokenizer"]["psnr"] == 100.0
        assert perfect[task]["tokenizer"]["ssim"] == pytest.approx(1.0)
        assert perfect[task]["baseline"] == pytest.approx(oracle[task]["baseline"])  # the same regions and clips
        assert grey[task]["tokenizer"]["psnr"] < perfect[task]["baseline"]["psnr"]
    with pytest.raises(VidgenError, match="at least one clip"):
        mt.tokenizer_ceiling(lambda video: video, [])


def test_class_condition_use_tells_a_class_blind_model_from_one_that_reads_the_class():
    from vidgen.generators.masked_transformer import MaskedTokenTransformer, magvit_transformer_tiny

    torch.manual_seed(0)
    model = MaskedTokenTransformer(magvit_transformer_tiny()).eval()
    tokens = torch.randint(0, 32, (6, 2, 4, 4))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    reads = mt.class_condition_use(model, tokens, labels, mask_ratios=(0.5, 1.0))
    assert set(reads) == {"0.5", "1"}
    for row in reads.values():
        assert row["gain"] == pytest.approx(row["null"] - row["right"])
        assert abs(row["right"] - row["null"]) > 1e-4 and abs(row["right"] - row["wrong"]) > 1e-4
        assert 0.0 <= row["accuracy_right"] <= 1.0

    # Every class token (and the null class) embedded alike: the class cannot matter.
    c = model.config
    first = c.codebook_size + 1 + c.num_task_tokens
    with torch.no_grad():
        model.token_embedding.weight[first:first + c.num_classes + 1] = model.token_embedding.weight[first]
    blind = mt.class_condition_use(model, tokens, labels, mask_ratios=(0.5, 1.0))
    for row in blind.values():
        assert row["right"] == pytest.approx(row["wrong"], abs=1e-5)
        assert row["gain"] == pytest.approx(0.0, abs=1e-5)

    with pytest.raises(VidgenError, match="must lie in"):
        mt.class_condition_use(model, tokens, labels + 4)
    with pytest.raises(VidgenError, match="must match"):
        mt.class_condition_use(model, tokens, labels[:3])


def test_condition_use_scores_text_conditions_on_the_same_masks():
    """`condition_use` with text: the same prompt twice scores the same, another prompt or no text
    scores differently, and a model whose text projection is zero cannot tell them apart."""
    from vidgen.generators.masked_transformer import MaskedTokenTransformer, magvit_transformer_tiny

    torch.manual_seed(0)
    model = MaskedTokenTransformer(magvit_transformer_tiny(text_dim=8)).eval()
    tokens = torch.randint(0, 32, (4, 2, 4, 4))
    text, other = torch.randn(4, 3, 8), torch.randn(4, 3, 8)
    mask = torch.ones(4, 3, dtype=torch.bool)
    conditions = {"text": {"text": text, "text_mask": mask}, "again": {"text": text, "text_mask": mask},
                  "other": {"text": other, "text_mask": mask}, "none": {"text": text, "text_mask": ~mask}}
    report = mt.condition_use(model, tokens, "T2V", conditions, mask_ratios=(0.5, 1.0))
    assert set(report) == {"0.5", "1"}
    for row in report.values():
        assert row["text"] == row["again"] and row["accuracy_text"] == row["accuracy_again"]
        assert abs(row["text"] - row["other"]) > 1e-4 and abs(row["text"] - row["none"]) > 1e-4
    projection = next(m for name, m in model.named_modules() if "text" in name and isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        projection.weight.zero_()
        projection.bias.zero_()
    blind = mt.condition_use(model, tokens, "T2V", conditions, mask_ratios=(1.0,))["1"]
    assert blind["text"] == pytest.approx(blind["other"], abs=1e-6)
    with pytest.raises(VidgenError, match="mask ratio 0"):
        mt.condition_use(model, tokens, "T2V", conditions, mask_ratios=(0.0,))
    with pytest.raises(VidgenError, match=r"tokens must be \(N, t, h, w\)"):
        mt.condition_use(model, tokens[0], "T2V", conditions)
