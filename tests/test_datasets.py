"""Datasets: Shapes (rendering, splits, captions, depth/flow/audio), Digits, Folder, registry, CLI."""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vidgen.data import DATASETS, DigitsDataset, FolderDataset, ShapesDataset, collate, get_dataset
from vidgen.data import shapes as S
from vidgen.data.digits import _digit_images, split_indices
from vidgen.errors import VidgenError
from vidgen.io import read_video, write_video

# ----------------------------------------------------------------------------- shapes: items


def test_shapes_item_layout_and_ranges():
    item = ShapesDataset(num_frames=5, size=32)[0]
    assert item["video"].shape == (3, 5, 32, 32) and item["video"].dtype == torch.float32
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    assert item["video"].min() == -1  # black background
    assert item["depth"].shape == (1, 5, 32, 32) and item["flow"].shape == (2, 5, 32, 32)
    assert item["audio"].shape == (round(5 / 8 * 16000),) and item["audio"].dtype == torch.float32
    labels = item["labels"]
    assert labels["num_objects"] == len(labels["objects"]) in (1, 2)
    first = labels["objects"][0]
    assert item["class_id"] == S.class_id(first["colour"], first["shape"], first["motion"])
    assert (labels["colour_id"], labels["shape_id"], labels["motion_id"]) == tuple(
        labels["object_ids"][0].tolist()
    )
    assert isinstance(item["caption"], str) and item["canonical_caption"].startswith("a ")


def test_shapes_is_deterministic_by_seed_and_index():
    a, b = ShapesDataset(seed=3, num_frames=4, size=32), ShapesDataset(seed=3, num_frames=4, size=32)
    for index in (0, 5, 17):
        assert (
            torch.equal(a[index]["video"], b[index]["video"]) and a[index]["caption"] == b[index]["caption"]
        )
    other = ShapesDataset(seed=4, num_frames=4, size=32)
    assert not torch.equal(a[0]["video"], other[0]["video"])
    assert not torch.equal(a[0]["video"], a[1]["video"])
    assert torch.equal(a[-1]["video"], a[len(a) - 1]["video"])
    with pytest.raises(IndexError):
        a[len(a)]


def test_class_ids_cover_72_named_classes():
    assert S.NUM_CLASSES == 72 == len(S.ALL_TRIPLES)
    ids = [S.class_id(*t) for t in S.ALL_TRIPLES]
    assert sorted(ids) == list(range(72))
    assert S.class_name(S.class_id("blue", "square", "up")) == "blue square moving up"
    assert all(S.class_triple(i) == t for i, t in zip(ids, S.ALL_TRIPLES))
    with pytest.raises(VidgenError, match="0..71"):
        S.class_name(72)
    with pytest.raises(VidgenError, match="colours: red"):
        S.class_id("purple", "circle", "left")


def test_objects_stay_in_frame_and_are_clearly_visible():
    ds = ShapesDataset(split="all", num_frames=17, size=64)
    for index in range(24):
        item = ds[index]
        video = item["video"]
        for obj in item["labels"]["objects"]:
            extent = obj["radius"] * S._EXTENT_FACTOR[obj["shape"]]
            assert 8 <= obj["radius"] <= 12
            for t in (0, 16):
                y = obj["start"][0] + obj["velocity"][0] * t
                x = obj["start"][1] + obj["velocity"][1] * t
                assert extent <= y <= 64 - extent and extent <= x <= 64 - extent
            # It moves in its named direction, by at least a fifth of the frame over the clip.
            dy, dx = S.MOTIONS[obj["motion"]]
            travel = (obj["velocity"][0] * dy + obj["velocity"][1] * dx) * 16
            assert travel > 64 * 0.2
        assert (video.amax(0) > 0.9).float().mean(dim=(1, 2)).min() > 0.03  # >3% bright pixels every frame


def test_rendered_colours_are_fully_saturated():
    item = ShapesDataset(split="all", max_objects=1)[2]
    obj = item["labels"]["objects"][0]
    frames = (item["video"] + 1) / 2
    inside = frames[:, 0, round(obj["start"][0]), round(obj["start"][1])]  # the centre pixel at t=0
    assert inside.tolist() == [v / 255 for v in S.COLOURS[obj["colour"]]]


