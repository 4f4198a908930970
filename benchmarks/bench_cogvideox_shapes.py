"""Quality and speed of a CogVideoX text-to-video pipeline on Shapes (default: the bundled model).

    .venv/bin/python benchmarks/bench_cogvideox_shapes.py [--model cogvideox-shapes] [--threads 2]
        [--clips 32] [--repeats 5] [--eval-seeds 0 1] [--skip-eval] [--json out.json]

Measures, and prints as markdown:
1. VAE reconstruction PSNR / SSIM on held-out Shapes clips (17x64x64, the held-out attribute split).
2. Generation time of the default 17x64x64 video at the model's default step count (median of
   `--repeats` runs after one warm-up), whole pipeline: text encoding, sampling, VAE decode.
3. Attribute accuracy (`vidgen eval` protocol) on the held-out, paraphrase and two-object prompt sets.
4. With --robustness: how the VAE's decoder tolerates imprecise latents, the way a diffusion model's are:
   single-object held-out clips are encoded, Gaussian noise of std sigma (in the transformer's units,
   latents x scaling factor) is added, and the Shapes evaluator judges the shape of every decoded clip
   (per-shape accuracy and mean fill ratio; sigma 0 = plain reconstruction). `--robustness-vae FOLDER ...`
   measures other VAE folders too (e.g. the stages of the VAE recipes), each with the scaling factor of
   its own latents on these clips.

    .venv/bin/python benchmarks/bench_cogvideox_shapes.py --skip-eval --robustness \
        --robustness-vae runs/cogvideox-shapes-vae/final runs/cogvideox-shapes-vae-robust/final
5. With --shape-signal N: how big the square/circle difference is in the diffusion model's data, and
   whether the transformer uses the shape word. N pairs of clips identical but for the shape (square vs
   circle, triangle vs circle; same colour, size, position and motion) are encoded; printed: the RMS per
   element of each difference and of a colour change, in the pipeline's normalised units and under each
   normalisation fitted to 256 training clips; then, for the pipeline's transformer, the share of the true
   difference d that its x0 prediction moves when only the shape word changes (prediction with the
   square prompt minus with the circle prompt, projected on d, over |d|^2; 1 = all of it, 0 = ignored), at
   several timesteps, from the same noisy latent.

    .venv/bin/python benchmarks/bench_cogvideox_shapes.py --skip-eval --shape-signal 6
6. With --denoise-from T [T ...]: can the transformer keep a square it is given? Held-out square clips are
   encoded, noised to timestep T and denoised back to 0 by the pipeline's own sampler, guidance and the
   clip's caption (an SDEdit round trip; T = 0 is the plain VAE reconstruction); printed: the fill ratio
   of the decoded object (square 1.0, circle 0.785: the evaluator calls it a square above 0.8927) and the
   share the evaluator judges square.

    .venv/bin/python benchmarks/bench_cogvideox_shapes.py --skip-eval --denoise-from 0 50 200 400
7. With --decoder-capacity N: is it the VAE's encoder or its decoder that rounds a square's corners?
   N held-out square clips are encoded (posterior mean) and decoded; then the latents are optimised
   directly (Adam, `--decoder-capacity-steps` steps from the encoder's latents, the VAE's L1 + MSE
   pixel loss, the VAE frozen) and decoded again. Printed per clip: fill ratio and PSNR of both
   reconstructions and how far the latents moved. A fill near 1.0 from optimised latents means the
   decoder can draw the corners and the encoder does not find the latents that make it (the
   amortisation gap); a fill that stays near the encoder's means the decoder cannot.

    .venv/bin/python benchmarks/bench_cogvideox_shapes.py --skip-eval --decoder-capacity 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch


def vae_reconstruction(pipe, clips: int) -> dict:
    from vidgen.data import get_dataset
    from vidgen.evaluation.metrics import psnr, ssim

    dataset = get_dataset("shapes", split="heldout", num_items=clips, size=64, num_frames=17, max_objects=2, seed=123)
    psnrs, ssims = [], []
    with torch.inference_mode():
        for index in range(clips):
            video = dataset[index]["video"][None].to(pipe.device)
            recon = pipe.vae.decode(pipe.vae.encode(video)).clamp(-1, 1)
            psnrs.append(float(psnr(recon[0].cpu(), video[0].cpu())))
            ssims.append(float(ssim(recon[0].cpu(), video[0].cpu())))
    return {"clips": clips, "psnr": statistics.mean(psnrs), "ssim": statistics.mean(ssims)}


def vae_shape_robustness(vae, clips: int, sigmas=(0.0, 0.1, 0.2, 0.3), latent_norm=None) -> dict:
    """Shape accuracy and mean fill ratio per shape of decode(denormalize(normalize(z) + sigma * n)): noise
    of std sigma in the diffusion model's units (`latent_norm`, a `LatentNormalizer`; default: LDM's scale
    fitted to these clips), i.e. an x0 error of that size (item 4)."""
    from vidgen.data.shapes import SHAPES, ShapesDataset
    from vidgen.diffusion.latent_norm import LatentNormalizer
    from vidgen.evaluation.shapes_eval import detect_objects
    from vidgen.io import tensor_to_frames

    dataset = ShapesDataset(split="heldout", num_items=clips, size=64, num_frames=17, max_objects=1, seed=0)
    items = [dataset[i] for i in range(clips)]
    device = next(vae.parameters()).device
    with torch.inference_mode():
        latents = torch.cat([vae.encode(item["video"][None].to(device)) for item in items])
        latent_norm = latent_norm or LatentNormalizer.fit(latents.cpu(), None, "scale")
        generator = torch.Generator().manual_seed(0)
        results = {"clips": clips, "latent_norm": latent_norm.mode, "sigmas": {}}
        for sigma in sigmas:
            noise = torch.randn(latents.shape, generator=generator).to(device)
            per_shape: dict[str, list[tuple[bool, float]]] = {shape: [] for shape in SHAPES}
            noisy = latent_norm.denormalize(latent_norm.normalize(latents) + sigma * noise)
            for item, z in zip(items, noisy):
                video = vae.decode(z[None]).float().clamp(-1, 1)[0].cpu()
                found = detect_objects(tensor_to_frames(video))
                shape = item["labels"]["objects"][0]["shape"]
                per_shape[shape].append((bool(found) and found[0].shape == shape,
                                         found[0].fill_ratio if found else float("nan")))
            results["sigmas"][str(sigma)] = {
                shape: {"n": len(rows), "accuracy": statistics.mean(r[0] for r in rows),
                        "fill": statistics.mean(r[1] for r in rows)} for shape, rows in per_shape.items() if rows}
    return results


def shape_signal(pipe, pairs: int, timesteps=(200, 400, 600, 800)) -> dict:
    """Item 5: size of the shape differences in latent space and the transformer's use of the shape word."""
    import numpy as np

    from vidgen.data.shapes import COLOUR_NAMES, ShapeObject, ShapesDataset, render_objects
    from vidgen.diffusion.latent_norm import MODES, LatentNormalizer

    vae, device = pipe.vae, pipe.device
    rng = np.random.default_rng(0)

    def encode(shape: str, colour: str, centre: tuple[float, float], radius: float) -> torch.Tensor:
        """One object moving left, rendered and encoded: (1, C, T', H', W')."""
        frames, _, _ = render_objects([ShapeObject(colour, shape, "left", centre, (0.0, -1.0), radius, 0.35)], 64, 17)
        return vae.encode(torch.from_numpy(frames * 2 - 1)[None].to(device)).cpu()

    with torch.inference_mode():
        train = ShapesDataset("train", num_items=256, max_objects=1, seed=0)
        reference = torch.cat([vae.encode(torch.stack([train[i]["video"] for i in range(j, j + 16)]).to(device)).cpu()
                               for j in range(0, 256, 16)])
        norms = {"pipeline": pipe.latent_norm, **{m: LatentNormalizer.fit(reference, None, m) for m in MODES}}
        clips = []
        for k in range(pairs):
            colour, other = COLOUR_NAMES[k % 6], COLOUR_NAMES[(k + 2) % 6]
            centre, radius = tuple(rng.uniform(16, 48, 2)), rng.uniform(8.5, 10.5)
            clips.append({**{s: encode(s, colour, centre, radius) for s in ("square", "circle", "triangle")},
                          "colour": encode("square", other, centre, radius), "name": colour})

        def rms(a: torch.Tensor) -> float:
            return float(a.pow(2).mean().sqrt())

        geometry = {}
        for name, norm in norms.items():
            f = norm.normalize
            geometry[name] = {
                "square-circle": statistics.mean(rms(f(c["square"]) - f(c["circle"])) for c in clips),
                "triangle-circle": statistics.mean(rms(f(c["triangle"]) - f(c["circle"])) for c in clips),
                "colour": statistics.mean(rms(f(c["square"]) - f(c["colour"])) for c in clips)}
        use: dict[str, dict[str, float]] = {}
        generator = torch.Generator().manual_seed(0)
        for shape in ("square", "triangle"):
            shares: dict[int, list[float]] = {t: [] for t in timesteps}
            for c in clips:
                a, b = (pipe.latent_norm.normalize(c[s]).to(device) for s in (shape, "circle"))
                prompts = [pipe.text_encoder.encode([f"a {c['name']} {s} moving left"]) for s in (shape, "circle")]
                length = max(p.seq_len for p in prompts)
                prompts = [p.pad_to(length).to(device) for p in prompts]
                d = (a - b).flatten().float()
                for t in timesteps:
                    noise = torch.randn(a.shape, generator=generator).to(device)
                    for x0 in (a, b):
                        z_t = pipe.schedule.add_noise(x0, noise, t)
                        tt = torch.tensor([t], device=device)
                        x0_hat = [pipe.schedule.pred_x0_from_v(
                            z_t, pipe.transformer(z_t, p.embeddings, tt, text_mask=p.mask).float(), t) for p in prompts]
                        shares[t].append(float((x0_hat[0] - x0_hat[1]).flatten() @ d / (d @ d)))
            use[f"{shape}-circle"] = {str(t): statistics.mean(v) for t, v in shares.items()}
    return {"pairs": pairs, "pipeline_norm": pipe.latent_norm.mode, "geometry": geometry, "word_use": use}


