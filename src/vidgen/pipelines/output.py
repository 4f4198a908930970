"""What every pipeline returns: a generated video you can look at, save, or keep computing with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vidgen.errors import VidgenError

SAVE_FORMATS = (".mp4", ".gif", ".mkv", ".png")


@dataclass
class GeneratedVideo:
    """A generated clip.

    tensor: float `(3, T, H, W)` in [-1, 1] (the library convention).
    fps: frames per second used when saving.
    info: what produced it (prompt, seed, steps, guidance, model, seconds), for reports and the web app.
    """

    tensor: torch.Tensor
    fps: float = 8.0
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.tensor.dim() != 4 or self.tensor.shape[0] != 3:
            raise VidgenError(f"a video tensor must be (3, T, H, W), got {tuple(self.tensor.shape)}")
        self.tensor = self.tensor.detach().float().cpu()

    @property
    def frames(self) -> np.ndarray:
        """uint8 `(T, H, W, 3)` frames."""
        from vidgen.io import tensor_to_frames

        return tensor_to_frames(self.tensor)

    @property
    def num_frames(self) -> int:
        return self.tensor.shape[1]

    def save(self, path: str | Path) -> Path:
        """Write the clip; the format follows the extension (.mp4, .gif, .mkv, or .png contact sheet)."""
        from vidgen.io import write_video

        path = Path(path)
        if path.suffix.lower() not in SAVE_FORMATS:
            raise VidgenError(f"cannot save a video as {path.name!r}: use one of {', '.join(SAVE_FORMATS)}")
        write_video(path, self.frames, fps=self.fps)
        return path

    def __repr__(self) -> str:
        t, h, w = self.tensor.shape[1:]
        info = {k: f"<tensor {tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}>" if isinstance(v, torch.Tensor) else v
                for k, v in self.info.items()}  # e.g. a task's region: its shape, not 65536 booleans
        return f"GeneratedVideo({t} frames, {h}x{w}, {self.fps:g} fps, info={info})"
