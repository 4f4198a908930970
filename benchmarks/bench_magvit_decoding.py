"""MAGVIT decoding speed: 12-step non-autoregressive (COMMIT / MaskGIT) vs one-token-at-a-time decoding.

Both decoders run the same network (the bundled `magvit_transformer_shapes()` size, random weights:
speed does not depend on the weights) on the same 4x8x8 = 256-token grid. The autoregressive baseline
needs one forward pass per token (256) where non-autoregressive decoding needs 12, so the expected
ratio is about 256 / 12 = 21x here; MAGVIT reports ~60x against an autoregressive transformer on its
larger 4x16x16 grids. By default the baseline decodes all 256 tokens; `--ar-tokens N` times only the
first N tokens and extrapolates linearly (every pass costs the same: the masked model has no KV cache),
and the output says so.

Also measures one training step (forward + backward, batch 16) of the same model under bf16 autocast
and in fp32, the number the CPU training recipe depends on.

    python benchmarks/bench_magvit_decoding.py                 # full comparison + training step
    python benchmarks/bench_magvit_decoding.py --ar-tokens 64  # faster, extrapolated baseline
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from vidgen.generators.decoding import decode_autoregressive, decode_nonautoregressive
from vidgen.generators.masked_transformer import MaskedTokenTransformer, magvit_transformer_shapes


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_decoding(model: MaskedTokenTransformer, steps: int, ar_tokens: int | None, batch_size: int,
                   autocast: bool) -> dict:
    n = model.config.num_visual_tokens
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    with context:
        # Warm-up: the first pass allocates and picks kernels.
        decode_nonautoregressive(model, task="CG", batch_size=batch_size, num_steps=2,
                                 generator=torch.Generator().manual_seed(0))
        _, t_nar = _timed(lambda: decode_nonautoregressive(model, task="CG", batch_size=batch_size,
                                                           num_steps=steps,
                                                           generator=torch.Generator().manual_seed(0)))
        limit = n if ar_tokens is None else min(ar_tokens, n)
        _, t_ar_measured = _timed(lambda: decode_autoregressive(model, task="CG", batch_size=batch_size,
                                                                max_tokens=limit,
                                                                generator=torch.Generator().manual_seed(0)))
    t_ar = t_ar_measured * n / limit
    return {"tokens": n, "batch_size": batch_size, "bf16_autocast": autocast, "nar_steps": steps,
            "nar_seconds": round(t_nar, 3), "nar_forward_passes": steps,
            "ar_forward_passes": n, "ar_tokens_timed": limit, "ar_seconds_measured": round(t_ar_measured, 3),
            "ar_seconds": round(t_ar, 3), "ar_extrapolated": limit < n, "ratio": round(t_ar / t_nar, 1)}


def bench_training_step(model: MaskedTokenTransformer, batch_size: int, autocast: bool, repeats: int) -> dict:
    model.train()
    c = model.config
    tokens = torch.randint(0, c.codebook_size, (batch_size, *c.grid))
    inputs = torch.where(torch.rand(tokens.shape) < 0.5, model.mask_token_id, tokens)
    text = torch.randn(batch_size, 16, c.text_dim) if c.text_dim else None
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(inputs, task=1, text=text)
            loss = F.cross_entropy(logits.float().flatten(0, -2), tokens.flatten())
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i:  # the first step is a warm-up
            times.append(time.perf_counter() - start)
    model.eval()
    return {"batch_size": batch_size, "bf16_autocast": autocast, "text_tokens": 16 if text is not None else 0,
            "seconds_per_step": round(sum(times) / len(times), 3), "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="non-autoregressive decoding steps (default 12)")
    parser.add_argument("--ar-tokens", type=int, default=None,
                        help="time only this many autoregressive tokens and extrapolate linearly (default: all)")
    parser.add_argument("--batch-size", type=int, default=1, help="clips decoded at once (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared, oversubscribed machine two OpenMP threads "
                             "made every op several times slower in our runs; try 2 on an idle machine)")
    parser.add_argument("--bf16", action="store_true", help="decode under bf16 autocast")
    parser.add_argument("--skip-train", action="store_true", help="skip the training-step measurement")
    parser.add_argument("--train-repeats", type=int, default=3, help="timed training steps per precision")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MaskedTokenTransformer(magvit_transformer_shapes()).eval()
    print(f"model: magvit_transformer_shapes, {model.num_parameters() / 1e6:.2f}M parameters, "
          f"grid {model.config.grid}; torch {torch.__version__}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    result = bench_decoding(model, args.steps, args.ar_tokens, args.batch_size, args.bf16)
    note = (f" (timed {result['ar_tokens_timed']} tokens in {result['ar_seconds_measured']} s, extrapolated)"
            if result["ar_extrapolated"] else "")
    print(f"non-autoregressive, {result['nar_steps']} steps: {result['nar_seconds']:.2f} s")
    print(f"autoregressive, {result['tokens']} passes:     {result['ar_seconds']:.2f} s{note}")
    print(f"speed-up: {result['ratio']}x (paper: ~60x on 4x16x16 grids)")
    print(json.dumps({"decoding": result}))
    if not args.skip_train:
        for autocast in (True, False):
            step = bench_training_step(model, 16, autocast, args.train_repeats)
            label = "bf16 autocast" if autocast else "fp32"
            print(f"training step (forward + backward), batch 16, {label}: {step['seconds_per_step']:.2f} s")
            print(json.dumps({"training_step": step}))


if __name__ == "__main__":
    main()