def denoise_from(pipe, starts, clips: int = 6, steps: int = 50) -> dict:
    """Item 6: fill ratio of held-out squares after noising their latents to t and denoising back."""
    from vidgen.data.shapes import ShapesDataset
    from vidgen.diffusion.samplers import timesteps_for
    from vidgen.evaluation.shapes_eval import detect_objects
    from vidgen.io import tensor_to_frames
    from vidgen.pipelines.text_to_video import SAMPLERS

    dataset = ShapesDataset("heldout", num_items=64, max_objects=1, seed=3)
    squares = [item for item in (dataset[i] for i in range(64)) if item["labels"]["shape_id"] == 1][:clips]
    schedule, sampler = pipe.schedule, SAMPLERS[pipe.settings.get("sampler", "dpm++")]
    full = timesteps_for(schedule, steps, spacing="trailing")
    results = {"clips": len(squares), "steps": steps, "guidance": pipe.default_guidance, "starts": {}}
    with torch.inference_mode():
        for start in starts:
            fills, judged = [], []
            for k, item in enumerate(squares):
                x = pipe.latent_norm.normalize(pipe.vae.encode(item["video"][None].to(pipe.device)))
                if start > 0:
                    fn = pipe.guided_model(item["canonical_caption"], None, pipe.default_guidance)
                    timesteps = [t for t in full if t <= start]
                    generator = torch.Generator().manual_seed(k)
                    noise = torch.randn(x.shape, generator=generator).to(pipe.device)
                    x = sampler(fn, schedule.add_noise(x, noise, timesteps[0]), schedule, timesteps,
                                generator=generator, progress=False)
                video = pipe.vae.decode(pipe.latent_norm.denormalize(x)).float().clamp(-1, 1)[0].cpu()
                found = detect_objects(tensor_to_frames(video))
                fills.append(found[0].fill_ratio if found else float("nan"))
                judged.append(bool(found) and found[0].shape == "square")
            results["starts"][str(start)] = {"fills": fills, "mean_fill": statistics.mean(fills),
                                             "square": statistics.mean(judged)}
    return results


