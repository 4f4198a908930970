"""COMMIT (Conditional Masked Modeling by Interior Tokens, MAGVIT): condition inputs and the objective.

Building the condition of any task is one code path (`condition_pixels` + tokenization):

    1. the task's region gives the condition pixels of each clip (dynamic regions draw from the generator);
    2. the condition pixels are padded to a full clip (`Task.padding`, see `vidgen.tasks.regions`);
    3. the padded clip is tokenized -> condition tokens z~, and the region is mapped to the token grid
       (a token is a condition token unless its supervoxel is padding only).

Training (`MagvitObjective`): sample a task per example, mask the target tokens z with the cosine
schedule, build COMMIT's input (`commit_inputs`: masked condition positions take z~, other masked
positions take [MASK], unmasked ones keep z) and take the cross-entropy against z at every visual
position, reported in three parts:

    refine  positions that held a condition token z~ (the model corrects the padded-clip tokens)
    mask    positions that held [MASK]
    recon   unmasked positions (reconstructing the visible input)

loss = sum_i w_i CE_i / N with w = refine_weight, mask_weight or recon_weight. MAGVIT weights the
reconstruction part lower than the other two (its released code can also drop it), hence the default
recon_weight=0.1.

Condition dropout (classifier-free guidance): with probability `condition_dropout` an example gets its
task's null condition (same task token): no condition tokens (every masked position takes [MASK]),
the null class, no text. Decoding builds the unconditional input the same way.

Precomputed tokens (training on a token cache, `vidgen.training.token_cache`): tokenizing the target
clip and the padded condition clip through the frozen 3D-VQ at every step repeats the same work every
epoch. A batch may instead carry the target tokens z ("tokens") and, per pixel task, D precomputed
condition draws z~ with their token-grid regions ("condition_tokens" / "condition_masks": {task
abbreviation: (B, D, t, h, w)}); the objective then picks one of the D draws per example from its
generator (D = 1 for fixed regions; a few regions per clip for the dynamic tasks OPD and IPD).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from vidgen.diffusion.rng import rand
from vidgen.errors import VidgenError
from vidgen.tasks.masking import commit_inputs, random_training_mask
from vidgen.tasks.regions import pad_condition, pixel_to_token_mask
from vidgen.tasks.registry import PIXEL_TASKS, Task, get_task, get_tasks

PROMPT_KEYS = ("prompt", "prompts", "caption", "captions")
LABEL_KEYS = ("label", "class_label", "class_labels", "class_id", "labels")


# ----------------------------------------------------------------------------- condition inputs


def _per_example(tasks: Task | str | Sequence[Task | str], batch_size: int) -> list[Task]:
    if isinstance(tasks, (Task, str)):
        return [get_task(tasks)] * batch_size
    tasks = get_tasks(tasks)
    if len(tasks) != batch_size:
        raise VidgenError(f"got {len(tasks)} tasks for a batch of {batch_size} clips")
    return tasks


def _check_video(video: torch.Tensor) -> None:
    if not isinstance(video, torch.Tensor) or video.dim() != 5 or not video.is_floating_point():
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise VidgenError(f"video must be a float tensor (B, C, T, H, W) in [-1, 1], got {shape}")


def condition_pixels(tasks: Task | str | Sequence[Task | str], video: torch.Tensor,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Condition pixels of each clip, padded to full clips.

    tasks: one task for the whole batch or one per clip. video: (B, C, T, H, W).
    Returns `(pixel_mask (B, T, H, W) bool, padded (B, C, T, H, W), has_pixels (B,) bool)`; clips whose
    task has no pixel condition get an all-False mask and their own video as "padded".
    """
    _check_video(video)
    b, _, t, h, w = video.shape
    per_example = _per_example(tasks, b)
    pixel_mask = torch.zeros(b, t, h, w, dtype=torch.bool, device=video.device)
    padded = video.clone()
    has_pixels = torch.tensor([task.uses_pixels for task in per_example], device=video.device)
    for i, task in enumerate(per_example):
        if task.uses_pixels:
            pixel_mask[i] = task.condition_region((t, h, w), generator).to(video.device)
            padded[i:i + 1] = pad_condition(video[i:i + 1], pixel_mask[i], task.padding)
    return pixel_mask, padded, has_pixels


