"""Training: one generic loop (`Trainer`), EMA, resumable data order, pickle-free checkpoints, and
recipes (TOML files that fully describe a run; `vidgen train RECIPE`).

See docs/training.md.
"""

from vidgen.training.ema import EMA
from vidgen.training.trainer import TrainConfig, Trainer, TrainResult, export_model, lr_at

__all__ = ["EMA", "TrainConfig", "TrainResult", "Trainer", "export_model", "lr_at"]