def test_depth_and_occlusion_nearer_object_wins():
    near = S.ShapeObject("red", "square", "right", (16.0, 14.0), (0.0, 1.0), 8.0, S.DEPTHS[0])
    far = S.ShapeObject("blue", "circle", "left", (16.0, 20.0), (0.0, -1.0), 8.0, S.DEPTHS[1])
    frames, depth, flow = S.render_objects([far, near], size=32, num_frames=3)
    # Pixel (16, 17) is inside both at t=0: the near red square covers the blue circle.
    assert frames[:, 0, 16, 17].tolist() == [1.0, 0.0, 0.0]
    assert depth[0, 16, 17] == pytest.approx(S.DEPTHS[0])
    assert depth[0, 16, 26] == pytest.approx(S.DEPTHS[1])  # only the far circle there
    assert depth[0, 2, 2] == 1.0  # background
    assert flow[:, 0, 16, 17].tolist() == [1.0, 0.0]  # (dx, dy) of the near square
    assert flow[:, 0, 16, 26].tolist() == [-1.0, 0.0]
    assert flow[:, 0, 2, 2].tolist() == [0.0, 0.0]


def test_flow_matches_the_motion_between_frames():
    ds = ShapesDataset(split="all", max_objects=1, num_frames=6, size=64)
    item = ds[1]
    video, flow = item["video"], item["flow"]
    obj = item["labels"]["objects"][0]
    cover = (video.amax(0) + 1) / 2  # (T, H, W) antialiased coverage of the object
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    centroid = torch.stack([torch.stack([(xs * c).sum(), (ys * c).sum()]) / c.sum() for c in cover])  # (T, 2)
    for t in range(5):
        inside = flow[:, t][:, video[:, t].amax(0) > 0.5]  # (2, N) flow on visible object pixels
        np.testing.assert_allclose(inside.mean(1), centroid[t + 1] - centroid[t], atol=0.05)
        np.testing.assert_allclose(inside.mean(1), [obj["velocity"][1], obj["velocity"][0]], atol=1e-5)
    # The last frame has no successor: it carries the same constant velocity on the object's pixels.
    last = flow[:, -1][:, video[:, -1].amax(0) > 0.5]
    assert last.shape[1] > 50 and torch.allclose(last, flow[:, 0][:, video[:, 0].amax(0) > 0.5][:, :1])


def test_audio_tones_follow_object_colours():
    ds = ShapesDataset(split="all", num_frames=16, fps=8)
    two = next(ds[i] for i in range(30) if ds[i]["labels"]["num_objects"] == 2)
    audio = two["audio"].numpy()
    assert audio.size == 32000 and np.abs(audio).max() <= 0.61
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(audio.size, 1 / 16000)
    peaks = sorted(freqs[np.argsort(spectrum)[-2:]])
    expected = sorted(S.COLOUR_FREQUENCIES[o["colour"]] for o in two["labels"]["objects"])
    np.testing.assert_allclose(peaks, expected, atol=1.0)


# ----------------------------------------------------------------------------- shapes: splits


def test_heldout_triples_keep_every_value_and_pair_in_training():
    held = set(S.HELDOUT_TRIPLES)
    assert len(held) == 16 and held <= set(S.ALL_TRIPLES)
    train = set(S.TRAIN_TRIPLES)
    assert len(train) == 56 and not train & held
    for a, b in itertools.combinations(range(3), 2):  # colour+shape, colour+motion, shape+motion
        pairs = {(t[a], t[b]) for t in train}
        assert pairs == {(t[a], t[b]) for t in S.ALL_TRIPLES}


def test_train_split_never_renders_a_heldout_triple():
    ds = ShapesDataset(split="train", num_frames=2, size=16)
    seen_two = 0
    for index in range(400):
        objects = ds[index]["labels"]["objects"]
        seen_two += len(objects) == 2
        for obj in objects:
            assert (obj["colour"], obj["shape"], obj["motion"]) not in S.HELDOUT_TRIPLES
        if len(objects) == 2:
            assert objects[0]["colour"] != objects[1]["colour"]
    assert 0.25 < seen_two / 400 < 0.45  # about 35% two-object clips


