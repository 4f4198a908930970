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
