"""Task registry, condition regions, pixel -> token mapping, padding and COMMIT's mask builders."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidgen.errors import VidgenError
from vidgen.tasks import (
    MAGVIT_TASKS,
    CentralBox,
    Complement,
    MovingBox,
    MovingStrip,
    commit_inputs,
    condition_pixels,
    frame_interpolation,
    frame_prediction,
    get_task,
    lowest_k_mask,
    mask_schedule,
    num_masked_tokens,
    pad_condition,
    pixel_to_token_mask,
    prepare_condition,
    random_training_mask,
    register_task,
    supervoxel_size,
    task_names,
    task_tokens,
)
from vidgen.tasks.registry import Task

PIXELS = (16, 64, 64)
TOKENS = (4, 8, 8)


class ProjectionTokenizer:
    """Stand-in tokenizer: mean colour of each supervoxel, projected by a fixed random matrix, argmax."""

    def __init__(self, stride=(4, 8, 8), codebook_size=64, seed=0):
        self.stride = stride
        self.projection = torch.randn(3, codebook_size, generator=torch.Generator().manual_seed(seed))

    def encode(self, video):
        pooled = F.avg_pool3d(video, self.stride)  # (B, 3, t, h, w)
        return torch.einsum("bcthw,ck->bthwk", pooled, self.projection).argmax(-1)


# ----------------------------------------------------------------------------- registry


def test_registry_has_the_ten_magvit_tasks_and_t2v():
    names = task_names()
    assert names == ["CG", "FP", "FI", "OPC", "OPV", "OPH", "OPD", "IPC", "IPD", "CFP", "T2V"]
    assert set(MAGVIT_TASKS) | {"T2V"} == set(names)
    tokens = [get_task(n).token for n in names]
    assert len(set(tokens)) == len(tokens)
    assert get_task("fp") is get_task("frame_prediction") is get_task("FP")
    kinds = {n: get_task(n).condition for n in names}
    assert kinds["CG"] == "class" and kinds["CFP"] == "class+pixels" and kinds["T2V"] == "text"
    assert all(kinds[n] == "pixels" for n in ("FP", "FI", "OPC", "OPV", "OPH", "OPD", "IPC", "IPD"))
    assert get_task("OPD").dynamic and get_task("IPD").dynamic and not get_task("OPC").dynamic


def test_registry_errors_name_the_allowed_values():
    with pytest.raises(VidgenError, match="unknown task 'XYZ'.*FP \\(frame_prediction\\)"):
        get_task("XYZ")
    with pytest.raises(VidgenError, match="already used"):
        register_task(Task("my_task", "FP2", get_task("FP").token, "none"))
    with pytest.raises(VidgenError, match="condition='video'"):
        Task("bad", "B", 40, "video")
    with pytest.raises(VidgenError, match="has no pixel condition region"):
        get_task("CG").condition_region(PIXELS)


def test_task_tokens_broadcasts_and_checks_length():
    assert task_tokens("FI", 3).tolist() == [2, 2, 2]
    assert task_tokens(["FP", "CG"], 2).tolist() == [1, 0]
    with pytest.raises(VidgenError, match="got 2 tasks for a batch of 3"):
        task_tokens(["FP", "CG"], 3)


# ----------------------------------------------------------------------------- regions


def test_frame_prediction_region_is_the_first_frames_only():
    region = get_task("FP").condition_region(PIXELS)
    assert region.shape == PIXELS and region.dtype == torch.bool
    assert region[0].all() and not region[1:].any()
    five = frame_prediction(num_frames=5)
    assert five.token == get_task("FP").token
    r5 = five.condition_region(PIXELS)
    assert r5[:5].all() and not r5[5:].any()
    with pytest.raises(VidgenError, match="num_frames=16"):
        frame_prediction(16).condition_region(PIXELS)


def test_frame_interpolation_region_is_first_and_last_frames():
    region = frame_interpolation(2).condition_region(PIXELS)
    assert region[:2].all() and region[-2:].all() and not region[2:-2].any()


def test_central_outpainting_and_inpainting_are_complements():
    opc = get_task("OPC").condition_region(PIXELS)
    ipc = get_task("IPC").condition_region(PIXELS)
    assert torch.equal(ipc, ~opc)
    expected = torch.zeros(PIXELS, dtype=torch.bool)
    expected[:, 16:48, 16:48] = True
    assert torch.equal(opc, expected)
    assert opc.float().mean().item() == pytest.approx(0.25)


def test_vertical_and_horizontal_outpainting_strips():
    opv = get_task("OPV").condition_region(PIXELS)
    oph = get_task("OPH").condition_region(PIXELS)
    assert opv[:, :, 16:48].all() and not opv[:, :, :16].any() and not opv[:, :, 48:].any()
    assert oph[:, 16:48, :].all() and not oph[:, :16, :].any() and not oph[:, 48:, :].any()
    assert torch.equal(oph, opv.transpose(1, 2))


def test_dynamic_outpainting_strip_moves_and_is_seeded():
    task = get_task("OPD")
    canonical = task.condition_region(PIXELS)  # no generator: vertical strip, left to right
    assert canonical[0, :, :32].all() and not canonical[0, :, 32:].any()
    assert canonical[-1, :, 32:].all() and not canonical[-1, :, :32].any()
    assert (canonical.float().mean(dim=(1, 2)) == 0.5).all()  # half the frame at every time
    a = task.condition_region(PIXELS, torch.Generator().manual_seed(3))
    b = task.condition_region(PIXELS, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    motions = {task.condition_region(PIXELS, torch.Generator().manual_seed(s)).numpy().tobytes()
               for s in range(16)}
    assert len(motions) == 4  # vertical/horizontal strip x forwards/backwards


def test_dynamic_inpainting_box_moves_and_is_missing():
    task = get_task("IPD")
    region = task.condition_region(PIXELS, torch.Generator().manual_seed(1))
    missing = ~region
    assert (missing.float().mean(dim=(1, 2)) == 0.25).all()  # a half x half box in every frame
    assert not torch.equal(missing[0], missing[-1])  # it moves
    box = MovingBox()(PIXELS)  # canonical: middle rows, sliding left to right
    assert torch.equal(~get_task("IPD").condition_region(PIXELS), box)
    assert box[0, 16:48, :32].all() and not box[0, :16].any() and box[-1, 16:48, 32:].all()
    assert torch.equal(Complement(CentralBox())(PIXELS), ~CentralBox()(PIXELS))
    assert MovingStrip(axes=("h",))(PIXELS, torch.Generator().manual_seed(0))[:, :, 0].any()


def test_regions_work_on_token_grids():
    fp = get_task("FP").condition_region(TOKENS)
    assert fp[0].all() and not fp[1:].any()
    opc = get_task("OPC").condition_region(TOKENS)
    assert opc[:, 2:6, 2:6].all() and opc.sum() == 4 * 4 * 4


# ----------------------------------------------------------------------------- pixels -> tokens


def test_pixel_region_maps_to_the_right_tokens():
    for name, expected in (("FP", get_task("FP").condition_region(TOKENS)),
                           ("OPC", get_task("OPC").condition_region(TOKENS)),
                           ("OPV", get_task("OPV").condition_region(TOKENS)),
                           ("IPC", get_task("IPC").condition_region(TOKENS)),
                           ("FI", get_task("FI").condition_region(TOKENS))):
        mapped = pixel_to_token_mask(get_task(name).condition_region(PIXELS), TOKENS)
        assert torch.equal(mapped, expected), name
    # Five condition frames reach into the second token frame: 2 token frames are condition tokens.
    five = pixel_to_token_mask(frame_prediction(5).condition_region(PIXELS), TOKENS)
    assert five[:2].all() and not five[2:].any()
    # One pixel makes exactly one condition token, the one whose supervoxel holds it.
    single = torch.zeros(PIXELS, dtype=torch.bool)
    single[9, 30, 60] = True
    tokens = pixel_to_token_mask(single, TOKENS)
    assert tokens.sum() == 1 and tokens[9 // 4, 30 // 8, 60 // 8]
    # Batched masks keep their leading dims.
    assert pixel_to_token_mask(torch.stack([single, ~single]), TOKENS).shape == (2, *TOKENS)


def test_causal_tokenizer_layout_first_frame_alone():
    assert supervoxel_size((17, 64, 64), (5, 8, 8)) == (4, 8, 8, True)
    first = torch.zeros(17, 64, 64, dtype=torch.bool)
    first[0] = True
    mapped = pixel_to_token_mask(first, (5, 8, 8))
    assert mapped[0].all() and not mapped[1:].any()
    second = torch.zeros(17, 64, 64, dtype=torch.bool)
    second[1] = True
    assert pixel_to_token_mask(second, (5, 8, 8))[1].all()
    with pytest.raises(VidgenError, match="does not map onto token grid"):
        supervoxel_size((15, 64, 64), (4, 8, 8))
    with pytest.raises(VidgenError, match="spatially"):
        supervoxel_size((16, 60, 64), (4, 8, 8))


# ----------------------------------------------------------------------------- padding


def _video(seed=0, b=1):
    return torch.rand(b, 3, *PIXELS, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_replicate_padding_repeats_the_last_condition_frame():
    video = _video()
    padded = pad_condition(video, frame_prediction(3).condition_region(PIXELS), "replicate")
    assert torch.equal(padded[:, :, :3], video[:, :, :3])
    assert torch.equal(padded[:, :, 3:], video[:, :, 2:3].expand(-1, -1, 13, -1, -1))


def test_replicate_padding_of_the_centre_is_edge_padding():
    video = _video(1)
    padded = pad_condition(video, get_task("OPC").condition_region(PIXELS), "replicate")
    centre = video[0, :, :, 16:48, 16:48].numpy()
    expected = np.pad(centre, ((0, 0), (0, 0), (16, 16), (16, 16)), mode="edge")
    np.testing.assert_array_equal(padded[0].numpy(), expected)


def test_interpolate_padding_is_linear_between_the_end_frames():
    video = _video(2)
    padded = pad_condition(video, get_task("FI").condition_region(PIXELS), "interpolate")
    first, last = video[:, :, 0], video[:, :, 15]
    for i in (1, 7, 14):
        assert torch.allclose(padded[:, :, i], first + (last - first) * i / 15, atol=1e-6)
    assert torch.equal(padded[:, :, 15], last)


def test_constant_padding_and_no_leak_from_hidden_pixels():
    video = _video(3)
    region = get_task("IPC").condition_region(PIXELS)
    padded = pad_condition(video, region, "constant")
    assert (padded[:, :, ~region] == 0).all() and torch.equal(padded[:, :, region], video[:, :, region])
    for padding in ("replicate", "interpolate", "constant"):
        changed = video.clone()
        changed[:, :, ~region] = 5.0  # hidden pixels must never reach the condition
        assert torch.equal(pad_condition(changed, region, padding), pad_condition(video, region, padding))
    with pytest.raises(VidgenError, match="padding='reflect'"):
        pad_condition(video, region, "reflect")


# ----------------------------------------------------------------------------- masking


def test_cosine_schedule_and_counts():
    assert mask_schedule(0.0).item() == 1.0 and mask_schedule(1.0).item() == pytest.approx(0.0, abs=1e-12)
    assert mask_schedule(0.5).item() == pytest.approx(math.cos(math.pi / 4))
    assert num_masked_tokens(0.5, 256).item() == math.floor(256 * math.cos(math.pi / 4))
    assert mask_schedule(0.25, "linear").item() == 0.75
    with pytest.raises(VidgenError, match="mask schedule 'exp'"):
        mask_schedule(0.5, "exp")


def test_lowest_k_mask_picks_the_lowest_scores():
    scores = torch.tensor([[0.5, 0.1, 0.9, 0.3], [4.0, 3.0, 2.0, 1.0]])
    mask = lowest_k_mask(scores, torch.tensor([2, 1]))
    assert mask.tolist() == [[False, True, False, True], [False, False, False, True]]
    assert lowest_k_mask(scores, 0).sum() == 0


def test_random_training_mask_counts_follow_the_schedule_and_seed():
    a = random_training_mask(64, 256, torch.Generator().manual_seed(0))
    b = random_training_mask(64, 256, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    counts = a.sum(1)
    assert counts.min() >= 1 and counts.max() <= 256
    # Under the cosine schedule the mean mask ratio is E[cos(pi r / 2)] = 2 / pi.
    assert counts.float().mean().item() / 256 == pytest.approx(2 / math.pi, abs=0.08)


def test_commit_inputs_rule():
    z = torch.tensor([[10, 11, 12, 13]])
    z_cond = torch.tensor([[20, 21, 22, 23]])
    region = torch.tensor([[True, True, False, False]])
    masked = torch.tensor([[True, False, True, False]])
    inputs, refine = commit_inputs(z, masked, 99, z_cond, region)
    assert inputs.tolist() == [[20, 11, 99, 13]]  # condition token / kept / [MASK] / kept
    assert refine.tolist() == [[True, False, False, False]]
    plain, none = commit_inputs(z, masked, 99)
    assert plain.tolist() == [[99, 11, 99, 13]] and not none.any()


# ----------------------------------------------------------------------------- building the condition


def test_prepare_condition_tokenizes_the_padded_clip():
    tokenizer = ProjectionTokenizer()
    video = _video(4, b=3)
    cond = prepare_condition(["FP", "OPC", "CG"], video, tokenizer)
    assert cond.tokens.shape == (3, *TOKENS) and cond.mask.shape == (3, *TOKENS)
    assert torch.equal(cond.mask[0], get_task("FP").condition_region(TOKENS))
    assert torch.equal(cond.mask[1], get_task("OPC").condition_region(TOKENS))
    assert not cond.mask[2].any() and (cond.tokens[2] == 0).all()  # CG has no pixel condition
    padded_fp = pad_condition(video[:1], get_task("FP").condition_region(PIXELS), "replicate")
    expected = tokenizer.encode(padded_fp)[0]
    assert torch.equal(cond.tokens[0][cond.mask[0]], expected[cond.mask[0]])
    # Pixels outside the condition region do not change the condition.
    changed = video.clone()
    changed[:, :, 1:] = -video[:, :, 1:]
    again = prepare_condition("FP", changed[:1], tokenizer)
    assert torch.equal(again.tokens[0], cond.tokens[0])


def test_condition_pixels_draws_dynamic_regions_from_the_generator():
    video = _video(5, b=2)
    m1, _, has = condition_pixels("OPD", video, torch.Generator().manual_seed(7))
    m2, _, _ = condition_pixels("OPD", video, torch.Generator().manual_seed(7))
    assert torch.equal(m1, m2) and has.all()
    with pytest.raises(VidgenError, match="video must be a float tensor"):
        condition_pixels("FP", torch.zeros(2, 3, 16, 64, dtype=torch.long))
