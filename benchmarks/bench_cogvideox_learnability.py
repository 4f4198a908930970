"""Can the CogVideoX transformer learn square vs circle when that is nearly all there is to learn?

The bundled `cogvideox-shapes` never draws squares (they come out as round blobs judged circles). This
benchmark takes the question out of the full problem: a fresh transformer of the bundled size is trained
from scratch on single-object Shapes clips of a few colours (default: red) and two shapes (circle and
square), canonical captions, with the bundled VAE frozen (or another VAE folder). So the only things to
learn are where the object starts, where it goes (the word), and its shape (the word).

Every `--eval-every` steps it prints, as markdown:
- generation: squares and circles generated from their prompts (per colour two directions that both
  shapes have in the training split, 3 seeds each; the pipeline's default sampler, steps and guidance): the evaluator's fill ratio per video and how many
  it judges square (fill above 0.8927; a real square through the VAE is ~0.90, a circle ~0.80);
- denoising: the VAE's own reconstructions of real square clips (the ceiling), then the same clips
  encoded, noised to timestep t and predicted back in one step (x0 from the v prediction, their own
  caption): the fill of the decoded prediction, i.e. whether the denoiser keeps corners it is shown;
- word use: the mean loss on square clips with their own caption minus with the caption whose shape word
  is "circle" (same noise and t): how much lower the v-prediction MSE is for reading the shape word (0 = ignored).

    .venv/bin/python benchmarks/bench_cogvideox_learnability.py --steps 3000 --eval-every 1000
    .venv/bin/python benchmarks/bench_cogvideox_learnability.py --latent-norm whiten --steps 3000

Training runs at the recipe's settings (AdamW lr 5e-4, 100 warm-up steps, batch 16, caption dropout 0.1,
v-prediction on the pipeline's schedule, latents = posterior mean). The same command on the same machine
gives the same numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def two_shape_clips(colours: list[str], per_colour: int, seed: int = 0) -> list[dict]:
    """`per_colour` training-split single-object circle or square clips per colour, canonical captions."""
    from vidgen.data.shapes import ShapesDataset

    data = ShapesDataset("train", num_items=100 * per_colour * len(colours), size=64, num_frames=17,
                         max_objects=1, seed=seed, caption_mode="canonical")
    wanted = {colour: per_colour for colour in colours}
    items = []
    for index in range(len(data)):
        item = data[index]
        obj = item["labels"]["objects"][0]
        if obj["shape"] in ("circle", "square") and wanted.get(obj["colour"], 0) > 0:
            wanted[obj["colour"]] -= 1
            items.append(item)
        if not any(wanted.values()):
            break
    return items


def judge(videos) -> dict:
    """The Shapes evaluator on each video's largest object: {"fills": fill ratio per video (None = no
    object), "judged_square": how many it calls a square, "n"}."""
    from vidgen.evaluation.shapes_eval import detect_objects

    found = [detect_objects(video) for video in videos]
    return {"fills": [round(f[0].fill_ratio, 3) if f else None for f in found],
            "judged_square": sum(bool(f) and f[0].shape == "square" for f in found), "n": len(found)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", default="cogvideox-shapes", help="a VAE folder or a pipeline whose vae/ to use")
    parser.add_argument("--colours", nargs="+", default=["red"])
    parser.add_argument("--clips-per-colour", type=int, default=384)
    parser.add_argument("--latent-norm", default="scale", choices=["scale", "channel", "whiten"])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import vidgen
    from vidgen.data.shapes import HELDOUT_TRIPLES, MOTIONS
    from vidgen.diffusion import rand, randint, randn, v_prediction_loss
    from vidgen.diffusion.latent_norm import LatentNormalizer
    from vidgen.generators.expert_transformer import cogvideox_transformer_shapes
    from vidgen.modeling import resolve_component
    from vidgen.pipelines.text_to_video import CogVideoXPipeline
    from vidgen.text import load_text_encoder
    from vidgen.tokenizers.cogvideox_vae import CogVideoXVAE

    torch.manual_seed(0)
    bundle = vidgen.load_pipeline("cogvideox-shapes", device="cpu", bf16=False)
    vae = bundle.vae if args.vae == "cogvideox-shapes" else CogVideoXVAE.from_pretrained(
        resolve_component(args.vae, "CogVideoXVAE")).eval()
    schedule = bundle.schedule
    items = two_shape_clips(args.colours, args.clips_per_colour)
    captions = sorted({item["caption"] for item in items})
    text = load_text_encoder("minilm", max_length=32)
    prompts = [""] + captions + sorted({c.replace("square", "circle") for c in captions if "square" in c} - set(captions))
    embedded = text.encode(prompts, pad_to_max_length=True)
    caption_index = torch.tensor([prompts.index(item["caption"]) for item in items])
    with torch.no_grad():
        posteriors = [vae.encode_posterior(torch.stack([it["video"] for it in items[k:k + 32]]))
                      for k in range(0, len(items), 32)]
    mean = torch.cat([q.mode() for q in posteriors])
    std = torch.cat([q.std for q in posteriors])
    norm = LatentNormalizer.fit(mean, std, args.latent_norm, 0.01)  # fitted to these clips
    data = norm.normalize(mean)
    # prompts of training triples only (colour, direction) for both shapes: learning, not generalisation
    trained_pairs = [(c, d) for c in args.colours for d in MOTIONS
                     if (c, "circle", d) not in HELDOUT_TRIPLES and (c, "square", d) not in HELDOUT_TRIPLES][:2 * len(args.colours)]
    squares = [i for i, item in enumerate(items) if item["labels"]["objects"][0]["shape"] == "square"][:8]
    swapped = torch.tensor([prompts.index(items[i]["caption"].replace("square", "circle")) for i in squares])

    with torch.no_grad():  # the ceiling: the VAE's own reconstructions of the checked squares
        ceiling = judge(list(vae.decode(norm.denormalize(data[squares])).clamp(-1, 1)))
    model = cogvideox_transformer_shapes(mean.shape[1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    print(f"{len(items)} clips ({len(squares)} squares held for the checks), colours {args.colours}, "
          f"latent norm {args.latent_norm}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")

    def model_fn(z_t, t, text_embeddings, text_mask):
        return model(z_t, text_embeddings, t, text_mask=text_mask)

    @torch.no_grad()
    def evaluate(step: int) -> dict:
        model.eval()
        pipe = CogVideoXPipeline(vae, model, "minilm", schedule, bundle.latent_scaling_factor, bundle.settings,
                                 device="cpu", latent_norm=norm)
        result = {"step": step}
        for shape in ("square", "circle"):
            videos = [pipe(f"a {colour} {shape} moving {direction}", seed=seed, progress=False).frames
                      for colour, direction in trained_pairs for seed in (0, 1, 2)]
            result[shape] = judge(videos)
        x0 = data[squares]
        own = caption_index[squares]
        noise = randn(x0.shape, torch.Generator().manual_seed(1), x0.device)
        result["denoise"], result["word_gain"] = {}, {}
        for t in (20, 50, 100, 200, 400):
            steps = torch.full((len(squares),), t)
            losses = {}
            for name, index in (("own", own), ("swapped", swapped)):
                losses[name] = v_prediction_loss(model_fn, x0, {"text_embeddings": embedded.embeddings[index],
                                                                "text_mask": embedded.mask[index]},
                                                 schedule, t=steps, noise=noise)["loss"].item()
            result["word_gain"][t] = losses["swapped"] - losses["own"]
            z_t = schedule.add_noise(x0, noise, steps)
            v = model_fn(z_t, steps, embedded.embeddings[own], embedded.mask[own]).float()
            alpha, sigma = schedule.alphas_cumprod[t].sqrt().float(), (1 - schedule.alphas_cumprod[t]).sqrt().float()
            decoded = vae.decode(norm.denormalize(alpha * z_t - sigma * v)).clamp(-1, 1)
            result["denoise"][t] = judge(list(decoded))
        model.train()
        return result

    reports, started = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = randint(0, len(items), (args.batch_size,), generator)
        index = caption_index[batch]
        index = torch.where(rand((args.batch_size,), generator) < 0.1, torch.zeros_like(index), index)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, step / 100)
        loss = v_prediction_loss(model_fn, data[batch], {"text_embeddings": embedded.embeddings[index],
                                                         "text_mask": embedded.mask[index]},
                                 schedule, generator)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            report = evaluate(step)
            report["train_seconds"] = round(time.perf_counter() - started, 1)
            report["vae_only"] = ceiling
            reports.append(report)
            print(f"\nstep {step} (loss {loss.item():.4f}, {report['train_seconds']:.0f} s so far)\n")
            print("| prompts | judged square | fills |\n| --- | --- | --- |")
            for shape in ("square", "circle"):
                r = report[shape]
                print(f"| {shape} | {r['judged_square']}/{r['n']} | {' '.join(str(f) for f in r['fills'])} |")
            print("\n| t | denoised real squares judged square | fills | loss gain from the shape word |")
            print("| --- | --- | --- | --- |")
            print(f"| VAE only | {ceiling['judged_square']}/{ceiling['n']} | {' '.join(str(f) for f in ceiling['fills'])} | - |")
            for t, r in report["denoise"].items():
                print(f"| {t} | {r['judged_square']}/{r['n']} | {' '.join(str(f) for f in r['fills'])} | "
                      f"{report['word_gain'][t]:+.4f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "machine": platform.processor() or platform.machine(),
                       "threads": torch.get_num_threads(), "reports": reports}, handle, indent=1)


if __name__ == "__main__":
    main()
