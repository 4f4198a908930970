"""Video/image/audio I/O: conventions, round trips per format, time resampling, cropping, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vidgen.errors import VideoReadError, VidgenError
from vidgen.io import (
    contact_sheet,
    frames_to_tensor,
    read_audio,
    read_video,
    tensor_to_frames,
    write_audio,
    write_contact_sheet,
    write_video,
)
from vidgen.io import video as video_module


def indexed_frames(count: int, height: int = 16, width: int = 24) -> np.ndarray:
    """Frame k is a flat grey of value 10 * k: the frame index can be read back from any pixel."""
    values = (np.arange(count) * 10).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (count, height, width, 3)).copy()


def frame_ids(frames: np.ndarray) -> list[int]:
    return [round(v / 10) for v in frames[:, 0, 0, 0]]


def smooth_frames(count: int, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    frames = [
        np.stack([(xx * 4 + 8 * t) % 256, (yy * 6) % 256, np.full_like(xx, 100 + t)], -1)
        for t in range(count)
    ]
    return np.stack(frames).astype(np.uint8)


def tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    return (0.4 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def peak_frequency(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(audio.size, 1 / rate)[spectrum.argmax()])


# ----------------------------------------------------------------------------- conventions


def test_tensor_frames_round_trip_is_exact():
    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    video = frames_to_tensor(frames)
    assert video.shape == (3, 3, 5, 7) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1
    assert video[0, 1, 2, 3] == pytest.approx(frames[1, 2, 3, 0] / 127.5 - 1)
    np.testing.assert_array_equal(tensor_to_frames(video), frames)
    np.testing.assert_array_equal(tensor_to_frames(video[None]), frames)  # (1, 3, T, H, W)


def test_tensor_to_frames_clamps_rounds_and_rejects_bad_shapes():
    video = torch.tensor([-3.0, -1.0, 0.0, 0.999, 5.0]).view(1, 1, 1, 5).expand(3, 1, 1, 5)
    frames = tensor_to_frames(video.to(torch.bfloat16))
    assert frames.dtype == np.uint8 and frames.shape == (1, 1, 5, 3)
    assert frames[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(VidgenError, match="batch of 2"):
        tensor_to_frames(torch.zeros(2, 3, 1, 4, 4))
    with pytest.raises(VidgenError, match=r"\(3, T, H, W\)"):
        tensor_to_frames(torch.zeros(4, 4))
    with pytest.raises(VidgenError, match="uint8"):
        frames_to_tensor(np.zeros((2, 4, 4, 3), np.float32))


# ----------------------------------------------------------------------------- writing and reading back


def test_mkv_is_lossless_with_flac_audio(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (6, 13, 17, 3), dtype=np.uint8)  # odd sizes too
    audio = tone(440, 6 / 8, 16000)
    path = write_video(tmp_path / "clip.mkv", frames, fps=8, audio=audio, sample_rate=16000)
    clip = read_video(path)
    np.testing.assert_array_equal(clip.frames, frames)
    assert clip.fps == pytest.approx(8)
    assert clip.sample_rate == 16000 and clip.audio.shape == audio.shape
    assert np.abs(clip.audio - audio).max() < 1e-3


def test_mp4_pads_odd_sizes_and_carries_aac_audio(tmp_path):
    frames = smooth_frames(12, 31, 45)
    audio = tone(440, 12 / 8, 16000)
    write_video(tmp_path / "clip.mp4", frames, fps=8, audio=audio, sample_rate=16000)
    clip = read_video(tmp_path / "clip.mp4")
    assert clip.frames.shape == (12, 32, 46, 3)  # padded to even for yuv420p
    assert clip.fps == pytest.approx(8)
    assert np.abs(clip.frames[:, :31, :45].astype(int) - frames).mean() < 4  # H.264 at crf 18
    assert clip.audio is not None and clip.audio.shape == (audio.size,)
    assert peak_frequency(clip.audio, 16000) == pytest.approx(440, abs=2)
    assert read_video(tmp_path / "clip.mp4", audio=False).audio is None


def test_gif_loops_forever_and_reads_back(tmp_path):
    frames = smooth_frames(5, 20, 30)
    write_video(tmp_path / "clip.gif", frames, fps=10)
    with Image.open(tmp_path / "clip.gif") as image:
        assert image.info["loop"] == 0 and image.info["duration"] == 100 and image.n_frames == 5
    clip = read_video(tmp_path / "clip.gif")
    assert clip.frames.shape == frames.shape and clip.fps == pytest.approx(10)
    assert np.abs(clip.frames.astype(int) - frames).mean() < 3  # adaptive palette


def test_png_output_is_a_contact_sheet(tmp_path):
    frames = indexed_frames(5, 10, 12)
    write_video(tmp_path / "sheet.png", frames)
    sheet = np.asarray(Image.open(tmp_path / "sheet.png"))
    assert sheet.shape == (10, 5 * 12 + 4 * 2, 3)  # one row of 5 (columns default to min(T, 8)), 2 px gaps
    write_contact_sheet(tmp_path / "grid.png", frames, columns=2, scale=2)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (3 * 20 + 2 * 2, 2 * 24 + 2, 3)
    assert grid[22 + 1, 26 + 1, 0] == 30  # row 1, column 1 holds frame 3
    assert contact_sheet(frames, columns=5)[0, 12 + 1, 0] == 96  # grey gap between frames


def test_write_accepts_library_tensors(tmp_path):
    video = torch.linspace(-1, 1, 4).view(1, 4, 1, 1).expand(3, 4, 6, 8)
    write_video(tmp_path / "t.mkv", video)
    clip = read_video(tmp_path / "t.mkv")
    assert clip.frames[:, 0, 0, 0].tolist() == [0, 85, 170, 255]


def test_write_rejects_bad_extension_and_input(tmp_path):
    with pytest.raises(VidgenError, match=r"allowed: \.mp4, \.mkv, \.gif, \.png"):
        write_video(tmp_path / "clip.avi", indexed_frames(2))
    with pytest.raises(VidgenError, match="uint8"):
        write_video(tmp_path / "clip.mp4", np.zeros((2, 4, 4, 3), np.float64))
    with pytest.raises(VidgenError, match="sample_rate"):
        write_video(tmp_path / "clip.mp4", indexed_frames(2), audio=np.zeros(100))


def test_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "clip.gif"
    write_video(target, indexed_frames(3))
    before = target.read_bytes()

    def broken(path, frames, fps):
        path.write_bytes(b"half a gif")
        raise RuntimeError("disk full")

    monkeypatch.setattr(video_module, "_write_gif", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_video(target, indexed_frames(4))
    assert target.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif"]  # no temp file left behind


def test_wav_round_trip_and_resampling(tmp_path):
    audio = tone(300, 0.5, 16000)
    write_audio(tmp_path / "a.wav", audio, 16000)
    back = read_audio(tmp_path / "a.wav", sample_rate=16000)
    assert back.shape == audio.shape and np.abs(back - audio).max() < 1e-4
    down = read_audio(tmp_path / "a.wav", sample_rate=8000)
    assert abs(down.size - 4000) <= 64 and peak_frequency(down, 8000) == pytest.approx(300, abs=3)
    with pytest.raises(VideoReadError, match="no audio stream"):
        write_video(tmp_path / "silent.mkv", indexed_frames(2))
        read_audio(tmp_path / "silent.mkv")


# ----------------------------------------------------------------------------- sampling and resizing


def test_time_resampling_picks_nearest_frames(tmp_path):
    write_video(tmp_path / "c.mkv", indexed_frames(16), fps=8)  # 2 seconds
    assert frame_ids(read_video(tmp_path / "c.mkv").frames) == list(range(16))
    slow = read_video(tmp_path / "c.mkv", fps=4)
    assert slow.fps == 4 and frame_ids(slow.frames) == [0, 2, 4, 6, 8, 10, 12, 14]
    fast = read_video(tmp_path / "c.mkv", fps=16, num_frames=6)
    assert frame_ids(fast.frames) == [0, 0, 1, 1, 2, 2]
    assert frame_ids(read_video(tmp_path / "c.mkv", num_frames=3, start=0.5).frames) == [4, 5, 6]
    assert frame_ids(read_video(tmp_path / "c.mkv", fps=4, num_frames=2, start=1.0).frames) == [8, 10]


def test_too_few_frames_says_how_many_or_pads(tmp_path):
    write_video(tmp_path / "c.mkv", indexed_frames(5), fps=8)
    with pytest.raises(VideoReadError, match=r"c\.mkv.*only 5 frames.*asked for 9"):
        read_video(tmp_path / "c.mkv", num_frames=9)
    with pytest.raises(VideoReadError, match="only 3 frames at 4 fps"):
        read_video(tmp_path / "c.mkv", num_frames=4, fps=4)
    padded = read_video(tmp_path / "c.mkv", num_frames=7, pad=True)
    assert frame_ids(padded.frames) == [0, 1, 2, 3, 4, 4, 4]


def test_resize_shortest_side_then_center_crop(tmp_path):
    # 40 x 80 image: left quarter red, middle half green, right quarter blue.
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :20, 0] = 255
    image[:, 20:60, 1] = 255
    image[:, 60:, 2] = 255
    Image.fromarray(image).save(tmp_path / "wide.png")
    square = read_video(tmp_path / "wide.png", size=20).frames
    assert square.shape == (1, 20, 20, 3)
    # The crop is the green middle (the bicubic filter may bleed a little into the outermost columns).
    assert (square[0, :, 1:-1, 1] > 250).all() and (square[0, :, 1:-1, 0] < 5).all()
    assert square[0, :, :, 1].mean() > 250
    tall = read_video(tmp_path / "wide.png", size=(20, 30)).frames
    assert tall.shape == (1, 20, 30, 3)
    # Scale 0.5 covers 20 x 30 with source columns 10..70: a red edge, green middle, blue edge.
    assert tall[0, 10, 0, 0] > 250 and tall[0, 10, 15, 1] > 250 and tall[0, 10, 29, 2] > 250


def test_images_and_frame_folders(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in (2, 0, 1):  # written out of order: read back sorted by name
        Image.fromarray(indexed_frames(3)[k]).save(folder / f"frame_{k:03d}.png")
    (folder / "notes.txt").write_text("ignored")
    clip = read_video(folder)
    assert frame_ids(clip.frames) == [0, 1, 2] and clip.fps == 8
    # Frames in a folder have no timing: they are taken to be at the requested fps.
    fast = read_video(folder, fps=16, num_frames=3)
    assert frame_ids(fast.frames) == [0, 1, 2] and fast.fps == 16
    single = read_video(folder / "frame_001.png")
    assert single.frames.shape == (1, 16, 24, 3) and frame_ids(single.frames) == [1]
    with pytest.raises(VideoReadError, match="only 1 frames"):
        read_video(folder / "frame_001.png", num_frames=2)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(VideoReadError, match="no frame images"):
        read_video(empty)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.mp4", None, "no such file"),
        ("empty.mp4", b"", "empty"),
        ("garbage.mp4", b"not a video at all" * 50, "not a readable video"),
        ("garbage.png", b"\x89PNG\r\n\x1a\n" + b"x" * 20, "not a readable image"),
        ("garbage.gif", b"GIF89a" + b"x" * 20, "not a readable GIF"),
        ("notes.txt", b"hello", "unsupported file type '.txt'"),
    ],
)
def test_read_errors_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoReadError, match=message) as info:
        read_video(path)
    assert name in str(info.value)


def test_corrupt_stream_is_a_video_read_error(tmp_path):
    write_video(tmp_path / "c.mp4", smooth_frames(16, 32, 32), fps=8)
    data = bytearray((tmp_path / "c.mp4").read_bytes())
    for i in range(1500, len(data), 37):  # flip bits through the coded frames, keep the header
        data[i] ^= 0xFF
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    try:
        clip = read_video(tmp_path / "bad.mp4")
    except VideoReadError as error:
        assert "bad.mp4" in str(error)
    else:  # FFmpeg may conceal the damage; then we still get frames of the right shape
        assert clip.frames.ndim == 4 and clip.frames.shape[-1] == 3
