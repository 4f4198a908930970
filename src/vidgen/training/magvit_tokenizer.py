"""Recipe kind "magvit-vq": trains MAGVIT's VQ tokenizer (`vidgen.tokenizers.magvit_vq.MagvitVQ`).

MAGVIT (Sec. 3.1) trains its 3D-VQ in two stages, and so do the shipped recipes:

1. 2D stage (`[model] temporal = false`): an image VQ on frames. `vq.frames_per_clip = k` draws k
   random frames of every clip (from the trainer's checkpointed generator) and folds them into the
   batch as T = 1 images, so a batch of B clips is B * k independent images.
2. 3D stage (`[model] temporal = true`, `vq.inflate_from = <the 2D run's final/>`): the 3D model
   starts from the 2D weights, each 2D kernel placed in the centre time slot of its 3D kernel
   (`MagvitVQ.inflate_from_2d`, "central" inflation), and trains on clips.

Both stages use `VQTokenizerObjective`: reconstruction (L2) + codebook + commitment + entropy penalty
(weights in the model config), a perceptual-loss hook (`vq.perceptual_weight`; no feature network
can be loaded offline, so it is off and the run says so), and, with `[gan] enabled = true`, hinge GAN
loss from a 3D StyleGAN-style discriminator with LeCam regularisation from `gan.start_step` on
(objective calls). Crops (`vq.crop_frames`, `vq.crop_size`) make steps cheap; evaluation always sees
whole clips.

A decoder-only fine-tune (`vq.train_decoder_only`) may also learn to decode the tokens a masked-token
transformer *generates*, not only the encoder's (`vq.token_noise_from`, `TokenCorruptor`): in a share
of the clips a random fraction of the tokens is masked and refilled by that transformer (the most
likely token or a sample, as the pipeline decodes), and the decoder is trained to give the true clip
from them. The encoder and codebook stay frozen, so the tokens, and the transformer, stay valid.

Eval (`train.eval_every`): PSNR, SSIM, codebook usage (fraction of codes used) and perplexity over
all tokens of `eval.clips` held-out clips (the dataset's "heldout" or "test" split; for a dataset
without one, the same options with seed + 1). Samples: original | reconstruction side by side.
Export: `run_dir/final` is a `MagvitVQ.from_pretrained` folder (config.json + model.safetensors).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from vidgen.errors import VidgenError
from vidgen.tokenizers.quantizers import usage_stats
from vidgen.training.adversarial import GANOptions, build_discriminator
from vidgen.training.data import SelectKeys
from vidgen.training.recipes import (
    BuildContext,
    Recipe,
    RecipeKind,
    TrainingSetup,
    build_model,
    freeze_trained_part,
    register_kind,
)

__all__ = ["GANOptions", "TokenizerEvalOptions", "VQTrainOptions", "build_vq", "code_perplexity", "evaluate_tokenizer",
           "flat_cells", "pick_frames"]


# ----------------------------------------------------------------------------- recipe tables


@dataclasses.dataclass
class VQTrainOptions:
    """[vq] table: the objective's weights, what the tokenizer sees, and where the 3D stage starts.

    reconstruction_loss: "l2" (MAGVIT), "l1" or "l1+l2".
    reconstruction_weight, quantizer_weight: weights of those terms (the quantizer's own commitment
        and entropy weights are model config fields: model.commitment_weight, model.entropy_weight).
    perceptual_weight: weight of the perceptual-loss hook; needs a feature network, which cannot be
        loaded offline, so the loss stays off (the run logs that) whatever this weight is.
    crop_frames, crop_size: random (frames, size, size) window of every clip, 0 = whole axis;
        multiples of the tokenizer's temporal / spatial compression.
    frames_per_clip: 2D models only: random frames per clip, folded into the batch as T = 1 images
        (0 = every frame of the clip or crop).
    inflate_from: 3D models only: folder of a trained 2D tokenizer (`temporal = false`, same widths
        and codebook) to inflate into the initial weights; "" = random initialisation.
    inflate_mode: "central" (MAGVIT) or "average".
    train_decoder_only: freeze the encoder and the codebook (with `train.init_from` a trained tokenizer)
        and train the decoder alone: every clip keeps its tokens, so a transformer trained on them stays
        valid. Dead-code restarts are off (they would move codes).
    token_noise_from: decoder-only runs: a MAGVIT pipeline folder or bundled name (or a transformer
        folder) whose masked-token transformer refills masked tokens (`TokenCorruptor`); "" = off.
        Needs whole clips (crop_frames = crop_size = 0) of the transformer's token grid.
    token_noise_share: share of the clips whose tokens are corrupted (the rest decode clean tokens).
    token_noise_ratio: [low, high]: each corrupted clip masks a uniform fraction in this range.
    """

    reconstruction_loss: str = "l2"
    reconstruction_weight: float = 1.0
    quantizer_weight: float = 1.0
    perceptual_weight: float = 0.1
    crop_frames: int = 0
    crop_size: int = 0
    frames_per_clip: int = 0
    inflate_from: str = ""
    inflate_mode: str = "central"
    train_decoder_only: bool = False
    token_noise_from: str = ""
    token_noise_share: float = 0.5
    token_noise_ratio: tuple[float, float] = (0.1, 0.5)

    def __post_init__(self) -> None:
        from vidgen.tokenizers.vq_objective import RECONSTRUCTION_LOSSES

        if len(self.token_noise_ratio) != 2:
            raise VidgenError(f"vq.token_noise_ratio = {list(self.token_noise_ratio)} must be [low, high]")
        low, high = (float(v) for v in self.token_noise_ratio)
        if not (0.0 < low <= high <= 1.0) or not 0.0 <= self.token_noise_share <= 1.0:
            raise VidgenError(f"vq.token_noise_ratio = {list(self.token_noise_ratio)} must be [low, high] with "
                              f"0 < low <= high <= 1, and vq.token_noise_share = {self.token_noise_share} in [0, 1]")
        self.token_noise_ratio = (low, high)

        if self.reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise VidgenError(f"vq.reconstruction_loss = {self.reconstruction_loss!r}: expected one of "
                              f"{', '.join(map(repr, RECONSTRUCTION_LOSSES))}")
        if min(self.crop_frames, self.crop_size, self.frames_per_clip) < 0:
            raise VidgenError(f"vq.crop_frames, vq.crop_size and vq.frames_per_clip must be >= 0 (0 = off); got "
                              f"{self.crop_frames}, {self.crop_size}, {self.frames_per_clip}")
        if self.inflate_mode not in ("central", "average"):
            raise VidgenError(f"vq.inflate_mode = {self.inflate_mode!r}: expected 'central' or 'average'")


@dataclasses.dataclass
class TokenizerEvalOptions:
    """[eval] table: held-out clips scored at train.eval_every; sample_clips of them written as
    original | reconstruction videos at train.sample_every."""

    clips: int = 16
    sample_clips: int = 2
    batch_size: int = 4
    format: str = "gif"
    fps: float = 8.0

    def __post_init__(self) -> None:
        if self.clips < 1 or not 0 <= self.sample_clips <= self.clips or self.batch_size < 1:
            raise VidgenError(f"eval.clips and eval.batch_size must be >= 1 and 0 <= eval.sample_clips <= "
                              f"eval.clips; got {self.clips}, {self.batch_size}, {self.sample_clips}")
        if self.format not in ("gif", "mp4"):
            raise VidgenError(f"eval.format = {self.format!r}: expected 'gif' or 'mp4'")


# ----------------------------------------------------------------------------- pieces


def pick_frames(video: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """`count` distinct random frames of every clip, as a batch of 1-frame clips:
    (B, C, T, H, W) -> (B * count, C, 1, H, W). Draws come from `generator` (exact resume)."""
    from vidgen.diffusion.rng import rand

    b, c, t, h, w = video.shape
    if count > t:
        raise VidgenError(f"vq.frames_per_clip = {count} is more than the {t} frames of a clip")
    order = rand((b, t), generator).argsort(dim=1)[:, :count].to(video.device)  # (B, count)
    frames = torch.gather(video, 2, order[:, None, :, None, None].expand(b, c, count, h, w))
    return frames.transpose(1, 2).reshape(b * count, c, 1, h, w)


class TokenCorruptor:
    """Replace part of a clip's tokens by a masked-token transformer's guesses (decoder robustness).

    For a share `share` of the clips, a fraction r ~ U(ratio) of the positions is masked and refilled
    from the transformer's class-conditional (CG; the clip's class, or the null class for -1)
    prediction given the rest: the most likely token for a share `greedy_share` of those clips (half by
    default), a sample (temperature 1) for the others, as the pipeline decodes the tasks given pixels
    and class / text generation.
    Every draw comes from `generator` (the trainer's checkpointed one: exact resume).

    A plain object, not an `nn.Module`: the frozen transformer is no part of the trained model, its
    optimiser or its checkpoints.
    """

    def __init__(self, transformer: nn.Module, share: float, ratio: tuple[float, float], bf16: bool = False,
                 greedy_share: float = 0.5):
        self.transformer = transformer.eval().requires_grad_(False)
        self.share, self.ratio, self.bf16 = float(share), (float(ratio[0]), float(ratio[1])), bool(bf16)
        self.greedy_share = float(greedy_share)

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, class_ids: torch.Tensor | None,
                 generator: torch.Generator | None) -> torch.Tensor:
        """tokens (B, t, h, w) int64, class_ids (B,) (-1 = none) -> corrupted tokens (B, t, h, w)."""
        from vidgen.devices import autocast_context
        from vidgen.diffusion.rng import rand
        from vidgen.generators.decoding import sample_logits
        from vidgen.tasks import get_task
        from vidgen.tasks.masking import commit_inputs

        b, device = tokens.shape[0], tokens.device
        if tuple(tokens.shape[1:]) != tuple(self.transformer.config.grid):
            raise VidgenError(f"vq.token_noise_from: clips give a {tuple(tokens.shape[1:])} token grid but the "
                              f"transformer takes {tuple(self.transformer.config.grid)}: train on whole clips of "
                              "its size (vq.crop_frames = vq.crop_size = 0)")
        corrupt = rand((b,), generator, device) < self.share                                  # (B,)
        low, high = self.ratio
        ratio = low + (high - low) * rand((b,), generator, device)                            # (B,)
        masked = (rand(tuple(tokens.shape), generator, device) < ratio[:, None, None, None]) & corrupt[:, None, None, None]
        greedy = rand((b,), generator, device) < self.greedy_share                               # (B,)
        labels = torch.full((b,), -1, dtype=torch.long, device=device) if class_ids is None else \
            class_ids.to(device).long().clamp(min=-1)
        labels = torch.where(labels < self.transformer.config.num_classes, labels, torch.full_like(labels, -1))
        inputs, refine = commit_inputs(tokens, masked, self.transformer.mask_token_id)
        task = torch.full((b,), get_task("CG").token, dtype=torch.long, device=device)
        with autocast_context(device, self.bf16):
            logits = self.transformer(inputs, task=task, class_labels=labels, condition_positions=refine)
        logits = logits.float()                                                               # (B, t, h, w, K)
        guesses = torch.where(greedy[:, None, None, None], logits.argmax(-1), sample_logits(logits, 1.0, generator))
        return torch.where(masked, guesses, tokens)


class _DecodeTokens(nn.Module):
    """`model(video)` as the VQ objective calls it, but decoding `tokens` instead of the clip's own;
    returns the clip's quantizer output `q` (computed once, by the caller) for its logged terms."""

    def __init__(self, model: nn.Module, tokens: torch.Tensor, q: Any):
        super().__init__()
        self.model, self.tokens, self.q = model, tokens, q

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, Any]:
        codes = self.model.quantizer.indices_to_codes(self.tokens).to(self.q.quantized.dtype)
        return self.model.decode_codes(codes), self.q

    def last_layer_weight(self) -> torch.Tensor:
        return self.model.last_layer_weight()


