"""Reading and writing videos, images and contact sheets: the I/O edge of vidgen.

Conventions (the only place the two representations meet):

    library   float tensor in [-1, 1], channels first: (B, C, T, H, W) or (C, T, H, W), C = 3 (RGB)
    I/O edge  uint8 numpy array in [0, 255], channels last: (T, H, W, 3)

`frames_to_tensor` and `tensor_to_frames` convert between them (the latter clamps and rounds, so any
model output can be written). Every reader returns uint8 `(T, H, W, 3)` frames; every writer takes them
(or a library tensor, converted with `tensor_to_frames`).

Reading (`read_video`) accepts video containers decoded by PyAV (mp4, webm, mkv, mov, avi, m4v), GIFs
(Pillow), a single image (png, jpg, jpeg, bmp, webp: a one-frame video) or a folder of frame images
(sorted by file name). It can resample time to a target fps (nearest frame to each target time), take
`num_frames` frames from `start` seconds, and resize + center-crop. Folders and images carry no timing:
they are taken to be at `fps` (8 if not given). Every failure is a `VideoReadError` naming the file.

Writing (`write_video`) picks the format from the extension:

    .mp4  H.264 (libx264, yuv420p, crf 18); odd sizes are padded to even by repeating the last
          row/column; with `audio`, an AAC track
    .mkv  lossless FFV1 (RGB, no chroma conversion): frames read back bit-exact; with `audio`, a FLAC track
    .gif  Pillow, adaptive palette per frame, loops forever, frame duration 1000 / fps ms
    .png  a contact sheet (grid of all frames; see `write_contact_sheet`)

Writes go to a temporary file in the target folder which is then renamed over the target, so a crash
never leaves a half-written file under the requested name.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence

from vidgen.errors import VideoReadError, VidgenError
from vidgen.modeling import atomic_write

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")
GIF_EXTENSIONS = (".gif",)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
READABLE_EXTENSIONS = VIDEO_EXTENSIONS + GIF_EXTENSIONS + IMAGE_EXTENSIONS
WRITABLE_EXTENSIONS = (".mp4", ".mkv", ".gif", ".png")

# Frames of images and frame folders have no timestamps; this is their rate unless `fps` is given.
DEFAULT_FPS = 8.0


@dataclass
class VideoClip:
    """Decoded frames plus timing and (optionally) the audio track.

    frames:      uint8 (T, H, W, 3)
    fps:         frames per second of `frames` (after any resampling)
    audio:       float32 (N,) mono waveform in [-1, 1] covering the same time span, or None
    sample_rate: samples per second of `audio`, or None
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None = None
    sample_rate: int | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Seconds covered by the frames."""
        return self.num_frames / self.fps

    def to_tensor(self) -> torch.Tensor:
        """The frames in the library convention: float (3, T, H, W) in [-1, 1]."""
        return frames_to_tensor(self.frames)


# ----------------------------------------------------------------------------- conventions


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) in [0, 255] -> float32 (3, T, H, W) in [-1, 1]."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise VidgenError(
            f"frames must be a uint8 array shaped (T, H, W, 3); got {frames.dtype} {tuple(frames.shape)}"
        )
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)  # (3, T, H, W)
    return video.float().div(127.5).sub(1.0)


def tensor_to_frames(video: torch.Tensor) -> np.ndarray:
    """float (3, T, H, W) or (1, 3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3).

    Values are clamped to [-1, 1] and rounded, so raw model outputs can be passed directly. A single
    channel (1, T, H, W) is repeated to grey RGB.
    """
    if not isinstance(video, torch.Tensor):
        raise VidgenError(f"expected a torch.Tensor video, got {type(video).__name__}")
    if video.ndim == 5:
        if video.shape[0] != 1:
            raise VidgenError(
                f"tensor_to_frames takes one video; got a batch of {video.shape[0]} "
                f"(shape {tuple(video.shape)}): index it first"
            )
        video = video[0]
    if video.ndim != 4 or video.shape[0] not in (1, 3):
        raise VidgenError(
            f"video tensor must be shaped (3, T, H, W) or (1, 3, T, H, W); got {tuple(video.shape)}"
        )
    video = video.detach().float().cpu()
    if video.shape[0] == 1:
        video = video.expand(3, -1, -1, -1)
    frames = ((video.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).contiguous().numpy()  # (T, H, W, 3)


def _as_frames(frames) -> np.ndarray:
    """Accept uint8 (T, H, W, 3) arrays, or library tensors; return uint8 (T, H, W, 3)."""
    if isinstance(frames, torch.Tensor):
        if frames.dtype == torch.uint8:
            frames = frames.cpu().numpy()
        else:
            return tensor_to_frames(frames)
    frames = np.asarray(frames)
    if frames.ndim == 3 and frames.shape[-1] == 3:  # a single image
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise VidgenError(
            "frames must be uint8 (T, H, W, 3) with T >= 1, or a float tensor (3, T, H, W) in [-1, 1]; "
            f"got {frames.dtype} {tuple(frames.shape)}"
        )
    return frames


# ----------------------------------------------------------------------------- resizing


def _parse_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        height = width = int(size)
    else:
        try:
            height, width = (int(s) for s in size)
        except (TypeError, ValueError):
            raise VidgenError(f"size must be an int or (height, width); got {size!r}") from None
    if height < 1 or width < 1:
        raise VidgenError(f"size must be positive; got {size!r}")
    return height, width


def resize_and_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale `image` so it covers `size` = (H, W) (the shorter side fits), then center-crop to it.

    One Pillow call does both: `box` is the centered source region with the target's aspect ratio.
    Bicubic is antialiased when shrinking (Pillow widens the filter by the scale factor).
    """
    height, width = size
    scale = max(height / image.height, width / image.width)
    box_w, box_h = width / scale, height / scale
    left, top = (image.width - box_w) / 2, (image.height - box_h) / 2
    if (image.width, image.height) == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.BICUBIC, box=(left, top, left + box_w, top + box_h))


