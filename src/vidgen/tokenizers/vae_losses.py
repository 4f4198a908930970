"""The training objective of a KL video autoencoder (CogVideoX's VAE, LDM-style):

    loss = l1_weight * |x - x_hat| + mse_weight * (x - x_hat)^2      (per-pixel mean)
         + kl_weight * KL(q(z|x) || N(0, I))                           (per-latent-element mean)
         + perceptual_weight * perceptual(x, x_hat)                    (off unless a feature net is given)

The perceptual term is a hook: nothing can be downloaded here, so it runs only with a feature network
the user supplies (`vidgen.tokenizers.gan_losses.PerceptualLoss`). The GAN term, which needs a
discriminator trained alongside, lives in the training objective (`vidgen.training.cogvideox.VAEObjective`,
on the shared `gan_losses.AdversarialObjective`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vidgen.errors import VidgenError
from vidgen.tokenizers.distributions import DiagonalGaussian
from vidgen.tokenizers.gan_losses import PerceptualLoss


@dataclass
class VAELoss:
    """`loss(video, reconstruction, posterior) -> dict` of named scalar terms; "loss" is the total."""

    l1_weight: float = 1.0
    mse_weight: float = 0.0
    kl_weight: float = 1e-6
    perceptual_weight: float = 0.0
    perceptual: PerceptualLoss | None = None

    def __post_init__(self):
        for name in ("l1_weight", "mse_weight", "kl_weight", "perceptual_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise VidgenError(f"{name}={value!r} must be a number >= 0")
        if self.l1_weight == 0 and self.mse_weight == 0:
            raise VidgenError("l1_weight and mse_weight are both 0: the VAE needs a reconstruction loss")
        if self.perceptual_weight > 0 and self.perceptual is None:
            # No feature network can be downloaded here: build the hook, which warns once that it is off.
            self.perceptual = PerceptualLoss(None)

    def __call__(self, video: torch.Tensor, reconstruction: torch.Tensor, posterior: DiagonalGaussian
                 ) -> dict[str, torch.Tensor]:
        if video.shape != reconstruction.shape:
            raise VidgenError(f"reconstruction shape {tuple(reconstruction.shape)} differs from the video's "
                              f"{tuple(video.shape)}")
        error = reconstruction.float() - video.float()
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=video.device)
        if self.l1_weight:
            terms["l1"] = error.abs().mean()
            total = total + self.l1_weight * terms["l1"]
        if self.mse_weight:
            terms["mse"] = error.pow(2).mean()
            total = total + self.mse_weight * terms["mse"]
        # KL summed per sample, then divided by the number of latent elements: a per-element KL whose
        # weight does not depend on the clip size.
        latent_elements = posterior.mean[0].numel()
        terms["kl"] = posterior.kl().float().mean() / latent_elements
        total = total + self.kl_weight * terms["kl"]
        if self.perceptual_weight and self.perceptual is not None and self.perceptual.enabled:
            terms["perceptual"] = self.perceptual(reconstruction, video)
            total = total + self.perceptual_weight * terms["perceptual"]
        with torch.no_grad():
            mse = error.pow(2).mean().clamp_min(1e-10)
            terms["psnr"] = 10 * torch.log10(4.0 / mse)  # peak-to-peak range of [-1, 1] is 2
        terms["loss"] = total
        return terms


def make_vae_loss(**options) -> VAELoss:
    """Build the VAE loss from a recipe's `[loss]` table (keys: the `VAELoss` weights)."""
    allowed = {"l1_weight", "mse_weight", "kl_weight", "perceptual_weight"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise VidgenError(f"unknown [loss] keys {unknown}; allowed: {sorted(allowed)}")
    return VAELoss(**options)
