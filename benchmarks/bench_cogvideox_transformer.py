"""Benchmark: vidgen's CogVideoXTransformer vs diffusers' CogVideoXTransformer3DModel, same weights and input.

Forward time is the median of `--repeats` timed calls after warm-up, under `torch.inference_mode`,
with the two models alternating so that load from other processes hits both alike; the CPU-time
columns (process CPU seconds per call) are the steadier measure on a shared machine, especially
with `--threads 1` (with more threads they include OpenMP workers' spin-waiting). Peak memory is
the largest live tensor memory during one forward: `torch.cuda.max_memory_allocated` on CUDA; on CPU
the running sum of the profiler's allocations and frees in time order (op granularity: scratch
memory allocated and freed inside one op is not seen). diffusers gets its RoPE precomputed, as its
pipeline passes it; ours computes (and caches) its own.

    .venv/bin/python benchmarks/bench_cogvideox_transformer.py [--repeats 20] [--sizes tiny shapes mid]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import types
from pathlib import Path

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline
from torch.profiler import ProfilerActivity, profile

from vidgen.generators.expert_transformer import CogVideoXTransformer


def diffusers_config(heads: int, head_dim: int, channels: int, text_dim: int, layers: int, time_dim: int,
                     latent: tuple[int, int, int], text_len: int, rope: bool = True) -> dict:
    """A diffusers CogVideoXTransformer3DModel config whose sample size is the benchmarked latent size."""
    t, h, w = latent
    return {"num_attention_heads": heads, "attention_head_dim": head_dim, "in_channels": channels,
            "out_channels": channels, "text_embed_dim": text_dim, "num_layers": layers, "time_embed_dim": time_dim,
            "sample_frames": (t - 1) * 4 + 1, "sample_height": h, "sample_width": w,
            "max_text_seq_length": text_len, "use_rotary_positional_embeddings": rope}


# name: (diffusers config, batch, latent (T, H, W), text length)
SIZES = {
    "tiny": (diffusers_config(2, 16, 4, 32, 2, 32, (3, 8, 8), 7), 2, (3, 8, 8), 7),
    # the bundled model's size at generation (CFG batch 2)
    "shapes": (diffusers_config(3, 64, 16, 384, 6, 192, (5, 8, 8), 24), 2, (5, 8, 8), 24),
    "mid": (diffusers_config(4, 64, 16, 384, 6, 256, (5, 16, 16), 24), 2, (5, 16, 16), 24),
    "mid-sincos": (diffusers_config(4, 64, 16, 384, 6, 256, (5, 16, 16), 24, rope=False), 2, (5, 16, 16), 24),
}


def peak_memory(fn) -> int:
    """Peak live tensor bytes while `fn()` runs (see module docstring)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def bench(name: str, repeats: int, device: torch.device) -> dict:
    config, batch, (t, h, w), text_len = SIZES[name]
    torch.manual_seed(0)
    theirs = CogVideoXTransformer3DModel(**config).eval()
    with torch.no_grad():  # random weights everywhere (some diffusers layers start at zero)
        for p in theirs.parameters():
            p.add_(0.02 * torch.randn_like(p))
    with tempfile.TemporaryDirectory() as tmp:
        theirs.save_pretrained(tmp)
        ours = CogVideoXTransformer.from_pretrained(Path(tmp))
    theirs, ours = theirs.to(device), ours.to(device)

    latents = torch.randn(batch, config["in_channels"], t, h, w, device=device)  # (B, C, T, H, W)
    text = torch.randn(batch, text_len, config["text_embed_dim"], device=device)
    steps = torch.tensor([999.0, 500.0][:batch] + [10.0] * max(0, batch - 2), device=device)
    rope = None
    if config["use_rotary_positional_embeddings"]:
        stand_in = types.SimpleNamespace(vae_scale_factor_spatial=8, transformer=theirs)
        rope = CogVideoXPipeline._prepare_rotary_positional_embeddings(stand_in, h * 8, w * 8, t, device)
    latents_tchw = latents.transpose(1, 2).contiguous()  # diffusers' (B, T, C, H, W)

    def run_ours():
        return ours(latents, text, steps)

    def run_theirs():
        return theirs(latents_tchw, text, steps, image_rotary_emb=rope, return_dict=False)[0]

    def timed(fn) -> tuple[float, float]:
        """(wall seconds, CPU seconds of this process) for one call."""
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - wall, time.process_time() - cpu

    with torch.inference_mode():
        max_diff = (run_ours() - run_theirs().transpose(1, 2)).abs().max().item()
        for _ in range(3):
            run_ours(), run_theirs()
        ours_times, theirs_times = [], []
        for _ in range(repeats):
            ours_times.append(timed(run_ours))
            theirs_times.append(timed(run_theirs))
        ours_mem, theirs_mem = peak_memory(run_ours), peak_memory(run_theirs)
    ours_ms, theirs_ms = (1e3 * statistics.median(w for w, _ in times) for times in (ours_times, theirs_times))
    ours_cpu, theirs_cpu = (1e3 * statistics.median(c for _, c in times) for times in (ours_times, theirs_times))
    grid = ours.token_grid(t, h, w)
    return {"size": name, "params": ours.num_parameters(), "tokens": text_len + grid[0] * grid[1] * grid[2],
            "batch": batch, "ours_ms": ours_ms, "theirs_ms": theirs_ms, "time_ratio": ours_ms / theirs_ms,
            "ours_cpu": ours_cpu, "theirs_cpu": theirs_cpu, "cpu_ratio": ours_cpu / theirs_cpu,
            "ours_mb": ours_mem / 2**20, "theirs_mb": theirs_mem / 2**20,
            "mem_ratio": ours_mem / max(theirs_mem, 1), "max_diff": max_diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [bench(name, args.repeats, device) for name in args.sizes]
    print(f"device={device}, torch {torch.__version__}, threads={torch.get_num_threads()}, fp32, "
          f"median of {args.repeats}\n")
    print("| size | params | tokens | batch | ours ms | diffusers ms | time ratio | ours CPU ms | diffusers CPU ms "
          "| CPU ratio | ours MiB | diffusers MiB | memory ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['params'] / 1e6:.2f}M | {r['tokens']} | {r['batch']} | {r['ours_ms']:.2f} | "
              f"{r['theirs_ms']:.2f} | {r['time_ratio']:.2f} | {r['ours_cpu']:.2f} | {r['theirs_cpu']:.2f} | "
              f"{r['cpu_ratio']:.2f} | {r['ours_mb']:.1f} | {r['theirs_mb']:.1f} | {r['mem_ratio']:.2f} | "
              f"{r['max_diff']:.1e} |")


if __name__ == "__main__":
    main()