# ----------------------------------------------------------------------------- reading

# A decoded source frame: its time in seconds from the first frame, and a function returning it as a
# PIL image (conversion is deferred so frames that resampling skips are never converted).
_SourceFrame = tuple[float, Callable[[], Image.Image]]


def read_video(
    path: str | os.PathLike,
    num_frames: int | None = None,
    fps: float | None = None,
    size: int | Sequence[int] | None = None,
    start: float = 0.0,
    *,
    pad: bool = False,
    audio: bool = True,
    sample_rate: int | None = None,
) -> VideoClip:
    """Read a video, GIF, image or folder of frames into uint8 (T, H, W, 3) frames.

    Args:
        path: a video file, GIF, image, or a folder of png/jpg frames (sorted by name).
        num_frames: frames to return (all from `start` to the end if None).
        fps: resample time to this rate by taking the source frame nearest to each target time
            `start + k / fps`; None keeps the source frames as they are.
        size: int (square) or (H, W): resize so the shorter side fits, then center-crop.
        start: seconds to skip at the beginning.
        pad: if the source has fewer than `num_frames` frames, repeat its last frame instead of raising.
        audio: also decode the audio track of a video file, if it has one.
        sample_rate: resample audio to this rate (the track's own rate if None).

    Raises:
        VideoReadError: missing, empty, corrupt or unsupported file, or fewer than `num_frames`
            frames (the message says how many there are).
    """
    path = Path(path)
    if num_frames is not None and int(num_frames) < 1:
        raise VidgenError(f"num_frames must be >= 1; got {num_frames}")
    if fps is not None and not fps > 0:
        raise VidgenError(f"fps must be > 0; got {fps}")
    if start < 0:
        raise VidgenError(f"start must be >= 0 seconds; got {start}")
    out_size = _parse_size(size)

    if not path.exists():
        raise VideoReadError(f"{path}: no such file or folder")
    if path.is_dir():
        source_fps = float(fps or DEFAULT_FPS)
        source = _folder_frames(path, source_fps)
        kind = "folder"
    else:
        suffix = path.suffix.lower()
        if suffix not in READABLE_EXTENSIONS:
            raise VideoReadError(
                f"{path}: unsupported file type {suffix or '(no extension)'!r}; "
                f"readable: {', '.join(READABLE_EXTENSIONS)} or a folder of frames"
            )
        if path.stat().st_size == 0:
            raise VideoReadError(f"{path}: file is empty (0 bytes)")
        if suffix in IMAGE_EXTENSIONS:
            source_fps = float(fps or DEFAULT_FPS)
            source, kind = _image_frames(path), "image"
        elif suffix in GIF_EXTENSIONS:
            source_fps, source = _gif_frames(path)
            kind = "gif"
        else:
            source_fps, source = _av_frames(path)
            kind = "video"

    frames, out_fps = _select_frames(path, source, source_fps, num_frames, fps, start, pad, out_size)
    clip = VideoClip(frames=frames, fps=out_fps)
    if audio and kind == "video":
        track = _decode_audio(path, sample_rate, start, clip.duration, required=False)
        if track is not None:
            clip.audio, clip.sample_rate = track
    return clip


