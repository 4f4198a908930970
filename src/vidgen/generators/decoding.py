"""Decoding a masked token transformer: MaskGIT / MAGVIT non-autoregressive, and the autoregressive baseline.

`decode_nonautoregressive` is MAGVIT's Algorithm 1 (COMMIT decoding), MaskGIT's iterative decoding
when there is no condition:

    every position starts masked: inside the condition region it holds the condition token z~,
    elsewhere [MASK]
    for k = 0 .. K-1:
        logits = model(input)                                  (guided: uncond + s (cond - uncond))
        sample a token at every masked position                (temperature, optional nucleus top_p)
        confidence = log p(sampled) + choice_temperature (1 - (k+1)/K) Gumbel(0, 1)
        keep the most confident; the floor(gamma((k+1)/K) N) least confident masked positions are
        masked again (at least one position is decided per step)
        rebuild the input with COMMIT's rule: still-masked condition positions get z~ again

Condition tokens are refined, not copied: the model is trained (refine loss) to correct z~, whose
supervoxels are partly padding. `refine_condition=False` instead fixes the condition region to z~
as known tokens that are never changed (MaskGIT-style "latent masking", MAGVIT's baseline).

`decode_autoregressive` decodes the same grid one token per forward pass in raster (t, h, w) order:
at step i the tokens before i are known and i and every later undecided position are masked (they
hold [MASK], or z~ inside the condition region), so the bidirectional network sees exactly a causal
context. It is the baseline MAGVIT compares its decoding speed against.

Both take the model's conditioning as keyword arguments (task, class_labels, text, text_mask), use
an explicit `torch.Generator` for every random draw (same seed -> same tokens), and accept a
`callback(step, info)` for progress and tests. Classifier-free guidance evaluates the conditional and
unconditional inputs in one batched forward pass; the unconditional input is the task's null condition
(null class, no text, [MASK] instead of condition tokens), as in training's condition dropout; with a
negative prompt (`negative_text`), the unconditional input holds that text instead of none, so guidance
pushes away from it (as negative prompts do in diffusion pipelines).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from einops import rearrange

from vidgen.diffusion.rng import rand
from vidgen.errors import VidgenError
from vidgen.tasks.masking import commit_inputs, lowest_k_mask, num_masked_tokens
from vidgen.tasks.registry import Task, task_tokens

Callback = Callable[[int, dict[str, torch.Tensor]], None]


# ----------------------------------------------------------------------------- sampling helpers


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise."""
    u = rand(shape, generator, device, dtype=torch.float32).clamp(1e-20, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def _check_sampling(temperature: float, top_p: float) -> None:
    """Fail before the first forward pass, not after it."""
    if temperature < 0:
        raise VidgenError(f"temperature={temperature} must be >= 0")
    if not 0 < top_p <= 1:
        raise VidgenError(f"top_p={top_p} must be in (0, 1] (1 = off)")


def sample_logits(logits: torch.Tensor, temperature: float, generator: torch.Generator | None,
                  top_p: float = 1.0) -> torch.Tensor:
    """`(..., K)` logits -> `(...)` sampled indices; temperature 0 = argmax.

    Gumbel-max sampling: argmax(logits / T + Gumbel) is a draw from softmax(logits / T).
    top_p < 1: nucleus sampling, drawing only from the most likely tokens whose probabilities (at
    temperature T) first reach top_p. A model trained with label smoothing spreads a floor of
    probability over the whole codebook (0.1 over 1024 codes: a 10% chance of an arbitrary code at every
    position); the nucleus cuts that floor (and, the smaller top_p, more of the unlikely tail) while the
    odds among the tokens kept stay as they are, where a lower temperature would sharpen them all.
    """
    _check_sampling(temperature, top_p)
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_p < 1:
        probs = logits.float().softmax(-1)
        sorted_probs, order = probs.sort(-1, descending=True)
        # A token stays if the tokens more likely than it hold less than top_p (the first always stays).
        outside = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
        logits = logits.masked_fill(torch.zeros_like(outside).scatter(-1, order, outside), float("-inf"))
    return (logits + gumbel_noise(tuple(logits.shape), generator, logits.device)).argmax(-1)


# ----------------------------------------------------------------------------- conditioning


def _model_device(model: Any) -> torch.device:
    param = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return param.device if param is not None else torch.device("cpu")


def _prepare(model: Any, batch_size: int | None, task: Any, class_labels: torch.Tensor | None,
             text: torch.Tensor | None, text_mask: torch.Tensor | None, condition_tokens: torch.Tensor | None,
             condition_mask: torch.Tensor | None, device: torch.device) -> dict[str, Any]:
    """Validate and flatten the conditioning of a decode call."""
    grid = tuple(model.config.grid)
    if (condition_tokens is None) != (condition_mask is None):
        raise VidgenError("condition_tokens and condition_mask go together: give both or neither")
    if condition_tokens is not None:
        if tuple(condition_tokens.shape[1:]) != grid or condition_mask.shape != condition_tokens.shape:
            raise VidgenError(f"condition tokens {tuple(condition_tokens.shape)} and mask "
                              f"{tuple(condition_mask.shape)} must both be (B, {', '.join(map(str, grid))})")
        batch_size = batch_size or condition_tokens.shape[0]
    for name, value in (("class_labels", class_labels), ("text", text)):
        if value is not None:
            batch_size = batch_size or value.shape[0]
    if batch_size is None:
        batch_size = 1
    for name, value in (("condition_tokens", condition_tokens), ("class_labels", class_labels), ("text", text)):
        if value is not None and value.shape[0] != batch_size:
            raise VidgenError(f"{name} has batch size {value.shape[0]}, expected {batch_size}")
    n = 1
    for g in grid:
        n *= g
    if condition_tokens is not None:
        cond_tokens = rearrange(condition_tokens.to(device).long(), "b t h w -> b (t h w)")
        cond_mask = rearrange(condition_mask.to(device).bool(), "b t h w -> b (t h w)")
    else:
        cond_tokens = torch.zeros(batch_size, n, dtype=torch.long, device=device)
        cond_mask = torch.zeros(batch_size, n, dtype=torch.bool, device=device)
    one_task = isinstance(task, (Task, str, int, torch.Tensor))
    tasks = task_tokens(task if one_task else list(task), batch_size, device)
    labels = (torch.full((batch_size,), -1, dtype=torch.long, device=device) if class_labels is None
              else torch.as_tensor(class_labels, device=device).long().reshape(-1))
    if text is not None:
        text = text.to(device)
        text_mask = (torch.ones(text.shape[:2], dtype=torch.bool, device=device) if text_mask is None
                     else text_mask.to(device).bool())
    return {"grid": grid, "batch_size": batch_size, "n": n, "cond_tokens": cond_tokens, "cond_mask": cond_mask,
            "tasks": tasks, "labels": labels, "text": text, "text_mask": text_mask}


def _add_negative_text(c: dict[str, Any], negative_text: torch.Tensor | None, negative_text_mask: torch.Tensor | None,
                       device: torch.device) -> None:
    """Put a negative prompt `(B, L', D)` (+ mask `(B, L')`) into the prepared conditioning `c`, padded with
    masked positions so that it and the prompt share one length."""
    if negative_text is None:
        if negative_text_mask is not None:
            raise VidgenError("negative_text_mask needs negative_text")
        return
    text = c["text"]
    if text is None:
        raise VidgenError("a negative prompt (negative_text) needs a prompt (text): it replaces the null text "
                          "of classifier-free guidance")
    if negative_text.dim() != 3 or negative_text.shape[0] != text.shape[0] or negative_text.shape[2] != text.shape[2]:
        raise VidgenError(f"negative_text {tuple(negative_text.shape)} must be (B={text.shape[0]}, L, "
                          f"D={text.shape[2]}) like text {tuple(text.shape)}")
    negative_text = negative_text.to(device, text.dtype)
    negative_text_mask = (torch.ones(negative_text.shape[:2], dtype=torch.bool, device=device)
                          if negative_text_mask is None else negative_text_mask.to(device).bool())
    length = max(text.shape[1], negative_text.shape[1])

    def pad(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        extra = length - x.shape[1]
        return (torch.cat([x, x.new_zeros(x.shape[0], extra, x.shape[2])], 1),
                torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], 1))

    c["text"], c["text_mask"] = pad(text, c["text_mask"])
    c["negative_text"], c["negative_text_mask"] = pad(negative_text, negative_text_mask)


