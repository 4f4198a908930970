"""What the web app lets a visitor ask for, checked before any work is done.

A served model may accept far more than the machine can afford (a 49-frame 256x256 video with 1000
steps takes hours on a CPU). `Limits` is the server's own ceiling, set by `vidgen serve --max-*`; a
request above it is refused with a message that names the value, the limit and the option raising it.
Uploads (for the video tasks) are checked the same way: size on disk, duration, and that they decode.

Nothing here imports gradio: these functions are tested directly.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidgen.errors import VideoReadError, VidgenError

# Containers whose duration PyAV can read from the header, so an overlong upload is refused before
# any frame is decoded.
_PROBE_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")


@dataclass(frozen=True)
class Limits:
    """The server's ceilings (inclusive).

    max_frames: frames per generated video.
    max_size: height and width in pixels.
    max_steps: denoising (or decoding) steps.
    max_upload_mb: size of an uploaded video file, in MiB.
    max_upload_seconds: duration of an uploaded video.
    queue_size: requests allowed to wait for the single worker; more are turned away.
    """

    max_frames: int = 49
    max_size: int = 256
    max_steps: int = 100
    max_upload_mb: float = 50.0
    max_upload_seconds: float = 60.0
    queue_size: int = 16

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_size", "max_steps", "queue_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise VidgenError(f"{name}={value!r} must be a positive integer")
        for name in ("max_upload_mb", "max_upload_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise VidgenError(f"{name}={value!r} must be a positive number")


def _as_int(value, label: str) -> int:
    """Gradio numbers arrive as floats (or None when a box is cleared): accept whole numbers only."""
    if value is None or isinstance(value, bool):
        raise VidgenError(f"{label} is missing: give a whole number")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise VidgenError(f"{label}={value!r} must be a whole number")
        value = int(value)
    if not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise VidgenError(f"{label}={value!r} must be a whole number") from None
    return value


def check_limits(limits: Limits, num_frames, height, width, steps) -> tuple[int, int, int, int]:
    """Refuse a generation request above the server's limits; return the values as ints.

    The model's own rules (4k+1 frames, multiples of its size step) are checked by the pipeline
    (`check_request`); this only protects the machine.
    """
    num_frames = _as_int(num_frames, "frames")
    height, width = _as_int(height, "height"), _as_int(width, "width")
    steps = _as_int(steps, "steps")
    if not 1 <= num_frames <= limits.max_frames:
        raise VidgenError(f"frames={num_frames} is above this server's limit of {limits.max_frames} frames "
                          "(allowed: 1 to that; `vidgen serve --max-frames` raises it)"
                          if num_frames > 0 else f"frames={num_frames} must be at least 1")
    for label, size in (("height", height), ("width", width)):
        if not 1 <= size <= limits.max_size:
            raise VidgenError(f"{label}={size} is above this server's limit of {limits.max_size} pixels "
                              "(`vidgen serve --max-size` raises it)"
                              if size > 0 else f"{label}={size} must be a positive number of pixels")
    if not 1 <= steps <= limits.max_steps:
        raise VidgenError(f"steps={steps} is above this server's limit of {limits.max_steps} "
                          "(`vidgen serve --max-steps` raises it)"
                          if steps > 0 else f"steps={steps} must be at least 1")
    return num_frames, height, width, steps


def check_seed(seed) -> int:
    seed = _as_int(seed, "seed")
    if not 0 <= seed < 2**63:
        raise VidgenError(f"seed={seed} must be in 0 .. 2**63 - 1")
    return seed


def frame_choices(frame_step: int, model_max: int, limits: Limits) -> list[int]:
    """Frame counts a model takes (`frame_step * k + 1`) that the server allows, smallest first."""
    top = min(model_max, limits.max_frames)
    return list(range(1, top + 1, max(1, frame_step)))


def size_choices(size_step: int, model_max: int, limits: Limits) -> list[int]:
    """Heights/widths a model takes (multiples of `size_step`) that the server allows."""
    step = max(1, size_step)
    return list(range(step, min(model_max, limits.max_size) + 1, step))


def nearest_choice(value: int | None, choices: list[int]) -> int | None:
    """The allowed value closest to a model default (which may be above the server's limits)."""
    if not choices:
        return None
    if value is None:
        return choices[0]
    return min(choices, key=lambda c: (abs(c - value), c))


def _probe_duration(path: Path) -> float | None:
    """Duration in seconds from the container header, or None when it does not say (or cannot be read:
    decoding reports that properly)."""
    if path.suffix.lower() not in _PROBE_EXTENSIONS:
        return None
    try:
        import av

        with av.open(str(path)) as container:
            if container.duration is not None:
                return container.duration / av.time_base
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except Exception:  # noqa: BLE001 -- any failure here is reported by read_video with a proper message
        return None
    return None


def validate_upload(path: str | os.PathLike | None, limits: Limits, num_frames: int | None = None,
                    fps: float | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Check an uploaded video and decode it into what a task pipeline takes.

    Args:
        path: the uploaded file (None when nothing was uploaded).
        num_frames: frames to return: the first `num_frames` at `fps`; a shorter clip is completed by
            repeating its last frame. None returns every frame.
        fps: resample time to this rate (the model's); None keeps the file's frames.
        size: (height, width): resize so the shorter side fits, then center-crop.

    Returns:
        uint8 (T, H, W, 3) frames.

    Raises:
        VidgenError: nothing uploaded, file too large, video too long.
        VideoReadError: the file does not decode as a video (its message says why).
    """
    from vidgen.io import read_video

    if path is None or not str(path).strip():
        raise VidgenError("no video uploaded: upload a video file (mp4, webm, mov, mkv, avi or gif)")
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"the uploaded file {path.name!r} is missing on the server: upload it again")
    megabytes = path.stat().st_size / 2**20
    if megabytes > limits.max_upload_mb:
        raise VidgenError(f"the uploaded file is {megabytes:.1f} MB; this server takes at most "
                          f"{limits.max_upload_mb:g} MB (`vidgen serve --max-upload-mb` raises it)")
    seconds = _probe_duration(path)
    if seconds is not None and seconds > limits.max_upload_seconds:
        raise VidgenError(f"the uploaded video lasts {seconds:.1f} s; this server takes at most "
                          f"{limits.max_upload_seconds:g} s: trim it first")
    try:
        clip = read_video(path, fps=fps, size=size, audio=False)
    except VideoReadError as error:
        raise VideoReadError(f"the upload is not a readable video: {error}") from None
    if clip.duration > limits.max_upload_seconds:
        raise VidgenError(f"the uploaded video lasts {clip.duration:.1f} s; this server takes at most "
                          f"{limits.max_upload_seconds:g} s: trim it first")
    frames = clip.frames
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[-1] != 3:
        raise VideoReadError(f"the upload decoded to no usable frames (shape {tuple(frames.shape)})")
    if num_frames is not None:
        frames = frames[:num_frames]
        if frames.shape[0] < num_frames:
            pad = np.repeat(frames[-1:], num_frames - frames.shape[0], axis=0)
            frames = np.concatenate([frames, pad], axis=0)
    return np.ascontiguousarray(frames)
