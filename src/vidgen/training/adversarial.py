"""The `[gan]` recipe table shared by the autoencoder kinds (MAGVIT's VQ tokenizer, CogVideoX's VAE):
the adversarial settings (`GANConfig`) plus whether the GAN is on and which discriminator to build."""

from __future__ import annotations

import dataclasses

from torch import nn

from vidgen.errors import VidgenError
from vidgen.tokenizers.gan_losses import GANConfig

__all__ = ["DISCRIMINATOR_SIZES", "GANOptions", "build_discriminator"]

DISCRIMINATOR_SIZES = ("tiny", "shapes", "base")


@dataclasses.dataclass
class GANOptions(GANConfig):
    """[gan] table: `GANConfig` (loss, weight, start_step, lecam_weight, adaptive_weight, lr, betas, ...)
    plus `enabled` and the discriminator size ("tiny", "shapes" or "base" = `DiscriminatorConfig()`)."""

    enabled: bool = False
    discriminator: str = "shapes"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.discriminator not in DISCRIMINATOR_SIZES:
            raise VidgenError(f"gan.discriminator = {self.discriminator!r}: expected one of "
                              f"{', '.join(DISCRIMINATOR_SIZES)}")

    def gan_config(self) -> GANConfig:
        return GANConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(GANConfig)})


def build_discriminator(options: GANOptions) -> nn.Module:
    """The 3D StyleGAN-style discriminator of the size `options.discriminator` names."""
    from vidgen.tokenizers import discriminator as d

    if options.discriminator == "tiny":
        return d.discriminator_tiny()
    if options.discriminator == "shapes":
        return d.discriminator_shapes()
    return d.Discriminator3D(d.DiscriminatorConfig())
