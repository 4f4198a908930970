"""Training objective of a VQ video tokenizer (MAGVIT's 3D-VQ; any model returning
`(reconstruction, QuantizerOutput)` from `model(video)`).

    loss = w_rec * L_rec(x, x_hat) + w_q * (codebook + beta * commitment + w_ent * entropy)
         + w_perc * perceptual(x, x_hat)                          (only with a feature network)
         + w_gan * G_loss(D(x_hat))                               (from `gan.start_step` on)

and, inside the same call, one discriminator update on (x, sg(x_hat)) with the GAN loss plus
w_lecam * LeCam (MAGVIT: hinge GAN, weight 0.1, LeCam 0.001).

How it fits the trainer. The trainer calls `objective(model, batch, generator)`, back-propagates the
returned "loss" into the tokenizer and steps the tokenizer's optimizer. The objective owns everything
adversarial (discriminator, its AdamW, LeCam anchors; see `gan_losses.AdversarialLoss`) and updates
the discriminator itself during the call, before computing the generator's term, so the trainer
needs no GAN-specific code. The discriminator step and the step counter only advance in training mode
with gradients enabled (`objective.train()`, not under `torch.no_grad()`): evaluation calls report
losses and metrics without touching any state.

Exact resume: `state_tensors()` returns every tensor of that state (step counter, discriminator
weights, its optimizer moments, LeCam EMAs) for a safetensors file next to the trainer's checkpoint;
`load_state_tensors()` restores it. The counter counts objective calls (micro-batches, if the trainer
accumulates gradients); `gan.start_step` is in those units.

Returned dict (float32 scalars; only "loss" carries a graph): loss, reconstruction, quantizer,
commitment, codebook, entropy, perceptual, gan_generator, gan_weight, disc_loss, lecam, logits_real,
logits_fake (the GAN entries only once the GAN is active), and metrics psnr (dB, on [0, 1] pixels),
codebook_usage (fraction of codes used in the batch), perplexity (effective number of codes used).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.errors import VidgenError
from vidgen.tokenizers.discriminator import Discriminator3D, DiscriminatorConfig
from vidgen.tokenizers.gan_losses import AdversarialObjective, GANConfig, PerceptualLoss
from vidgen.training.augment import random_crop

__all__ = ["VQObjectiveConfig", "VQTokenizerObjective", "video_psnr"]


RECONSTRUCTION_LOSSES = ("l1", "l2", "l1+l2")


@dataclass
class VQObjectiveConfig:
    """reconstruction_loss: "l2" (MAGVIT), "l1" (VQGAN) or "l1+l2" (their sum, as the CogVideoX VAE:
    L1 drives small errors to exactly zero, e.g. on flat black backgrounds). quantizer_weight multiplies the quantizer's
    own weighted loss. perceptual_weight applies only when a feature network is given. gan: the
    adversarial settings, None = no GAN. discriminator: config of the discriminator built when none is
    passed to the objective. Nested configs may be given as dicts (e.g. from a TOML recipe).
    crop_frames, crop_size: > 0 trains on a random (crop_frames, crop_size, crop_size) window of each
    clip (drawn from the trainer's generator; 0 keeps that axis whole). The tokenizer is fully
    convolutional, so crops teach the same filters at a fraction of the cost: 8x32x32 crops of
    16x64x64 clips make a step ~8x cheaper on CPU. Crops must respect the tokenizer's compression
    factors; evaluation (`objective.eval()`) always sees whole clips."""

    reconstruction_loss: Literal["l1", "l2", "l1+l2"] = "l2"
    reconstruction_weight: float = 1.0
    quantizer_weight: float = 1.0
    perceptual_weight: float = 0.1
    gan: GANConfig | None = field(default_factory=GANConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    crop_frames: int = 0
    crop_size: int = 0

    def __post_init__(self) -> None:
        if self.reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise VidgenError(f"reconstruction_loss must be one of {', '.join(map(repr, RECONSTRUCTION_LOSSES))}, "
                              f"got {self.reconstruction_loss!r}")
        if self.crop_frames < 0 or self.crop_size < 0:
            raise VidgenError(f"crop_frames and crop_size must be >= 0 (0 = no crop), got {self.crop_frames}, "
                              f"{self.crop_size}")
        if isinstance(self.gan, dict):
            self.gan = _from_dict(GANConfig, self.gan, "gan")
        if isinstance(self.discriminator, dict):
            self.discriminator = _from_dict(DiscriminatorConfig, self.discriminator, "discriminator")


def _from_dict(cls: type, data: dict[str, Any], name: str) -> Any:
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise VidgenError(f"unknown keys in the objective's {name} config: {unknown}; allowed: {sorted(allowed)}")
    return cls(**data)


def video_psnr(video: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Mean over clips of PSNR (dB) between videos in [-1, 1], measured on [0, 1] pixels (the
    reconstruction clamped first). (B, C, T, H, W) x2 -> scalar float32."""
    x = (video.float() + 1) / 2
    y = (reconstruction.float().clamp(-1, 1) + 1) / 2
    mse = (x - y).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return (-10.0 * torch.log10(mse)).mean()


def _video_from_batch(batch: Any) -> torch.Tensor:
    """A batch is a video tensor (B, C, T, H, W), a dict with "video", or a tuple/list starting with one."""
    if isinstance(batch, dict):
        if "video" not in batch:
            raise VidgenError(f"the batch dict has no 'video' entry (keys: {sorted(batch)})")
        batch = batch["video"]
    elif isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.ndim != 5 or not batch.is_floating_point():
        what = f"shape {tuple(batch.shape)}, dtype {batch.dtype}" if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise VidgenError(f"the tokenizer objective needs float video (B, C, T, H, W) in [-1, 1], got {what}")
    return batch


class VQTokenizerObjective(AdversarialObjective):
    """`objective(model, batch, generator=None) -> dict` for VQ tokenizers (module docstring).

    Args:
        config: loss weights and the GAN settings.
        discriminator: the discriminator to train (default: `Discriminator3D(config.discriminator)`,
            built only when `config.gan` is set).
        feature_net: frames (N, 3, H, W) -> features, for the perceptual loss (None: off).
    """

    def __init__(self, config: VQObjectiveConfig | None = None, discriminator: nn.Module | None = None,
                 feature_net: Callable[[torch.Tensor], Any] | None = None):
        config = config or VQObjectiveConfig()
        if config.gan is not None and discriminator is None:
            discriminator = Discriminator3D(config.discriminator)
        super().__init__(config.gan, discriminator)
        self.config = config
        self.perceptual = PerceptualLoss(feature_net) if self.config.perceptual_weight > 0 else None

    def forward(self, model: nn.Module, batch: Any, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
        video = _video_from_batch(batch)
        cfg = self.config
        training = self.training and torch.is_grad_enabled()
        if training and (cfg.crop_frames or cfg.crop_size):
            # The shared per-clip crop (offsets from the checkpointed generator: the only random draw).
            video = random_crop(video, cfg.crop_size, cfg.crop_frames, generator)
        reconstruction, q = model(video)
        if reconstruction.shape != video.shape:
            raise VidgenError(f"the model reconstructed shape {tuple(reconstruction.shape)} from a video of "
                              f"shape {tuple(video.shape)}")
        rec = reconstruction.float()
        target = video.float()
        terms = {"l1": F.l1_loss, "l2": F.mse_loss}
        rec_loss = sum(terms[name](rec, target) for name in cfg.reconstruction_loss.split("+"))
        loss = cfg.reconstruction_weight * rec_loss + cfg.quantizer_weight * q.loss
        nll = cfg.reconstruction_weight * rec_loss  # what VQGAN's adaptive weight balances against
        logs: dict[str, torch.Tensor] = {
            "reconstruction": rec_loss.detach(), "quantizer": q.loss.detach(),
            **{name: value.detach().float() for name, value in q.losses.items()},
        }
        if self.perceptual is not None and self.perceptual.enabled:
            perceptual = self.perceptual(reconstruction, video)
            loss = loss + cfg.perceptual_weight * perceptual
            nll = nll + cfg.perceptual_weight * perceptual
            logs["perceptual"] = perceptual.detach()
        gan_loss, gan_logs = self.adversarial_terms(model, video, reconstruction, nll)
        loss = loss + gan_loss
        logs.update(gan_logs)

        with torch.no_grad():
            logs["psnr"] = video_psnr(video, reconstruction)
            if q.usage is not None:
                logs["codebook_usage"] = q.usage.float()
            if q.perplexity is not None:
                logs["perplexity"] = q.perplexity.float()
        return {"loss": loss, **logs}
