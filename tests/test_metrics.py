"""PSNR and SSIM agree with scikit-image on images and average per frame on videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vidgen.errors import VidgenError
from vidgen.evaluation.metrics import psnr, ssim
from vidgen.io import frames_to_tensor


def pair(seed: int, shape=(5, 24, 32, 3), noise=30):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, shape), 0, 255).astype(np.uint8)
    return a, b


def sk_ssim(a, b):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_images_match_skimage(seed):
    a, b = pair(seed, shape=(40, 52, 3), noise=20 + 20 * seed)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-3)
    assert ssim(a, b) == pytest.approx(sk_ssim(a, b), abs=1e-3)
    # Same numbers from library tensors in [-1, 1], shaped (C, H, W).
    ta, tb = frames_to_tensor(a[None])[:, 0], frames_to_tensor(b[None])[:, 0]
    assert psnr(ta, tb) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-3)
    assert ssim(ta, tb) == pytest.approx(sk_ssim(a, b), abs=1e-3)


def test_videos_average_per_frame_scores():
    a, b = pair(3)
    per_frame_psnr = [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b)]
    per_frame_ssim = [sk_ssim(x, y) for x, y in zip(a, b)]
    assert psnr(a, b) == pytest.approx(np.mean(per_frame_psnr), abs=1e-3)
    assert ssim(a, b) == pytest.approx(np.mean(per_frame_ssim), abs=1e-3)
    batch_a = torch.stack([frames_to_tensor(a), frames_to_tensor(b)])  # (2, 3, T, H, W)
    batch_b = torch.stack([frames_to_tensor(b), frames_to_tensor(b)])
    values = ssim(batch_a, batch_b, reduction="none")
    assert values.shape == (2, 5)
    np.testing.assert_allclose(values[0].numpy(), per_frame_ssim, atol=1e-3)
    np.testing.assert_allclose(values[1].numpy(), 1.0, atol=1e-9)
    assert psnr(batch_a, batch_b, reduction="none")[1].eq(100.0).all()  # identical frames are capped


def test_worse_reconstructions_score_lower_and_bf16_works():
    a, slightly = pair(4, noise=5)
    _, badly = pair(4, noise=80)
    assert psnr(a, slightly) > psnr(a, badly) and ssim(a, slightly) > ssim(a, badly)
    ta, tb = frames_to_tensor(a), frames_to_tensor(slightly)
    assert psnr(ta.bfloat16(), tb.bfloat16()) == pytest.approx(psnr(ta, tb), abs=0.5)


def test_bad_inputs():
    a, b = pair(5)
    with pytest.raises(VidgenError, match="shapes differ"):
        psnr(a, b[:, :10])
    with pytest.raises(VidgenError, match="at least 11x11"):
        ssim(a[:, :8, :8], b[:, :8, :8])
    with pytest.raises(VidgenError, match="uint8"):
        psnr(a.astype(np.float32), b.astype(np.float32))
    with pytest.raises(VidgenError, match="reduction"):
        psnr(a, b, reduction="sum")
