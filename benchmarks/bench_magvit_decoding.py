"""MAGVIT decoding speed: 12-step non-autoregressive (COMMIT / MaskGIT) vs one-token-at-a-time decoding.

Both decoders run the same network on the same 4x8x8 = 256-token grid: by default the
`magvit_transformer_shapes()` size with random weights (speed does not depend on the weights), or with
`--model NAME_OR_FOLDER` the transformer of a trained pipeline folder (e.g. the bundled `magvit-shapes`,
or `runs/magvit-shapes-transformer/pipeline`). With `--guidance S` (S != 1) both decoders evaluate the
conditional and unconditional inputs in every pass, as the pipeline does; `--pipeline` also times one
whole class-conditional generation of the pipeline (decoding + 3D-VQ decoder). The autoregressive baseline
needs one forward pass per token (256) where non-autoregressive decoding needs 12, so the expected
ratio is about 256 / 12 = 21x here; MAGVIT reports ~60x against an autoregressive transformer on its
larger 4x16x16 grids. By default the baseline decodes all 256 tokens; `--ar-tokens N` times only the
first N tokens and extrapolates linearly (every pass costs the same: the masked model has no KV cache),
and the output says so.

Also measures one training step (forward + backward, batch 16) of the same model under bf16 autocast
and in fp32, the number the CPU training recipe depends on.

    python benchmarks/bench_magvit_decoding.py                 # full comparison + training step
    python benchmarks/bench_magvit_decoding.py --ar-tokens 64  # faster, extrapolated baseline
    python benchmarks/bench_magvit_decoding.py --model magvit-shapes --skip-train --pipeline
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
                   autocast: bool, guidance: float = 1.0) -> dict:
    n = model.config.num_visual_tokens
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    # Class-conditional generation (class 0 when the model has classes): the same condition for both.
    labels = torch.zeros(batch_size, dtype=torch.long) if model.config.num_classes > 0 else None
    common = {"task": "CG", "batch_size": batch_size, "class_labels": labels, "guidance_scale": guidance}
    with context:
        # Warm-up: the first pass allocates and picks kernels.
        decode_nonautoregressive(model, num_steps=2, generator=torch.Generator().manual_seed(0), **common)
        _, t_nar = _timed(lambda: decode_nonautoregressive(model, num_steps=steps,
                                                           generator=torch.Generator().manual_seed(0), **common))
        limit = n if ar_tokens is None else min(ar_tokens, n)
        _, t_ar_measured = _timed(lambda: decode_autoregressive(model, max_tokens=limit,
                                                                generator=torch.Generator().manual_seed(0), **common))
    t_ar = t_ar_measured * n / limit
    return {"tokens": n, "batch_size": batch_size, "bf16_autocast": autocast, "guidance": guidance, "nar_steps": steps,
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
    parser.add_argument("--model", default=None,
                        help="bundled name or pipeline folder whose transformer/ to time (default: the shapes "
                             "size with random weights)")
    parser.add_argument("--guidance", type=float, default=1.0,
                        help="classifier-free guidance for both decoders (default 1 = off; the pipeline's "
                             "default_guidance doubles the batch of every pass)")
    parser.add_argument("--pipeline", action="store_true",
                        help="with --model: also time one whole generate_class call of the pipeline (median of 3)")
    parser.add_argument("--skip-train", action="store_true", help="skip the training-step measurement")
    parser.add_argument("--train-repeats", type=int, default=3, help="timed training steps per precision")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model is not None:
        from vidgen.modeling import resolve_model_path

        folder = resolve_model_path(args.model)
        model = MaskedTokenTransformer.from_pretrained(folder / "transformer").float().eval()
        label = f"{args.model} (trained transformer from {folder / 'transformer'})"
    else:
        model = MaskedTokenTransformer(magvit_transformer_shapes()).eval()
        label = "magvit_transformer_shapes (random weights)"
    print(f"model: {label}, {model.num_parameters() / 1e6:.2f}M parameters, "
          f"grid {model.config.grid}; torch {torch.__version__}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    result = bench_decoding(model, args.steps, args.ar_tokens, args.batch_size, args.bf16, args.guidance)
    result["model"] = args.model or "random magvit_transformer_shapes"
    note = (f" (timed {result['ar_tokens_timed']} tokens in {result['ar_seconds_measured']} s, extrapolated)"
            if result["ar_extrapolated"] else "")
    print(f"non-autoregressive, {result['nar_steps']} steps: {result['nar_seconds']:.2f} s")
    print(f"autoregressive, {result['tokens']} passes:     {result['ar_seconds']:.2f} s{note}")
    print(f"speed-up: {result['ratio']}x (paper: ~60x on 4x16x16 grids)")
    print(json.dumps({"decoding": result}))
    if args.pipeline and args.model is not None:
        from vidgen.pipelines import load_pipeline

        pipe = load_pipeline(args.model, device="cpu")
        pipe.generate_class(1, seed=0, num_inference_steps=2, progress=False)  # warm-up
        times = [_timed(lambda s=s: pipe.generate_class(1, seed=s, num_inference_steps=args.steps, progress=False))[1]
                 for s in range(3)]
        whole = {"seconds_median": round(sorted(times)[1], 3), "steps": args.steps,
                 "guidance": pipe.default_guidance, "bf16_autocast": pipe.bf16}
        print(f"whole pipeline generate_class ({args.steps} steps, guidance {pipe.default_guidance:g}, "
              f"3D-VQ decode included): {whole['seconds_median']:.2f} s (median of 3)")
        print(json.dumps({"pipeline": whole}))
    if not args.skip_train:
        for autocast in (True, False):
            step = bench_training_step(model, 16, autocast, args.train_repeats)
            label = "bf16 autocast" if autocast else "fp32"
            print(f"training step (forward + backward), batch 16, {label}: {step['seconds_per_step']:.2f} s")
            print(json.dumps({"training_step": step}))


if __name__ == "__main__":
    main()
