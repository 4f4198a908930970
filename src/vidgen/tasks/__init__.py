"""Generation tasks as data (MAGVIT's ten tasks and text-to-video), their condition regions, and masks.

- registry.py  the `Task` dataclass and the registry (`get_task("FP")`, `task_names()`, `register_task`)
- regions.py   condition regions (first frames, central box, strips, moving regions, complements),
               pixel -> token mapping, padding of condition pixels to a full clip
- masking.py   the mask schedule and COMMIT's masked input, shared by training and decoding
- commit.py    building the condition of any task (`prepare_condition`) and `MagvitObjective`
"""

from vidgen.tasks.commit import (
    MagvitObjective,
    TaskCondition,
    condition_pixels,
    encode_tokens,
    prepare_condition,
)
from vidgen.tasks.masking import (
    commit_inputs,
    lowest_k_mask,
    mask_schedule,
    num_masked_tokens,
    random_training_mask,
)
from vidgen.tasks.regions import (
    CentralBox,
    CentralStrip,
    Complement,
    FirstAndLastFrames,
    FirstFrames,
    MovingBox,
    MovingStrip,
    pad_condition,
    pixel_to_token_mask,
    supervoxel_size,
)
from vidgen.tasks.registry import (
    CONDITION_KINDS,
    MAGVIT_TASKS,
    PIXEL_TASKS,
    Task,
    class_frame_prediction,
    frame_interpolation,
    frame_prediction,
    get_task,
    get_tasks,
    register_task,
    task_names,
    task_tokens,
)

__all__ = [
    "CONDITION_KINDS", "MAGVIT_TASKS", "PIXEL_TASKS", "CentralBox", "CentralStrip", "Complement",
    "FirstAndLastFrames", "FirstFrames", "MagvitObjective", "MovingBox", "MovingStrip", "Task", "TaskCondition",
    "class_frame_prediction", "commit_inputs", "condition_pixels", "encode_tokens", "frame_interpolation",
    "frame_prediction", "get_task", "get_tasks", "lowest_k_mask", "mask_schedule", "num_masked_tokens",
    "pad_condition", "pixel_to_token_mask", "prepare_condition", "random_training_mask", "register_task",
    "supervoxel_size", "task_names", "task_tokens",
]
