"""Recipe kinds for CogVideoX (Yang et al. 2024): the 3D causal VAE, then the expert transformer on its
latents. Each kind is a builder: recipe -> (model, objective, dataset, sample/eval hooks, export).

"cogvideox-vae"          trains `CogVideoXVAE` with the VAE loss of `vidgen.tokenizers.vae_losses` on
                         (random crops of) clips; samples are original | reconstruction side by side;
                         eval = PSNR of full-size reconstructions of a few clips the model never trains on.
"cogvideox-transformer"  trains `CogVideoXTransformer` with the v-prediction loss on latents of a frozen,
                         trained VAE, conditioned on text embeddings (captions dropped to "" with
                         probability `cond_dropout`, for classifier-free guidance). Latents and caption
                         embeddings are computed once and cached (`vidgen.training.latent_cache`).
                         Exports a pipeline folder (vae/, transformer/, pipeline.json) that
                         `vidgen.pipelines.CogVideoXPipeline.from_pretrained` loads.
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
from vidgen.modeling import atomic_write_dir, write_json
from vidgen.tokenizers.gan_losses import AdversarialObjective
from vidgen.training.adversarial import GANOptions, build_discriminator
from vidgen.training.augment import random_crop
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
from vidgen.training.trainer import export_model

# ============================================================================= shared helpers


def _heldout_dataset(recipe: Recipe, count: int) -> Dataset:
    """`count` clips the model does not train on: the recipe's first dataset with its seed + 1 (every
    vidgen toy dataset is a pure function of its seed). A dataset without a seed (your own folder)
    has no held-out part: its first clips are used, and the number is then a training score."""
    from vidgen.data import DATASETS

    spec = recipe.data
    options = dict(spec.options)
    if "seed" in inspect.signature(DATASETS[spec.name].__init__).parameters:
        options["seed"] = int(options.get("seed", 0)) + 1
    if "num_items" in inspect.signature(DATASETS[spec.name].__init__).parameters:
        options["num_items"] = count
    dataset = dataclasses.replace(spec, options=options, extra=[]).build()
    return torch.utils.data.Subset(dataset, range(min(count, len(dataset))))


def _write_clip(path: Path, video: torch.Tensor, fps: float) -> None:
    from vidgen.io import write_video

    write_video(path, video.detach().float().clamp(-1, 1).cpu(), fps=fps)


# ============================================================================= the VAE kind


@dataclasses.dataclass
class VAETrainOptions:
    """[vae] table: what the VAE sees in training.

    crop_size:   random square crop (pixels, a multiple of the VAE's spatial compression) of every
                 clip, 0 = full frames. The VAE is convolutional, so it trains on crops and then
                 works on full frames at a fraction of the cost (as CogVideoX trains at low res).
    crop_frames: random window of 4k + 1 frames, 0 = the whole clip.
    sample_posterior: decode z ~ q(z | x) (True, the VAE objective) or the mean.
    decoder_noise: noise-augmented decoding (`CogVideoXVAE.forward`): the decoder sees z plus noise of
                 up to this multiple of the latents' std, so shape detail is encoded with a margin a
                 diffusion model's imprecise latents keep (0 = off).
    train_decoder_only: freeze the encoder (with `train.init_from` a trained VAE): its latents stay
                 bit-identical, so a transformer trained on them keeps working, and only the decoder
                 learns (a decoder fine-tune, as Video LDM fine-tunes its decoder).
    train_encoder_only: freeze the decoder instead (with `train.init_from` a trained VAE): the encoder
                 learns the latents the trained decoder renders best. This closes the amortisation gap
                 (latents optimised for one clip decode sharper than the encoder's), at the price of new
                 latents: a transformer must then be trained (or fine-tuned) on them.
    """

    crop_size: int = 0
    crop_frames: int = 0
    sample_posterior: bool = True
    train_decoder_only: bool = False
    train_encoder_only: bool = False
    decoder_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.crop_size < 0 or self.crop_frames < 0:
            raise VidgenError(f"vae.crop_size and vae.crop_frames must be >= 0 (0 = off), got "
                              f"{self.crop_size}, {self.crop_frames}")
        if self.train_decoder_only and self.train_encoder_only:
            raise VidgenError("vae.train_decoder_only and vae.train_encoder_only are both true: that would "
                              "freeze the whole VAE; set at most one")
        if not 0.0 <= self.decoder_noise <= 10.0:
            raise VidgenError(f"vae.decoder_noise = {self.decoder_noise!r}: expected a number in [0, 10] "
                              "(a multiple of the latents' std; 0 = off)")


@dataclasses.dataclass
class VAEEvalOptions:
    """[eval] table: held-out reconstructions (PSNR at train.eval_every, videos at train.sample_every)."""

    clips: int = 4              # held-out clips scored for PSNR
    sample_clips: int = 2       # of which this many are written as original | reconstruction videos
    format: str = "gif"         # "gif" or "mp4"
    fps: float = 8.0

    def __post_init__(self) -> None:
        if self.clips < 1 or not 0 <= self.sample_clips <= self.clips:
            raise VidgenError(f"eval.clips must be >= 1 and 0 <= eval.sample_clips <= eval.clips; got "
                              f"{self.clips}, {self.sample_clips}")
        if self.format not in ("gif", "mp4"):
            raise VidgenError(f"eval.format = {self.format!r}: expected 'gif' or 'mp4'")


def _vae_sizes() -> dict[str, Any]:
    from vidgen.tokenizers import cogvideox_vae as m

    return {"tiny": m.cogvideox_vae_tiny, "shapes": m.cogvideox_vae_shapes, "2b": m.cogvideox_vae_2b,
            "5b": m.cogvideox_vae_5b}


def _make_vae_loss(options: dict[str, Any]) -> Any:
    try:
        from vidgen.tokenizers import vae_losses
    except ImportError:
        raise VidgenError("the cogvideox-vae kind needs vidgen.tokenizers.vae_losses, which this "
                          "installation does not have") from None
    return vae_losses.make_vae_loss(**options)


class VAEObjective(AdversarialObjective):
    """The cogvideox-vae kind's objective: random crop, reconstruction through q(z | x) (optionally with
    noise-augmented decoding), `VAELoss`, and from `gan.start_step` on a GAN term from a 3D discriminator
    (CogVideoX trains its VAE with one; it restores the edges and corners that L1/L2 blur). The
    discriminator, its optimiser and the step counter are checkpointed (`AdversarialObjective`)."""

    def __init__(self, loss_fn: Any, options: VAETrainOptions, gan: GANOptions):
        super().__init__(gan.gan_config() if gan.enabled else None,
                         build_discriminator(gan) if gan.enabled else None)
        self.loss_fn, self.options = loss_fn, options

    def forward(self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None
                ) -> dict[str, Any]:
        options = self.options
        video = random_crop(batch["video"], options.crop_size, options.crop_frames, generator,
                            "vae.crop_size / vae.crop_frames")
        reconstruction, posterior = model(video, sample=options.sample_posterior, generator=generator,
                                          decoder_noise=options.decoder_noise)
        terms = self.loss_fn(video, reconstruction, posterior)
        # What VQGAN's adaptive GAN weight balances against: the weighted reconstruction (and perceptual) terms.
        nll = sum(getattr(self.loss_fn, f"{name}_weight") * terms[name]
                  for name in ("l1", "mse", "perceptual") if name in terms)
        # The discriminator downsamples time in pairs: it judges the 4k frames after the first (an image).
        gan_loss, gan_logs = self.adversarial_terms(model, video[:, :, 1:], reconstruction[:, :, 1:], nll)
        terms["loss"] = terms["loss"] + gan_loss
        terms.update(gan_logs)
        return terms


def shape_metrics(videos: torch.Tensor, objects: list[list[dict]]) -> dict[str, float]:
    """The Shapes evaluator on reconstructions `videos` (B, 3, T, H, W) of clips showing `objects`:
    "shape_acc", the share of objects whose shape it judges right, and "square_fill", the mean fill
    ratio (area / bounding box; a true square is 1.0, the evaluator's square/circle threshold 0.893) of
    the objects that are squares (left out if none): the number that tells whether a VAE keeps corners."""
    from vidgen.evaluation.shapes_eval import score_video

    verdicts, square_fills = [], []
    for video, expected in zip(videos, objects):
        for result in score_video(video, expected)["objects"]:
            verdicts.append(result["shape"])
            if result["expected"]["shape"] == "square" and result["detected"] is not None:
                square_fills.append(result["detected"]["fill_ratio"])
    metrics = {"shape_acc": float(sum(verdicts) / max(1, len(verdicts)))}
    if square_fills:
        metrics["square_fill"] = float(sum(square_fills) / len(square_fills))
    return metrics


def build_vae(recipe: Recipe, context: BuildContext) -> TrainingSetup:
    options: VAETrainOptions = recipe.sections["vae"]
    evaluation: VAEEvalOptions = recipe.sections["eval"]
    model = build_model(recipe)
    s, t = model.config.spatial_compression, model.config.temporal_compression
    if options.crop_size % s:
        raise VidgenError(f"vae.crop_size = {options.crop_size} must be a multiple of the spatial "
                          f"compression {s} (or 0)")
    if options.crop_frames and (options.crop_frames - 1) % t:
        raise VidgenError(f"vae.crop_frames = {options.crop_frames} must be {t}k + 1 (or 0)")
    objective = VAEObjective(_make_vae_loss(recipe.sections["loss"]), options, recipe.sections["gan"])
    dataset = SelectKeys(recipe.data.build(split="train"), ("video",))
    if options.train_decoder_only:
        freeze_trained_part(recipe, context, "vae.train_decoder_only", "the encoder", [model.encoder])
        # Same encoder, same latents: the exported VAE keeps the source's scaling factor, so its
        # config (hashed into latent-cache keys) matches and transformers' caches stay valid.
        if recipe.train.init_from:
            from vidgen.modeling import read_json, resolve_component

            source = resolve_component(recipe.train.init_from, "CogVideoXVAE")
            factor = read_json(source / "config.json").get("scaling_factor", model.config.scaling_factor)
            model.config = dataclasses.replace(model.config, scaling_factor=float(factor))
    if options.train_encoder_only:
        freeze_trained_part(recipe, context, "vae.train_encoder_only", "the decoder", [model.decoder])

    heldout_items = list(_heldout_dataset(recipe, evaluation.clips))
    heldout = torch.stack([item["video"] for item in heldout_items])
    # Shapes clips carry their objects: the evaluator then also judges the reconstructions' shapes.
    heldout_objects = [item.get("labels", {}).get("objects") for item in heldout_items]

    def reconstruct(model: nn.Module) -> torch.Tensor:
        video = heldout.to(context.device)
        return model.decode(model.encode(video)).float().clamp(-1, 1)

    def eval_fn(model: nn.Module, step: int) -> dict[str, float]:
        from vidgen.evaluation.metrics import psnr

        reconstruction = reconstruct(model).cpu()
        metrics = {"psnr": psnr(reconstruction, heldout)}
        if all(heldout_objects):
            metrics.update(shape_metrics(reconstruction, heldout_objects))
        return metrics

    def sample_fn(model: nn.Module, step: int, samples_dir: Path) -> None:
        if not evaluation.sample_clips:
            return
        reconstruction = reconstruct(model).cpu()
        for i in range(evaluation.sample_clips):
            side_by_side = torch.cat([heldout[i], reconstruction[i]], dim=-1)  # (3, T, H, 2W)
            _write_clip(samples_dir / f"step_{step:07d}_recon_{i}.{evaluation.format}", side_by_side,
                        evaluation.fps)

    return TrainingSetup(model=model, objective=objective, dataset=dataset, sample_fn=sample_fn,
                         eval_fn=eval_fn)


register_kind(RecipeKind(
    name="cogvideox-vae",
    description="CogVideoX 3D causal KL VAE on video clips (reconstruction + KL loss)",
    sizes=_vae_sizes,
    build=build_vae,
    sections={"vae": VAETrainOptions, "loss": dict, "gan": GANOptions, "eval": VAEEvalOptions},
    resumable_changes=("eval.",),
))


# ============================================================================= the transformer kind


@dataclasses.dataclass
class ConditionOptions:
    """[condition] table: the frozen VAE and text encoder, and how conditioning is trained.

    vae: folder of the trained VAE (`save_pretrained` output, e.g. runs/cogvideox-shapes-vae/final)
         or a bundled model name.
    latents: "sample" draws z = mean + std * eps from the cached posterior every step (with the
             checkpointed generator: resumable), "mean" always uses the posterior mean.
    cond_dropout: probability that a caption is replaced by "" (trains the unconditional model that
             classifier-free guidance needs).
    latent_norm: how latents become the diffusion model's data (`vidgen.diffusion.latent_norm`):
             "scale" (LDM's 1 / std, CogVideoX's), "channel" (per-channel mean and std) or "whiten"
             (PCA whitening of the channel vector), fitted to the cache; saved in pipeline.json.
    latent_norm_eps: "whiten" only: eigenvalue floor as a fraction of their mean.
    """

    vae: str = "runs/cogvideox-shapes-vae/final"
    text_encoder: str = "minilm"
    text_max_length: int = 32
    cond_dropout: float = 0.1
    latents: str = "sample"
    encode_batch_size: int = 16
    latent_norm: str = "scale"
    latent_norm_eps: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise VidgenError(f"condition.cond_dropout = {self.cond_dropout}: expected a probability in [0, 1]")
        if self.latents not in ("sample", "mean"):
            raise VidgenError(f"condition.latents = {self.latents!r}: expected 'sample' or 'mean'")
        if self.encode_batch_size < 1:
            raise VidgenError(f"condition.encode_batch_size = {self.encode_batch_size}: expected >= 1")
        from vidgen.diffusion.latent_norm import check_options

        check_options(self.latent_norm, self.latent_norm_eps, "condition.latent_norm", "condition.latent_norm_eps")


@dataclasses.dataclass
class DiffusionOptions:
    """[diffusion] table: the `NoiseSchedule` fields and how training timesteps are drawn."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    snr_shift_scale: float = 1.0
    rescale_betas_zero_snr: bool = True
    timestep_sampling: str = "uniform"   # "uniform", "stratified_rank" or "stratified_slot"

    def schedule(self) -> Any:
        from vidgen.diffusion import NoiseSchedule

        fields = {f.name for f in dataclasses.fields(NoiseSchedule)}
        return NoiseSchedule(**{k: v for k, v in dataclasses.asdict(self).items() if k in fields})

    def __post_init__(self) -> None:
        self.schedule()  # validates the schedule fields now, not after the cache is built
        if self.timestep_sampling not in ("uniform", "stratified_rank", "stratified_slot"):
            raise VidgenError(f"diffusion.timestep_sampling = {self.timestep_sampling!r}: expected 'uniform', "
                              f"'stratified_rank' or 'stratified_slot'")


@dataclasses.dataclass
class SampleOptions:
    """[sample] table: sample videos during training, and the defaults written to pipeline.json."""

    prompts: list[str] = dataclasses.field(default_factory=lambda: [
        "a red circle moving left", "a green square moving up", "a blue triangle moving right"])
    steps: int = 25
    guidance: float = 6.0
    sampler: str = "dpm++"      # "dpm++" (DPM-Solver++(2M)), "dpm++-sde" (its SDE variant) or "ddim"
    seed: int = 0
    format: str = "gif"         # "gif" or "mp4"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.guidance < 0:
            raise VidgenError(f"sample.steps must be >= 1 and sample.guidance >= 0; got {self.steps}, "
                              f"{self.guidance}")
        from vidgen.diffusion.samplers import SAMPLERS

        if self.sampler not in SAMPLERS:
            raise VidgenError(f"sample.sampler = {self.sampler!r}: expected one of {', '.join(map(repr, SAMPLERS))}")
        if self.format not in ("gif", "mp4"):
            raise VidgenError(f"sample.format = {self.format!r}: expected 'gif' or 'mp4'")


@dataclasses.dataclass
class AutoguidanceOptions:
    """[autoguidance] table: keep an early model of the run as the pipeline's weak transformer
    (`vidgen.diffusion.guidance`: Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself").

    step:  0 = none; else the run's weights at this step (EMA when train.export = "ema") become
           pipeline/autoguidance_transformer/. Its checkpoint is written and never pruned.
    transformer: instead of a step, a CogVideoXTransformer folder (or a pipeline holding one) to ship as the
           weak model, e.g. a smaller model trained on the same latents (Karras et al.'s choice).
    scale: the autoguidance scale written to pipeline.json as `default_autoguidance` (0 = the weak model is
           shipped but off unless a call asks for it).
    """

    step: int = 0
    transformer: str = ""
    scale: float = 0.0

    def __post_init__(self) -> None:
        if self.step < 0:
            raise VidgenError(f"autoguidance.step = {self.step}: expected 0 (none) or the step whose weights "
                              f"become the weak model")
        if self.step and self.transformer:
            raise VidgenError(f"autoguidance.step = {self.step} and autoguidance.transformer = "
                              f"{self.transformer!r}: give one weak model, not both")
        if not 0 <= self.scale <= 50:
            raise VidgenError(f"autoguidance.scale = {self.scale}: expected a number in [0, 50]")
        if self.scale > 0 and self.step == 0 and not self.transformer:
            raise VidgenError(f"autoguidance.scale = {self.scale} needs autoguidance.step > 0 or "
                              f"autoguidance.transformer (the weak model)")


def _transformer_sizes() -> dict[str, Any]:
    from vidgen.generators import expert_transformer as m

    # in_channels and text_dim are always set from the VAE and the text encoder (see build_transformer).
    return {"tiny": m.cogvideox_transformer_tiny, "shapes": m.cogvideox_transformer_shapes}


class TransformerObjective:
    """v-prediction loss on cached latents with caption dropout; every draw from `generator`."""

    def __init__(self, cache: Any, schedule: Any, condition: ConditionOptions, timestep_sampling: str,
                 device: torch.device, latent_norm: Any):
        self.text_embeddings = cache.text_embeddings.to(device)  # (U, L, D), row 0 = ""
        self.text_mask = cache.text_mask.to(device)              # (U, L)
        self.latent_norm = latent_norm                           # LatentNormalizer: z -> x0
        self.schedule = schedule
        self.condition = condition
        self.timestep_sampling = timestep_sampling

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
                 ) -> dict[str, torch.Tensor]:
        from vidgen.diffusion import rand, randn, v_prediction_loss

        mean, std = batch["mean"], batch["std"]  # (B, C, T', H', W')
        z = mean
        if self.condition.latents == "sample":
            z = mean + std * randn(mean.shape, generator, mean.device, torch.float32)
        x0 = self.latent_norm.normalize(z)
        index = batch["caption_index"]  # (B,)
        if self.condition.cond_dropout > 0:
            drop = rand(index.shape, generator, index.device) < self.condition.cond_dropout
            index = torch.where(drop, torch.zeros_like(index), index)  # row 0 is the empty prompt

        def model_fn(z_t: torch.Tensor, t: torch.Tensor, text_embeddings: torch.Tensor,
                     text_mask: torch.Tensor) -> torch.Tensor:
            return model(z_t, text_embeddings, t, text_mask=text_mask)

        out = v_prediction_loss(model_fn, x0, {"text_embeddings": self.text_embeddings[index],
                                               "text_mask": self.text_mask[index]},
                                self.schedule, generator, timestep_sampling=self.timestep_sampling)
        return {"loss": out["loss"]}


def build_transformer(recipe: Recipe, context: BuildContext) -> TrainingSetup:
    from vidgen.diffusion.latent_norm import LatentNormalizer
    from vidgen.modeling import resolve_model_path
    from vidgen.text import load_text_encoder
    from vidgen.tokenizers.cogvideox_vae import CogVideoXVAE
    from vidgen.training.latent_cache import CachedLatents, build_cache, cache_key

    condition: ConditionOptions = recipe.sections["condition"]
    diffusion: DiffusionOptions = recipe.sections["diffusion"]
    sample: SampleOptions = recipe.sections["sample"]
    autoguidance: AutoguidanceOptions = recipe.sections["autoguidance"]
    if autoguidance.step and autoguidance.step >= recipe.train.steps:
        raise VidgenError(f"autoguidance.step = {autoguidance.step} must be below train.steps = "
                          f"{recipe.train.steps}: the weak model is an earlier state of the run")
    if autoguidance.step and context.resume:  # fail now, not at the export after hours of training
        from vidgen.training.checkpoint import checkpoint_dirs

        kept = dict(checkpoint_dirs(context.run_dir / "checkpoints"))
        if kept and max(kept) > autoguidance.step and autoguidance.step not in kept:
            raise VidgenError(f"autoguidance.step = {autoguidance.step}: the run is past that step and its checkpoint "
                              f"was not kept (it has {sorted(kept)}); choose a kept step or set it before the run "
                              f"gets there")
    schedule = diffusion.schedule()

    try:
        vae_folder = resolve_model_path(condition.vae)
    except VidgenError:
        raise VidgenError(f"condition.vae = {condition.vae!r} is not a VAE folder (nor a bundled model): train "
                          f"one first (e.g. `vidgen train cogvideox-shapes-vae`, which writes "
                          f"runs/cogvideox-shapes-vae/final) or pass --set condition.vae=FOLDER") from None
    vae = CogVideoXVAE.from_pretrained(vae_folder, device=context.device).eval().requires_grad_(False)
    text_encoder = load_text_encoder(condition.text_encoder, max_length=condition.text_max_length,
                                     device=context.device)
    key = cache_key(vae_folder, recipe.data.to_dict(), condition.text_encoder, condition.text_max_length)
    # condition.vae may change on --resume only to a VAE with the same latents (a decoder-only fine-tune):
    # the cache key hashes everything but the decoder, so a different key means different latents.
    trained_on = sorted(p.name for p in (context.run_dir / "cache").glob("*") if p.is_dir())
    if context.resume and (context.run_dir / "checkpoints").is_dir() and trained_on and key not in trained_on:
        raise VidgenError(f"condition.vae = {condition.vae!r} encodes the clips differently from the VAE this run "
                          f"was trained on (cache {', '.join(trained_on)} vs {key}): its latents would not match "
                          f"the transformer. Only a VAE with the same encoder (a decoder-only fine-tune) can "
                          f"replace it on --resume; start a new run for another VAE")
    cache = build_cache(context.run_dir / "cache", key, recipe.data.build(split="train"), vae, text_encoder,
                        context.device, batch_size=condition.encode_batch_size, progress=context.progress,
                        log=context.log)

    latent_channels, latent_t, latent_h, latent_w = cache.mean.shape[1:]
    model = build_model(recipe, in_channels=int(latent_channels), text_dim=int(cache.text_embeddings.shape[-1]))
    if condition.latent_norm == "scale":  # the cache's factor: pipelines of earlier versions match it exactly
        latent_norm = LatentNormalizer.from_scaling_factor(cache.scaling_factor, int(latent_channels))
    else:
        latent_norm = LatentNormalizer.fit(cache.mean, cache.std, condition.latent_norm, condition.latent_norm_eps)
        context.log(f"latent normalisation {condition.latent_norm} (eps {condition.latent_norm_eps:g}) fitted "
                    f"to {len(cache)} cached clips")
    objective = TransformerObjective(cache, schedule, condition, diffusion.timestep_sampling, context.device,
                                     latent_norm)
    num_frames, height, width = vae.video_shape(int(latent_t), int(latent_h), int(latent_w))
    settings = {
        "_class_name": "CogVideoXPipeline",
        "system": "CogVideoX",
        "text_encoder": condition.text_encoder,
        "text_max_length": condition.text_max_length,
        "latent_scaling_factor": cache.scaling_factor,
        **({} if condition.latent_norm == "scale" else {"latent_normalization": latent_norm.to_dict()}),
        "schedule": schedule.to_dict(),
        "default_steps": sample.steps,
        "default_guidance": sample.guidance,
        "num_frames": int(num_frames),
        "height": int(height),
        "width": int(width),
        "fps": cache.fps,
        "sampler": sample.sampler,
        "recipe": f"{recipe.name}.toml",  # the shipped or user recipe file it came from
        "tasks": ["text-to-video"],
        "description": (f"CogVideoX (3D causal KL VAE + expert transformer, v-prediction) trained on "
                        f"{recipe.data.name}: {int(num_frames)}x{int(height)}x{int(width)} clips at {cache.fps:g} fps "
                        f"from {condition.text_encoder}-encoded prompts"),
    }

    def pipeline_for(transformer: nn.Module) -> Any:
        from vidgen.pipelines.text_to_video import CogVideoXPipeline

        return CogVideoXPipeline(vae, transformer, condition.text_encoder, schedule, cache.scaling_factor,
                                 settings, device=context.device, bf16=False, name=recipe.name,
                                 latent_norm=latent_norm)

    def sample_fn(model: nn.Module, step: int, samples_dir: Path) -> None:
        pipe = pipeline_for(model)
        for i, prompt in enumerate(sample.prompts):
            result = pipe(prompt, seed=sample.seed + i, num_inference_steps=sample.steps,
                          guidance_scale=sample.guidance, num_frames=int(num_frames), height=int(height),
                          width=int(width), sampler=sample.sampler, progress=False)
            slug = "".join(c if c.isalnum() else "-" for c in prompt.lower())[:40].strip("-")
            _write_clip(samples_dir / f"step_{step:07d}_{i:02d}_{slug}.{sample.format}", result.tensor, cache.fps)

    def weak_transformer() -> tuple[nn.Module, str]:
        """(the weak model, where it came from): autoguidance.transformer, or the run's kept checkpoint of
        autoguidance.step with the weights the run exports."""
        from vidgen.generators.expert_transformer import CogVideoXTransformer
        from vidgen.modeling import resolve_component
        from vidgen.pipelines.text_to_video import check_weak_transformer
        from vidgen.training.checkpoint import checkpoint_dirs
        from vidgen.training.trainer import load_checkpoint_weights

        if autoguidance.transformer:
            weak = CogVideoXTransformer.from_pretrained(resolve_component(autoguidance.transformer,
                                                                          "CogVideoXTransformer"))
            check_weak_transformer(model, weak, f"autoguidance.transformer = {autoguidance.transformer!r}")
            return weak.eval(), f"the transformer of {autoguidance.transformer}"

        kept = dict(checkpoint_dirs(context.run_dir / "checkpoints"))
        if autoguidance.step not in kept:
            raise VidgenError(f"autoguidance.step = {autoguidance.step}: {context.run_dir / 'checkpoints'} has no "
                              f"checkpoint of that step (it has {sorted(kept)}); the run keeps it once it gets there")
        weak = build_model(recipe, in_channels=int(latent_channels), text_dim=int(cache.text_embeddings.shape[-1]))
        use_ema = load_checkpoint_weights(weak, kept[autoguidance.step], recipe.train)
        return weak.eval(), f"{'EMA' if use_ema else 'raw'} weights of step {autoguidance.step} of the same run"

    def export_fn(model: nn.Module, run_dir: Path) -> Path:
        export_model(model, run_dir / "final", recipe.train.export_torch_dtype)
        if not autoguidance.step and not autoguidance.transformer:
            return export_pipeline(run_dir / "pipeline", vae_folder, model, settings)
        weak, source = weak_transformer()
        with_weak = {**settings, "default_autoguidance": autoguidance.scale, "autoguidance": source}
        return export_pipeline(run_dir / "pipeline", vae_folder, model, with_weak, weak)

    return TrainingSetup(model=model, objective=objective, dataset=CachedLatents(cache), sample_fn=sample_fn,
                         export_fn=export_fn, keep_steps=(autoguidance.step,) if autoguidance.step else ())


def export_pipeline(folder: Path, vae_folder: Path, transformer: nn.Module, settings: dict[str, Any],
                    weak_transformer: nn.Module | None = None) -> Path:
    """Write a pipeline folder atomically: vae/ (the VAE with `scaling_factor` set to the measured one),
    transformer/ (bf16 storage), autoguidance_transformer/ when a weak model is given, and pipeline.json."""
    from vidgen.pipelines.text_to_video import AUTOGUIDANCE_FOLDER
    from vidgen.tokenizers.cogvideox_vae import CogVideoXVAE

    def write(tmp: Path) -> None:
        vae = CogVideoXVAE.from_pretrained(vae_folder)
        vae.config = dataclasses.replace(vae.config, scaling_factor=float(settings["latent_scaling_factor"]))
        vae.save_pretrained(tmp / "vae")
        transformer.save_pretrained(tmp / "transformer", dtype=torch.bfloat16)
        if weak_transformer is not None:
            weak_transformer.save_pretrained(tmp / AUTOGUIDANCE_FOLDER, dtype=torch.bfloat16)
        write_json(tmp / "pipeline.json", settings)

    return atomic_write_dir(folder, write)


register_kind(RecipeKind(
    name="cogvideox-transformer",
    description="CogVideoX expert transformer (v-prediction) on cached latents of a trained VAE, text-conditioned",
    sizes=_transformer_sizes,
    build=build_transformer,
    sections={"condition": ConditionOptions, "diffusion": DiffusionOptions, "sample": SampleOptions,
              "autoguidance": AutoguidanceOptions},
    resumable_changes=("sample.", "autoguidance.", "condition.vae"),
))
