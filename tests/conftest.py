"""Shared test settings.

The tests use tiny models: one torch thread is faster for them than two (thread start-up and
synchronisation dominate), and it keeps the suite from competing with itself on a 2-core CI machine.
Subprocesses started by tests (CLI, web server) inherit OMP_NUM_THREADS.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

torch.set_num_threads(1)


def rewound_copy(run, destination, step: int):
    """A copy of a finished training run as it was right after writing its checkpoint of `step`: later
    checkpoints and every export are left out, so `vidgen train ... --resume` on the copy continues
    from that checkpoint (an interrupted run), and its end can be compared with the original's."""
    import re
    import shutil
    from pathlib import Path

    run, destination = Path(run), Path(destination)
    late = re.compile(r"step_(\d+)")

    def ignore(folder, names):
        skipped = {"final", "final_raw", "pipeline", "exports", "samples"} if Path(folder) == run else set()
        if Path(folder).name == "checkpoints":
            skipped |= {n for n in names if (m := late.fullmatch(n)) and int(m.group(1)) > step}
        return skipped & set(names)

    shutil.copytree(run, destination, ignore=ignore)
    assert (destination / "checkpoints" / f"step_{step:08d}").is_dir(), f"{run} kept no checkpoint of step {step}"
    return destination
