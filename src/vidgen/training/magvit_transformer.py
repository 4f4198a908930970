"""Recipe kind "magvit-transformer": MAGVIT's multi-task masked token transformer (Yu et al. 2023).

One bidirectional transformer over `[task token][class token][text tokens][visual tokens]` learns the
ten MAGVIT tasks (FP FI OPC OPV OPH OPD IPC IPD CG CFP) and text-to-video at once with the COMMIT
objective (`vidgen.tasks.MagvitObjective`): per example a task is drawn, the target tokens are masked
with the cosine schedule, masked positions inside the task's condition region take the condition
tokens z~ (the tokens of the padded condition clip), other masked positions take [MASK], and the
cross-entropy is reported in three parts (refine / mask / recon). Condition dropout trains the null
condition that classifier-free guidance needs.

The frozen tokenizer (a trained `MagvitVQ` folder) and MiniLM run once, before the first step: target
tokens, condition tokens per (clip, condition) and caption embeddings are cached
(`vidgen.training.token_cache`), keyed by the tokenizer's weights and the data settings, and reused
by later runs and --resume.

The tokenizer is copied into run_dir/tokenizer/ at the start (--resume uses the copy). The export is
a pipeline folder (`run_dir/pipeline/`: pipeline.json, tokenizer/, transformer/ in bf16) that
`vidgen.pipelines.magvit.MagvitPipeline.from_pretrained` loads; `run_dir/final/` holds the
transformer alone. See docs/training.md ("Kind magvit-transformer") and docs/magvit.md.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from vidgen.errors import VidgenError
from vidgen.generators.masked_transformer import (
    MaskedTokenTransformer,
    magvit_transformer_shapes,
    magvit_transformer_tiny,
)
from vidgen.modeling import atomic_write_dir, write_json
from vidgen.pipelines.magvit import decoding_settings
from vidgen.tasks.registry import MAGVIT_TASKS, USER_TASK_MODES, Task, get_task, get_tasks
from vidgen.training.recipes import (
    BuildContext,
    Recipe,
    RecipeKind,
    TrainingSetup,
    build_model,
    register_kind,
)
from vidgen.training.trainer import export_model, move_to_device

ALL_TASKS = (*MAGVIT_TASKS, "T2V")


# ============================================================================= recipe tables


@dataclasses.dataclass
class ConditionOptions:
    """[condition] table: the frozen tokenizer and text encoder, and the condition cache.

    tokenizer: a trained `MagvitVQ` folder (e.g. runs/magvit-shapes-vq/final) or a bundled pipeline's.
    dynamic_draws: regions cached per clip for the dynamic tasks (OPD, IPD); 4 covers every motion
        (along w or h, forwards or backwards) of both.
    encode_batch_size: clips per tokenizer call while building the cache.
    """

    tokenizer: str = "runs/magvit-shapes-vq/final"
    text_encoder: str = "minilm"
    text_max_length: int = 32
    dynamic_draws: int = 4
    encode_batch_size: int = 16

    def __post_init__(self) -> None:
        if self.dynamic_draws < 1 or self.encode_batch_size < 1 or self.text_max_length < 1:
            raise VidgenError(f"condition.dynamic_draws, condition.encode_batch_size and condition.text_max_length "
                              f"must be >= 1; got {self.dynamic_draws}, {self.encode_batch_size}, "
                              f"{self.text_max_length}")


@dataclasses.dataclass
class ObjectiveOptions:
    """[objective] table: `MagvitObjective`'s arguments.

    tasks: abbreviations of the tasks to train (default: the ten MAGVIT tasks and T2V), drawn per
        example with `task_weights` (empty = uniform, as MAGVIT).
    refine_weight, mask_weight, recon_weight: weights of the three loss parts.
    condition_dropout: probability of the null condition (classifier-free guidance); MAGVIT: 0.1.
    label_smoothing: of the cross-entropy; MAGVIT: 0.1.
    schedule: mask schedule ("cosine", MaskGIT / MAGVIT; "linear", "square", "sqrt").
    object_weight: loss weight of the tokens an object covers (their supervoxel holds a non-black pixel:
        `vidgen.tasks.commit.object_token_mask`, computed from the clips once, at build time);
        1 = every position weighs the same (MAGVIT).
    neighbour_smoothing / neighbours: target mass spread over each code's `neighbours` nearest codes in
        the tokenizer's code space (`MagvitObjective`); 0 = off (MAGVIT).
    """

    tasks: list[str] = dataclasses.field(default_factory=lambda: list(ALL_TASKS))
    task_weights: list[float] = dataclasses.field(default_factory=list)
    refine_weight: float = 1.0
    mask_weight: float = 1.0
    recon_weight: float = 0.1
    condition_dropout: float = 0.1
    label_smoothing: float = 0.1
    schedule: str = "cosine"
    object_weight: float = 1.0
    neighbour_smoothing: float = 0.0
    neighbours: int = 10

    def __post_init__(self) -> None:
        from vidgen.tasks.masking import SCHEDULES

        get_tasks(self.tasks)  # unknown names fail now, with the list of known tasks
        if not self.tasks:
            raise VidgenError("objective.tasks is empty: name at least one task, e.g. [\"FP\", \"CG\"]")
        if self.task_weights and len(self.task_weights) != len(self.tasks):
            raise VidgenError(f"objective.task_weights has {len(self.task_weights)} entries for "
                              f"{len(self.tasks)} tasks; give one weight per task or none (uniform)")
        if self.schedule not in SCHEDULES:
            raise VidgenError(f"objective.schedule = {self.schedule!r}: expected one of {SCHEDULES}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise VidgenError(f"objective.label_smoothing = {self.label_smoothing}: expected a number in [0, 1)")
        if not self.object_weight > 0:
            raise VidgenError(f"objective.object_weight = {self.object_weight}: expected a number > 0 "
                              "(1 = every position weighs the same)")
        if not 0.0 <= self.neighbour_smoothing < 1.0 - self.label_smoothing:
            raise VidgenError(f"objective.neighbour_smoothing = {self.neighbour_smoothing}: expected a number in "
                              f"[0, 1 - label_smoothing = {1 - self.label_smoothing:g})")
        if self.neighbours < 1:
            raise VidgenError(f"objective.neighbours = {self.neighbours}: expected a count >= 1")

    def build(self, codebook: torch.Tensor | None = None) -> Any:
        """The objective; `codebook` (K, D), the tokenizer's code vectors, for neighbour smoothing."""
        from vidgen.tasks import MagvitObjective
        from vidgen.tasks.commit import nearest_codes

        # No tokenizer: batches carry cached target and condition tokens.
        return MagvitObjective(None, tasks=self.tasks, task_weights=self.task_weights or None,
                               refine_weight=self.refine_weight, mask_weight=self.mask_weight,
                               recon_weight=self.recon_weight, condition_dropout=self.condition_dropout,
                               label_smoothing=self.label_smoothing, schedule=self.schedule,
                               object_weight=self.object_weight,
                               code_neighbours=nearest_codes(codebook, self.neighbours) if (
                                   self.neighbour_smoothing and codebook is not None) else None,
                               neighbour_smoothing=self.neighbour_smoothing)


