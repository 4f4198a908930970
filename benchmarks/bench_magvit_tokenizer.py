"""MAGVIT tokenizer quality: reconstruction PSNR / SSIM and codebook usage on held-out clips.

Encodes N held-out 16x64x64 clips of each source to tokens (4x8x8 = 256 per clip for the shipped
tokenizer), decodes the tokens and compares with the originals, separately for

    Shapes  single objects of the 16 held-out (colour, shape, motion) triples (never trained on)
    Digits  the Digits test split (handwriting never trained on)

Metrics: PSNR (dB) and SSIM, per frame then averaged (`vidgen.evaluation.metrics`); codebook usage =
fraction of the codebook that occurs among all N * 256 tokens of a source; perplexity = exp of the
entropy of their code histogram (the effective number of codes used); flat cells = token cells whose
pixels are one plain colour (the black background: ~80% of a Shapes clip's cells), and the perplexity of
their codes (near 1 is what a generator wants: a plain background should not be a lottery of codes).

Then the tokenizer's ceiling on the MAGVIT task benchmark (`bench_magvit_tasks.py`): the same held-out
task clips (10 Shapes + 6 Digits by default), tokenized and decoded, scored on each pixel task's generated
region next to the task's baseline. A transformer that predicts every token right scores exactly this, so a
task whose ceiling is below its baseline cannot beat the baseline with this tokenizer.

    python benchmarks/bench_magvit_tokenizer.py                                   # runs/magvit-shapes-vq/final
    python benchmarks/bench_magvit_tokenizer.py --model magvit-shapes --clips 64 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from vidgen.data import get_dataset
from vidgen.modeling import resolve_model_path
from vidgen.tokenizers.magvit_vq import MagvitVQ
from vidgen.training.magvit_tokenizer import evaluate_tokenizer


def _pipeline_tokenizer(path) -> str:
    """A pipeline folder keeps its tokenizer in tokenizer/; a tokenizer folder is used as it is."""
    return str(path / "tokenizer") if (path / "tokenizer" / "config.json").is_file() else str(path)


def heldout_clips(source: str, count: int, seed: int) -> torch.Tensor:
    """(count, 3, 16, 64, 64) held-out clips of one source of the "shapes+digits" data."""
    fraction = 1.0 if source == "digits" else 0.0
    dataset = get_dataset("shapes+digits", split="heldout", num_items=count, size=64, num_frames=16,
                          digits_fraction=fraction, seed=seed)
    return torch.stack([dataset[i]["video"] for i in range(count)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/magvit-shapes-vq/final",
                        help="tokenizer folder, pipeline folder or bundled model name")
    parser.add_argument("--clips", type=int, default=64, help="held-out clips per source")
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: leave the other core alone)")
    parser.add_argument("--task-clips", type=int, nargs=2, default=[10, 6], metavar=("SHAPES", "DIGITS"),
                        help="clips of the task-region ceiling (default 10 6, as bench_magvit_tasks; 0 0 = skip)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = MagvitVQ.from_pretrained(_pipeline_tokenizer(resolve_model_path(args.model))).eval()
    results = {"model": args.model, "clips_per_source": args.clips, "seed": args.seed, "threads": args.threads,
               "parameters": sum(p.numel() for p in model.parameters()),
               "codebook_size": model.config.codebook_size,
               "tokens_per_clip": int(torch.tensor(model.latent_shape(16, 64, 64)).prod()),
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                          f"torch {torch.__version__}", "sources": {}}
    for source in ("shapes", "digits"):
        videos = heldout_clips(source, args.clips, args.seed)
        start = time.perf_counter()
        metrics, _ = evaluate_tokenizer(model, videos, args.batch_size)
        elapsed = time.perf_counter() - start
        results["sources"][source] = {**{k: round(v, 4) for k, v in metrics.items()},
                                      "codes_used": round(metrics["codebook_usage"] * model.config.codebook_size),
                                      "seconds_per_clip": round(elapsed / args.clips, 3)}

    print(f"tokenizer {args.model}: {results['parameters'] / 1e6:.2f} M parameters, "
          f"{results['tokens_per_clip']} tokens per 16x64x64 clip, {results['codebook_size']} codes")
    print(f"{args.clips} held-out clips per source, {args.threads} thread(s)\n")
    print("| source | PSNR (dB) | SSIM | codebook usage | perplexity | flat cells | their perplexity "
          "| encode+decode s/clip |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for source, m in results["sources"].items():
        print(f"| {source} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['codebook_usage']:.3f} ({m['codes_used']} codes) "
              f"| {m['perplexity']:.1f} | {m['flat_cell_fraction']:.2f} | {m['flat_cell_perplexity']:.1f} "
              f"| {m['seconds_per_clip']:.3f} |")
    if sum(args.task_clips):
        from vidgen.evaluation import magvit_tasks as mt

        clips = mt.heldout_clips(*args.task_clips, num_frames=16, size=64, seed=args.seed)

        @torch.no_grad()
        def reconstruct(video: torch.Tensor) -> torch.Tensor:
            return model.decode_indices(model.encode(video[None]))[0].clamp(-1, 1)

        ceiling = mt.tokenizer_ceiling(reconstruct, clips)
        results["task_ceiling"] = {"clips": list(args.task_clips), "tasks": ceiling}
        print(f"\nceiling on the MAGVIT tasks ({args.task_clips[0]} Shapes + {args.task_clips[1]} Digits clips, "
              "generated region only)\n")
        print("| task | PSNR tokenizer | PSNR baseline | SSIM tokenizer | SSIM baseline |")
        print("| --- | --- | --- | --- | --- |")
        for task, r in ceiling.items():
            print(f"| {task} | {r['tokenizer']['psnr']:.2f} | {r['baseline']['psnr']:.2f} | "
                  f"{r['tokenizer']['ssim']:.4f} | {r['baseline']['ssim']:.4f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
