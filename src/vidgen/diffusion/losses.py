"""The v-prediction training loss, as CogVideoX trains it.

What CogVideoX's SAT code computes (`VideoDiffusionLoss` + `DiscreteDenoiser` with `VideoScaling`):
    t ~ U{0..T-1},  z_t = alpha_t x0 + sigma_t eps,  v_hat = network(z_t, t)
    x0_hat = alpha_t z_t - sigma_t v_hat          (the denoiser's output: c_skip = alpha, c_out = -sigma)
    loss   = mean over elements of  w_t (x0_hat - x0)^2,   w_t = 1 / (1 - alpha_bar_t) = 1 / sigma_t^2
What we compute instead, and why it is the same number:
    x0_hat - x0 = alpha_t z_t - sigma_t v_hat - x0 = -sigma_t (v_hat - v),   v = alpha_t eps - sigma_t x0
(using alpha_t z_t - sigma_t v = x0, since alpha^2 + sigma^2 = 1), hence
    w_t (x0_hat - x0)^2 = (1 / sigma_t^2) sigma_t^2 (v_hat - v)^2 = (v_hat - v)^2.
So the SAT loss (and diffusers' CogVideoX fine-tuning scripts, which use the same x0-space form) is *exactly*
the unweighted MSE in v-space: the constant is 1, at every t. We compute it in v-space because that avoids
multiplying by 1 / sigma_t^2 (up to ~1e3 at small t) and the x0 round trip. Seen from the other
parametrisations, this loss is the x0-MSE weighted by SNR + 1, or the epsilon-MSE weighted by 1 + 1 / SNR.
Per sample the squared error is averaged over all elements, then over the batch (as SAT does).

Timestep sampling: uniform over 0..T-1, or the CogVideoX paper's "Explicit Uniform Sampling":
[0, T) is split into one interval per data-parallel rank and each rank draws from its own interval, so every
optimiser step covers the whole noise range and the loss curve is less noisy. "stratified_slot" goes one
step further and gives every (rank, batch slot) pair its own interval (useful on a single GPU).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from vidgen.diffusion.rng import rand, randint, randn
from vidgen.diffusion.schedules import NoiseSchedule
from vidgen.errors import VidgenError

TimestepSampling = Literal["uniform", "stratified_rank", "stratified_slot"]
_MODES = ("uniform", "stratified_rank", "stratified_slot")


def _rank_and_world_size(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        dist = torch.distributed
        running = dist.is_available() and dist.is_initialized()
        rank = rank if rank is not None else (dist.get_rank() if running else 0)
        world_size = world_size if world_size is not None else (dist.get_world_size() if running else 1)
    if not 0 <= rank < world_size:
        raise VidgenError(f"rank={rank}, world_size={world_size}: expected 0 <= rank < world_size")
    return rank, world_size


def sample_timesteps(
    batch_size: int,
    num_train_timesteps: int,
    generator: torch.Generator | None = None,
    mode: TimestepSampling = "uniform",
    rank: int | None = None,
    world_size: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training timesteps, (batch_size,) int64 in 0..T-1 (T = num_train_timesteps, T-1 noisiest).

    mode:
      "uniform":         i.i.d. uniform over 0..T-1.
      "stratified_rank": CogVideoX "Explicit Uniform Sampling": rank k of W draws all its slots uniformly from
                         [k T / W, (k+1) T / W) (integer bounds); over the W ranks one step covers [0, T).
      "stratified_slot": slot b of rank k draws from stratum k * B + b of W * B equal strata of [0, T).
    rank / world_size default to torch.distributed's when it is initialised, else 0 / 1.
    """
    if mode not in _MODES:
        raise VidgenError(f"timestep sampling mode {mode!r}: expected one of {', '.join(_MODES)}")
    if mode == "uniform":
        return randint(0, num_train_timesteps, (batch_size,), generator, device)
    rank, world_size = _rank_and_world_size(rank, world_size)
    if mode == "stratified_rank":
        num_strata, stratum = world_size, torch.full((batch_size,), rank, dtype=torch.int64)
    else:
        num_strata, stratum = world_size * batch_size, rank * batch_size + torch.arange(batch_size)
    if num_strata > num_train_timesteps:
        raise VidgenError(
            f"{mode}: {num_strata} strata for only {num_train_timesteps} timesteps; "
            "use mode='uniform' or fewer strata"
        )
    lo = stratum * num_train_timesteps // num_strata
    hi = (stratum + 1) * num_train_timesteps // num_strata
    u = rand((batch_size,), generator).to("cpu")
    t = lo + (u * (hi - lo)).long().clamp_max(hi - lo - 1)
    return t.to(device) if device is not None else t


def v_prediction_loss(
    model_fn: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    cond_kwargs: Mapping[str, Any] | None,
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
    *,
    timestep_sampling: TimestepSampling = "uniform",
    rank: int | None = None,
    world_size: int | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """One training step's diffusion loss for a v-prediction model (see the module docstring).

    model_fn: `model_fn(z_t, t, **cond_kwargs) -> v_hat`, z_t shaped like x0 (float32), t (B,) int64 on x0's
        device; v_hat shaped like x0 (any float dtype; the loss is computed in float32).
    x0: clean data (B, ...), e.g. VAE latents (B, C, T, H, W).
    cond_kwargs: conditioning inputs for the model (e.g. {"text_embeddings": ...}), or None.
    generator: draws t (unless given) and the noise (unless given); `rng.randn` / `rng.rand` semantics.
    timestep_sampling, rank, world_size: see `sample_timesteps`.
    t: (B,) int timesteps to use instead of sampling; noise: (B, ...) noise to use instead of drawing.
    mask: optional, broadcastable to x0 (e.g. (B, 1, T, 1, 1) for frames), True / 1 where the loss counts
        (e.g. excluding padded frames); each sample's MSE is averaged over its counted elements only.

    Returns {"loss": () mean over the batch, "loss_per_sample": (B,), "t": (B,) timesteps used}.
    """
    b = x0.shape[0]
    if t is None:
        t = sample_timesteps(b, schedule.num_train_timesteps, generator, timestep_sampling, rank, world_size)
    elif t.shape != (b,):
        raise VidgenError(f"t has shape {tuple(t.shape)}: expected ({b},), one timestep per sample")
    t = t.to(x0.device, torch.int64)
    x0 = x0.float()
    if noise is None:
        noise = randn(x0.shape, generator, x0.device, torch.float32)
    elif noise.shape != x0.shape:
        raise VidgenError(f"noise has shape {tuple(noise.shape)}: expected x0's shape {tuple(x0.shape)}")
    noise = noise.float()

    z_t = schedule.add_noise(x0, noise, t)
    target = schedule.v_target(x0, noise, t)
    v_hat = model_fn(z_t, t, **(cond_kwargs or {}))
    if v_hat.shape != x0.shape:
        raise VidgenError(
            f"model_fn returned shape {tuple(v_hat.shape)}: expected x0's shape {tuple(x0.shape)}"
        )
    err = (v_hat.float() - target) ** 2

    if mask is None:
        per_sample = err.reshape(b, -1).mean(dim=1)
    else:
        try:
            m = torch.broadcast_to(mask.to(err.device, torch.float32), err.shape)
        except RuntimeError:
            raise VidgenError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to x0's {tuple(x0.shape)}"
            ) from None
        counted = m.reshape(b, -1).sum(dim=1)
        per_sample = (err * m).reshape(b, -1).sum(dim=1) / counted.clamp_min(1.0)
    return {"loss": per_sample.mean(), "loss_per_sample": per_sample, "t": t}