@dataclasses.dataclass
class EvalOptions:
    """[eval] table: the objective's losses on held-out clips (fixed task draws and masks every time),
    logged as heldout_loss / heldout_refine / heldout_mask / heldout_recon / heldout_mask_accuracy."""

    clips: int = 64             # 0 = no evaluation
    split: str = "heldout"
    batch_size: int = 16
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.clips < 0 or self.batch_size < 1:
            raise VidgenError(f"eval.clips must be >= 0 and eval.batch_size >= 1; got {self.clips}, {self.batch_size}")


@dataclasses.dataclass
class SampleOptions:
    """[sample] table: sample videos during training, and the decoding defaults of pipeline.json.

    steps, guidance, choice_temperature, temperature: `decode_nonautoregressive` settings (MAGVIT:
        12 steps, choice temperature 4.5); temperature samples the class- and text-conditioned tasks.
    top_p: nucleus sampling (1 = off): tokens are drawn only from the most likely ones holding this much
        probability, which cuts the floor label smoothing spreads over the codebook.
    pixel_guidance, pixel_temperature, pixel_choice_temperature, pixel_top_p: the same for the tasks given
        pixels (FP, FI, OP*, IP*, CFP); unset = the model-wide value. Temperature 0 (the most likely
        token) scores closest to the true clip (docs/benchmarks.md, "MAGVIT tasks").
    class_labels: CG samples (classes no training clip has are skipped: untrained); prompts: T2V
        samples; tasks: pixel tasks sampled on the first held-out clip (written as target | sample).
    """

    steps: int = 12
    guidance: float = 2.0
    choice_temperature: float = 4.5
    temperature: float = 1.0
    top_p: float = 1.0
    pixel_guidance: float | None = None
    pixel_temperature: float | None = None
    pixel_choice_temperature: float | None = None
    pixel_top_p: float | None = None
    class_labels: list[int] = dataclasses.field(default_factory=lambda: [0])
    prompts: list[str] = dataclasses.field(default_factory=lambda: ["a red circle moving left"])
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["FP", "OPC"])
    seed: int = 0
    format: str = "gif"
    description: str = ""

    def __post_init__(self) -> None:
        values = {name: getattr(self, name) for name in ("guidance", "choice_temperature", "temperature",
                                                          "pixel_guidance", "pixel_temperature",
                                                          "pixel_choice_temperature")}
        negative = {name: value for name, value in values.items() if value is not None and value < 0}
        if self.steps < 1 or negative:
            raise VidgenError(f"sample.steps must be >= 1 and sample.{', '.join(values)} >= 0; got steps = "
                              f"{self.steps}" + "".join(f", {name} = {value}" for name, value in negative.items()))
        bad_top_p = {name: value for name in ("top_p", "pixel_top_p")
                     if (value := getattr(self, name)) is not None and not 0 < value <= 1}
        if bad_top_p:
            raise VidgenError("sample." + ", sample.".join(f"{name} = {value}" for name, value in bad_top_p.items())
                              + ": expected a number in (0, 1] (1 = off)")
        if self.format not in ("gif", "mp4"):
            raise VidgenError(f"sample.format = {self.format!r}: expected 'gif' or 'mp4'")
        if any(not t.uses_pixels for t in get_tasks(self.tasks)):
            raise VidgenError(f"sample.tasks = {self.tasks}: only pixel tasks (FP, FI, OPC, ...) sample from a clip")


