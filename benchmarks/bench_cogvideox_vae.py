"""CogVideoX VAE decoding: vidgen's `CogVideoXVAE` vs diffusers' `AutoencoderKLCogVideoX`.

Both decode the same latents with the same weights: a diffusers model with random weights (seed 0) is
saved, and ours is loaded from that folder with `CogVideoXVAE.from_pretrained` (norm_scope "chunk" and
diffusers' frame batching, so the outputs agree; the max abs difference is printed). Both run in
fp32, under `torch.inference_mode()`, on `--threads` threads (default 1: the machine this was written
on has 2 shared cores, and multi-threaded timings there mostly measure the other processes).

Method, per measurement (a fresh subprocess each, ours and diffusers interleaved, `--repeats` rounds):
    peak memory  the process's peak RSS (VmHWM) during the *first* decode minus its RSS just before
                 (the kernel's peak counter is reset through /proc/self/clear_refs first, so model
                 loading does not count); falls back to ru_maxrss when that is not available.
    time         CPU time (time.process_time) and wall time of `--timed` further decodes; the median
                 over rounds is reported. CPU time is what the ratio uses: with one thread it is the
                 work done, and it does not grow when other processes steal the core (wall time does).

Configs: "tiny" (block_out_channels 8,16,16,16; 4 latent channels) and "mid" (64,128,128,256;
layers_per_block 2; 16 latent channels), latents (1, C, 5, h, w) -> 17 frames. A third row per config,
"vidgen (frame, 1 latent/chunk)", runs the same weights with per-frame norm statistics and one latent
frame per chunk: the memory-bounded setting of vidgen-trained models; its outputs are not comparable
with diffusers' (different normalisation) and it is not in the ratios.

    .venv/bin/python benchmarks/bench_cogvideox_vae.py
    .venv/bin/python benchmarks/bench_cogvideox_vae.py --configs tiny --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "tiny": {"diffusers": {"block_out_channels": (8, 16, 16, 16), "latent_channels": 4, "norm_num_groups": 4,
                           "layers_per_block": 1},
             "latents": (1, 4, 5, 16, 16)},
    "mid": {"diffusers": {"block_out_channels": (64, 128, 128, 256), "latent_channels": 16, "norm_num_groups": 32,
                          "layers_per_block": 2},
            "latents": (1, 16, 5, 12, 12)},
}
IMPLEMENTATIONS = ("diffusers", "vidgen", "vidgen-frame-c1")
LABELS = {"diffusers": "diffusers", "vidgen": "vidgen", "vidgen-frame-c1": "vidgen (frame, 1 latent/chunk)"}


# ----------------------------------------------------------------------------- worker (one subprocess)


def _status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def worker(impl: str, folder: str, latents_shape: tuple[int, ...], threads: int, timed: int) -> dict:
    import gc

    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    latents = torch.randn(latents_shape)
    if impl == "diffusers":
        from diffusers import AutoencoderKLCogVideoX

        model = AutoencoderKLCogVideoX.from_pretrained(folder).eval()

        def decode():
            return model.decode(latents).sample
    else:
        import dataclasses

        from vidgen.tokenizers.cogvideox_vae import CogVideoXVAE

        model = CogVideoXVAE.from_pretrained(folder)
        options = {}
        if impl == "vidgen-frame-c1":
            state = model.state_dict()
            model = CogVideoXVAE(dataclasses.replace(model.config, norm_scope="frame")).eval()
            model.load_state_dict(state)
            options = {"chunk_latents": 1}

        def decode():
            return model.decode(latents, **options)

    with torch.inference_mode():
        gc.collect()
        rss_before = _status_kb("VmRSS")
        exact = _reset_peak() and rss_before is not None
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = decode()
        if exact:
            peak_kb = _status_kb("VmHWM") - rss_before
        else:  # ru_maxrss is a lifetime peak: only meaningful if loading stayed below the decode's peak
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before
        del out
        cpu, wall = [], []
        for _ in range(timed):
            c0, w0 = time.process_time(), time.perf_counter()
            decode()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
    return {"peak_mb": peak_kb / 1024, "peak_exact": exact, "cpu_s": min(cpu), "wall_s": min(wall)}


# ----------------------------------------------------------------------------- driver


def _prepare(name: str, root: Path) -> tuple[str, float, tuple[int, ...]]:
    """Save the diffusers model; return its folder, the max abs diff of the two decodes, the output shape."""
    import torch
    from diffusers import AutoencoderKLCogVideoX

    from vidgen.tokenizers.cogvideox_vae import CogVideoXVAE

    spec = CONFIGS[name]
    torch.manual_seed(0)
    theirs = AutoencoderKLCogVideoX(**spec["diffusers"]).eval()
    folder = root / name
    theirs.save_pretrained(folder)
    ours = CogVideoXVAE.from_pretrained(folder)
    torch.manual_seed(0)
    latents = torch.randn(spec["latents"])
    with torch.inference_mode():
        a = theirs.decode(latents).sample
        b = ours.decode(latents)
    return str(folder), float((a - b).abs().max()), tuple(a.shape)


def _run_worker(impl: str, folder: str, shape: tuple[int, ...], threads: int, timed: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, folder, json.dumps(shape), str(threads), str(timed)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"worker {impl} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,mid", help="comma-separated: tiny, mid")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (diffusers, vidgen) subprocesses")
    parser.add_argument("--timed", type=int, default=2, help="timed decodes per subprocess (min taken)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-frame-row", action="store_true", help="skip the frame-scope vidgen row")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    implementations = [i for i in IMPLEMENTATIONS if not (args.no_frame_row and i == "vidgen-frame-c1")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            folder, max_diff, out_shape = _prepare(name, Path(tmp))
            runs = {impl: [] for impl in implementations}
            for _ in range(args.repeats):
                for impl in implementations:
                    runs[impl].append(_run_worker(impl, folder, CONFIGS[name]["latents"], args.threads, args.timed))
                    print(f"  {name} {impl}: {runs[impl][-1]}", file=sys.stderr, flush=True)
            summary = {impl: {key: statistics.median(r[key] for r in rs) for key in ("cpu_s", "wall_s", "peak_mb")}
                       for impl, rs in runs.items()}
            results.append({"config": name, "latents": CONFIGS[name]["latents"], "video": out_shape,
                            "max_abs_diff": max_diff, "peak_exact": all(r["peak_exact"] for rs in runs.values() for r in rs),
                            "runs": runs, "median": summary})

    print(f"\nCogVideoX VAE decode, fp32, {args.threads} thread(s), median of {args.repeats} fresh processes\n")
    print("| config | latents -> video | implementation | CPU time (s) | wall (s) | peak RSS increase (MB) "
          "| time ratio | memory ratio | max abs diff vs diffusers |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        base = r["median"]["diffusers"]
        for impl in implementations:
            m = r["median"][impl]
            comparable = impl != "vidgen-frame-c1"
            ratio_t = f"{m['cpu_s'] / base['cpu_s']:.2f}" if impl != "diffusers" and comparable else "-"
            ratio_m = f"{m['peak_mb'] / base['peak_mb']:.2f}" if impl != "diffusers" and comparable else "-"
            diff = f"{r['max_abs_diff']:.1e}" if impl == "vidgen" else ("n/a" if not comparable else "-")
            shapes = f"{'x'.join(map(str, r['latents'][2:]))} -> {'x'.join(map(str, r['video'][2:]))}"
            print(f"| {r['config']} | {shapes} | {LABELS[impl]} | {m['cpu_s']:.2f} | {m['wall_s']:.2f} "
                  f"| {m['peak_mb']:.0f} | {ratio_t} | {ratio_m} | {diff} |")
    if not all(r["peak_exact"] for r in results):
        print("\n(peak memory from ru_maxrss: /proc/self/clear_refs was not writable)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        impl, folder, shape, threads, timed = sys.argv[2:7]
        print(json.dumps(worker(impl, folder, tuple(json.loads(shape)), int(threads), int(timed))))
    else:
        main()