def _select_frames(
    path: Path,
    source: Iterator[_SourceFrame],
    source_fps: float,
    num_frames: int | None,
    fps: float | None,
    start: float,
    pad: bool,
    size: tuple[int, int] | None,
) -> tuple[np.ndarray, float]:
    """Stream source frames, keep the one nearest to each target time; convert and resize only those."""
    out_fps = float(fps) if fps is not None else source_fps
    half = 0.5 / source_fps
    chosen: list[np.ndarray] = []
    converted: dict[int, np.ndarray] = {}  # source index -> frame (slow-down resampling repeats frames)
    prev: tuple[int, float, Callable[[], Image.Image]] | None = None
    total = 0

    def pick(index: int, get: Callable[[], Image.Image]) -> None:
        if index not in converted:
            image = get().convert("RGB")
            if size is not None:
                image = resize_and_crop(image, size)
            converted.clear()  # indices only grow: older frames are never picked again
            converted[index] = np.asarray(image, dtype=np.uint8)
        chosen.append(converted[index])

    def target() -> float:
        return start + len(chosen) / out_fps

    def done() -> bool:
        return num_frames is not None and len(chosen) >= num_frames

    try:
        for index, (time, get) in enumerate(source):
            total += 1
            if fps is None:
                # No resampling: every frame from `start` on.
                if time >= start - half:
                    pick(index, get)
            else:
                while not done() and time >= target() - 1e-9:
                    t = target()
                    if prev is not None and t - prev[1] <= time - t:
                        pick(prev[0], prev[2])
                    else:
                        pick(index, get)
            if done():
                break
            prev = (index, time, get)
        else:
            # Source exhausted: target times before the end of the last frame show that frame.
            if fps is not None and prev is not None:
                end = prev[1] + 1.0 / source_fps
                while not done() and target() < end - 1e-9:
                    pick(prev[0], prev[2])
    except VidgenError:
        raise
    except Exception as error:  # codec errors from PyAV/Pillow: name the file, no codec traceback
        raise VideoReadError(f"{path}: could not decode ({type(error).__name__}: {error})") from error
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()

    if total == 0:
        raise VideoReadError(f"{path}: contains no decodable frames")
    if not chosen:
        raise VideoReadError(f"{path}: no frames after start={start:g} s (it has {total} frames)")
    if num_frames is not None and len(chosen) < num_frames:
        if not pad:
            rate = f"at {out_fps:g} fps " if fps is not None else ""
            raise VideoReadError(
                f"{path}: has only {len(chosen)} frames {rate}from {start:g} s "
                f"({total} source frames at {source_fps:g} fps); asked for {num_frames}"
            )
        chosen += [chosen[-1]] * (num_frames - len(chosen))
    if len({frame.shape for frame in chosen}) != 1:  # e.g. a frame folder of mixed sizes, no `size`
        raise VideoReadError(f"{path}: frames have different sizes; pass size=... to resize them")
    return np.stack(chosen), out_fps


def _image_frames(path: Path) -> Iterator[_SourceFrame]:
    def get() -> Image.Image:
        try:
            with Image.open(path) as image:
                image.load()
                return image.convert("RGB")
        except Exception as error:
            raise VideoReadError(f"{path}: not a readable image ({error})") from error

    # Open once now so a corrupt image fails here with a clear message.
    get()
    yield 0.0, get


