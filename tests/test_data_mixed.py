"""The "shapes+digits" dataset: mixing, splits, global class ids, item keys."""

import pytest
import torch

from vidgen.data import collate, get_dataset
from vidgen.data.digits import split_indices
from vidgen.data.mixed import NUM_CLASSES, class_names
from vidgen.data.shapes import HELDOUT_TRIPLES, class_id
from vidgen.errors import VidgenError


def small(**kwargs):
    return get_dataset("shapes+digits", **{"num_items": 20, "size": 32, "num_frames": 4, **kwargs})


def test_mix_is_even_and_exact():
    ds = small(digits_fraction=0.3)
    sources = [ds.source_of(i) for i in range(len(ds))]
    digits = [i for i, (s, _) in enumerate(sources) if s == "digits"]
    assert len(digits) == 6                                   # round(20 * 0.3)
    # every window of 10 items holds 3 digits, and sub-indices count up within each source
    assert sum(1 for i in digits if i < 10) == 3
    assert [j for s, j in sources if s == "digits"] == list(range(6))
    assert [j for s, j in sources if s == "shapes"] == list(range(14))


def test_items_keys_and_class_ids():
    ds = small(digits_fraction=0.5)
    for i in range(4):
        item = ds[i]
        assert set(item) == {"video", "caption", "canonical_caption", "class_id", "source", "objects", "index", "fps"}
        assert item["video"].shape == (3, 4, 32, 32)
        assert item["video"].min() >= -1 and item["video"].max() <= 1
        if item["source"] == "digits":
            assert 72 <= item["class_id"] < 82 and item["objects"] == []
            assert item["canonical_caption"].startswith(f"the digit {item['class_id'] - 72}")
        else:
            obj = item["objects"][0]
            assert len(item["objects"]) == 1                  # single objects only
            assert item["class_id"] == class_id(obj["colour"], obj["shape"], obj["motion"])


def test_deterministic_and_collates():
    a, b = small(seed=3), small(seed=3)
    assert torch.equal(a[5]["video"], b[5]["video"]) and a[5]["caption"] == b[5]["caption"]
    assert not torch.equal(small(seed=4)[5]["video"], a[5]["video"]) or a[5]["source"] == "digits"
    batch = collate([a[i] for i in range(4)])
    assert batch["video"].shape == (4, 3, 4, 32, 32) and batch["class_id"].dtype == torch.long
    assert len(batch["source"]) == 4


def test_heldout_split_uses_heldout_triples_and_test_digits():
    ds = small(split="heldout", digits_fraction=0.5)
    test_images = set(split_indices("test").tolist())
    for i in range(6):
        item = ds[i]
        if item["source"] == "shapes":
            o = item["objects"][0]
            assert (o["colour"], o["shape"], o["motion"]) in HELDOUT_TRIPLES
        else:
            assert int(ds.digits[ds.source_of(i)[1]]["labels"]["image_index"][0]) in test_images


def test_class_names_and_errors():
    names = class_names()
    assert len(names) == NUM_CLASSES == 82
    assert names[class_id("red", "circle", "left")] == "red circle moving left" and names[75] == "digit 3"
    with pytest.raises(VidgenError, match="split"):
        small(split="test")
    with pytest.raises(VidgenError, match="digits_fraction"):
        small(digits_fraction=1.5)
    all_shapes = small(digits_fraction=0.0)
    assert all(all_shapes.source_of(i)[0] == "shapes" for i in range(20))