class TokenizerObjective(nn.Module):
    """`VQTokenizerObjective` on the batch's "video", after folding frames into the batch for a 2D
    model (`frames_per_clip`); with a `TokenCorruptor`, training steps decode partly generated tokens
    (module docstring). Checkpointed state (discriminator, its optimiser, step) is the inner objective's."""

    def __init__(self, vq_objective: nn.Module, frames_per_clip: int = 0, corruptor: TokenCorruptor | None = None):
        super().__init__()
        self.vq = vq_objective
        self.frames_per_clip = frames_per_clip
        self.corruptor = corruptor

    def forward(self, model: nn.Module, batch: Any, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
        video = batch["video"] if isinstance(batch, dict) else batch
        training = self.training and torch.is_grad_enabled()
        if self.frames_per_clip and training:
            video = pick_frames(video, self.frames_per_clip, generator)
        if self.corruptor is not None and training:
            class_ids = batch.get("class_id") if isinstance(batch, dict) else None
            with torch.no_grad():  # the encoder and codebook are frozen (train_decoder_only)
                q = model.quantize(model.encode_latents(video))
            tokens = self.corruptor(q.indices, class_ids, generator)
            return self.vq(_DecodeTokens(model, tokens, q), video, generator)
        return self.vq(model, video, generator)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return self.vq.state_tensors()

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.vq.load_state_tensors(tensors)


def heldout_dataset(recipe: Recipe, count: int) -> Dataset:
    """`count` clips the tokenizer never trains on: the recipe's dataset with split "heldout" (or
    "test"), else with seed + 1 (a dataset without a seed, e.g. your folder, gives its first clips)."""
    from vidgen.data import DATASETS, get_dataset

    spec = recipe.data
    params = inspect.signature(DATASETS[spec.name].__init__).parameters
    options = dict(spec.options)
    if "num_items" in params:
        options["num_items"] = count
    if "split" in params:
        for split in ("heldout", "test"):
            try:
                return get_dataset(spec.name, **{**options, "split": split})
            except VidgenError:
                continue
    if "seed" in params:
        options["seed"] = int(options.get("seed", 0)) + 1
    dataset = get_dataset(spec.name, **options)
    return torch.utils.data.Subset(dataset, range(min(count, len(dataset))))


def flat_cells(videos: torch.Tensor, grid: tuple[int, int, int], tolerance: float = 0.02) -> torch.Tensor:
    """Token cells whose pixels are all one colour (e.g. the black background of Shapes clips).

    videos: (N, C, T, H, W); grid: the token grid (t, h, w), which must divide (T, H, W).
    Returns (N, t, h, w) bool: True where every pixel of the cell's (T/t, H/h, W/w) block, in every
    channel, lies within `tolerance` of the block's minimum.
    """
    n, c, frames, height, width = videos.shape
    t, h, w = grid
    if frames % t or height % h or width % w:
        raise VidgenError(f"token grid {tuple(grid)} must divide the clip's (T, H, W) = {(frames, height, width)}")
    blocks = videos.reshape(n, c, t, frames // t, h, height // h, w, width // w)
    spread = blocks.amax(dim=(3, 5, 7)) - blocks.amin(dim=(3, 5, 7))   # (N, C, t, h, w)
    return (spread <= tolerance).all(dim=1)


def code_perplexity(indices: torch.Tensor, codebook_size: int) -> float:
    """exp(entropy) of the code histogram of `indices` (any shape): the effective number of codes used
    (1.0 for no indices)."""
    perplexity, _ = usage_stats(indices, codebook_size)
    return float(perplexity)


@torch.no_grad()
def evaluate_tokenizer(model: nn.Module, videos: torch.Tensor, batch_size: int = 4,
                       device: torch.device | str = "cpu") -> tuple[dict[str, float], torch.Tensor]:
    """Reconstruct `videos` (N, 3, T, H, W) in [-1, 1] through the tokens of `model`.

    Returns ({"psnr" (dB), "ssim", "codebook_usage" (fraction of the codebook used by all N clips'
    tokens together), "perplexity" (exp of the entropy of their code histogram), "flat_cell_fraction"
    and "flat_cell_perplexity" (the share of token cells whose pixels are one flat colour, and the
    perplexity of their codes)}, reconstructions (N, 3, T, H, W) on the CPU).

    Why the flat cells: a tokenizer that spends many codes on a plain background (its perplexity there
    far above 1) hands the generator near-random targets for most of the clip.
    """
    from vidgen.evaluation.metrics import psnr, ssim

    reconstructions, indices, flat = [], [], []
    for start in range(0, len(videos), batch_size):
        chunk = videos[start:start + batch_size]
        tokens = model.encode(chunk.to(device))                        # (b, t, h, w)
        indices.append(tokens.cpu())
        flat.append(flat_cells(chunk.float(), tuple(tokens.shape[1:])))
        reconstructions.append(model.decode_indices(tokens).float().cpu())
    reconstruction = torch.cat(reconstructions)
    indices, flat = torch.cat(indices), torch.cat(flat)
    size = model.config.codebook_size
    perplexity, usage = usage_stats(indices, size)
    metrics = {"psnr": psnr(reconstruction, videos), "ssim": ssim(reconstruction, videos),
               "codebook_usage": float(usage), "perplexity": float(perplexity),
               "flat_cell_fraction": float(flat.float().mean()),
               "flat_cell_perplexity": code_perplexity(indices[flat], size)}
    return metrics, reconstruction


def _sizes() -> dict[str, Any]:
    from vidgen.tokenizers import magvit_vq as m

    return {"tiny": m.magvit_vq_tiny, "shapes": m.magvit_vq_shapes, "base": m.magvit_vq_base}


def _inflated_weights(model: nn.Module, options: VQTrainOptions, log: Any) -> dict[str, torch.Tensor]:
    """The 2D tokenizer at `options.inflate_from`, inflated to the recipe's 3D config."""
    from vidgen.modeling import resolve_model_path
    from vidgen.tokenizers.magvit_vq import MagvitVQ

    try:
        folder = resolve_model_path(options.inflate_from)
    except VidgenError:
        raise VidgenError(f"vq.inflate_from = {options.inflate_from!r} is not a tokenizer folder: train the 2D "
                          f"stage first (e.g. `vidgen train magvit-shapes-vq2d`, which writes "
                          f"runs/magvit-shapes-vq2d/final) or pass --set vq.inflate_from=FOLDER") from None
    model2d = MagvitVQ.from_pretrained(folder)
    if model2d.config.temporal:
        raise VidgenError(f"vq.inflate_from = {options.inflate_from!r} holds a 3D tokenizer; inflation needs "
                          f"a 2D one (trained with model.temporal = false)")
    target = model.config
    # Everything but the 2D-only `temporal` comes from the recipe; fields that change weight shapes
    # (widths, codebook, embed_dim, ...) must agree, which inflate_from_2d checks tensor by tensor.
    changes = {f.name: getattr(target, f.name) for f in dataclasses.fields(target)
               if getattr(target, f.name) != getattr(model2d.config, f.name)}
    try:
        inflated = MagvitVQ.inflate_from_2d(model2d, mode=options.inflate_mode, **changes)
    except (RuntimeError, VidgenError) as error:
        raise VidgenError(f"cannot inflate {folder} into this recipe's 3D tokenizer (its config must match "
                          f"the 2D one except temporal/causal/norm_scope and loss weights): {error}") from None
    log(f"initialised from the 2D tokenizer {folder} ({options.inflate_mode} inflation)")
    return inflated.state_dict()


# ----------------------------------------------------------------------------- the kind


def _token_corruptor(options: VQTrainOptions, context: BuildContext) -> TokenCorruptor:
    """The frozen transformer of `vq.token_noise_from` (decoder-only runs on whole clips only)."""
    from vidgen.devices import bf16_is_fast
    from vidgen.generators.masked_transformer import MaskedTokenTransformer
    from vidgen.modeling import resolve_component

    if not options.train_decoder_only:
        raise VidgenError("vq.token_noise_from needs vq.train_decoder_only = true: the transformer's tokens are "
                          "only valid while the encoder and the codebook stay as they are")
    if options.crop_frames or options.crop_size:
        raise VidgenError("vq.token_noise_from needs whole clips (vq.crop_frames = vq.crop_size = 0): the "
                          "transformer takes one fixed token grid")
    folder = resolve_component(options.token_noise_from, "MaskedTokenTransformer")
    transformer = MaskedTokenTransformer.from_pretrained(folder).to(context.device)
    context.log(f"token noise: transformer {folder} refills {options.token_noise_ratio[0]:g}-"
                f"{options.token_noise_ratio[1]:g} of the tokens of {options.token_noise_share:.0%} of the clips")
    return TokenCorruptor(transformer, options.token_noise_share, options.token_noise_ratio,
                          bf16=bf16_is_fast(context.device))


def build_vq(recipe: Recipe, context: BuildContext) -> TrainingSetup:
    from vidgen.tokenizers.vq_objective import VQObjectiveConfig, VQTokenizerObjective

    options: VQTrainOptions = recipe.sections["vq"]
    gan: GANOptions = recipe.sections["gan"]
    evaluation: TokenizerEvalOptions = recipe.sections["eval"]
    model = build_model(recipe)
    config = model.config
    fs, ft = config.spatial_factor, config.temporal_factor
    if options.crop_size % fs:
        raise VidgenError(f"vq.crop_size = {options.crop_size} must be a multiple of the spatial compression "
                          f"{fs} (or 0)")
    if options.crop_frames % ft:
        raise VidgenError(f"vq.crop_frames = {options.crop_frames} must be a multiple of the temporal "
                          f"compression {ft} (or 0)")
    if options.frames_per_clip and config.temporal:
        raise VidgenError("vq.frames_per_clip is for 2D tokenizers (model.temporal = false); a 3D one trains "
                          "on clips (use vq.crop_frames)")
    if options.inflate_from and not config.temporal:
        raise VidgenError("vq.inflate_from initialises a 3D tokenizer; this recipe's model is 2D "
                          "(model.temporal = false)")
    if options.inflate_from and not context.resume:  # on resume the checkpoint holds the weights
        model.load_state_dict(_inflated_weights(model, options, context.log))
    if options.train_decoder_only:
        if options.inflate_from:
            raise VidgenError("vq.train_decoder_only = true freezes the encoder and the codebook of a trained "
                              "tokenizer (train.init_from); it cannot start from vq.inflate_from")
        freeze_trained_part(recipe, context, "vq.train_decoder_only", "the encoder and the codebook",
                            [model.encoder, model.quantizer])
        model.quantizer.dead_code_threshold = 0.0   # a restart would move codes: the tokens must stay
        context.log("decoder-only: encoder and codebook frozen (tokens unchanged), dead-code restarts off")

    objective_config = VQObjectiveConfig(
        reconstruction_loss=options.reconstruction_loss, reconstruction_weight=options.reconstruction_weight,
        quantizer_weight=options.quantizer_weight, perceptual_weight=options.perceptual_weight,
        gan=gan.gan_config() if gan.enabled else None, crop_frames=options.crop_frames,
        crop_size=options.crop_size)
    discriminator = build_discriminator(gan) if gan.enabled else None
    vq_objective = VQTokenizerObjective(objective_config, discriminator=discriminator)
    if options.perceptual_weight > 0:
        context.log("perceptual loss: off (no feature network: none can be downloaded here; the hook is "
                    "VQTokenizerObjective(feature_net=...))")
    corruptor = None
    if options.token_noise_from:
        corruptor = _token_corruptor(options, context)
    objective = TokenizerObjective(vq_objective, options.frames_per_clip, corruptor)

    keys = ("video", "class_id") if corruptor is not None else ("video",)
    dataset = SelectKeys(recipe.data.build(split="train"), keys)
    heldout = heldout_dataset(recipe, evaluation.clips)
    videos = torch.stack([heldout[i]["video"] for i in range(len(heldout))])   # (N, 3, T, H, W)

    def eval_fn(model: nn.Module, step: int) -> dict[str, float]:
        metrics, _ = evaluate_tokenizer(model, videos, evaluation.batch_size, context.device)
        return metrics

    def sample_fn(model: nn.Module, step: int, samples_dir: Path) -> None:
        from vidgen.io import write_video

        count = evaluation.sample_clips
        if not count:
            return
        _, reconstruction = evaluate_tokenizer(model, videos[:count], evaluation.batch_size, context.device)
        for i in range(count):
            side_by_side = torch.cat([videos[i], reconstruction[i]], dim=-1)   # (3, T, H, 2W)
            write_video(samples_dir / f"step_{step:07d}_recon_{i}.{evaluation.format}", side_by_side,
                        fps=evaluation.fps)

    return TrainingSetup(model=model, objective=objective, dataset=dataset, eval_fn=eval_fn, sample_fn=sample_fn)


register_kind(RecipeKind(
    name="magvit-vq",
    description="MAGVIT VQ tokenizer (2D on frames, or 3D inflated from a 2D run): reconstruction + VQ + "
                "entropy penalty, optional 3D StyleGAN discriminator with LeCam",
    sizes=_sizes,
    build=build_vq,
    sections={"vq": VQTrainOptions, "gan": GANOptions, "eval": TokenizerEvalOptions},
    resumable_changes=("eval.",),
))
