"""Reproducible randomness: random draws in vidgen (diffusion noise, timesteps, crops, MAGVIT's masks and
Gumbel noise) go through `randn` / `randint` / `rand` with an explicit `torch.Generator`.

Draws happen on the generator's device (a CPU generator by default) in float32 and are then moved and cast,
so a seed gives the same numbers on CPU and CUDA and for every compute dtype (bf16, float32, float64).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vidgen.errors import VidgenError

Generator = torch.Generator | Sequence[torch.Generator] | None


def _generator_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def randn(
    shape: Sequence[int],
    generator: Generator = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of `shape` (e.g. (B, C, T, H, W)) on `device` (default CPU) in `dtype`.

    generator: a `torch.Generator` (draw on its device, CPU recommended), a list of B generators (sample b is
        drawn from generator b with shape shape[1:], so a sample does not depend on the batch it is in, as in
        diffusers), or None (torch's global CPU RNG: not reproducible unless torch.manual_seed is set).
    The draw is always float32, then cast, so a seed gives the same values whatever the dtype.
    """
    shape = tuple(int(s) for s in shape)
    if isinstance(generator, Sequence) and not isinstance(generator, torch.Generator):
        if len(shape) == 0 or len(generator) != shape[0]:
            raise VidgenError(
                f"got {len(generator)} generators for noise of shape {shape}: "
                "pass one generator or exactly one per batch element"
            )
        target = torch.device(device) if device is not None else torch.device("cpu")
        samples = [
            torch.randn(shape[1:], generator=g, device=_generator_device(g), dtype=torch.float32).to(target)
            for g in generator
        ]
        return torch.stack(samples).to(dtype)
    noise = torch.randn(shape, generator=generator, device=_generator_device(generator), dtype=torch.float32)
    return noise.to(device=device if device is not None else noise.device, dtype=dtype)


def randint(
    low: int,
    high: int,
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniform integers in [low, high) as an int64 tensor, drawn on the generator's device and moved."""
    if high <= low:
        raise VidgenError(f"randint range [{low}, {high}) is empty: expected low < high")
    out = torch.randint(low, high, tuple(shape), generator=generator, device=_generator_device(generator))
    return out.to(device) if device is not None else out


def rand(
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Uniform numbers in [0, 1) (float64 unless `dtype` says otherwise), drawn on the generator's device
    and moved."""
    out = torch.rand(tuple(shape), generator=generator, device=_generator_device(generator), dtype=dtype)
    return out.to(device) if device is not None else out
