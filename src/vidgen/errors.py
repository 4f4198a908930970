"""Exceptions that carry a message meant for the user (printed by the CLI and the web app as is)."""


class VidgenError(ValueError):
    """Bad input or a bad file: the message names the value and what is allowed."""


class VideoReadError(VidgenError):
    """A video or image file is missing, empty, corrupt or of an unsupported kind."""


class CheckpointError(VidgenError):
    """A checkpoint folder is missing files, or its weights do not match the model."""