# Pixels at or below this level in every channel are background: Shapes and Digits draw on black (-1).
BLACK_LEVEL = -0.9


def object_token_mask(video: torch.Tensor, token_grid: tuple[int, int, int]) -> torch.Tensor:
    """`(B, 3, T, H, W)` clips in [-1, 1] -> `(B, t, h, w)` bool: the tokens whose supervoxel shows an object,
    i.e. holds a pixel brighter than black in some channel (`BLACK_LEVEL`)."""
    if video.dim() != 5:
        raise VidgenError(f"video must be (B, C, T, H, W), got shape {tuple(video.shape)}")
    return pixel_to_token_mask(video.amax(1) > BLACK_LEVEL, token_grid)


def encode_tokens(tokenizer: Any, video: torch.Tensor) -> torch.Tensor:
    """`tokenizer.encode(video (B, 3, T, H, W)) -> (B, t, h, w)` long indices, without gradients."""
    with torch.no_grad():
        out = tokenizer.encode(video) if hasattr(tokenizer, "encode") else tokenizer(video)
    if not isinstance(out, torch.Tensor) and hasattr(out, "indices"):
        out = out.indices
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.is_floating_point():
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise VidgenError(f"the tokenizer's encode must return integer indices (B, t, h, w), got {shape}")
    return out.long()


def nearest_codes(codebook: torch.Tensor, count: int) -> torch.Tensor:
    """`(K, D)` code vectors -> `(K, count)` long: each code's `count` nearest other codes (Euclidean)."""
    if codebook.dim() != 2 or not 1 <= count < codebook.shape[0]:
        raise VidgenError(f"nearest_codes: need a (K, D) codebook and 1 <= count < K; got codebook "
                          f"{tuple(codebook.shape)}, count={count}")
    distances = torch.cdist(codebook.float(), codebook.float())
    distances.fill_diagonal_(float("inf"))
    return distances.topk(count, dim=-1, largest=False).indices


@dataclasses.dataclass
class TaskCondition:
    """Condition of a batch on the token grid.

    tokens: (B, t, h, w) long, z~ (tokens of the padded condition clip); 0 where there is no condition.
    mask:   (B, t, h, w) bool, the condition region on the token grid.
    pixel_mask: (B, T, H, W) bool, the condition pixels.
    video:  (B, C, T, H, W) the padded condition clips.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pixel_mask: torch.Tensor
    video: torch.Tensor


def prepare_condition(tasks: Task | str | Sequence[Task | str], video: torch.Tensor, tokenizer: Any,
                      generator: torch.Generator | None = None) -> TaskCondition:
    """Condition tokens and their token-grid region for `video (B, C, T, H, W)` under `tasks` (inference).

    The clips' pixels outside the condition region are never seen. Tasks without a pixel condition
    get an all-False mask.
    """
    pixel_mask, padded, has_pixels = condition_pixels(tasks, video, generator)
    tokens = encode_tokens(tokenizer, padded)
    mask = pixel_to_token_mask(pixel_mask, tuple(tokens.shape[1:])) & has_pixels[:, None, None, None]
    return TaskCondition(torch.where(mask, tokens, torch.zeros_like(tokens)), mask, pixel_mask, padded)


def precomputed_condition(tasks: Sequence[Task], condition_tokens: Mapping[str, torch.Tensor],
                          condition_masks: Mapping[str, torch.Tensor], draw: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Condition tokens z~ and their token-grid region for one task per example, from precomputed draws.

    tasks: B tasks. condition_tokens / condition_masks: {task abbreviation: (B, D, t, h, w)} (long /
    bool), one entry per pixel task among `tasks`. draw: (B,) floats in [0, 1): example i takes draw
    floor(draw_i * D) of its task. Returns `(tokens (B, t, h, w) long, mask (B, t, h, w) bool)`, zeros
    and False for tasks without pixels.
    """
    rows_tokens, rows_mask = [], []
    for i, task in enumerate(tasks):
        if not task.uses_pixels:
            rows_tokens.append(None)
            rows_mask.append(None)
            continue
        if task.abbreviation not in condition_tokens or task.abbreviation not in condition_masks:
            raise VidgenError(f"the batch has no precomputed condition for task {task.abbreviation}; it has "
                              f"{sorted(condition_tokens)}")
        tokens, mask = condition_tokens[task.abbreviation], condition_masks[task.abbreviation]
        if tokens.dim() != 5 or mask.shape != tokens.shape:
            raise VidgenError(f"precomputed condition of {task.abbreviation}: tokens {tuple(tokens.shape)} and mask "
                              f"{tuple(mask.shape)} must both be (B, D, t, h, w)")
        d = min(int(draw[i] * tokens.shape[1]), tokens.shape[1] - 1)
        rows_tokens.append(tokens[i, d].long())
        rows_mask.append(mask[i, d].bool())
    reference = next((r for r in rows_tokens if r is not None), None)
    if reference is None:
        raise VidgenError("precomputed_condition needs at least one pixel task")
    zeros, false = torch.zeros_like(reference), torch.zeros_like(reference, dtype=torch.bool)
    tokens = torch.stack([zeros if r is None else r for r in rows_tokens])
    mask = torch.stack([false if r is None else r for r in rows_mask])
    return torch.where(mask, tokens, torch.zeros_like(tokens)), mask