def test_heldout_split_is_single_heldout_objects():
    ds = ShapesDataset(split="heldout", num_frames=2, size=16)
    triples = set()
    for index in range(200):
        item = ds[index]
        (obj,) = item["labels"]["objects"]
        triples.add((obj["colour"], obj["shape"], obj["motion"]))
    assert triples == set(S.HELDOUT_TRIPLES)


# ----------------------------------------------------------------------------- shapes: captions


def test_canonical_and_varied_captions():
    canonical = ShapesDataset(caption_mode="canonical", num_frames=2, size=16)
    for index in range(20):
        item = canonical[index]
        objects = item["labels"]["objects"]
        assert item["caption"] == " and ".join(
            f"a {o['colour']} {o['shape']} moving {o['motion']}" for o in objects
        )
    varied = ShapesDataset(num_frames=2, size=16, max_objects=1)
    captions = [varied[i]["caption"] for i in range(300)]
    share = np.mean([c == varied[i]["canonical_caption"] for i, c in enumerate(captions)])
    assert 0.2 < share < 0.45
    assert len(set(captions)) > 150  # many wordings
    assert S.canonical_caption([("red", "circle", "left"), ("blue", "square", "up")]) == (
        "a red circle moving left and a blue square moving up"
    )
    assert not any(" a a" in c or c.startswith("a a") or " a o" in c for c in captions)  # articles fixed


def test_heldout_paraphrases_are_never_training_wordings():
    rng = np.random.default_rng(0)
    heldout_verbs = {word for pair in S.HELDOUT_VERBS for word in pair}
    for triple in S.ALL_TRIPLES[::5]:
        training = S.training_caption_set(triple)
        assert S.canonical_caption([triple]) in training
        for _ in range(10):
            assert S.varied_caption([triple], rng) in training | {S.canonical_caption([triple])}
            assert S.varied_caption([triple], rng, heldout_wording=True) not in training
    train_ds = ShapesDataset(num_frames=2, size=16)
    for index in range(300):
        words = set(train_ds[index]["caption"].replace(",", " ").split())
        assert not words & (heldout_verbs | {"orb", "tile", "coloured", "backdrop", "clip"})
    paraphrase_ds = ShapesDataset(caption_mode="paraphrase", split="heldout", num_frames=2, size=16)
    assert set(paraphrase_ds[0]["caption"].replace(",", " ").split()) & heldout_verbs


def test_eval_prompts():
    prompts = S.heldout_eval_prompts()
    assert len(prompts) >= 40 and len({p for p, _ in prompts}) == len(prompts)
    for prompt, expected in prompts:
        (obj,) = expected
        triple = (obj["colour"], obj["shape"], obj["motion"])
        assert triple in S.HELDOUT_TRIPLES
        assert obj["colour"] in prompt or any(w in prompt for w in S.COLOUR_WORDS[obj["colour"]])
    assert len(S.heldout_eval_prompts("canonical")) == 16
    assert S.heldout_eval_prompts() == S.heldout_eval_prompts()  # fixed benchmark
    pairs = S.two_object_eval_prompts()
    assert len(pairs) == 24
    for prompt, (a, b) in pairs:
        assert a["colour"] != b["colour"] and prompt == S.canonical_caption([a, b])
        assert (a["colour"], a["shape"], a["motion"]) in S.TRAIN_TRIPLES


def test_shapes_rejects_bad_options():
    with pytest.raises(VidgenError, match="train, heldout, all"):
        ShapesDataset(split="test")
    with pytest.raises(VidgenError, match="caption_mode"):
        ShapesDataset(caption_mode="fancy")
    with pytest.raises(VidgenError, match="max_objects"):
        ShapesDataset(max_objects=3)


# ----------------------------------------------------------------------------- digits