def decoder_capacity(vae, clips: int, steps: int = 120, lr: float = 0.05) -> dict:
    """Item 7: square fill ratio of decode(encode(x)) vs decode(z*), z* = latents optimised for x."""
    from vidgen.data.shapes import ShapesDataset
    from vidgen.evaluation.metrics import psnr
    from vidgen.evaluation.shapes_eval import detect_objects
    from vidgen.io import tensor_to_frames

    dataset = ShapesDataset("heldout", num_items=64, size=64, num_frames=17, max_objects=1, seed=0,
                            caption_mode="canonical")
    squares = [item for item in (dataset[i] for i in range(64)) if item["labels"]["shape_id"] == 1][:clips]
    device = next(vae.parameters()).device
    requires_grad = [p.requires_grad for p in vae.parameters()]
    for p in vae.parameters():
        p.requires_grad_(False)

    def judged(video: torch.Tensor) -> tuple[float, float]:
        found = detect_objects(tensor_to_frames(video[0].float().clamp(-1, 1).cpu()))
        return (found[0].fill_ratio if found else float("nan")), (bool(found) and found[0].shape == "square")

    rows = []
    try:
        for item in squares:
            x = item["video"][None].to(device)
            with torch.no_grad():
                z_encoder = vae.encode(x)
                encoded = vae.decode(z_encoder)
            z = z_encoder.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                recon = vae.decode(z)
                loss = (recon - x).abs().mean() + ((recon - x) ** 2).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                optimised = vae.decode(z)
            rows.append({
                "encoder": dict(zip(("fill", "square"), judged(encoded)), psnr=float(psnr(encoded.clamp(-1, 1)[0].cpu(), x[0].cpu()))),
                "optimised": dict(zip(("fill", "square"), judged(optimised)), psnr=float(psnr(optimised.clamp(-1, 1)[0].cpu(), x[0].cpu()))),
                "latent_change": float((z.detach() - z_encoder).norm() / z_encoder.norm()),
            })
    finally:
        for p, flag in zip(vae.parameters(), requires_grad):
            p.requires_grad_(flag)
    return {"clips": len(rows), "steps": steps, "lr": lr, "rows": rows}