# ============================================================================= sizes


def magvit_transformer_tiny_model(**overrides: Any) -> MaskedTokenTransformer:
    return MaskedTokenTransformer(magvit_transformer_tiny(**overrides))


def magvit_transformer_shapes_model(**overrides: Any) -> MaskedTokenTransformer:
    return MaskedTokenTransformer(magvit_transformer_shapes(**overrides))


def _sizes() -> dict[str, Any]:
    # codebook_size, grid and text_dim always come from the tokenizer and the text encoder, and
    # num_classes from the dataset when it declares one (see build_magvit_transformer).
    return {"tiny": magvit_transformer_tiny_model, "shapes": magvit_transformer_shapes_model}


# ============================================================================= helpers


def class_names_for(data_name: str, num_classes: int) -> list[str]:
    """Human-readable class names for pipeline.json (generic "class i" for datasets without names)."""
    names: list[str] = []
    if data_name == "shapes+digits":
        from vidgen.data.mixed import class_names

        names = class_names()
    elif data_name == "shapes":
        from vidgen.data.shapes import class_name

        names = [class_name(i) for i in range(num_classes)]
    elif data_name == "digits":
        names = [f"digit {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        names = [f"class {i}" for i in range(num_classes)]
    return names


def object_masks_of(dataset: Dataset, grid: tuple[int, int, int]) -> torch.Tensor:
    """`(N, t, h, w)` bool: the tokens each clip's objects cover (`object_token_mask`), item by item (the
    Shapes and Digits clips render in milliseconds, so they are not cached)."""
    from vidgen.tasks.commit import object_token_mask

    return torch.cat([object_token_mask(dataset[i]["video"][None], grid) for i in range(len(dataset))])


def untrained_classes(class_ids: torch.Tensor, num_classes: int) -> list[int]:
    """Class ids in 0..num_classes-1 that no training clip carries (class_ids: (N,), -1 = no class)."""
    seen = set(torch.as_tensor(class_ids).reshape(-1).tolist())
    return [i for i in range(num_classes) if i not in seen]


def pipeline_tasks(tasks: list[Task]) -> dict[str, list[str]]:
    """The pipeline.json {task: [modes]} restricted to the trained tasks."""
    trained = {t.abbreviation for t in tasks}
    out = {}
    for name, modes in USER_TASK_MODES.items():
        kept = [mode for mode, abbreviation in modes.items() if abbreviation in trained]
        if kept:
            out[name] = kept
    return out


def export_pipeline(folder: Path, tokenizer_folder: Path, transformer: nn.Module, settings: dict[str, Any]) -> Path:
    """Write a MAGVIT pipeline folder atomically: tokenizer/ (the trained files as they are: the cached
    tokens came from these exact weights), transformer/ (bf16 storage), pipeline.json."""
    def write(tmp: Path) -> None:
        (tmp / "tokenizer").mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(tokenizer_folder / name, tmp / "tokenizer" / name)
        transformer.save_pretrained(tmp / "transformer", dtype=torch.bfloat16)
        write_json(tmp / "pipeline.json", settings)

    return atomic_write_dir(folder, write)


def _resolve_tokenizer(name: str) -> Path:
    """A MagvitVQ folder, or the tokenizer/ of a MAGVIT pipeline folder (e.g. a bundled model)."""
    from vidgen.modeling import resolve_component

    try:
        return resolve_component(name, "MagvitVQ")
    except VidgenError as error:
        raise VidgenError(f"condition.tokenizer = {name!r} is not a MagvitVQ folder (config.json + "
                          f"model.safetensors) nor a pipeline with a tokenizer/ ({error}): train one first "
                          f"(`vidgen train magvit-shapes-vq2d && vidgen train magvit-shapes-vq`, which writes "
                          f"runs/magvit-shapes-vq/final) or pass --set condition.tokenizer=FOLDER") from None


def snapshot_tokenizer(source: Path, context: BuildContext) -> Path:
    """The tokenizer this run trains on, copied to run_dir/tokenizer/ when the run starts; --resume uses
    that copy. The cached tokens, the model and the exported pipeline then always share one tokenizer,
    even if the source folder is retrained meanwhile."""
    snapshot = context.run_dir / "tokenizer"
    if context.resume and (snapshot / "model.safetensors").is_file():
        context.log(f"tokenizer: {snapshot} (the copy this run started with)")
        return snapshot
    def write(tmp: Path) -> None:
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(source / name, tmp / name)

    atomic_write_dir(snapshot, write)
    context.log(f"tokenizer: {source} (copied to {snapshot})")
    return snapshot


def _write_clip(path: Path, video: torch.Tensor, fps: float) -> None:
    from vidgen.io import write_video

    write_video(path, video.detach().float().clamp(-1, 1).cpu(), fps=fps)


# ============================================================================= the kind


def build_magvit_transformer(recipe: Recipe, context: BuildContext) -> TrainingSetup:
    from vidgen.generators.decoding import decode_nonautoregressive
    from vidgen.text import load_text_encoder
    from vidgen.tokenizers.magvit_vq import MagvitVQ
    from vidgen.training.token_cache import (
        CachedTokens,
        TokenBatcher,
        build_cache,
        cache_key,
        condition_specs,
    )

    condition: ConditionOptions = recipe.sections["condition"]
    options: ObjectiveOptions = recipe.sections["objective"]
    evaluation: EvalOptions = recipe.sections["eval"]
    sample: SampleOptions = recipe.sections["sample"]
    tasks = get_tasks(options.tasks)
    device = context.device

    tokenizer_folder = snapshot_tokenizer(_resolve_tokenizer(condition.tokenizer), context)
    tokenizer = MagvitVQ.from_pretrained(tokenizer_folder, device=device).eval().requires_grad_(False)
    text_encoder = load_text_encoder(condition.text_encoder, max_length=condition.text_max_length, device=device)
    specs = condition_specs(tasks, condition.dynamic_draws)

    def cache_for(dataset: Dataset, data: dict[str, Any]) -> Any:
        key = cache_key(tokenizer_folder, data, specs, condition.text_encoder, condition.text_max_length,
                        recipe.train.seed)
        return build_cache(context.run_dir / "cache", key, dataset, tokenizer, text_encoder, specs, device,
                           seed=recipe.train.seed, batch_size=condition.encode_batch_size, log=context.log)

    train_set = recipe.data.build(split="train")
    cache = cache_for(train_set, {"split": "train", **recipe.data.to_dict()})
    heldout = None
    if evaluation.clips:
        spec = dataclasses.replace(recipe.data, options={**recipe.data.options, "num_items": evaluation.clips},
                                   extra=[])
        heldout_set = spec.build(split=evaluation.split)
        heldout_set = torch.utils.data.Subset(heldout_set, range(min(evaluation.clips, len(heldout_set))))
        heldout = cache_for(heldout_set, {"split": evaluation.split, **spec.to_dict()})

    # The model: its vocabulary and grid follow the tokenizer, its text width the encoder, its classes the data.
    forced: dict[str, Any] = {"codebook_size": int(tokenizer.config.codebook_size), "grid": tuple(cache.grid),
                              "text_dim": int(text_encoder.dim) if any(t.uses_text for t in tasks) else 0}
    num_classes = getattr(train_set, "num_classes", None)
    if isinstance(num_classes, int) and any(t.uses_class for t in tasks):
        forced["num_classes"] = num_classes
    model = build_model(recipe, **forced)
    if model.config.code_dim:
        codes = tokenizer.quantizer.codebook()
        if model.config.code_dim != codes.shape[1]:
            raise VidgenError(f"model.code_dim = {model.config.code_dim} must equal the tokenizer's code width "
                              f"{codes.shape[1]} (its embed_dim), or 0 for no code-geometry paths")
        model.set_code_vectors(codes)
    if any(t.uses_class for t in tasks) and model.config.num_classes == 0:
        raise VidgenError(f"tasks {[t.abbreviation for t in tasks if t.uses_class]} need classes: set model.num_classes "
                          f"(the dataset {recipe.data.name!r} declares none)")
    if options.object_weight != 1:
        cache.object_masks = object_masks_of(train_set, cache.grid)
        context.log(f"objective.object_weight = {options.object_weight:g} on the tokens objects cover "
                    f"({cache.object_masks.float().mean():.1%} of the training tokens)")
        if heldout is not None:
            heldout.object_masks = object_masks_of(heldout_set, heldout.grid)
    objective = options.build(tokenizer.quantizer.codebook())
    batcher = TokenBatcher(cache)

    # Sample-time conditioning, computed once: prompt embeddings, the first held-out clip's conditions.
    sample_text = text_encoder.encode(sample.prompts, pad_to_max_length=False) if (
        sample.prompts and model.config.text_dim) else None
    _, num_frames, height, width = cache.video_shape
    settings = {
        "_class_name": "MagvitPipeline",
        "system": "MAGVIT",
        "text_encoder": condition.text_encoder,
        "text_max_length": condition.text_max_length,
        "num_frames": int(num_frames),
        "height": int(height),
        "width": int(width),
        "fps": cache.fps,
        "default_steps": sample.steps,
        "default_guidance": sample.guidance,
        "choice_temperature": sample.choice_temperature,
        "temperature": sample.temperature,
        "top_p": sample.top_p,
        **{name: value for name in ("pixel_guidance", "pixel_temperature", "pixel_choice_temperature", "pixel_top_p")
           if (value := getattr(sample, name)) is not None},
        "class_names": class_names_for(recipe.data.name, model.config.num_classes),
        # Classes no training clip has (e.g. held-out Shapes triples): untrained embeddings, rejected at use.
        "untrained_classes": untrained_classes(cache.class_id, model.config.num_classes),
        "tasks": pipeline_tasks(tasks),
        "recipe": f"{recipe.name}.toml",  # the shipped or user recipe file it came from
        "description": sample.description or (
            f"MAGVIT (3D-VQ + multi-task masked token transformer) trained on {recipe.data.name}: "
            f"{num_frames}x{height}x{width} clips, tasks {' '.join(t.abbreviation for t in tasks)}"),
    }

    def decode(model: nn.Module, task: str, generator: torch.Generator, **conditioning: Any) -> torch.Tensor:
        # Decoded as the exported pipeline will: the defaults of the pipeline.json written below.
        tokens = decode_nonautoregressive(model, task=task, **decoding_settings(settings, get_task(task)),
                                          generator=generator, **conditioning)
        return tokenizer.decode_indices(tokens).float().cpu()  # (B, 3, T, H, W)

    # CG sample classes: untrained ones would only show noise (the exported pipeline refuses them).
    sample_labels = [c % model.config.num_classes for c in sample.class_labels] if model.config.num_classes else []
    skipped = sorted(set(sample_labels) & set(settings["untrained_classes"]))
    if skipped:
        context.log(f"sample.class_labels: skipping {skipped}, classes no training clip has")
        sample_labels = [c for c in sample_labels if c not in skipped]

    def sample_fn(model: nn.Module, step: int, samples_dir: Path) -> None:
        generator = torch.Generator(device).manual_seed(sample.seed)
        prefix = samples_dir / f"step_{step:07d}"
        trained = {t.abbreviation for t in tasks}
        if "CG" in trained and sample_labels:
            labels = torch.tensor(sample_labels, device=device)
            for label, video in zip(labels.tolist(), decode(model, "CG", generator, class_labels=labels)):
                _write_clip(Path(f"{prefix}_CG_class{label}.{sample.format}"), video, cache.fps)
        if "T2V" in trained and sample_text is not None:
            videos = decode(model, "T2V", generator, text=sample_text.embeddings.to(device),
                            text_mask=sample_text.mask.to(device))
            for i, video in enumerate(videos):
                _write_clip(Path(f"{prefix}_T2V_{i:02d}.{sample.format}"), video, cache.fps)
        if heldout is not None:
            item = batcher([CachedTokens(heldout)[0]])
            target = tokenizer.decode_indices(item["tokens"].to(device)).float().cpu()[0]
            for task in sample.tasks:
                if task not in item["condition_tokens"]:
                    continue
                video = decode(model, task, generator,
                               condition_tokens=item["condition_tokens"][task][:, 0].to(device),
                               condition_mask=item["condition_masks"][task][:, 0].to(device))[0]
                _write_clip(Path(f"{prefix}_{task}.{sample.format}"), torch.cat([target, video], dim=-1), cache.fps)

    def eval_fn(model: nn.Module, step: int) -> dict[str, float]:
        generator = torch.Generator(device).manual_seed(evaluation.seed)
        items = CachedTokens(heldout)
        totals: dict[str, float] = {}
        for start in range(0, len(items), evaluation.batch_size):
            chunk = [items[i] for i in range(start, min(start + evaluation.batch_size, len(items)))]
            out = objective(model, move_to_device(batcher(chunk), device), generator)
            for name, value in out.items():
                totals[name] = totals.get(name, 0.0) + float(value) * len(chunk)
        return {f"heldout_{name}": value / len(items) for name, value in totals.items() if name != "mask_ratio"}

    def export_fn(model: nn.Module, run_dir: Path) -> Path:
        export_model(model, run_dir / "final", recipe.train.export_torch_dtype)
        return export_pipeline(run_dir / "pipeline", tokenizer_folder, model, settings)

    return TrainingSetup(model=model, objective=objective, dataset=CachedTokens(cache), collate_fn=batcher,
                         sample_fn=sample_fn, eval_fn=eval_fn if heldout is not None else None, export_fn=export_fn)


register_kind(RecipeKind(
    name="magvit-transformer",
    description="MAGVIT multi-task masked token transformer (COMMIT, 10 tasks + T2V) on cached tokens of a trained 3D-VQ",
    sizes=_sizes,
    build=build_magvit_transformer,
    sections={"condition": ConditionOptions, "objective": ObjectiveOptions, "eval": EvalOptions,
              "sample": SampleOptions},
    resumable_changes=("sample.", "eval."),
))
