"""Frame-fidelity metrics: PSNR and SSIM, per frame and averaged.

Both take either
    torch float tensors in [-1, 1] (the library convention; data range 2): (B, C, T, H, W),
        (C, T, H, W) or a single image (C, H, W), or
    numpy uint8 frames (the I/O convention; data range 255): (T, H, W, 3) or one image (H, W, 3).

Scores are computed per frame (each frame of each video) and averaged, as video-prediction papers
report them; `reduction="none"` returns the per-frame values shaped (B, T). SSIM is Wang et al. (2004):
an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, per channel, averaged over the positions
where the window fits (so it matches `skimage.metrics.structural_similarity(..., gaussian_weights=True,
use_sample_covariance=False)`). Computation is in float64 on the inputs' device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from vidgen.errors import VidgenError

MAX_PSNR = 100.0  # identical frames would be +inf; capped so averages stay finite


def _prepare(a, b) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Both inputs as float64 (B, C, T, H, W) plus their data range."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype != np.uint8 or b.dtype != np.uint8:
            raise VidgenError(f"numpy inputs must be uint8 frames (T, H, W, 3); got {a.dtype} and {b.dtype}")
        if a.shape != b.shape:
            raise VidgenError(f"shapes differ: {a.shape} vs {b.shape}")
        if a.ndim == 3:
            a, b = a[None], b[None]
        if a.ndim != 4:
            raise VidgenError(f"uint8 frames must be (T, H, W, C) or (H, W, C); got {a.shape}")
        to = lambda x: rearrange(torch.from_numpy(x).double(), "t h w c -> 1 c t h w")
        return to(a), to(b), 255.0
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise VidgenError(
            f"expected two torch tensors or two uint8 arrays; got {type(a).__name__}, {type(b).__name__}"
        )
    if a.shape != b.shape:
        raise VidgenError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim == 3:  # (C, H, W)
        a, b = a[:, None], b[:, None]
    if a.ndim == 4:  # (C, T, H, W)
        a, b = a[None], b[None]
    if a.ndim != 5:
        raise VidgenError(f"tensors must be (B, C, T, H, W), (C, T, H, W) or (C, H, W); got {tuple(a.shape)}")
    # SSIM's luminance term is not shift invariant and assumes values in [0, range]: shift [-1, 1] to [0, 2].
    return a.detach().double() + 1.0, b.detach().to(a.device).double() + 1.0, 2.0


def _reduce(per_frame: torch.Tensor, reduction: str):
    if reduction == "mean":
        return float(per_frame.mean())
    if reduction == "none":
        return per_frame
    raise VidgenError(f"reduction must be 'mean' or 'none'; got {reduction!r}")


def psnr(a, b, reduction: str = "mean"):
    """Peak signal-to-noise ratio in dB, per frame then averaged (capped at 100 dB)."""
    a, b, data_range = _prepare(a, b)
    mse = (a - b).pow(2).mean(dim=(1, 3, 4))  # (B, T)
    per_frame = 10.0 * torch.log10(data_range**2 / mse.clamp_min(data_range**2 * 10 ** (-MAX_PSNR / 10)))
    return _reduce(per_frame, reduction)


def _gaussian_kernel(size: int, sigma: float, device) -> torch.Tensor:
    """1D normalised Gaussian (size,), float64; the 2D SSIM window is its outer product."""
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a, b, reduction: str = "mean", window_size: int = 11, sigma: float = 1.5):
    """Structural similarity, per frame (mean over channels and window positions), then averaged."""
    a, b, data_range = _prepare(a, b)
    batch, _channels, _frames, height, width = a.shape
    if min(height, width) < window_size:
        raise VidgenError(
            f"SSIM needs frames of at least {window_size}x{window_size} pixels; got {height}x{width}"
        )
    x = rearrange(a, "b c t h w -> (b t) c h w")
    y = rearrange(b, "b c t h w -> (b t) c h w")
    # The five local Gaussian-weighted means in one grouped conv per axis (the window is separable).
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (N, 5C, H, W)
    g = _gaussian_kernel(window_size, sigma, a.device)
    groups = stacked.shape[1]
    blurred = F.conv2d(stacked, g.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
    blurred = F.conv2d(blurred, g.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    mu_x, mu_y, mean_xx, mean_yy, mean_xy = blurred.chunk(5, dim=1)
    var_x = mean_xx - mu_x**2
    var_y = mean_yy - mu_y**2
    cov = mean_xy - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    per_frame = rearrange(ssim_map.mean(dim=(1, 2, 3)), "(b t) -> b t", b=batch)
    return _reduce(per_frame, reduction)
