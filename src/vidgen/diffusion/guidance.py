"""Classifier-free guidance (Ho & Salimans 2022) and autoguidance (Karras et al. 2024) as a wrapper: a
conditional model in, a guided `model_fn(x, t) -> v` out, ready for any sampler in
`vidgen.diffusion.samplers`.

    v = v_uncond + w * (v_cond - v_uncond) + a * (v_cond - v_weak)

The unconditional input is whatever embedding the model was trained with for dropped captions: the empty
prompt's embedding, or a negative prompt's embedding ("negative prompt" = uncond).

Autoguidance ("Guiding a Diffusion Model with a Bad Version of Itself"): `v_weak` is the prediction of a
weaker version of the same model (e.g. an early checkpoint of the same run) with the *same* conditioning.
Where the two disagree, the weak model makes the kind of error the good one makes less of (blurred,
averaged detail), so stepping away from it sharpens what the good model has learnt, without the loss of
variety that a large CFG scale brings. With w = 1 this is Karras et al.'s D_weak + (1 + a)(D - D_weak); a = 0
is plain CFG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from vidgen.diffusion.samplers import ModelFn
from vidgen.errors import VidgenError

DynamicKind = Literal["cogvideox", "cosine"]


def dynamic_guidance_scale(
    guidance_scale: float,
    t: torch.Tensor,
    kind: DynamicKind = "cogvideox",
    num_steps: int | None = None,
    num_train_timesteps: int = 1000,
) -> torch.Tensor:
    """CogVideoX's dynamic CFG scale for timesteps t (B,) int -> (B,) float64 (CPU).

    kind="cogvideox": exactly what CogVideoX's SAT code (`DynamicCFG` with step_index = num_steps - timestep)
        and diffusers' CogVideoX pipeline (`use_dynamic_cfg=True`) compute:
            w(t) = 1 + guidance_scale * (1 - cos(pi * ((num_steps - t) / num_steps) ** 5)) / 2
        with t the *training timestep* (e.g. 999) and num_steps the number of sampling steps (e.g. 50).
        Because t >> num_steps the base is large and negative and w oscillates between 1 and
        1 + guidance_scale from step to step instead of ramping. The CogVideoX authors state this "wave-like"
        schedule is what they use (it allows a high scale while avoiding over-exposure; THUDM/CogVideo issue
        #267, diffusers issue #9641), so it is the default here: it reproduces the reference samplers.
    kind="cosine": the smooth ramp the formula describes, with progress p = (t + 1) / T instead:
            w(t) = 1 + guidance_scale * (1 - cos(pi * p ** 5)) / 2
        which is 1 + guidance_scale at t = T-1 and decays to ~1 towards t = 0. For trailing spacing with
        num_steps dividing T, p = (num_steps - i) / num_steps at loop index i: the same as diffusers PR
        #13172's fix (loop index instead of timestep).
    """
    t64 = t.detach().to("cpu", torch.float64)
    if kind == "cogvideox":
        if not isinstance(num_steps, int) or num_steps < 1:
            raise VidgenError(
                f"num_steps={num_steps!r}: dynamic='cogvideox' guidance needs the number of sampling "
                "steps (>= 1)"
            )
        base = (num_steps - t64) / num_steps
    elif kind == "cosine":
        base = (t64 + 1) / num_train_timesteps
    else:
        raise VidgenError(f"dynamic={kind!r}: expected False, True, 'cogvideox' or 'cosine'")
    return 1 + guidance_scale * (1 - torch.cos(math.pi * base**5.0)) / 2


def _batch_inputs(cond: Mapping[str, Any], uncond: Mapping[str, Any]) -> dict[str, Any]:
    """Concatenates uncond and cond keyword inputs along the batch: [uncond; cond] (diffusers' order)."""
    if set(cond) != set(uncond):
        raise VidgenError(
            f"cond has keys {sorted(cond)} but uncond has {sorted(uncond)}: "
            "both must give the same model inputs"
        )
    batched = {}
    for key, c in cond.items():
        u = uncond[key]
        if isinstance(c, torch.Tensor) != isinstance(u, torch.Tensor):
            raise VidgenError(f"input {key!r} is a tensor in one of cond / uncond but not the other")
        if isinstance(c, torch.Tensor):
            if u.ndim == c.ndim and u.shape[0] == 1 and c.shape[0] > 1:
                u = u.expand(c.shape[0], *u.shape[1:])  # one negative prompt for the whole batch
            if c.shape != u.shape:
                raise VidgenError(
                    f"input {key!r}: cond shape {tuple(c.shape)} vs uncond shape {tuple(u.shape)}; "
                    "they must match "
                    "(pad prompt embeddings to the same length)"
                )
            batched[key] = torch.cat([u, c.to(u.dtype)], dim=0)
        else:
            if c is not u and c != u:
                raise VidgenError(f"non-tensor input {key!r} differs between cond ({c!r}) and uncond ({u!r})")
            batched[key] = c
    return batched


def cfg_model_fn(
    model: Callable[..., torch.Tensor],
    cond: Mapping[str, Any],
    uncond: Mapping[str, Any] | None,
    guidance_scale: float,
    dynamic: bool | DynamicKind = False,
    num_steps: int | None = None,
    num_train_timesteps: int = 1000,
    weak_model: Callable[..., torch.Tensor] | None = None,
    autoguidance_scale: float = 0.0,
) -> ModelFn:
    """Builds the guided `model_fn(x, t) -> v` for the samplers.

    model: `model(x, t, **inputs) -> v` with x (B, ...), t (B,) int64 timesteps, v shaped like x (wrap models
        with another argument order in a lambda).
    cond / uncond: keyword inputs for the conditional / unconditional pass, e.g.
        {"text_embeddings": (B, L, D), "text_mask": (B, L)}. Tensors are concatenated as [uncond; cond] so
        both passes run as one forward of batch 2B (an uncond tensor of batch 1 is repeated B times);
        non-tensor values must be equal and are passed once.
    guidance_scale: w >= 0. w = 1 runs only the conditional pass (uncond may be None); w = 0 is unconditional.
    dynamic: False (constant w), True or "cogvideox" (CogVideoX's schedule, needs num_steps), or "cosine";
        see `dynamic_guidance_scale`. As in diffusers, guidance_scale = 1 switches guidance off, also when
        dynamic.

    weak_model / autoguidance_scale: autoguidance (module docstring): `weak_model(x, t, **cond)` is the weak
        model, called with the conditional inputs only; a >= 0, 0 = off (weak_model is then not called).

    The guided prediction is combined in float32 (bf16 model outputs are upcast) and returned as float32.
    """
    if not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise VidgenError(
            f"guidance_scale={guidance_scale!r}: expected a finite number >= 0 (1 = no guidance)"
        )
    kind: DynamicKind | None = "cogvideox" if dynamic is True else (dynamic or None)
    if kind is not None and kind not in ("cogvideox", "cosine"):
        raise VidgenError(f"dynamic={dynamic!r}: expected False, True, 'cogvideox' or 'cosine'")
    if kind == "cogvideox" and (not isinstance(num_steps, int) or num_steps < 1):
        raise VidgenError(
            f"num_steps={num_steps!r}: dynamic='cogvideox' guidance needs the number of sampling steps"
        )

    if not math.isfinite(autoguidance_scale) or autoguidance_scale < 0:
        raise VidgenError(
            f"autoguidance_scale={autoguidance_scale!r}: expected a finite number >= 0 (0 = no autoguidance)"
        )
    if autoguidance_scale > 0 and weak_model is None:
        raise VidgenError(f"autoguidance_scale={autoguidance_scale}: autoguidance needs a weak model")

    def autoguided(x: torch.Tensor, t: torch.Tensor, v: torch.Tensor, v_cond: torch.Tensor) -> torch.Tensor:
        if autoguidance_scale == 0:
            return v
        return v + autoguidance_scale * (v_cond - weak_model(x, t, **cond).float())

    if guidance_scale == 1.0:

        def conditional(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = _timesteps(t, x)
            v_cond = model(x, t, **cond)
            return autoguided(x, t, v_cond.float(), v_cond.float()) if autoguidance_scale else v_cond

        return conditional

    if uncond is None:
        raise VidgenError(f"guidance_scale={guidance_scale}: classifier-free guidance needs uncond inputs")
    inputs = _batch_inputs(cond, uncond)

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _timesteps(t, x)
        out = model(torch.cat([x, x]), torch.cat([t, t]), **inputs)  # (2B, ...)
        v_uncond, v_cond = out.float().chunk(2)
        if kind is None:
            scale: float | torch.Tensor = guidance_scale
        else:
            scale = dynamic_guidance_scale(guidance_scale, t, kind, num_steps, num_train_timesteps)
            scale = scale.to(x.device, torch.float32).view((-1,) + (1,) * (x.ndim - 1))  # (B, 1, ..., 1)
        return autoguided(x, t, v_uncond + scale * (v_cond - v_uncond), v_cond)

    return guided


def _timesteps(t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
    """t as a (B,) int64 tensor on x's device (a scalar is used for the whole batch)."""
    t = torch.as_tensor(t, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t
