"""Latent normalisation: the map between a VAE's latents z and the data x a latent diffusion model sees.

Diffusion assumes zero-mean, unit-variance data: the noise schedule decides, per timestep, how much of
a unit-variance signal survives. A VAE's latents rarely are that. LDM (Rombach et al. 2022) multiplies
them by one `scaling_factor = 1 / std(z)` ("scale", CogVideoX's choice and our default); SD3 and later
models also subtract a shift. On flat synthetic data (Shapes: mostly black) the latents carry a large
constant per channel (the background code), so after "scale" their *variation* has a std of only ~0.3
and fine detail (a square's corners versus a circle's rim) sits in a few low-variance channel
directions, under the noise from the first timesteps on. Two more modes fix that:

    "scale"    x = s z                                  s = 1 / std(z) over all elements
    "channel"  x = (z - m) / s_c                        per-channel mean m and std s_c
    "whiten"   x = D^-1/2 U^T (z - m)                   PCA whitening of the C-vector at every latent
                                                        position: U, D eigenvectors / eigenvalues of
                                                        the channel covariance, D regularised by
                                                        eps * mean(D) so near-empty directions are
                                                        not blown up

"whiten" gives every direction of channel space the same variance, so the diffusion loss weights them
alike and detail in low-variance directions survives to higher noise levels (measured on the Shapes VAE:
the square/circle latent difference grows from 0.04 to 0.26 per element relative to unit noise; see
docs/cogvideox.md). All three are invertible linear maps applied over the channel axis of
(B, C, T, H, W) latents; `denormalize` undoes `normalize` exactly (up to float rounding).

Statistics come from a dataset's posterior moments (`fit`): E[z] = E[mean], Cov(z) = Cov(mean) +
diag(E[std^2]), in float64. A fitted normaliser is plain data (`to_dict` / `from_dict`, JSON lists),
stored in the pipeline's pipeline.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vidgen.errors import VidgenError

MODES = ("scale", "channel", "whiten")


def check_options(mode: str, eps: float, mode_name: str = "latent normalisation mode",
                  eps_name: str = "latent normalisation eps") -> None:
    """Raise VidgenError naming the value if `mode` is not one of MODES or `eps` is outside [0, 10]."""
    if mode not in MODES:
        raise VidgenError(f"{mode_name} = {mode!r}: expected one of {', '.join(MODES)}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps <= 10.0:
        raise VidgenError(f"{eps_name} = {eps!r}: expected a number in [0, 10]")


def latent_scaling_factor(mean: torch.Tensor, std: torch.Tensor | None = None) -> float:
    """LDM's 1 / std of z ~ q(z | x) over all elements of a dataset: Var(z) = Var(mean) + E[std^2]."""
    variance = mean.double().var(unbiased=False)
    if std is not None:
        variance = variance + std.double().pow(2).mean()
    return float(1.0 / variance.clamp_min(1e-24).sqrt())