def _folder_frames(path: Path, fps: float) -> Iterator[_SourceFrame]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise VideoReadError(f"{path}: folder contains no frame images ({', '.join(IMAGE_EXTENSIONS)})")

    def frames() -> Iterator[_SourceFrame]:
        for index, file in enumerate(files):

            def get(file: Path = file) -> Image.Image:
                try:
                    with Image.open(file) as image:
                        return image.convert("RGB")
                except Exception as error:
                    raise VideoReadError(f"{file}: not a readable image ({error})") from error

            yield index / fps, get

    return frames()


def _gif_frames(path: Path) -> tuple[float, Iterator[_SourceFrame]]:
    try:
        image = Image.open(path)
        durations = []
        for frame in ImageSequence.Iterator(image):
            durations.append(frame.info.get("duration", 100) or 100)
    except Exception as error:
        raise VideoReadError(f"{path}: not a readable GIF ({error})") from error
    # Browsers treat delays under 20 ms as 100 ms; do the same so odd GIFs get a sensible rate.
    durations = [d if d >= 20 else 100 for d in durations]
    fps = 1000.0 / float(np.median(durations))
    times = np.concatenate([[0.0], np.cumsum(durations[:-1]) / 1000.0])

    def frames() -> Iterator[_SourceFrame]:
        for index, frame in enumerate(ImageSequence.Iterator(image)):
            rgb = frame.convert("RGB")  # composited full frame (Pillow applies disposal)
            yield float(times[index]), (lambda rgb=rgb: rgb)

    return fps, frames()


def _av_frames(path: Path) -> tuple[float, Iterator[_SourceFrame]]:
    import av

    try:
        container = av.open(str(path))
    except Exception as error:
        raise VideoReadError(f"{path}: not a readable video ({type(error).__name__}: {error})") from error
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 25.0

    def frames() -> Iterator[_SourceFrame]:
        try:
            first = None
            for index, frame in enumerate(container.decode(stream)):
                time = frame.time if frame.time is not None else index / fps
                first = time if first is None else first
                yield time - first, frame.to_image
        finally:
            container.close()

    return fps, frames()


# ----------------------------------------------------------------------------- audio


def _decode_audio(
    path: Path, sample_rate: int | None, start: float, duration: float | None, required: bool
) -> tuple[np.ndarray, int] | None:
    """Decode the first audio stream as float32 mono at `sample_rate`; None if there is none."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                if required:
                    raise VideoReadError(f"{path}: has no audio stream")
                return None
            stream = container.streams.audio[0]
            rate = int(sample_rate or stream.rate or stream.codec_context.sample_rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = []
            stop = None if duration is None else round((start + duration) * rate)
            got = 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    got += chunk.size
                if stop is not None and got >= stop:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except VidgenError:
        raise
    except Exception as error:
        message = f"{path}: could not decode audio ({type(error).__name__}: {error})"
        if required:
            raise VideoReadError(message) from error
        # The frames were fine: return them without audio rather than failing the whole read.
        warnings.warn(message + "; returning the video without audio", stacklevel=3)
        return None
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    begin = round(start * rate)
    samples = samples[begin:]
    if duration is not None:
        length = round(duration * rate)
        samples = np.pad(samples[:length], (0, max(0, length - samples[:length].size)))
    return samples.astype(np.float32), rate


def read_audio(
    path: str | os.PathLike, sample_rate: int = 16000, start: float = 0.0, duration: float | None = None
) -> np.ndarray:
    """Read the (first) audio track of a wav/flac/mp3/video file as float32 mono (N,) at `sample_rate`."""
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: file is empty (0 bytes)")
    audio, _ = _decode_audio(path, sample_rate, start, duration, required=True)
    return audio


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write a float mono waveform in [-1, 1] as a 16-bit PCM .wav file (stdlib `wave`)."""
    import wave

    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise VidgenError(f"write_audio writes .wav files; got {path.name!r}")
    audio = _as_audio(audio)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(int(sample_rate))
            out.writeframes(pcm.tobytes())

    atomic_write(path, write)
    return path


def _as_audio(audio) -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().float().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if audio.ndim != 1:
        raise VidgenError(f"audio must be a mono waveform shaped (N,); got shape {audio.shape}")
    return audio


# ----------------------------------------------------------------------------- writing


