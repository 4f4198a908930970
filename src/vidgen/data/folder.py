"""Folder: your own videos and images with captions, listed in a manifest.

Layout:

    my_clips/
        metadata.jsonl          one JSON object per line: {"file": "a.mp4", "caption": "...", "label": 3}
        a.mp4
        sub/b.webm
        c.png

or `metadata.csv` with a header row `file,caption[,label]`. `file` is relative to the folder (or
absolute), `caption` a non-empty string, `label` an optional integer class id (class_id is -1 without
one). Blank lines in metadata.jsonl are skipped. Any file `read_video` reads works: videos, GIFs,
images, folders of frames.

Every clip is read at `fps` from its start, resized so its shorter side is `size` and center-cropped
to `size` x `size`. Clips shorter than `num_frames` at that rate are padded by repeating their last
frame (a freeze, not a loop: looping would add a jump cut the model would learn); an image becomes a
still video of `num_frames` identical frames (`num_frames=1` gives single images).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from torch.utils.data import Dataset

from vidgen.errors import VidgenError
from vidgen.io.video import frames_to_tensor, read_video

MANIFEST_NAMES = ("metadata.jsonl", "metadata.csv")


def read_manifest(path: Path) -> list[dict]:
    """Parse a metadata.jsonl / metadata.csv into [{"file", "caption", "label"}] (label may be None)."""
    rows: list[tuple[int, dict]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise VidgenError(f"cannot read manifest {path}: {error}") from error
    except UnicodeDecodeError:
        raise VidgenError(f"manifest {path} is not UTF-8 text") from None
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise VidgenError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise VidgenError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
            rows.append((number, row))
    elif path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        missing = {"file", "caption"} - set(reader.fieldnames or [])
        if missing:
            raise VidgenError(
                f"{path}: the header must name the columns file,caption[,label]; missing {', '.join(sorted(missing))}"
            )
        rows = [(number, row) for number, row in enumerate(reader, start=2)]
    else:
        raise VidgenError(f"manifest must be a .jsonl or .csv file; got {path.name!r}")

    entries = []
    for number, row in rows:
        where = f"{path}, line {number}"
        file, caption, label = row.get("file"), row.get("caption"), row.get("label")
        if not isinstance(file, str) or not file.strip():
            raise VidgenError(f"{where}: 'file' must be a non-empty string; got {file!r}")
        if not isinstance(caption, str) or not caption.strip():
            raise VidgenError(f"{where}: 'caption' must be a non-empty string; got {caption!r}")
        if label in ("", None):
            label = None
        else:
            try:
                if isinstance(label, float) and not label.is_integer():
                    raise ValueError
                label = int(label)
            except (TypeError, ValueError):
                raise VidgenError(f"{where}: 'label' must be an integer class id; got {label!r}") from None
        entries.append({"file": file.strip(), "caption": caption.strip(), "label": label})
    if not entries:
        raise VidgenError(f"manifest {path} lists no clips")
    return entries


class FolderDataset(Dataset):
    """Clips listed in `root/metadata.jsonl` or `root/metadata.csv` (see the module docstring).

    Args:
        root: the folder holding the clips.
        manifest: path of the manifest (default: the first of metadata.jsonl, metadata.csv in `root`).
        num_frames: frames per clip (T); shorter clips repeat their last frame.
        size: square frame size after resizing and center-cropping.
        fps: frame rate the clips are resampled to.

    Item: {"video": float (3, T, H, W) in [-1, 1], "caption": str, "class_id": int (label or -1),
    "labels": {"label": int (or -1), "file": str}, "fps": float, "index": int}.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        manifest: str | os.PathLike | None = None,
        num_frames: int = 17,
        size: int = 64,
        fps: float = 8,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise VidgenError(f"folder dataset root {self.root} is not a directory")
        if manifest is None:
            found = [self.root / name for name in MANIFEST_NAMES if (self.root / name).is_file()]
            if not found:
                raise VidgenError(
                    f"no manifest in {self.root}: add metadata.jsonl (lines like "
                    '{"file": "clip.mp4", "caption": "a dog running"}) or metadata.csv (columns file,caption[,label])'
                )
            manifest = found[0]
        manifest = Path(manifest)
        if not manifest.is_file():
            raise VidgenError(f"manifest {manifest} does not exist")
        self.manifest = manifest
        self.entries = read_manifest(manifest)
        missing = [e["file"] for e in self.entries if not self._path(e["file"]).exists()]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise VidgenError(f"{manifest} lists {len(missing)} missing file(s) under {self.root}: {shown}")
        if num_frames < 1 or size < 1 or not fps > 0:
            raise VidgenError(f"num_frames, size and fps must be positive; got {num_frames}, {size}, {fps}")
        self.num_frames, self.size, self.fps = int(num_frames), int(size), float(fps)
        labels = [e["label"] for e in self.entries if e["label"] is not None]
        self.num_classes = max(labels) + 1 if labels else 0

    def _path(self, file: str) -> Path:
        path = Path(file)
        return path if path.is_absolute() else self.root / path

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        clip = read_video(
            self._path(entry["file"]),
            num_frames=self.num_frames,
            fps=self.fps,
            size=self.size,
            pad=True,
            audio=False,
        )
        label = -1 if entry["label"] is None else entry["label"]
        return {
            "video": frames_to_tensor(clip.frames),  # (3, T, H, W)
            "caption": entry["caption"],
            "class_id": label,
            "labels": {"label": label, "file": entry["file"]},
            "fps": self.fps,
            "index": index % len(self.entries),
        }