def test_digits_items():
    ds = DigitsDataset(split="test", num_frames=9, size=64, num_digits=2)
    item = ds[0]
    assert item["video"].shape == (3, 9, 64, 64)
    assert torch.equal(item["video"][0], item["video"][1])  # grey
    assert item["video"].min() == -1 and item["video"].max() > 0.9
    _images, targets = _digit_images()
    labels = item["labels"]
    assert labels["digits"].tolist() == [int(targets[i]) for i in labels["image_index"].tolist()]
    assert item["class_id"] == labels["digit"] == labels["digits"][0]
    assert DigitsDataset.num_classes == 10
    assert str(labels["digits"][0].item()) in item["canonical_caption"]
    assert torch.equal(ds[3]["video"], DigitsDataset(split="test", num_frames=9, num_digits=2)[3]["video"])
    # Positions stay inside the frame: the digit box fits at every frame.
    positions = labels["positions"]
    assert positions.min() >= 0 and positions.max() <= 64 - ds.digit_size


def test_digits_splits_are_disjoint_images():
    train, test = set(split_indices("train")), set(split_indices("test"))
    assert not train & test and len(train) + len(test) == 1797
    ds = DigitsDataset(split="train", num_frames=2, size=32)
    assert all(ds[i]["labels"]["image_index"].item() in train for i in range(50))
    with pytest.raises(VidgenError, match="train, test"):
        DigitsDataset(split="heldout")


def test_digits_move_in_the_caption_direction_first():
    ds = DigitsDataset(num_frames=17, size=64, caption_mode="canonical")
    for index in range(20):
        item = ds[index]
        motion = item["canonical_caption"].split()[-1]
        dy, dx = S.MOTIONS[motion]
        path = item["labels"]["positions"][0]
        step = path[4] - path[0]  # first quarter of the clip: no bounce along the main axis yet
        assert step[0] * dy + step[1] * dx > 0


# ----------------------------------------------------------------------------- folder


def make_folder(tmp_path, manifest: str = "jsonl"):
    rng = np.random.default_rng(0)
    write_video(tmp_path / "long.mp4", rng.integers(0, 256, (20, 48, 64, 3), dtype=np.uint8), fps=16)
    (tmp_path / "sub").mkdir()
    write_video(tmp_path / "sub" / "short.gif", rng.integers(0, 256, (3, 40, 30, 3), dtype=np.uint8), fps=8)
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "still.png")
    rows = [
        {"file": "long.mp4", "caption": "a noisy clip", "label": 2},
        {"file": "sub/short.gif", "caption": "a short gif"},
        {"file": "still.png", "caption": "a still image", "label": 0},
    ]
    if manifest == "jsonl":
        (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    else:
        lines = ["file,caption,label"] + [f'{r["file"]},"{r["caption"]}",{r.get("label", "")}' for r in rows]
        (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize("manifest", ["jsonl", "csv"])
def test_folder_dataset_reads_varied_clips(tmp_path, manifest):
    ds = FolderDataset(make_folder(tmp_path, manifest), num_frames=5, size=32, fps=8)
    assert len(ds) == 3 and ds.num_classes == 3
    long, short, still = ds[0], ds[1], ds[2]
    for item in (long, short, still):
        assert item["video"].shape == (3, 5, 32, 32) and item["video"].abs().max() <= 1
    assert long["caption"] == "a noisy clip" and long["class_id"] == 2 and short["class_id"] == -1
    source = read_video(tmp_path / "long.mp4", fps=8, num_frames=5, size=32).to_tensor()
    assert torch.equal(long["video"], source)  # 16 fps resampled to 8, resized and cropped
    assert torch.equal(short["video"][:, 3], short["video"][:, 2])  # 3 frames padded with the last one
    assert torch.equal(short["video"][:, 4], short["video"][:, 2])
    assert all(torch.equal(still["video"][:, t], still["video"][:, 0]) for t in range(5))  # still video
    one = FolderDataset(tmp_path, num_frames=1, size=16)[2]
    assert one["video"].shape == (3, 1, 16, 16)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate)))
    assert batch["video"].shape == (3, 3, 5, 32, 32) and batch["caption"][1] == "a short gif"


