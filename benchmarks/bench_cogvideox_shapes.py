"""Quality and speed of a CogVideoX text-to-video pipeline on Shapes (default: the bundled model).

    .venv/bin/python benchmarks/bench_cogvideox_shapes.py [--model cogvideox-shapes] [--threads 2]
        [--clips 32] [--repeats 5] [--eval-seeds 0 1] [--skip-eval] [--json out.json]

Measures, and prints as markdown:
1. VAE reconstruction PSNR / SSIM on held-out Shapes clips (17x64x64, the held-out attribute split).
2. Generation time of the default 17x64x64 video at the model's default step count (median of
   `--repeats` runs after one warm-up), whole pipeline: text encoding, sampling, VAE decode.
3. Attribute accuracy (`vidgen eval` protocol) on the held-out, paraphrase and two-object prompt sets.
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


def generation_time(pipe, repeats: int) -> dict:
    prompt = "a red circle moving left"
    pipe(prompt, seed=0, progress=False)  # warm-up
    times = []
    for seed in range(repeats):
        started = time.perf_counter()
        pipe(prompt, seed=seed, progress=False)
        times.append(time.perf_counter() - started)
    return {"steps": pipe.default_steps, "guidance": pipe.default_guidance, "median_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times), "repeats": repeats, "bf16": pipe.bf16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cogvideox-shapes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
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
    if not args.skip_eval:
        reports = evaluate_pipeline(pipe, seeds=args.eval_seeds)
        results["eval"] = {name: {k: r[k] for k in ("colour", "shape", "direction", "all", "n")}
                           for name, r in reports.items()}

    print(f"\n## {args.model} ({results['machine']})\n")
    v, g = results["vae"], results["generation"]
    print("| measure | value |\n| --- | --- |")
    print(f"| VAE reconstruction PSNR, {v['clips']} held-out clips 17x64x64 | {v['psnr']:.2f} dB |")
    print(f"| VAE reconstruction SSIM | {v['ssim']:.4f} |")
    print(f"| generation time 17x64x64, {g['steps']} steps, CFG {g['guidance']} (median of {g['repeats']}) "
          f"| {g['median_s']:.2f} s (min {g['min_s']:.2f}, max {g['max_s']:.2f}; bf16 {g['bf16']}) |")
    if "eval" in results:
        print("\n| prompt set | videos | colour | shape | direction | all three |\n| --- | --- | --- | --- | --- | --- |")
        for name, r in results["eval"].items():
            print(f"| {name} | {r['n']} | {r['colour']:.1%} | {r['shape']:.1%} | {r['direction']:.1%} | {r['all']:.1%} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
