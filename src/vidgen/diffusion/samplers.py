"""Samplers for v-prediction diffusion models, k-diffusion style: each is one plain function.

Every sampler takes
    model_fn(x, t) -> v : x (B, ...) the current noisy sample, t (B,) int64 timesteps on x's device;
                          returns the (already guided, see `guidance.cfg_model_fn`) velocity, shaped like x;
    x_T                 : (B, ...) initial noise (use `rng.randn`); with a zero-terminal-SNR schedule and
                          "trailing" spacing the first timestep is pure noise, else x_T is used as z_{t0};
    schedule            : a `NoiseSchedule`;
    timesteps           : strictly decreasing integer timesteps in 0..T-1 (from `timesteps_for`);
and returns the final sample x0 (B, ...), in x_T's dtype. Keep x_T in float32 (or float64): model outputs,
e.g. bf16 under autocast, are cast to x_T's dtype and the update is computed there.

Each step goes from timestep t_i to t_{i+1} (the next entry of `timesteps`; after the last entry, to "t = -1",
the clean data: alpha = 1, sigma = 0), so the final step outputs the model's data prediction.
Note: diffusers' CogVideoX schedulers instead step to t - T // num_steps, which equals the next entry for
"trailing" spacing when num_steps divides T (e.g. 50 steps); for other step counts they skip or repeat
noise levels. We always follow the list.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from vidgen.diffusion.rng import Generator, randn
from vidgen.diffusion.schedules import NoiseSchedule
from vidgen.errors import VidgenError

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict], None]
_SPACINGS = ("trailing", "leading", "linspace")


def timesteps_for(
    schedule: NoiseSchedule,
    num_steps: int,
    spacing: Literal["trailing", "leading", "linspace"] = "trailing",
    steps_offset: int = 0,
) -> torch.Tensor:
    """The `num_steps` sampling timesteps, (num_steps,) int64, strictly decreasing (noisiest first).

    Spacings (Lin et al. 2023, Table 2; same values as diffusers' `set_timesteps`), T = num_train_timesteps:
      "trailing": round(T - i * T / n) - 1, starts at T-1 (the zero-SNR pure-noise step; CogVideoX);
      "leading":  i * (T // n) + steps_offset, reversed (Stable Diffusion: steps_offset=1); never reaches T-1;
      "linspace": round(linspace(0, T-1, n)), reversed.
    """
    T = schedule.num_train_timesteps
    if not isinstance(num_steps, int) or not 1 <= num_steps <= T:
        raise VidgenError(f"num_steps={num_steps!r}: expected an integer in 1..{T}")
    if spacing == "trailing":
        # Python's round, like np.round, rounds halves to even.
        steps = [round(T - i * T / num_steps) - 1 for i in range(num_steps)]
    elif spacing == "leading":
        steps = [i * (T // num_steps) + steps_offset for i in reversed(range(num_steps))]
        if steps[0] >= T:
            raise VidgenError(
                f"steps_offset={steps_offset}: the largest timestep {steps[0]} would exceed {T - 1}"
            )
    elif spacing == "linspace":
        steps = np.linspace(0, T - 1, num_steps).round()[::-1].astype(np.int64).tolist()
    else:
        raise VidgenError(f"spacing={spacing!r}: expected one of {', '.join(_SPACINGS)}")
    if num_steps > 1 and any(a <= b for a, b in itertools.pairwise(steps)):
        raise VidgenError(
            f"num_steps={num_steps} with spacing={spacing!r} repeats timesteps; use fewer steps"
        )
    return torch.tensor(steps, dtype=torch.int64)


def _check_sampler_args(
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    timesteps: torch.Tensor | Sequence[int],
    eta: float,
    eta_meaning: str,
) -> list[int]:
    """The checks every sampler starts with; returns `timesteps` as a list of Python ints.

    `eta_meaning` says what eta does in that sampler, for the error message.
    """
    if not isinstance(x_T, torch.Tensor) or not x_T.is_floating_point() or x_T.ndim < 1:
        what = f"dtype {x_T.dtype}, shape {tuple(x_T.shape)}" if isinstance(x_T, torch.Tensor) else type(x_T).__name__
        raise VidgenError(f"x_T must be a float tensor (B, ...) of initial noise, got {what}")
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not eta >= 0:
        raise VidgenError(f"eta={eta!r}: expected eta >= 0 ({eta_meaning})")
    ts = [int(t) for t in (timesteps.tolist() if isinstance(timesteps, torch.Tensor) else timesteps)]
    T = schedule.num_train_timesteps
    if not ts:
        raise VidgenError("timesteps is empty: pass at least one timestep (see timesteps_for)")
    if any(not 0 <= t < T for t in ts) or any(a <= b for a, b in itertools.pairwise(ts)):
        raise VidgenError(f"timesteps {ts}: expected strictly decreasing integers in 0..{T - 1}")
    return ts


def _log_snr_half(alpha: float, sigma: float) -> float:
    """lambda = log(alpha / sigma), the half log-SNR that DPM-Solver integrates in; -inf at zero SNR."""
    if alpha == 0.0:
        return -math.inf
    if sigma == 0.0:
        return math.inf
    return math.log(alpha) - math.log(sigma)


def _predict(
    model_fn: ModelFn, x: torch.Tensor, t: int, schedule: NoiseSchedule
) -> tuple[torch.Tensor, float, float]:
    """Runs the model at timestep t; returns (x0_pred, alpha_t, sigma_t)."""
    t_batch = torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)
    v = model_fn(x, t_batch)
    if v.shape != x.shape:
        raise VidgenError(
            f"model_fn returned shape {tuple(v.shape)} for input {tuple(x.shape)}: expected the same"
        )
    alpha, sigma = schedule.alpha_sigma_float(t)
    return alpha * x - sigma * v.to(x.dtype), alpha, sigma


@torch.no_grad()
def sample_ddim(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    timesteps: torch.Tensor | Sequence[int],
    eta: float = 0.0,
    generator: Generator = None,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """DDIM (Song et al. 2021) for a v-prediction model. Returns x0 (B, ...).

    Per step t -> s, with x0_hat = alpha_t x - sigma_t v and eps_hat = sigma_t x + alpha_t v:
        x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c * noise,
        c = eta * sqrt(sigma_s^2 / sigma_t^2 * (1 - alpha_t^2 / alpha_s^2)).
    eta = 0 is the deterministic DDIM of diffusers' `CogVideoXDDIMScheduler` (which ignores eta); eta = 1 is
    DDPM-like ancestral sampling. Noise (eta > 0) is drawn with `rng.randn(x.shape, generator)`, once per
    non-final step.
    callback({"i", "t", "x", "denoised"}) is called after every step with the new x and the x0 prediction.
    """
    ts = _check_sampler_args(x_T, schedule, timesteps, eta, "0 = deterministic DDIM, 1 = DDPM-like")
    x = x_T
    for i, t in enumerate(tqdm(ts, desc="DDIM", disable=not progress)):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x0, alpha_t, sigma_t = _predict(model_fn, x, t, schedule)
        eps = (x - alpha_t * x0) / sigma_t  # = sigma_t x + alpha_t v, written via x0 to reuse it
        alpha_s, sigma_s = schedule.alpha_sigma_float(t_next)
        c = 0.0
        if eta > 0 and sigma_s > 0:
            c = eta * math.sqrt(max(sigma_s**2 / sigma_t**2 * (1 - alpha_t**2 / alpha_s**2), 0.0))
        x = alpha_s * x0 + math.sqrt(max(sigma_s**2 - c**2, 0.0)) * eps
        if c > 0:
            x = x + c * randn(x.shape, generator, x.device, x.dtype)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0})
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    timesteps: torch.Tensor | Sequence[int],
    eta: float = 0.0,
    generator: Generator = None,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), multistep second order in data-prediction form, for a v-prediction
    model. Returns x0 (B, ...).

    With lambda = log(alpha / sigma) and h = lambda_s - lambda_t for a step t -> s, the update is
        x_s = (sigma_s / sigma_t) e^{-eta h} x + alpha_s (1 - e^{-(1+eta) h}) D
              + sigma_s sqrt(1 - e^{-2 eta h}) noise
        D   = x0_i + (x0_i - x0_{i-1}) / (2 r),  r = h_{i-1} / h_i   (second-order "midpoint" correction)
    eta = 0: the ODE solver (= diffusers `DPMSolverMultistepScheduler`, algorithm_type="dpmsolver++",
             solver_order=2, solver_type="midpoint", final step first order).
    eta = 1: the SDE variant SDE-DPM-Solver++(2M) that CogVideoX samples with (= SAT `VPSDEDPMPP2MSampler`
             and diffusers `CogVideoXDPMScheduler`). Noise is drawn with `rng.randn(x.shape, generator)`, once
             per non-final step.
    The first step and the final step (onto the clean data, sigma = 0) are first order (D = x0_i).
    Zero terminal SNR: at the first step alpha_t = 0, lambda_t = -inf, e^{-h} = 0, so the step is
    x_s = alpha_s x0 + sigma_s x_T, exactly; the next step's r is infinite and its correction vanishes, so it
    is first order too (the x0 prediction made from pure noise carries no trajectory information).
    callback({"i", "t", "x", "denoised"}) is called after every step.
    """
    ts = _check_sampler_args(x_T, schedule, timesteps, eta, "0 = ODE DPM-Solver++(2M), 1 = SDE variant")
    x = x_T
    old_x0, h_last = None, None
    for i, t in enumerate(tqdm(ts, desc="DPM-Solver++(2M)", disable=not progress)):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x0, alpha_t, sigma_t = _predict(model_fn, x, t, schedule)
        alpha_s, sigma_s = schedule.alpha_sigma_float(t_next)
        if sigma_s == 0.0:
            # Final step onto the data: alpha_s = 1, sigma_s = 0, e^{-h} = 0, so x_s = D; first order -> x0.
            x, h = x0, math.inf
        else:
            h = _log_snr_half(alpha_s, sigma_s) - _log_snr_half(alpha_t, sigma_t)  # > 0, +inf from zero SNR
            eta_h = eta * h if eta > 0 else 0.0  # avoid 0 * inf
            denoised = x0
            if old_x0 is not None and math.isfinite(h_last):
                r = h_last / h
                denoised = x0 + (x0 - old_x0) / (2 * r)
            # -expm1(-a) = 1 - e^{-a}: accurate for small a, exactly 1 for a = inf (the zero-SNR first step).
            x = (sigma_s / sigma_t) * math.exp(-eta_h) * x + alpha_s * -math.expm1(-h - eta_h) * denoised
            if eta > 0:
                noise = randn(x.shape, generator, x.device, x.dtype)
                x = x + sigma_s * math.sqrt(-math.expm1(-2 * eta_h)) * noise
        old_x0, h_last = x0, h
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0})
    return x


# The samplers pipelines and recipes name. "dpm++-sde" is the SDE variant (eta = 1) CogVideoX samples with;
# "dpm++" its ODE (eta = 0, diffusers' default); "ddim" deterministic DDIM.
SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "dpm++": sample_dpmpp_2m,
    "dpm++-sde": functools.partial(sample_dpmpp_2m, eta=1.0),
    "ddim": sample_ddim,
}