# ----------------------------------------------------------------------------- the objective


def _batch_labels(batch: Mapping[str, Any]) -> torch.Tensor | None:
    """(B,) class labels from the first label key holding integers (a dict of annotations, as the Shapes
    dataset's "labels", is skipped)."""
    for key in LABEL_KEYS:
        value = batch.get(key)
        if value is None or isinstance(value, Mapping):
            continue
        try:
            labels = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if labels.is_floating_point() or labels.dim() > 1:
            continue
        return labels.long().reshape(-1)
    return None


def _has_text(batch: Mapping[str, Any]) -> bool:
    return any(batch.get(k) is not None for k in ("text_embeddings", "text", *PROMPT_KEYS))


class MagvitObjective:
    """MAGVIT's multi-task COMMIT objective: `objective(model, batch, generator) -> dict`.

    tokenizer: has `encode(video (B, 3, T, H, W)) -> (B, t, h, w)` indices (frozen; run without gradients).
    tasks: names/abbreviations or `Task`s to sample from; None = every task the batch and the model
        allow (pixel tasks when the batch has a video; CG and CFP when the model has classes and the
        batch labels; T2V when the model takes text and the batch has prompts or text embeddings).
    task_weights: sampling weights aligned with `tasks` (default uniform).
    refine_weight, mask_weight, recon_weight: loss weights of the three parts.
    condition_dropout: probability of the task's null condition (classifier-free guidance).
    object_weight: the tokens an object covers (the batch's "object_mask" (B, t, h, w) bool, or, for a batch
        with "video", `object_token_mask` of it) weigh `object_weight` times as much in every loss part.
        A shape differs from another only in the few tokens at its outline, among many background tokens;
        this puts more of the loss where the shape is decided (1 = off, every position the same: MAGVIT).
    text_encoder: encodes batch prompts (`encode(list[str]) -> .embeddings, .mask`); loaded lazily
        ("minilm") only when a batch carries prompts.
    code_neighbours / neighbour_smoothing: `(K, n)` long, each code's n nearest codes in the tokenizer's
        code space (`nearest_codes`), and the target mass spread evenly over them (0 = off, MAGVIT). Like
        label smoothing, but onto codes that decode to nearly the same pixels: a near miss costs less
        than a far one.

    The batch is a dict with "video" (B, 3, T, H, W) in [-1, 1], or precomputed "tokens" (B, t, h, w)
    plus, for pixel tasks, "condition_tokens" / "condition_masks" ({task abbreviation: (B, D, t, h, w)},
    see the module docstring; `tokenizer` may then be None); optionally class labels (B,) under "label", "class_label(s)", "class_id"
    or "labels", and prompts (list of B strings) under "prompt(s)" or "caption(s)", or
    "text_embeddings" (B, L, D) + "text_mask" (B, L).
    Returns loss (with gradients), refine, mask, recon (mean cross-entropy of each part, detached),
    mask_accuracy (argmax accuracy at [MASK] positions) and mask_ratio.
    """

    def __init__(self, tokenizer: Any, tasks: Sequence[str | Task] | None = None,
                 task_weights: Sequence[float] | None = None, *, refine_weight: float = 1.0,
                 mask_weight: float = 1.0, recon_weight: float = 0.1, condition_dropout: float = 0.1,
                 label_smoothing: float = 0.0, schedule: str = "cosine", object_weight: float = 1.0,
                 text_encoder: Any = None, code_neighbours: torch.Tensor | None = None,
                 neighbour_smoothing: float = 0.0):
        self.tokenizer = tokenizer
        if not 0.0 <= neighbour_smoothing < 1.0 or not 0.0 <= label_smoothing + neighbour_smoothing < 1.0:
            raise VidgenError(f"neighbour_smoothing={neighbour_smoothing} and label_smoothing={label_smoothing} "
                              "must be >= 0 with a sum below 1")
        if neighbour_smoothing and (code_neighbours is None or code_neighbours.dim() != 2):
            raise VidgenError("neighbour_smoothing needs code_neighbours, a (K, n) table of each code's nearest codes")
        self.code_neighbours = code_neighbours
        self.neighbour_smoothing = float(neighbour_smoothing)
        if not object_weight > 0:
            raise VidgenError(f"object_weight={object_weight} must be > 0 (1 = every position weighs the same)")
        self.object_weight = float(object_weight)
        self.tasks = get_tasks(tasks) if tasks is not None else None
        if task_weights is not None:
            if self.tasks is None or len(task_weights) != len(self.tasks):
                raise VidgenError("task_weights needs an explicit `tasks` list of the same length")
            if min(task_weights) < 0 or sum(task_weights) <= 0:
                raise VidgenError(f"task_weights={list(task_weights)} must be >= 0 with a positive sum")
        self.task_weights = list(task_weights) if task_weights is not None else None
        if not 0.0 <= condition_dropout < 1.0:
            raise VidgenError(f"condition_dropout={condition_dropout} must be in [0, 1)")
        for name, value in (("refine_weight", refine_weight), ("mask_weight", mask_weight),
                            ("recon_weight", recon_weight)):
            if value < 0:
                raise VidgenError(f"{name}={value} must be >= 0")
        self.weights = {"refine": float(refine_weight), "mask": float(mask_weight), "recon": float(recon_weight)}
        self.condition_dropout = float(condition_dropout)
        self.label_smoothing = float(label_smoothing)
        self.schedule = schedule
        self.text_encoder = text_encoder

    # ---- which tasks

    def tasks_for(self, model: Any, batch: Mapping[str, Any]) -> list[Task]:
        """The tasks to sample from for this model and batch (checks an explicit list against both)."""
        cfg = model.config
        has_video = batch.get("video") is not None
        precomputed = batch.get("condition_tokens")
        precomputed = set(precomputed) if isinstance(precomputed, Mapping) and not has_video else set()

        def has_pixels(task: Task) -> bool:
            return has_video or task.abbreviation in precomputed

        if self.tasks is None:
            tasks = [get_task(t) for t in PIXEL_TASKS if has_pixels(get_task(t))]
            if cfg.num_classes > 0 and _batch_labels(batch) is not None:
                tasks += [get_task("CG")] + ([get_task("CFP")] if has_pixels(get_task("CFP")) else [])
            if cfg.text_dim > 0 and _has_text(batch):
                tasks.append(get_task("T2V"))
            if not tasks:
                raise VidgenError("no task fits this batch and model: give the batch a 'video', labels with a "
                                  "class-conditional model, or prompts with a text-conditioned model")
            return tasks
        for task in self.tasks:
            if task.token >= cfg.num_task_tokens:
                raise VidgenError(f"task {task.abbreviation} has token {task.token} but the model has only "
                                  f"{cfg.num_task_tokens} task tokens")
            if task.uses_pixels and not has_pixels(task):
                raise VidgenError(f"task {task.abbreviation} needs batch['video'] (B, 3, T, H, W) or its precomputed "
                                  f"condition in batch['condition_tokens']")
            if task.uses_class and (cfg.num_classes == 0 or _batch_labels(batch) is None):
                raise VidgenError(f"task {task.abbreviation} needs a class-conditional model (num_classes > 0, "
                                  f"got {cfg.num_classes}) and batch labels (one of {LABEL_KEYS})")
            if task.uses_text and (cfg.text_dim == 0 or not _has_text(batch)):
                raise VidgenError(f"task {task.abbreviation} needs a text-conditioned model (text_dim > 0, got "
                                  f"{cfg.text_dim}) and batch prompts or text_embeddings")
        return list(self.tasks)

    def _text(self, batch: Mapping[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        text = batch.get("text")
        if text is not None and hasattr(text, "embeddings"):
            return text.embeddings.to(device), text.mask.to(device).bool()
        if batch.get("text_embeddings") is not None:
            embeddings = batch["text_embeddings"].to(device)
            mask = batch.get("text_mask")
            if mask is None:
                mask = torch.ones(embeddings.shape[:2], dtype=torch.bool, device=device)
            mask = mask.to(device).bool()
            return embeddings, mask
        prompts = next((batch[k] for k in PROMPT_KEYS if batch.get(k) is not None), None)
        if prompts is None:
            raise VidgenError("text-to-video needs batch prompts or text_embeddings")
        if self.text_encoder is None:
            from vidgen.text import load_text_encoder  # loaded on first use only: it is a 90 MB model
            self.text_encoder = load_text_encoder("minilm")
        encoded = self.text_encoder.encode(list(prompts))
        return encoded.embeddings.to(device), encoded.mask.to(device).bool()

    # ---- the loss

    def __call__(self, model: Any, batch: Mapping[str, Any], generator: torch.Generator | None = None
                 ) -> dict[str, torch.Tensor]:
        if not isinstance(batch, Mapping):
            raise VidgenError(f"the MAGVIT objective takes a dict batch, got {type(batch).__name__}")
        tasks = self.tasks_for(model, batch)
        video = batch.get("video")
        if video is not None:
            _check_video(video)
            b, device = video.shape[0], video.device
        elif batch.get("tokens") is not None:
            b, device = batch["tokens"].shape[0], batch["tokens"].device
        else:
            raise VidgenError("the batch needs 'video' (B, 3, T, H, W) or precomputed 'tokens' (B, t, h, w)")
        rng_device = generator.device if generator is not None else torch.device("cpu")

        def uniform(*shape: int) -> torch.Tensor:
            return rand(shape, generator, device, dtype=torch.float32)

        # One task per example.
        weights = torch.tensor(self.task_weights if self.task_weights is not None else [1.0] * len(tasks),
                               dtype=torch.float, device=rng_device)
        choice = torch.multinomial(weights, b, replacement=True, generator=generator).tolist()
        per_example = [tasks[i] for i in choice]
        task_ids = torch.tensor([t.token for t in per_example], dtype=torch.long, device=device)
        uses_class = torch.tensor([t.uses_class for t in per_example], device=device)
        uses_text = torch.tensor([t.uses_text for t in per_example], device=device)

        # Target tokens z and condition tokens z~: precomputed, or tokenized here in one call.
        if video is None and any(t.uses_pixels for t in per_example):
            if batch.get("tokens") is None or batch.get("condition_masks") is None:
                raise VidgenError("precomputed conditions need batch['tokens'] (B, t, h, w) and "
                                  "batch['condition_masks'] next to batch['condition_tokens']")
            target = batch["tokens"].long()
            condition_tokens, condition_mask = precomputed_condition(
                per_example, batch["condition_tokens"], batch["condition_masks"], uniform(b))
            condition_tokens, condition_mask = condition_tokens.to(device), condition_mask.to(device)
        elif any(t.uses_pixels for t in per_example):
            pixel_mask, padded, has_pixels = condition_pixels(per_example, video, generator)
            all_tokens = encode_tokens(self.tokenizer, torch.cat([video, padded[has_pixels]]))
            target = all_tokens[:b]
            grid = tuple(target.shape[1:])
            condition_tokens = torch.zeros_like(target)
            condition_tokens[has_pixels] = all_tokens[b:]
            condition_mask = pixel_to_token_mask(pixel_mask, grid) & has_pixels[:, None, None, None]
        else:
            target = batch["tokens"].long() if video is None else encode_tokens(self.tokenizer, video)
            condition_tokens, condition_mask = torch.zeros_like(target), torch.zeros_like(target, dtype=torch.bool)

        # Condition dropout: the task's null condition.
        keep = uniform(b) >= self.condition_dropout  # (B,)
        condition_mask = condition_mask & keep[:, None, None, None]
        labels = None
        if uses_class.any():
            labels = _batch_labels(batch).to(device)
            labels = torch.where(uses_class & keep, labels, torch.full_like(labels, -1))
        text = text_mask = None
        if uses_text.any():
            text, text_mask = self._text(batch, device)
            text_mask = text_mask & (uses_text & keep)[:, None]

        # COMMIT masking.
        n = target[0].numel()
        masked = random_training_mask(b, n, generator, self.schedule, device=rng_device).to(device).view_as(target)
        inputs, refine = commit_inputs(target, masked, model.mask_token_id, condition_tokens, condition_mask)
        logits = model(inputs, task=task_ids, class_labels=labels, condition_positions=refine, text=text,
                       text_mask=text_mask)  # (B, t, h, w, K)

        ce = F.cross_entropy(logits.float().flatten(0, -2), target.flatten(), reduction="none",
                             label_smoothing=self.label_smoothing).view_as(target)
        if self.neighbour_smoothing:
            log_p = torch.log_softmax(logits.float(), -1)  # (B, t, h, w, K)
            neighbours = self.code_neighbours.to(device)[target]  # (B, t, h, w, n)
            near = -log_p.gather(-1, neighbours).mean(-1)
            ce = (1 - self.neighbour_smoothing) * ce + self.neighbour_smoothing * near
        parts = {"refine": refine, "mask": masked & ~refine, "recon": ~masked}
        weight = sum(self.weights[name] * where.float() for name, where in parts.items())
        if self.object_weight != 1:
            objects = batch.get("object_mask")
            if objects is None and video is not None:
                objects = object_token_mask(video, tuple(target.shape[1:]))
            if objects is None or tuple(objects.shape) != tuple(target.shape):
                got = "none" if objects is None else tuple(objects.shape)
                raise VidgenError(f"object_weight={self.object_weight:g} needs the batch's 'object_mask' "
                                  f"{tuple(target.shape)} (the tokens objects cover) or its 'video'; got {got}")
            weight = weight * torch.where(objects.to(device), self.object_weight, 1.0)
        out = {"loss": (weight * ce).sum() / ce.numel()}
        for name, where in parts.items():
            out[name] = (ce.detach() * where).sum() / where.sum().clamp(min=1)
        correct = (logits.detach().argmax(-1) == target) & parts["mask"]
        out["mask_accuracy"] = correct.sum().float() / parts["mask"].sum().clamp(min=1)
        out["mask_ratio"] = masked.float().mean()
        return out