def _guided_logits(model: Any, inputs: torch.Tensor, refine: torch.Tensor, uncond_inputs: torch.Tensor,
                   c: dict[str, Any], guidance_scale: float) -> torch.Tensor:
    """Logits `(B, N, K)` (float32) for flat inputs `(B, N)`; with guidance, one batched pass of 2B."""
    t, h, w = c["grid"]

    def grid_of(x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b (t h w) -> b t h w", t=t, h=h, w=w)

    if guidance_scale == 1.0:
        logits = model(grid_of(inputs), task=c["tasks"], class_labels=c["labels"],
                       condition_positions=grid_of(refine), text=c["text"], text_mask=c["text_mask"])
        return rearrange(logits.float(), "b t h w k -> b (t h w) k")
    # The null condition: same task, null class, no text (or the negative prompt), [MASK] instead of
    # condition tokens.
    text = text_mask = None
    if c["text"] is not None:
        negative, negative_mask = c.get("negative_text"), c.get("negative_text_mask")
        if negative is None:
            negative, negative_mask = c["text"], torch.zeros_like(c["text_mask"])
        text = torch.cat([c["text"], negative])
        text_mask = torch.cat([c["text_mask"], negative_mask])
    logits = model(grid_of(torch.cat([inputs, uncond_inputs])), task=torch.cat([c["tasks"], c["tasks"]]),
                   class_labels=torch.cat([c["labels"], torch.full_like(c["labels"], -1)]),
                   condition_positions=grid_of(torch.cat([refine, torch.zeros_like(refine)])), text=text,
                   text_mask=text_mask)
    cond, uncond = rearrange(logits.float(), "b t h w k -> b (t h w) k").chunk(2)
    return uncond + guidance_scale * (cond - uncond)


# ----------------------------------------------------------------------------- non-autoregressive


@torch.no_grad()
def decode_nonautoregressive(model: Any, *, task: Any = "CG", batch_size: int | None = None,
                             class_labels: torch.Tensor | None = None, text: torch.Tensor | None = None,
                             text_mask: torch.Tensor | None = None, condition_tokens: torch.Tensor | None = None,
                             condition_mask: torch.Tensor | None = None, refine_condition: bool = True,
                             num_steps: int = 12, temperature: float = 1.0, choice_temperature: float = 4.5,
                             guidance_scale: float = 1.0, schedule: str = "cosine", top_p: float = 1.0,
                             negative_text: torch.Tensor | None = None, negative_text_mask: torch.Tensor | None = None,
                             generator: torch.Generator | None = None,
                             callback: Callback | None = None) -> torch.Tensor:
    """MAGVIT / MaskGIT iterative decoding (module docstring). Returns tokens `(B, t, h, w)`.

    model: a masked token transformer (`mask_token_id`, `config.grid`, forward as `MaskedTokenTransformer`).
    task: a Task, its name/abbreviation, a task-token index, or one per example.
    condition_tokens / condition_mask: `(B, t, h, w)` z~ and the condition region (`prepare_condition`).
    refine_condition: COMMIT (True: condition tokens are starting points the model refines) or fixed
        condition tokens (False).
    temperature: sampling temperature (0 = argmax); top_p: nucleus sampling (1 = off, `sample_logits`);
        choice_temperature: scale of the Gumbel noise added to the confidences, annealed linearly to 0
        (MaskGIT / MAGVIT use 4.5). A sampled token's confidence is its log-probability under the whole
        (guided) distribution.
    guidance_scale: classifier-free guidance s (1 = off; logits = uncond + s (cond - uncond)).
    negative_text / negative_text_mask: `(B, L', D)` / `(B, L')` a negative prompt's states: the
        unconditional input holds it instead of no text (needs `text` and guidance != 1 to matter).
    callback(step, info): info has "inputs" (B, N), "sampled" (B, N), "masked" (B, N) after the step.
    """
    if num_steps < 1:
        raise VidgenError(f"num_steps={num_steps} must be >= 1")
    _check_sampling(temperature, top_p)
    device = _model_device(model)
    c = _prepare(model, batch_size, task, class_labels, text, text_mask, condition_tokens, condition_mask, device)
    _add_negative_text(c, negative_text, negative_text_mask, device)
    b, n = c["batch_size"], c["n"]
    commit_mask = c["cond_mask"] if refine_condition else torch.zeros_like(c["cond_mask"])
    fixed = torch.zeros_like(c["cond_mask"]) if refine_condition else c["cond_mask"]
    tokens = torch.where(fixed, c["cond_tokens"], torch.zeros_like(c["cond_tokens"]))  # (B, N)
    masked = ~fixed
    total = masked.sum(1)  # (B,) positions to decode
    mask_id = model.mask_token_id
    for step in range(num_steps):
        inputs, refine = commit_inputs(tokens, masked, mask_id, c["cond_tokens"], commit_mask)
        # The unconditional input never sees the condition: [MASK] at masked and at fixed condition positions.
        uncond_inputs = torch.where(masked | fixed, torch.full_like(tokens, mask_id), tokens)
        logits = _guided_logits(model, inputs, refine, uncond_inputs, c, guidance_scale)  # (B, N, K)
        sampled = torch.where(masked, sample_logits(logits, temperature, generator, top_p), tokens)
        if step == num_steps - 1:
            masked = torch.zeros_like(masked)
        else:
            progress = (step + 1) / num_steps
            log_p = torch.log_softmax(logits, -1).gather(-1, sampled[..., None])[..., 0]
            confidence = log_p + choice_temperature * (1 - progress) * gumbel_noise((b, n), generator, device)
            confidence = torch.where(masked, confidence, torch.full_like(confidence, float("inf")))
            remaining = masked.sum(1)
            # At least one position is decided per step; never re-mask more than were masked.
            count = num_masked_tokens(progress, total, schedule).to(device).clamp(min=1)
            count = torch.minimum(count, (remaining - 1).clamp(min=0))
            masked = lowest_k_mask(confidence, count)
        tokens = sampled
        if callback is not None:
            callback(step, {"inputs": inputs, "sampled": sampled, "masked": masked})
        if not masked.any():
            break
    t, h, w = c["grid"]
    return rearrange(tokens, "b (t h w) -> b t h w", t=t, h=h, w=w)


# ----------------------------------------------------------------------------- autoregressive baseline


@torch.no_grad()
def decode_autoregressive(model: Any, *, task: Any = "CG", batch_size: int | None = None,
                          class_labels: torch.Tensor | None = None, text: torch.Tensor | None = None,
                          text_mask: torch.Tensor | None = None, condition_tokens: torch.Tensor | None = None,
                          condition_mask: torch.Tensor | None = None, refine_condition: bool = True,
                          temperature: float = 1.0, guidance_scale: float = 1.0, top_p: float = 1.0,
                          negative_text: torch.Tensor | None = None, negative_text_mask: torch.Tensor | None = None,
                          generator: torch.Generator | None = None, max_tokens: int | None = None,
                          callback: Callback | None = None) -> torch.Tensor:
    """One token per forward pass, raster order (module docstring). Returns tokens `(B, t, h, w)`.

    Same arguments as `decode_nonautoregressive`. `max_tokens` stops after that many positions (for
    timing a prefix; the rest stay [MASK] = `mask_token_id`). callback(i, info) gets "inputs" and
    "position" after each decoded position.
    """
    _check_sampling(temperature, top_p)
    device = _model_device(model)
    c = _prepare(model, batch_size, task, class_labels, text, text_mask, condition_tokens, condition_mask, device)
    _add_negative_text(c, negative_text, negative_text_mask, device)
    n = c["n"]
    commit_mask = c["cond_mask"] if refine_condition else torch.zeros_like(c["cond_mask"])
    fixed = torch.zeros_like(c["cond_mask"]) if refine_condition else c["cond_mask"]
    mask_id = model.mask_token_id
    tokens = torch.where(fixed, c["cond_tokens"], torch.full_like(c["cond_tokens"], mask_id))
    undecided = ~fixed  # (B, N)
    positions = torch.arange(n, device=device)
    decoded = 0
    for i in range(n):
        if max_tokens is not None and decoded >= max_tokens:
            break
        if not undecided[:, i].any():
            continue  # fixed in every example: nothing to decode here
        masked = undecided & (positions >= i)[None]  # position i and everything after it that is undecided
        inputs, refine = commit_inputs(tokens, masked, mask_id, c["cond_tokens"], commit_mask)
        uncond_inputs = torch.where(masked | fixed, torch.full_like(tokens, mask_id), tokens)
        logits = _guided_logits(model, inputs, refine, uncond_inputs, c, guidance_scale)
        choice = sample_logits(logits[:, i], temperature, generator, top_p)  # (B,)
        tokens[:, i] = torch.where(undecided[:, i], choice, tokens[:, i])
        decoded += 1
        if callback is not None:
            callback(i, {"inputs": inputs, "position": torch.tensor(i)})
    t, h, w = c["grid"]
    return rearrange(tokens, "b (t h w) -> b t h w", t=t, h=h, w=w)
