"""Training-time augmentation of video batches (B, C, T, H, W), shared by every training objective.

Random draws come from the `torch.Generator` the trainer passes to the objective (it is checkpointed),
so a resumed run crops exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import torch

from vidgen.diffusion.rng import randint
from vidgen.errors import VidgenError

__all__ = ["random_crop"]


def random_crop(video: torch.Tensor, size: int, frames: int, generator: torch.Generator,
                settings: str = "crop_size / crop_frames") -> torch.Tensor:
    """Per-clip random crop of video (B, C, T, H, W) to (B, C, frames, size, size); 0 keeps a dim.

    Each clip gets its own offsets (drawn from `generator`: time, then rows, then columns). Returns
    `video` itself when nothing is cropped. `settings` names the options to lower in the error raised
    when the crop is larger than the clips.
    """
    b, _, t, h, w = video.shape
    size_h, size_w = (size or h), (size or w)
    frames = frames or t
    if size_h > h or size_w > w or frames > t:
        raise VidgenError(f"crop ({frames} frames, {size} px) is larger than the clips "
                          f"({t} frames, {h}x{w}); lower {settings}")
    if (size_h, size_w, frames) == (h, w, t):
        return video
    t0 = randint(0, t - frames + 1, (b,), generator).tolist()
    y0 = randint(0, h - size_h + 1, (b,), generator).tolist()
    x0 = randint(0, w - size_w + 1, (b,), generator).tolist()
    return torch.stack([video[i, :, t0[i]:t0[i] + frames, y0[i]:y0[i] + size_h, x0[i]:x0[i] + size_w]
                        for i in range(b)])
