"""Exponential moving average (EMA) of a model's weights.

Sampling from an EMA of the weights instead of the last iterate is standard for diffusion models and
autoencoders (DDPM, LDM, DiT use decay 0.9999): the average smooths out the noise of the last few
optimiser steps. Early in training a fixed high decay would keep the average glued to the random
initialisation for thousands of steps, so the decay warms up as `min(decay, (1 + n) / (10 + n))` after
`n` updates (the schedule of TensorFlow's `ExponentialMovingAverage(num_updates=...)`); a short run
therefore still ends with a useful average.

The EMA is a full copy of the model (`ema.model`), always in eval mode and never given gradients, so
a sample hook or an export can use it like any other model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vidgen.errors import CheckpointError, VidgenError


class EMA:
    """Keeps `model`'s EMA weights in a frozen copy.

    decay:  the asymptotic decay (0 <= decay < 1); 0 means the copy just follows the raw weights.
    warmup: if True the effective decay after `n` updates is `min(decay, (1 + n) / (10 + n))`.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise VidgenError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay that the next `update` will use."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema <- decay * ema + (1 - decay) * model, for every floating parameter; buffers are copied
        (running statistics and integer buffers are not averaged)."""
        decay = self.current_decay()
        ema_params = dict(self.model.named_parameters())
        for name, param in model.named_parameters():
            ema_params[name].lerp_(param.detach().to(ema_params[name].dtype), 1.0 - decay)
        ema_buffers = dict(self.model.named_buffers())
        for name, buffer in model.named_buffers():
            ema_buffers[name].copy_(buffer)
        self.num_updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], num_updates: int) -> None:
        own = self.model.state_dict()
        if set(own) != set(state):
            missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            raise CheckpointError(f"EMA weights do not match the model: missing {missing[:10]}, "
                                  f"unexpected {unexpected[:10]}")
        self.model.load_state_dict(state, strict=True)
        self.num_updates = int(num_updates)