@dataclass
class LatentNormalizer:
    """x = matrix @ (z - mean) over the channel axis; z = inverse @ x + mean.

    mode: one of MODES (what produced `matrix`; "scale" is a multiple of the identity with zero mean).
    mean: (C,) float64; matrix, inverse: (C, C) float64.
    """

    mode: str
    mean: torch.Tensor
    matrix: torch.Tensor
    inverse: torch.Tensor
    eps: float = 0.0

    def __post_init__(self) -> None:
        check_options(self.mode, self.eps)
        self.mean = torch.as_tensor(self.mean, dtype=torch.float64).reshape(-1)
        channels = self.mean.numel()
        self.matrix = torch.as_tensor(self.matrix, dtype=torch.float64)
        self.inverse = torch.as_tensor(self.inverse, dtype=torch.float64)
        for name, value in (("matrix", self.matrix), ("inverse", self.inverse)):
            if tuple(value.shape) != (channels, channels):
                raise VidgenError(f"latent normalisation {name} must be ({channels}, {channels}) for "
                                  f"{channels} channels; got {tuple(value.shape)}")
            if not torch.isfinite(value).all():
                raise VidgenError(f"latent normalisation {name} holds non-finite values")

    @property
    def channels(self) -> int:
        return self.mean.numel()

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_scaling_factor(cls, scaling_factor: float, channels: int) -> LatentNormalizer:
        """The LDM/CogVideoX map x = scaling_factor * z."""
        if not scaling_factor > 0:
            raise VidgenError(f"latent scaling factor must be > 0; got {scaling_factor}")
        eye = torch.eye(channels, dtype=torch.float64)
        return cls("scale", torch.zeros(channels), eye * scaling_factor, eye / scaling_factor)

    @classmethod
    def fit(cls, mean: torch.Tensor, std: torch.Tensor | None = None, mode: str = "whiten",
            eps: float = 0.01) -> LatentNormalizer:
        """Fit to posterior moments `mean`, `std` (N, C, T, H, W) (std None: deterministic latents).

        eps (whiten only): added to every eigenvalue as a fraction of their mean, so a direction with
        almost no variance is scaled by at most (eps * mean eigenvalue) ** -0.5.
        """
        check_options(mode, eps)
        if mean.ndim < 2:
            raise VidgenError(f"latents must be (N, C, ...); got shape {tuple(mean.shape)}")
        channels = mean.shape[1]
        if mode == "scale":
            return cls.from_scaling_factor(latent_scaling_factor(mean, std), channels)
        flat = mean.transpose(0, 1).reshape(channels, -1).double()  # (C, N*T*H*W)
        centre = flat.mean(1)
        noise_var = (torch.zeros(channels, dtype=torch.float64) if std is None
                     else std.transpose(0, 1).reshape(channels, -1).double().pow(2).mean(1))
        deviation = flat - centre[:, None]
        covariance = deviation @ deviation.T / deviation.shape[1] + torch.diag(noise_var)
        if mode == "channel":
            scale = covariance.diagonal().clamp_min(1e-12).sqrt()
            return cls("channel", centre, torch.diag(1 / scale), torch.diag(scale))
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        eigenvalues = eigenvalues.clamp_min(0) + eps * eigenvalues.clamp_min(0).mean()
        if not eigenvalues.min() > 0:
            raise VidgenError("cannot whiten latents that do not vary: every channel is constant "
                              "(use mode 'scale', or eps > 0)")
        matrix = torch.diag(eigenvalues.rsqrt()) @ eigenvectors.T
        inverse = eigenvectors @ torch.diag(eigenvalues.sqrt())
        return cls("whiten", centre, matrix, inverse, eps=float(eps))

    # ------------------------------------------------------------------ the maps

    def _checked(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim < 2 or latents.shape[1] != self.channels:
            raise VidgenError(f"latents must be (B, {self.channels}, ...) for this normaliser; "
                              f"got shape {tuple(latents.shape)}")
        return latents

    def _apply(self, latents: torch.Tensor, matrix: torch.Tensor, before: torch.Tensor | None,
               after: torch.Tensor | None) -> torch.Tensor:
        self._checked(latents)
        dtype = latents.dtype if latents.is_floating_point() else torch.float32
        shape = (1, -1) + (1,) * (latents.ndim - 2)
        with torch.autocast(latents.device.type, enabled=False):  # a bf16 product would blur fine detail
            x = latents if before is None else latents - before.to(latents.device, dtype).view(shape)
            x = torch.einsum("dc,bc...->bd...", matrix.to(latents.device, dtype), x)
            return x if after is None else x + after.to(latents.device, dtype).view(shape)

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE latents z (B, C, T, H, W) -> diffusion data x (B, C, T, H, W)."""
        if self.mode == "scale":  # a plain product, as LDM pipelines compute it
            return self._checked(latents) * float(self.matrix[0, 0])
        return self._apply(latents, self.matrix, self.mean, None)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Diffusion data x (B, C, T, H, W) -> VAE latents z, the input of `decode`."""
        if self.mode == "scale":
            return self._checked(x) / float(self.matrix[0, 0])
        return self._apply(x, self.inverse, None, self.mean)

    # ------------------------------------------------------------------ storage

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "eps": self.eps, "mean": self.mean.tolist(), "matrix": self.matrix.tolist(),
                "inverse": self.inverse.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatentNormalizer:
        if not isinstance(data, dict):
            raise VidgenError(f"latent_normalization must be a JSON object; got {type(data).__name__}")
        missing = [key for key in ("mode", "mean", "matrix", "inverse") if key not in data]
        if missing:
            raise VidgenError(f"latent_normalization lacks the key(s) {', '.join(missing)}")
        try:
            exact = {key: torch.tensor(data[key], dtype=torch.float64) for key in ("mean", "matrix", "inverse")}
            return cls(data["mode"], **exact, eps=float(data.get("eps", 0.0)))
        except (TypeError, ValueError) as error:
            raise VidgenError(f"latent_normalization holds malformed numbers: {error}") from None
