"""The diagonal Gaussian posterior q(z | x) of a KL autoencoder (Kingma & Welling 2014; LDM 2022)."""

from __future__ import annotations

import torch

from vidgen.errors import VidgenError

__all__ = ["DiagonalGaussian"]


class DiagonalGaussian:
    """N(mean, diag(exp(logvar))) over latents shaped (B, C, ...).

    Built from the encoder output `moments` (B, 2C, ...): the first C channels are the mean, the last C
    the log-variance, clamped to [-30, 20] (as in LDM and diffusers) so exp() neither under- nor
    overflows early in training.
    """

    def __init__(self, moments: torch.Tensor, logvar_range: tuple[float, float] = (-30.0, 20.0)):
        if moments.ndim < 2 or moments.shape[1] % 2:
            raise VidgenError(f"moments must have an even number of channels (mean and log-variance) "
                              f"in dim 1, got shape {tuple(moments.shape)}")
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(*logvar_range)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * eps, eps ~ N(0, I) drawn from `generator` (on the latents' device) if given."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def kl(self, other: DiagonalGaussian | None = None) -> torch.Tensor:
        """KL(self || other) summed over all non-batch dims: (B,). `other=None` means N(0, I)."""
        dims = tuple(range(1, self.mean.ndim))
        if other is None:
            return 0.5 * (self.mean.pow(2) + self.var - 1.0 - self.logvar).sum(dim=dims)
        return 0.5 * ((self.mean - other.mean).pow(2) / other.var + self.var / other.var
                      - 1.0 - self.logvar + other.logvar).sum(dim=dims)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log q(x) summed over all non-batch dims: (B,)."""
        dims = tuple(range(1, self.mean.ndim))
        log_two_pi = 1.8378770664093453
        return 0.5 * (log_two_pi + self.logvar + (x - self.mean).pow(2) / self.var).sum(dim=dims)