def generation_time(pipe, repeats: int) -> dict:
    prompt = "a red circle moving left"
    pipe(prompt, seed=0, progress=False)  # warm-up
    times = []
    for seed in range(repeats):
        started = time.perf_counter()
        pipe(prompt, seed=seed, progress=False)
        times.append(time.perf_counter() - started)
    return {"steps": pipe.default_steps, "guidance": pipe.default_guidance,
            "autoguidance": getattr(pipe, "default_autoguidance", 0.0), "median_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times), "repeats": repeats, "bf16": pipe.bf16}


def print_table(header: list, rows: list[list]) -> None:
    """A markdown table: header row, separator, one row per list."""
    print("| " + " | ".join(str(h) for h in header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cogvideox-shapes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--robustness", action="store_true", help="item 4: shape of decode(z + sigma n)")
    parser.add_argument("--robustness-vae", nargs="*", default=[], help="more VAE folders for item 4")
    parser.add_argument("--robustness-clips", type=int, default=48)
    parser.add_argument("--shape-signal", type=int, default=0, metavar="N",
                        help="item 5: shape differences in latent space and the transformer's use of the word")
    parser.add_argument("--denoise-from", type=int, nargs="*", default=[], metavar="T",
                        help="item 6: noise held-out squares to timestep T and denoise them back")
    parser.add_argument("--decoder-capacity", type=int, default=0, metavar="N",
                        help="item 7: square fill from the encoder's latents vs from latents optimised for the clip")
    parser.add_argument("--decoder-capacity-steps", type=int, default=120, metavar="K")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from vidgen.evaluation.text_to_video import evaluate_pipeline
    from vidgen.pipelines import load_pipeline

    bf16 = {"auto": None, "on": True, "off": False}[args.bf16]
    pipe = load_pipeline(args.model, bf16=bf16)
    results = {"model": args.model, "machine": f"{platform.processor() or platform.machine()}, "
               f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"}
    results["vae"] = vae_reconstruction(pipe, args.clips)
    results["generation"] = generation_time(pipe, args.repeats)
    if args.robustness or args.robustness_vae:
        from vidgen.tokenizers.cogvideox_vae import CogVideoXVAE

        results["robustness"] = {}
        if args.robustness:
            results["robustness"][args.model] = vae_shape_robustness(pipe.vae, args.robustness_clips,
                                                                      latent_norm=pipe.latent_norm)
        for folder in args.robustness_vae:
            vae = CogVideoXVAE.from_pretrained(folder).to(pipe.device).eval()
            results["robustness"][folder] = vae_shape_robustness(vae, args.robustness_clips)
    if args.shape_signal:
        results["shape_signal"] = shape_signal(pipe, args.shape_signal)
    if args.denoise_from:
        results["denoise_from"] = denoise_from(pipe, args.denoise_from)
    if args.decoder_capacity:
        results["decoder_capacity"] = decoder_capacity(pipe.vae, args.decoder_capacity, args.decoder_capacity_steps)
    if not args.skip_eval:
        reports = evaluate_pipeline(pipe, seeds=args.eval_seeds)
        results["eval"] = {name: {k: r[k] for k in ("colour", "shape", "direction", "all", "n")}
                           for name, r in reports.items()}

    print(f"\n## {args.model} ({results['machine']})\n")
    v, g = results["vae"], results["generation"]
    print_table(["measure", "value"], [
        [f"VAE reconstruction PSNR, {v['clips']} held-out clips 17x64x64", f"{v['psnr']:.2f} dB"],
        ["VAE reconstruction SSIM", f"{v['ssim']:.4f}"],
        [f"generation time 17x64x64, {g['steps']} steps, CFG {g['guidance']}"
         + (f" + autoguidance {g['autoguidance']}" if g.get("autoguidance") else "") + f" (median of {g['repeats']})",
         f"{g['median_s']:.2f} s (min {g['min_s']:.2f}, max {g['max_s']:.2f}; bf16 {g['bf16']})"]])
    for name, r in results.get("robustness", {}).items():
        print(f"\nVAE {name}: shape of decode(z + sigma n), {r['clips']} single-object held-out clips, "
              f"noise in {r['latent_norm']}-normalised units\n")
        shapes = list(next(iter(r["sigmas"].values())))
        print_table(["sigma", *(f"{s} accuracy (fill)" for s in shapes)],
                    [[sigma, *(f"{row[s]['accuracy']:.0%} ({row[s]['fill']:.3f})" for s in shapes)]
                     for sigma, row in r["sigmas"].items()])
    if "shape_signal" in results:
        r = results["shape_signal"]
        print(f"\nShape signal ({r['pairs']} clip pairs): RMS per element of the difference, by latent normalisation "
              f"(pipeline = {r['pipeline_norm']})\n")
        print_table(["normalisation", "square - circle", "triangle - circle", "colour change"],
                    [[name, *(f"{row[k]:.3f}" for k in ("square-circle", "triangle-circle", "colour"))]
                     for name, row in r["geometry"].items()])
        steps = list(next(iter(r["word_use"].values())))
        print("\nShare of the true difference the x0 prediction moves when only the shape word changes\n")
        print_table(["pair", *(f"t = {t}" for t in steps)],
                    [[pair, *(f"{row[t]:.3f}" for t in steps)] for pair, row in r["word_use"].items()])
    if "denoise_from" in results:
        r = results["denoise_from"]
        print(f"\nHeld-out squares noised to t and denoised back ({r['clips']} clips, {r['steps']}-step schedule, "
              f"guidance {r['guidance']:g})\n")
        print_table(["start t", "mean fill", "judged square", "fills"],
                    [[start, f"{row['mean_fill']:.3f}", f"{row['square']:.0%}", " ".join(f"{f:.2f}" for f in row["fills"])]
                     for start, row in r["starts"].items()])
    if "decoder_capacity" in results:
        r = results["decoder_capacity"]
        print(f"\nHeld-out squares: decoded from the encoder's latents vs from latents optimised for the clip "
              f"({r['steps']} Adam steps, lr {r['lr']:g}; the evaluator calls a fill above 0.8927 a square)\n")
        print_table(["clip", "encoder: fill, PSNR", "optimised latents: fill, PSNR", "latent change |dz| / |z|"],
                    [[k, f"{row['encoder']['fill']:.3f}, {row['encoder']['psnr']:.2f} dB",
                      f"{row['optimised']['fill']:.3f}, {row['optimised']['psnr']:.2f} dB", f"{row['latent_change']:.3f}"]
                     for k, row in enumerate(r["rows"])])
    if "eval" in results:
        print()
        print_table(["prompt set", "videos", "colour", "shape", "direction", "all three"],
                    [[name, r["n"], *(f"{r[k]:.1%}" for k in ("colour", "shape", "direction", "all"))]
                     for name, r in results["eval"].items()])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
