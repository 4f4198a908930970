"""Noise schedules: the stateless maths of the discrete variance-preserving diffusion process.

The forward process at integer timestep t in 0..T-1 (T = `num_train_timesteps`, t = T-1 noisiest) is

    z_t = alpha_t * x0 + sigma_t * noise,   alpha_t = sqrt(alpha_bar_t),  sigma_t = sqrt(1 - alpha_bar_t)

with alpha_bar_t = prod_{s<=t} (1 - beta_s). Every diffusion model in vidgen (CogVideoX now, Make-A-Video and
Video LDM later) shares this one implementation; samplers and losses only ever ask a `NoiseSchedule` for
alpha_t and sigma_t.

The parametrisation follows diffusers (`CogVideoXDDIMScheduler` / `CogVideoXDPMScheduler`) so that a
CogVideoX checkpoint trained there (or in the original SAT code) sees exactly the same noise levels:

1. betas from `beta_schedule`, alpha_bar = cumprod(1 - betas);
2. SNR shift (CogVideoX, "snr_shift_scale"): alpha_bar' = alpha_bar / (s + (1 - s) * alpha_bar), which is
   exactly SNR'(t) = SNR(t) / s: s = 3 makes every step noisier, which the CogVideoX authors found helps at
   high resolution (more pixels = more redundancy = the same noise destroys less information);
3. optional zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
   Flawed", Algorithm 1): shift and rescale sqrt(alpha_bar) so that alpha_bar_{T-1} = 0 exactly while
   alpha_bar_0 is unchanged. The model then sees pure noise at t = T-1, as it will at sampling time; an
   epsilon-prediction model cannot work there (x0 = (z - sigma * eps) / alpha with alpha = 0), which is why
   CogVideoX uses v-prediction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from vidgen.errors import VidgenError

BetaScheduleKind = Literal["scaled_linear", "linear", "cosine"]
_BETA_SCHEDULES = ("scaled_linear", "linear", "cosine")


def _betas(kind: str, num_steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """(num_steps,) float64 betas."""
    if kind == "scaled_linear":
        # Stable Diffusion / CogVideoX: linear in sqrt(beta) (the "linear" of the LDM / SAT code bases).
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
    if kind == "linear":
        # DDPM (Ho et al. 2020).
        return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)

    # "cosine" (Nichol & Dhariwal 2021): alpha_bar(u) = cos^2((u + 0.008) / 1.008 * pi / 2), u in [0, 1];
    # betas clipped at 0.999 so the last step stays invertible (diffusers' "squaredcos_cap_v2").
    def alpha_bar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), 0.999) for i in range(num_steps)
    ]
    return torch.tensor(betas, dtype=torch.float64)


def _rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023, Algorithm 1, applied to alpha_bar: affine map of sqrt(alpha_bar) that keeps the first
    value and sends the last one to exactly 0."""
    root = alphas_cumprod.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    return root**2


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete variance-preserving noise schedule (config + precomputed `alphas_cumprod`).

    Timesteps `t` everywhere are integers in 0..num_train_timesteps-1; t = num_train_timesteps-1 is the
    noisiest (pure noise when `rescale_betas_zero_snr`). Methods accept `t` as a Python int or an integer
    tensor of shape (B,) (one timestep per batch element); tensors `x` are (B, ...) of any layout, e.g.
    video latents (B, C, T, H, W), and coefficients broadcast over all non-batch dimensions.

    Attributes computed at construction (not part of the config):
        alphas_cumprod: (num_train_timesteps,) float64 tensor, alpha_bar_t.

    The config is plain data: `NoiseSchedule(**json.load(...))` round-trips `schedule.to_dict()`.
    """

    num_train_timesteps: int = 1000
    beta_schedule: BetaScheduleKind = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    snr_shift_scale: float = 1.0
    rescale_betas_zero_snr: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.num_train_timesteps, int) or self.num_train_timesteps < 2:
            raise VidgenError(f"num_train_timesteps={self.num_train_timesteps!r}: expected an integer >= 2")
        if self.beta_schedule not in _BETA_SCHEDULES:
            raise VidgenError(
                f"beta_schedule={self.beta_schedule!r}: expected one of {', '.join(_BETA_SCHEDULES)}"
            )
        if self.beta_schedule != "cosine" and not 0 < self.beta_start <= self.beta_end < 1:
            raise VidgenError(
                f"beta_start={self.beta_start!r}, beta_end={self.beta_end!r}: "
                "expected 0 < beta_start <= beta_end < 1"
            )
        if not self.snr_shift_scale > 0:
            raise VidgenError(
                f"snr_shift_scale={self.snr_shift_scale!r}: expected a number > 0 (1.0 = no shift)"
            )

        betas = _betas(self.beta_schedule, self.num_train_timesteps, self.beta_start, self.beta_end)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        s = self.snr_shift_scale
        alphas_cumprod = alphas_cumprod / (s + (1 - s) * alphas_cumprod)  # SNR / s
        if self.rescale_betas_zero_snr:
            alphas_cumprod = _rescale_zero_terminal_snr(alphas_cumprod)
        # frozen dataclass: the derived table is set once here and never changes with the config.
        object.__setattr__(self, "alphas_cumprod", alphas_cumprod)

    # -- named configurations -------------------------------------------------------------------------
    @classmethod
    def cogvideox(cls, snr_shift_scale: float = 3.0) -> NoiseSchedule:
        """CogVideoX: scaled_linear 0.00085..0.012 over 1000 steps, zero terminal SNR, SNR shift 3.0
        (CogVideoX-2B) or 1.0 (CogVideoX-5B)."""
        return cls(1000, "scaled_linear", 0.00085, 0.012, snr_shift_scale, rescale_betas_zero_snr=True)

    def to_dict(self) -> dict:
        return asdict(self)

    # -- per-timestep quantities ----------------------------------------------------------------------
    def _check_t(self, t: int | torch.Tensor) -> torch.Tensor:
        """t as a CPU int64 tensor ( () or (B,) ), validated."""
        if isinstance(t, torch.Tensor):
            if t.is_floating_point() or t.is_complex():
                raise VidgenError(
                    f"timesteps must be integers in 0..{self.num_train_timesteps - 1}, got dtype {t.dtype}"
                )
            t_cpu = t.detach().to("cpu", torch.int64)
        elif isinstance(t, int) and not isinstance(t, bool):
            t_cpu = torch.tensor(t, dtype=torch.int64)
        else:
            raise VidgenError(f"timestep {t!r}: expected an int or an integer tensor")
        if t_cpu.numel() and (int(t_cpu.min()) < 0 or int(t_cpu.max()) >= self.num_train_timesteps):
            raise VidgenError(
                f"timesteps out of range [{int(t_cpu.min())}, {int(t_cpu.max())}]: "
                f"expected integers in 0..{self.num_train_timesteps - 1}"
            )
        return t_cpu

    def alpha_sigma(self, t: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_t, sigma_t) = (sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)): float64 CPU, shaped like t."""
        ab = self.alphas_cumprod[self._check_t(t)]
        return ab.sqrt(), (1.0 - ab).sqrt()

    def alpha_sigma_float(self, t: int) -> tuple[float, float]:
        """(alpha_t, sigma_t) as Python floats for one integer timestep (what samplers use per step).
        t = -1 means "the clean data": (1.0, 0.0)."""
        if t == -1:
            return 1.0, 0.0
        ab = float(self.alphas_cumprod[int(self._check_t(int(t)))])
        return math.sqrt(ab), math.sqrt(1.0 - ab)

    def snr(self, t: int | torch.Tensor) -> torch.Tensor:
        """SNR alpha_bar_t / (1 - alpha_bar_t), float64 shaped like t (0 at a zero-terminal-SNR end)."""
        ab = self.alphas_cumprod[self._check_t(t)]
        return ab / (1.0 - ab)

    def _coefficients(self, t: int | torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_t, sigma_t shaped (B, 1, ..., 1) (or () for a scalar t), in like's dtype and device.
        Computed in float64 on the CPU and cast once: bf16 / float32 callers get correctly rounded values."""
        alpha, sigma = self.alpha_sigma(t)
        if alpha.ndim == 1:
            if alpha.shape[0] != like.shape[0]:
                raise VidgenError(
                    f"got {alpha.shape[0]} timesteps for a batch of {like.shape[0]}: pass one timestep per "
                    "batch element (shape (B,)) or a single int"
                )
            view = (-1,) + (1,) * (like.ndim - 1)
            alpha, sigma = alpha.view(view), sigma.view(view)
        elif alpha.ndim != 0:
            raise VidgenError(f"timesteps of shape {tuple(alpha.shape)}: expected an int or a (B,) tensor")
        return alpha.to(like.device, like.dtype), sigma.to(like.device, like.dtype)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Forward process z_t = alpha_t * x0 + sigma_t * noise. x0, noise: (B, ...); t: int or (B,)."""
        alpha, sigma = self._coefficients(t, x0)
        return alpha * x0 + sigma * noise

    def v_target(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Velocity v = alpha_t * noise - sigma_t * x0 (Salimans & Ho 2022), the CogVideoX training target."""
        alpha, sigma = self._coefficients(t, x0)
        return alpha * noise - sigma * x0

    def pred_x0_from_v(self, z_t: torch.Tensor, v: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Data prediction x0 = alpha_t * z_t - sigma_t * v (well defined at every t, also alpha_t = 0)."""
        alpha, sigma = self._coefficients(t, z_t)
        return alpha * z_t - sigma * v

    def pred_noise_from_v(self, z_t: torch.Tensor, v: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Noise prediction eps = sigma_t * z_t + alpha_t * v."""
        alpha, sigma = self._coefficients(t, z_t)
        return sigma * z_t + alpha * v

    def v_from_noise(
        self, z_t: torch.Tensor, noise_pred: torch.Tensor, t: int | torch.Tensor
    ) -> torch.Tensor:
        """Converts an epsilon-prediction model's output to v = (eps - sigma_t * z_t) / alpha_t, so that
        epsilon models (Stable-Diffusion-style Video LDM) can use the v-based samplers. Undefined where
        alpha_t = 0 (zero terminal SNR), which raises."""
        alpha, sigma = self._coefficients(t, z_t)
        if bool((alpha == 0).any()):
            raise VidgenError(
                "cannot convert an epsilon prediction to v at a timestep with alpha_t = 0 "
                "(zero terminal SNR): epsilon-prediction models need rescale_betas_zero_snr=False"
            )
        return (noise_pred - sigma * z_t) / alpha

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"NoiseSchedule({fields})"