def write_video(
    path: str | os.PathLike,
    frames,
    fps: float = 8,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
) -> Path:
    """Write uint8 (T, H, W, 3) frames (or a float tensor (3, T, H, W) in [-1, 1]) to `path`.

    The extension picks the format: .mp4 (H.264, optional AAC audio), .mkv (lossless FFV1, optional
    FLAC audio), .gif (looping, no audio) or .png (contact sheet). Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_EXTENSIONS:
        raise VidgenError(
            f"cannot write {path.name!r}: unsupported extension {suffix or '(none)'!r}; "
            f"allowed: {', '.join(WRITABLE_EXTENSIONS)}"
        )
    frames = _as_frames(frames)
    if not fps > 0:
        raise VidgenError(f"fps must be > 0; got {fps}")
    if audio is not None:
        if suffix not in (".mp4", ".mkv"):
            raise VidgenError(f"audio can be written to .mp4 or .mkv, not {suffix}")
        if not sample_rate:
            raise VidgenError("sample_rate is required when audio is given")
        audio = _as_audio(audio)

    if suffix == ".png":
        return write_contact_sheet(path, frames)
    if suffix == ".gif":
        atomic_write(path, lambda tmp: _write_gif(tmp, frames, fps))
    else:
        atomic_write(path, lambda tmp: _write_av(tmp, suffix, frames, fps, audio, sample_rate))
    return path


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    images = [
        Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE, colors=256) for frame in frames
    ]
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=round(1000.0 / fps),
        loop=0,
    )


def _write_av(
    path: Path, suffix: str, frames: np.ndarray, fps: float, audio: np.ndarray | None, sample_rate
) -> None:
    import av

    rate = Fraction(fps).limit_denominator(1001)
    if suffix == ".mp4":
        # yuv420p halves chroma resolution, so H.264 needs even sizes: repeat the last row/column.
        pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        stream = container.add_stream("libx264", rate=rate)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "medium"}
        audio_codec = "aac"
    else:
        container = av.open(str(path), "w", format="matroska")
        stream = container.add_stream("ffv1", rate=rate)
        stream.pix_fmt = "bgr0"  # packed RGB: no colour-space conversion, so the round trip is exact
        audio_codec = "flac"
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    with container:
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream(audio_codec, rate=int(sample_rate), layout="mono")
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = index
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio_stream is not None:
            _encode_audio(container, audio_stream, audio, int(sample_rate))


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    import av

    # Encoders take fixed-size frames (1024 samples for AAC); feed chunks of that size.
    chunk = stream.codec_context.frame_size or 1024
    sample_format = stream.codec_context.format.name  # "fltp" for AAC, "s16"/"s32" for FLAC
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    for offset in range(0, audio.size, chunk):
        piece = audio[offset : offset + chunk]
        if sample_format.startswith("flt"):
            data = piece[None]
            fmt = sample_format
        else:
            data = (piece * 32767.0).round().astype(np.int16)[None]
            fmt = "s16"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = offset
        frame.time_base = Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def contact_sheet(
    frames, columns: int | None = None, gap: int = 2, scale: int = 1, gap_value: int = 96
) -> np.ndarray:
    """Arrange frames (T, H, W, 3) in a grid, left to right then top to bottom: uint8 (H', W', 3).

    `columns` defaults to min(T, 8); frames are separated by `gap` grey pixels and can be enlarged
    `scale` times (nearest neighbour) for viewing small videos.
    """
    frames = _as_frames(frames)
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    count, height, width, _ = frames.shape
    columns = min(count, 8) if columns is None else int(columns)
    if columns < 1:
        raise VidgenError(f"columns must be >= 1; got {columns}")
    rows = -(-count // columns)
    sheet = np.full(
        (rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, 3), gap_value, np.uint8
    )
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        top, left = row * (height + gap), column * (width + gap)
        sheet[top : top + height, left : left + width] = frame
    return sheet


def write_contact_sheet(
    path: str | os.PathLike, frames, columns: int | None = None, gap: int = 2, scale: int = 1
) -> Path:
    """Write a PNG grid of all frames (see `contact_sheet`). Returns the path written."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise VidgenError(f"contact sheets are written as .png; got {path.name!r}")
    sheet = contact_sheet(frames, columns=columns, gap=gap, scale=scale)
    atomic_write(path, lambda tmp: Image.fromarray(sheet).save(tmp, format="PNG"))
    return path
