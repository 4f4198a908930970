"""The I/O edge: videos, images, audio and contact sheets (uint8 (T, H, W, 3) <-> files).

See `vidgen.io.video` for the tensor/frames convention and the supported formats.
"""

from vidgen.io.video import (
    DEFAULT_FPS,
    READABLE_EXTENSIONS,
    WRITABLE_EXTENSIONS,
    VideoClip,
    contact_sheet,
    frames_to_tensor,
    read_audio,
    read_video,
    resize_and_crop,
    tensor_to_frames,
    write_audio,
    write_contact_sheet,
    write_video,
)

__all__ = [
    "DEFAULT_FPS",
    "READABLE_EXTENSIONS",
    "WRITABLE_EXTENSIONS",
    "VideoClip",
    "contact_sheet",
    "frames_to_tensor",
    "read_audio",
    "read_video",
    "resize_and_crop",
    "tensor_to_frames",
    "write_audio",
    "write_contact_sheet",
    "write_video",
]