def test_folder_dataset_errors(tmp_path):
    with pytest.raises(VidgenError, match="no manifest"):
        FolderDataset(tmp_path)
    make_folder(tmp_path)
    (tmp_path / "metadata.jsonl").write_text(
        '{"file": "long.mp4", "caption": "x"}\n{"file": "gone.mp4", "caption": "y"}\n'
    )
    with pytest.raises(VidgenError, match="missing file.*gone.mp4"):
        FolderDataset(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file": "long.mp4"}\n')
    with pytest.raises(VidgenError, match="line 1: 'caption'"):
        FolderDataset(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file": "long.mp4", "caption": "x", "label": "cat"}\n')
    with pytest.raises(VidgenError, match="'label' must be an integer"):
        FolderDataset(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file": "long.mp4", "caption": "x"}\n{oops\n')
    with pytest.raises(VidgenError, match="line 2: not valid JSON"):
        FolderDataset(tmp_path)
    (tmp_path / "metadata.jsonl").unlink()
    (tmp_path / "metadata.csv").write_text("path,text\nlong.mp4,x\n")
    with pytest.raises(VidgenError, match="missing caption, file"):
        FolderDataset(tmp_path)


# ----------------------------------------------------------------------------- registry, collate, CLI


def test_registry_and_collate():
    assert set(DATASETS) == {"shapes", "digits", "folder", "shapes+digits"}
    ds = get_dataset("shapes", num_frames=3, size=16)
    assert isinstance(ds, ShapesDataset)
    with pytest.raises(VidgenError, match=r"available: shapes, digits, folder, shapes\+digits"):
        get_dataset("mnist")
    with pytest.raises(VidgenError, match="no option frames.*num_frames"):
        get_dataset("digits", frames=3)
    batch = collate([ds[i] for i in range(4)])
    assert batch["video"].shape == (4, 3, 3, 16, 16) and batch["audio"].shape[0] == 4
    assert isinstance(batch["caption"], list) and len(batch["caption"]) == 4
    assert batch["class_id"].dtype == torch.long and batch["class_id"].tolist() == [
        ds[i]["class_id"] for i in range(4)
    ]
    assert batch["labels"]["object_ids"].shape == (4, 2, 3)
    assert batch["labels"]["colour_id"].shape == (4,)
    assert isinstance(batch["labels"]["objects"], list) and len(batch["labels"]["objects"]) == 4
    assert batch["fps"].dtype == torch.float32


def run_cli(argv: list[str]) -> int:
    from vidgen.cli import data as data_cli

    parser = argparse.ArgumentParser(prog="vidgen")
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_preview_writes_files(tmp_path, capsys):
    assert run_cli(["data", "list"]) == 0
    assert "digits" in capsys.readouterr().out
    assert run_cli(["data", "preview", "shapes", "-o", str(tmp_path / "s.gif"), "--num-frames", "5"]) == 0
    out = capsys.readouterr().out
    assert "caption: " in out and "s.gif" in out
    assert read_video(tmp_path / "s.gif").frames.shape == (5, 64, 64, 3)
    run_cli(
        [
            "data",
            "preview",
            "digits",
            "-o",
            str(tmp_path / "d.mp4"),
            "--num-frames",
            "4",
            "--size",
            "32",
            "--split",
            "test",
        ]
    )
    assert read_video(tmp_path / "d.mp4").frames.shape == (4, 32, 32, 3)
    run_cli(["data", "preview", "shapes", "-o", str(tmp_path / "s.mp4"), "--num-frames", "8", "--index", "3"])
    assert read_video(tmp_path / "s.mp4").audio is not None  # the colour tones ride along
    (tmp_path / "clips").mkdir()
    make_folder(tmp_path / "clips")
    run_cli(
        [
            "data",
            "preview",
            "folder",
            "--root",
            str(tmp_path / "clips"),
            "-o",
            str(tmp_path / "f.png"),
            "--index",
            "1",
        ]
    )
    assert (tmp_path / "f.png").stat().st_size > 0
    with pytest.raises(VidgenError, match="--root"):
        run_cli(["data", "preview", "folder", "-o", str(tmp_path / "f.gif")])
