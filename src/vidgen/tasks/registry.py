"""The task registry: MAGVIT's ten tasks (plus text-to-video) as data.

A `Task` says what a generator is given and where: its task token, its kind of condition (pixels,
class, text, class+pixels or none), and for pixel tasks the condition region and how the condition
pixels are padded to a full clip before tokenization (COMMIT). Nothing else differs between tasks:
one function (`vidgen.tasks.commit.prepare_condition`) builds the model input for any of them.

    FP   frame prediction            first frame(s) given                       pixels
    FI   frame interpolation         first and last frame(s) given              pixels
    OPC  central outpainting         centre given, border generated             pixels
    OPV  vertical outpainting        vertical central strip given               pixels
    OPH  horizontal outpainting      horizontal central strip given             pixels
    OPD  dynamic outpainting         a moving half-frame strip given            pixels
    IPC  central inpainting          centre missing                             pixels
    IPD  dynamic inpainting          a moving box missing                       pixels
    CG   class-conditional generation                                           class
    CFP  class-conditional frame prediction                                     class+pixels
    T2V  text-to-video                                                          text

The number of condition frames of FP / CFP / FI is configurable (`frame_prediction(num_frames=5)`;
MAGVIT uses 1 frame on BAIR and 5 on Kinetics-600); the variant keeps its task token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import torch

from vidgen.errors import VidgenError
from vidgen.tasks.regions import (
    PADDINGS,
    CentralBox,
    CentralStrip,
    Complement,
    FirstAndLastFrames,
    FirstFrames,
    MovingBox,
    MovingStrip,
)

CONDITION_KINDS = ("pixels", "class", "text", "class+pixels", "none")
Region = Callable[..., torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Task:
    """One generation task.

    name / abbreviation: e.g. "frame_prediction" / "FP"; both work with `get_task`.
    token: index of the task token (0 <= token < the model's `num_task_tokens`).
    condition: one of CONDITION_KINDS.
    region: for pixel tasks, `region((T, H, W), generator) -> (T, H, W) bool` (True = given); else None.
    padding: how condition pixels are completed to a full clip ("replicate", "interpolate", "constant").
    dynamic: the region moves and is drawn from the generator.
    """

    name: str
    abbreviation: str
    token: int
    condition: str
    region: Region | None = None
    padding: str = "replicate"
    dynamic: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.condition not in CONDITION_KINDS:
            raise VidgenError(f"task {self.name!r}: condition={self.condition!r} is not one of {CONDITION_KINDS}")
        if self.uses_pixels != (self.region is not None):
            raise VidgenError(f"task {self.name!r}: a pixel condition needs a region, and only pixel tasks "
                              f"have one")
        if self.padding not in PADDINGS:
            raise VidgenError(f"task {self.name!r}: padding={self.padding!r} is not one of {PADDINGS}")
        if self.token < 0:
            raise VidgenError(f"task {self.name!r}: token={self.token} must be >= 0")

    @property
    def uses_pixels(self) -> bool:
        return "pixels" in self.condition

    @property
    def uses_class(self) -> bool:
        return "class" in self.condition

    @property
    def uses_text(self) -> bool:
        return self.condition == "text"

    def condition_region(self, grid: tuple[int, int, int],
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """(T, H, W) bool, True = condition pixel (or token, on a token grid)."""
        if self.region is None:
            raise VidgenError(f"task {self.abbreviation} ({self.name}) has no pixel condition region")
        return self.region(tuple(grid), generator)


# ----------------------------------------------------------------------------- the tasks


def class_generation() -> Task:
    return Task("class_generation", "CG", 0, "class", description="class-conditional generation")


def frame_prediction(num_frames: int = 1) -> Task:
    return Task("frame_prediction", "FP", 1, "pixels", FirstFrames(num_frames), "replicate",
                description=f"predict the clip from its first {num_frames} frame(s)")


def frame_interpolation(num_frames: int = 1) -> Task:
    return Task("frame_interpolation", "FI", 2, "pixels", FirstAndLastFrames(num_frames), "interpolate",
                description=f"generate the frames between the first and last {num_frames} frame(s)")


def central_outpainting() -> Task:
    return Task("central_outpainting", "OPC", 3, "pixels", CentralBox(), "replicate",
                description="the centre is given, the border is generated")


def vertical_outpainting() -> Task:
    return Task("vertical_outpainting", "OPV", 4, "pixels", CentralStrip("w"), "replicate",
                description="a vertical central strip is given, left and right are generated")


def horizontal_outpainting() -> Task:
    return Task("horizontal_outpainting", "OPH", 5, "pixels", CentralStrip("h"), "replicate",
                description="a horizontal central strip is given, top and bottom are generated")


def dynamic_outpainting() -> Task:
    return Task("dynamic_outpainting", "OPD", 6, "pixels", MovingStrip(), "constant", dynamic=True,
                description="a moving half-frame strip is given, the rest is generated")


def central_inpainting() -> Task:
    return Task("central_inpainting", "IPC", 7, "pixels", Complement(CentralBox()), "constant",
                description="the centre is missing and generated")


def dynamic_inpainting() -> Task:
    return Task("dynamic_inpainting", "IPD", 8, "pixels", Complement(MovingBox()), "constant", dynamic=True,
                description="a moving box is missing and generated")


def class_frame_prediction(num_frames: int = 1) -> Task:
    return Task("class_frame_prediction", "CFP", 9, "class+pixels", FirstFrames(num_frames), "replicate",
                description=f"predict the clip of a class from its first {num_frames} frame(s)")


def text_to_video() -> Task:
    return Task("text_to_video", "T2V", 10, "text", description="generate a clip from a prompt")


MAGVIT_TASKS = ("FP", "FI", "OPC", "OPV", "OPH", "OPD", "IPC", "IPD", "CG", "CFP")
PIXEL_TASKS = ("FP", "FI", "OPC", "OPV", "OPH", "OPD", "IPC", "IPD")

# What a user asks for, (task, mode), -> the registry task that does it: the `tasks` map of a MAGVIT
# pipeline.json, the pipeline's and CLI's task names, and the web app's task/mode menus.
USER_TASK_MODES: dict[str, dict[str, str]] = {
    "text-to-video": {"default": "T2V"},
    "class-to-video": {"default": "CG"},
    "predict": {"first frame": "FP", "class + first frame": "CFP"},
    "interpolate": {"first and last frame": "FI"},
    "outpaint": {"central": "OPC", "vertical": "OPV", "horizontal": "OPH", "dynamic": "OPD"},
    "inpaint": {"central": "IPC", "dynamic": "IPD"},
}

_REGISTRY: dict[str, Task] = {}


def register_task(task: Task, overwrite: bool = False) -> Task:
    """Add a task under its name and abbreviation; a new task token must not collide with another task's."""
    for other in _REGISTRY.values():
        if other.name == task.name:
            continue
        if other.token == task.token:
            raise VidgenError(f"task token {task.token} of {task.name!r} is already used by {other.name!r}")
        if other.abbreviation.lower() == task.abbreviation.lower():
            raise VidgenError(f"abbreviation {task.abbreviation!r} is already used by {other.name!r}")
    if task.name in _REGISTRY and not overwrite:
        raise VidgenError(f"task {task.name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[task.name] = task
    return task


for _factory in (frame_prediction, frame_interpolation, central_outpainting, vertical_outpainting,
                 horizontal_outpainting, dynamic_outpainting, central_inpainting, dynamic_inpainting,
                 class_generation, class_frame_prediction, text_to_video):
    register_task(_factory())


def task_names() -> list[str]:
    """Abbreviations of the registered tasks in task-token order."""
    return [t.abbreviation for t in sorted(_REGISTRY.values(), key=lambda t: t.token)]


def get_task(task: str | Task) -> Task:
    """Look a task up by name or abbreviation (case-insensitive); a `Task` is returned as is."""
    if isinstance(task, Task):
        return task
    key = str(task).strip().lower()
    for candidate in _REGISTRY.values():
        if key in (candidate.name.lower(), candidate.abbreviation.lower()):
            return candidate
    raise VidgenError(f"unknown task {task!r}; known tasks: "
                      + ", ".join(f"{t.abbreviation} ({t.name})" for t in sorted(_REGISTRY.values(),
                                                                                key=lambda t: t.token)))


def get_tasks(tasks: Iterable[str | Task]) -> list[Task]:
    return [get_task(t) for t in tasks]


def task_tokens(tasks: Task | str | int | torch.Tensor | Iterable[Task | str], batch_size: int,
                device: torch.device | str | None = None) -> torch.Tensor:
    """(B,) long task-token indices from one task (broadcast), a list of B tasks, an int or a tensor."""
    if isinstance(tasks, torch.Tensor):
        tokens = tasks.to(device=device, dtype=torch.long).reshape(-1)
        if tokens.numel() == 1:
            tokens = tokens.expand(batch_size)
    elif isinstance(tasks, int):
        tokens = torch.full((batch_size,), tasks, dtype=torch.long, device=device)
    elif isinstance(tasks, (Task, str)):
        tokens = torch.full((batch_size,), get_task(tasks).token, dtype=torch.long, device=device)
    else:
        tokens = torch.tensor([get_task(t).token for t in tasks], dtype=torch.long, device=device)
    if tokens.numel() != batch_size:
        raise VidgenError(f"got {tokens.numel()} tasks for a batch of {batch_size}")
    return tokens
