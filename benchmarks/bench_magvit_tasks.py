"""MAGVIT's measured results: every task of a trained MAGVIT pipeline on held-out clips vs a simple baseline.

Pixel tasks (FP, FI, OPC, OPV, OPH, OPD, IPC, IPD; CFP with --tasks) on the same held-out clips: Shapes
held-out triples (single objects, never in training) then Digits test-split clips (handwriting never in
training), 16x64x64. Scores on the generated region only: PSNR, SSIM, and for FP the object-trajectory
error of the Shapes evaluator; baselines: copy the last frame (FP), linear blend (FI), edge replication
/ nearest given pixel (outpainting, inpainting). See `vidgen.evaluation.magvit_tasks` for the exact
definitions. Then CG (the Shapes training classes; held-out triples have no trained class token) and
T2V (the text-to-video protocol's prompt sets), judged by the Shapes evaluator.

Everything is seeded: clip i of every task is generated with seed `--seed + i`; dynamic regions follow
from that seed (see the module). Same command, same machine -> same numbers.

    python benchmarks/bench_magvit_tasks.py --model magvit-shapes --json magvit-tasks.json
    python benchmarks/bench_magvit_tasks.py --model runs/magvit-shapes-transformer/pipeline --shapes 8 \\
        --digits 4 --tasks FP OPC --no-cg --t2v-sets            # a quick look
    python benchmarks/bench_magvit_tasks.py --shape-fidelity 12 --tasks --no-cg --t2v-sets   # shapes kept?
    python benchmarks/bench_magvit_tasks.py --decoder-robustness 48 --tasks --no-cg --t2v-sets  # near-miss tokens
    python benchmarks/bench_magvit_tasks.py --object-refill 12 --tasks --no-cg --t2v-sets   # object tokens only
    python benchmarks/bench_magvit_tasks.py --object-conditionals 12 --tasks --no-cg --t2v-sets  # one at a time
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from vidgen.evaluation import magvit_tasks as mt
from vidgen.evaluation.text_to_video import PROMPT_SETS
from vidgen.tasks import get_task
from vidgen.tasks.masking import SCHEDULES


def training_clip_tokens(pipe, count: int, batch_size: int = 8) -> tuple[list[dict], torch.Tensor]:
    """`count` single-object Shapes clips of the training classes (dataset seed 3: not the clips trained on)
    and their tokens (N, t, h, w)."""
    from vidgen.data.shapes import ShapesDataset
    from vidgen.tasks.commit import encode_tokens

    data = ShapesDataset(split="train", num_items=count, size=pipe.height, num_frames=pipe.num_frames,
                         max_objects=1, seed=3)
    items = [data[i] for i in range(count)]
    weight = next(pipe.tokenizer.parameters())
    videos = torch.stack([item["video"] for item in items]).to(weight.device, weight.dtype)
    tokens = torch.cat([encode_tokens(pipe.tokenizer, videos[i:i + batch_size]) for i in range(0, count, batch_size)])
    return items, tokens


def condition_use(pipe, count: int) -> dict:
    """`magvit_tasks.class_condition_use` on `count` single-object Shapes clips of the training classes."""
    items, tokens = training_clip_tokens(pipe, count)
    labels = torch.tensor([int(item["class_id"]) for item in items])
    return mt.class_condition_use(pipe.transformer, tokens, labels)


def shape_condition_use(pipe, count: int) -> dict:
    """Does the model read the *shape* from its class token and from the prompt? Per true shape, on `count`
    single-object training clips: `magvit_tasks.condition_use` (masks 0.9 and 1) given the right class and
    the class of the same colour and motion with another shape (the first other shape whose triple is
    trained); the canonical caption, the same caption with that other shape word, and no text. gain =
    cross-entropy with the swapped shape - with the right one: what the shape in the condition is worth.
    The clips are of training classes (dataset seed 3), not the clips trained on."""
    from vidgen.data.shapes import HELDOUT_TRIPLES, SHAPES, canonical_caption, class_id

    items, tokens = training_clip_tokens(pipe, count)
    rows = []
    for item in items:
        obj = item["labels"]["objects"][0]
        triple = (obj["colour"], obj["shape"], obj["motion"])
        other = next(s for s in SHAPES if s != triple[1] and (triple[0], s, triple[2]) not in HELDOUT_TRIPLES)
        rows.append((triple, (triple[0], other, triple[2])))
    report = {}
    for shape in SHAPES:
        index = [i for i, (triple, _) in enumerate(rows) if triple[1] == shape]
        if not index:
            continue
        right = pipe.text_encoder.encode([canonical_caption([rows[i][0]]) for i in index])
        swapped = pipe.text_encoder.encode([canonical_caption([rows[i][1]]) for i in index])
        conditions = {
            "class": {"class_labels": torch.tensor([class_id(*rows[i][0]) for i in index])},
            "class_swapped": {"class_labels": torch.tensor([class_id(*rows[i][1]) for i in index])},
        }
        task_report = mt.condition_use(pipe.transformer, tokens[index], "CG", conditions, mask_ratios=(0.9, 1.0))
        text_conditions = {
            "text": {"text": right.embeddings, "text_mask": right.mask.bool()},
            "text_swapped": {"text": swapped.embeddings, "text_mask": swapped.mask.bool()},
            "text_null": {"text": right.embeddings, "text_mask": torch.zeros_like(right.mask, dtype=torch.bool)},
        }
        text_report = mt.condition_use(pipe.transformer, tokens[index], "T2V", text_conditions, mask_ratios=(0.9, 1.0))
        report[shape] = {}
        for ratio, row in task_report.items():
            row = {**row, **text_report[ratio], "clips": len(index)}
            row["class_gain"] = row["class_swapped"] - row["class"]
            row["text_gain"] = row["text_swapped"] - row["text"]
            report[shape][ratio] = row
    return report


def largest_object(frames):
    """The Shapes evaluator's detection of the largest object in `frames` (uint8 (T, H, W, 3) or a tensor
    (3, T, H, W) in [-1, 1]); None when it finds no object."""
    from vidgen.evaluation.shapes_eval import detect_objects

    found = detect_objects(frames)
    return max(found, key=lambda d: d.area) if found else None


def judge_shape(row: dict, frames, shape: str) -> None:
    """Add one clip to a {"right", "n", "fill"} row: does the evaluator's largest object in `frames`
    (as `largest_object` takes them) have `shape`? "fill" gets its fill ratio (None: no object)."""
    best = largest_object(frames)
    row["n"] += 1
    row["right"] += int(best is not None and best.shape == shape)
    row["fill"].append(None if best is None else round(float(best.fill_ratio), 3))


def judged_text(name: str, row: dict) -> str:
    """"name right/n (median fill f)" of a `judge_shape` row."""
    fills = [f for f in row["fill"] if f is not None]
    return (f"{name} {row['right']}/{row['n']} (median fill "
            f"{statistics.median(fills) if fills else float('nan'):.2f})")


def clips_per_shape(data, per_shape: int):
    """(index, item, shape) of the single-object clips of `data`, in order, until each shape has `per_shape`."""
    from vidgen.data.shapes import SHAPES

    taken = dict.fromkeys(SHAPES, 0)
    for index in range(len(data)):
        if all(count >= per_shape for count in taken.values()):
            return
        item = data[index]
        shape = SHAPES[item["labels"]["shape_id"]]
        if taken[shape] < per_shape:
            taken[shape] += 1
            yield index, item, shape


def shape_fidelity(pipe, per_shape: int, seed: int = 0) -> dict:
    """Does a shape survive the tokenizer and the transformer? `per_shape` held-out single-object Shapes
    clips of each shape: reconstructed (the tokenizer alone) and predicted from their first frame (FP,
    which is given the shape). Each output is judged after its first 4 frames (the first latent frame,
    which FP is given), as the Shapes evaluator judges shape: {shape: {"reconstruct" | "predict":
    {"right", "n", "fill" (the evaluator's fill ratio per clip; None = no object found)}}}."""
    from vidgen.data.shapes import SHAPES, ShapesDataset

    data = ShapesDataset(split="heldout", num_items=40 * per_shape, size=pipe.height, num_frames=pipe.num_frames,
                         max_objects=1, seed=seed)
    report = {shape: {"reconstruct": {"right": 0, "n": 0, "fill": []}, "predict": {"right": 0, "n": 0, "fill": []}}
              for shape in SHAPES}
    for index, item, shape in clips_per_shape(data, per_shape):
        frames = ((item["video"].permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype("uint8")
        outputs = {"reconstruct": pipe.reconstruct(frames).frames,
                   "predict": pipe.predict(frames, seed=seed + index, progress=False).frames}
        for name, out in outputs.items():
            judge_shape(report[shape][name], out[4:], shape)
    return report


def decoder_robustness(pipe, count: int, ratios=(0.1, 0.25, 0.5), seed: int = 3) -> dict:
    """Does the tokenizer's decoder still draw the shape from near-miss tokens? `count` single-object Shapes
    clips of the training classes (data seed 3): their true tokens, a random share `ratio` of them masked and
    refilled by the transformer (CG, right class; its most likely token or a sample: `TokenCorruptor`),
    decoded and judged by the Shapes evaluator. {"tokenizer" | f"{ratio} argmax" | f"{ratio} sample":
    {shape: [right, n]}}."""
    from vidgen.data.shapes import SHAPES, ShapesDataset
    from vidgen.tasks.commit import encode_tokens
    from vidgen.training.magvit_tokenizer import TokenCorruptor

    data = ShapesDataset(split="train", num_items=count, size=pipe.height, num_frames=pipe.num_frames,
                         max_objects=1, seed=seed)
    items = [data[i] for i in range(count)]
    weight = next(pipe.tokenizer.parameters())
    videos = torch.stack([item["video"] for item in items]).to(weight.device, weight.dtype)
    tokens = torch.cat([encode_tokens(pipe.tokenizer, videos[i:i + 8]) for i in range(0, count, 8)])
    labels = torch.tensor([int(item["class_id"]) for item in items], device=tokens.device)
    shapes = [SHAPES[item["labels"]["shape_id"]] for item in items]

    def judge(candidate: torch.Tensor) -> dict[str, list[int]]:
        out = torch.cat([pipe.tokenizer.decode_indices(candidate[i:i + 8]).float().cpu() for i in range(0, count, 8)])
        tally = {shape: [0, 0] for shape in SHAPES}
        for clip, shape in zip(out, shapes):  # clip: (3, T, H, W) in [-1, 1]
            best = largest_object(clip)
            tally[shape][0] += int(best is not None and best.shape == shape)
            tally[shape][1] += 1
        return tally

    report = {"tokenizer": judge(tokens)}
    for ratio in ratios:
        for name, greedy in (("argmax", 1.0), ("sample", 0.0)):
            corrupt = TokenCorruptor(pipe.transformer, 1.0, (ratio, ratio), bf16=pipe.bf16, greedy_share=greedy)
            report[f"{ratio:g} {name}"] = judge(corrupt(tokens, labels, torch.Generator().manual_seed(0)))
    return report


def object_refill(pipe, per_shape: int, seed: int = 3) -> dict:
    """Can the transformer draw each shape when only the object's tokens are unknown? `per_shape`
    single-object Shapes clips of each shape from the training classes (data seed 3: clips not trained on):
    their object tokens (supervoxels holding a non-black pixel, `object_token_mask`) are decoded by CG (the
    right class) and by T2V (the canonical caption) with the pipeline's CG / T2V settings while every other
    true token is given and fixed (the object's place and size are known), then judged by the Shapes
    evaluator. Clip i is decoded with seed i. {shape: {"tokenizer" | "CG" | "T2V": {"right", "n", "fill"},
    "object_tokens": mean count}}."""
    from vidgen.data.shapes import SHAPES, ShapesDataset
    from vidgen.devices import autocast_context
    from vidgen.generators.decoding import decode_nonautoregressive
    from vidgen.pipelines.magvit import decoding_settings
    from vidgen.tasks import get_task
    from vidgen.tasks.commit import encode_tokens, object_token_mask

    data = ShapesDataset(split="train", num_items=40 * per_shape, size=pipe.height, num_frames=pipe.num_frames,
                         max_objects=1, seed=seed)
    report = {shape: {name: {"right": 0, "n": 0, "fill": []} for name in ("tokenizer", "CG", "T2V")}
              for shape in SHAPES}
    object_tokens = {shape: [] for shape in SHAPES}
    weight = next(pipe.tokenizer.parameters())
    for index, item, shape in clips_per_shape(data, per_shape):
        video = item["video"][None].to(weight.device, weight.dtype)
        tokens = encode_tokens(pipe.tokenizer, video)  # (1, t, h, w)
        unknown = object_token_mask(video, tuple(tokens.shape[1:]))
        object_tokens[shape].append(int(unknown.sum()))
        candidates = {"tokenizer": tokens}
        for name in ("CG", "T2V"):
            spec = get_task(name)
            conditioning = {"class_labels": torch.tensor([int(item["class_id"])], device=tokens.device)}
            if name == "T2V":
                encoded = pipe.text_encoder.encode([item["canonical_caption"]])
                conditioning = {"text": encoded.embeddings.to(tokens.device), "text_mask": encoded.mask.to(tokens.device)}
            with autocast_context(pipe.device, pipe.bf16):
                candidates[name] = decode_nonautoregressive(
                    pipe.transformer, task=spec, condition_tokens=tokens, condition_mask=~unknown, refine_condition=False,
                    **decoding_settings(pipe.settings, spec), generator=torch.Generator().manual_seed(index),
                    **conditioning)
        for name, candidate in candidates.items():
            judge_shape(report[shape][name], pipe.tokenizer.decode_indices(candidate).float().clamp(-1, 1)[0].cpu(),
                        shape)
    for shape, counts in object_tokens.items():
        report[shape]["object_tokens"] = sum(counts) / max(1, len(counts))
    return report


def object_conditionals(pipe, per_shape: int, seed: int = 3, neighbours: int = 20, shift: float = 0.25) -> dict:
    """How well does the transformer know each object token, and how much does a code's identity matter?
    `per_shape` single-object training-class Shapes clips per shape (data seed 3, as `object_refill`).

    - model: each object token masked alone, every other true token given (CG, right class, no guidance):
      "accuracy" (the most likely code is the true one), "near" (... or one of the true code's
      `neighbours` nearest codes), "log_p" (mean log-probability of the true code),
      and "rebuilt": every object token replaced by its one-at-a-time most likely code, decoded and judged.
    - tokenizer: "neighbour": every object token swapped for a random one of its `neighbours` nearest codes
      (codebook distance), decoded and judged; "shift_changed": the share of object tokens whose code
      changes when the object starts `shift` pixels lower and to the right (same clip otherwise).
    {shape: {"accuracy", "near", "log_p", "shift_changed": mean, "rebuilt" | "neighbour": {"right", "n", "fill"}}}."""
    from vidgen.data.shapes import SHAPES, ShapeObject, ShapesDataset, render_objects
    from vidgen.devices import autocast_context
    from vidgen.tasks.commit import encode_tokens, nearest_codes, object_token_mask

    model, tokenizer = pipe.transformer, pipe.tokenizer
    weight = next(tokenizer.parameters())
    nearest = nearest_codes(tokenizer.quantizer.codebook(), neighbours)  # (K, n)
    generator = torch.Generator().manual_seed(0)
    data = ShapesDataset(split="train", num_items=40 * per_shape, size=pipe.height, num_frames=pipe.num_frames,
                         max_objects=1, seed=seed)
    rows = {shape: {"accuracy": [], "near": [], "log_p": [], "shift_changed": [],
                    **{name: {"right": 0, "n": 0, "fill": []} for name in ("rebuilt", "neighbour")}} for shape in SHAPES}

    def tokens_of(frames) -> tuple[torch.Tensor, torch.Tensor]:
        video = torch.as_tensor(frames)[None].to(weight.device, weight.dtype)
        tokens = encode_tokens(tokenizer, video)  # (1, t, h, w)
        return tokens[0], object_token_mask(video, tuple(tokens.shape[1:]))[0]

    def judge(row: dict, tokens: torch.Tensor, shape: str) -> None:
        judge_shape(row, tokenizer.decode_indices(tokens[None]).float().clamp(-1, 1)[0].cpu(), shape)

    task = get_task("CG").token
    for _, item, shape in clips_per_shape(data, per_shape):
        tokens, unknown = tokens_of(item["video"])
        row = rows[shape]
        positions = unknown.flatten().nonzero()[:, 0]  # (P,) the object's tokens
        true = tokens.flatten()[positions]
        inputs = tokens.flatten().repeat(len(positions), 1)  # one row per object token, that token masked
        inputs[torch.arange(len(positions)), positions] = model.mask_token_id
        labels = torch.full((len(positions),), int(item["class_id"]), device=tokens.device)
        with torch.no_grad(), autocast_context(pipe.device, pipe.bf16):
            logits = model(inputs.view(len(positions), *tokens.shape), task=task, class_labels=labels)
        logits = logits.float().flatten(1, 3)[torch.arange(len(positions)), positions]  # (P, K)
        guess = logits.argmax(-1)
        row["accuracy"].append(float((guess == true).float().mean()))
        row["near"].append(float(((guess == true) | (nearest[true] == guess[:, None]).any(-1)).float().mean()))
        row["log_p"].append(float(torch.log_softmax(logits, -1).gather(-1, true[:, None]).mean()))
        rebuilt = tokens.flatten().clone()
        rebuilt[positions] = guess
        judge(row["rebuilt"], rebuilt.view_as(tokens), shape)
        swapped = nearest[tokens, torch.randint(0, neighbours, tokens.shape, generator=generator)]
        judge(row["neighbour"], torch.where(unknown, swapped, tokens), shape)
        moved = dict(item["labels"]["objects"][0])
        moved["start"] = (moved["start"][0] + shift, moved["start"][1] + shift)
        frames, _, _ = render_objects([ShapeObject(**moved)], pipe.height, pipe.num_frames)
        shifted, shifted_unknown = tokens_of(frames * 2.0 - 1.0)
        either = unknown | shifted_unknown
        row["shift_changed"].append(float(((shifted != tokens) & either).sum() / either.sum()))
    return {shape: {key: statistics.mean(value) if isinstance(value, list) else value for key, value in row.items()}
            for shape, row in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="magvit-shapes", help="bundled name or pipeline folder")
    parser.add_argument("--shapes", type=int, default=20, help="Shapes held-out clips per task (default 20)")
    parser.add_argument("--digits", type=int, default=12, help="Digits test clips per task (default 12)")
    parser.add_argument("--tasks", nargs="*", default=list(mt.DEFAULT_TASKS), choices=list(mt.TASK_CALLS),
                        help="pixel tasks (default: FP FI OPC OPV OPH OPD IPC IPD)")
    parser.add_argument("--no-cg", action="store_true", help="skip class-conditional generation")
    parser.add_argument("--condition-use", type=int, default=0, metavar="N",
                        help="also test whether the transformer uses its class token, on N Shapes clips of the "
                             "training classes (data seed 3: clips not trained on); 0 = skip (default)")
    parser.add_argument("--shape-condition-use", type=int, default=0, metavar="N",
                        help="does the model read the shape from the class and the prompt? N clips of training classes")
    parser.add_argument("--shape-fidelity", type=int, default=0, metavar="N",
                        help="N held-out clips per shape: is the shape kept by the tokenizer and by FP?")
    parser.add_argument("--decoder-robustness", type=int, default=0, metavar="N",
                        help="N training-class Shapes clips: does the decoder keep each shape when 10 / 25 / 50%% "
                             "of the true tokens are refilled by the transformer?")
    parser.add_argument("--object-refill", type=int, default=0, metavar="N",
                        help="N training-class clips per shape: can the transformer draw the shape when only the "
                             "object's tokens are unknown (CG and T2V)?")
    parser.add_argument("--object-conditionals", type=int, default=0, metavar="N",
                        help="N training-class clips per shape: each object token predicted alone from every other "
                             "true token, and the object decoded from its nearest codes (a code's identity)")
    parser.add_argument("--cg-seeds", nargs="+", type=int, default=[0], help="seeds per CG class (default 0)")
    parser.add_argument("--t2v-sets", nargs="*", default=list(PROMPT_SETS), choices=PROMPT_SETS,
                        help="text-to-video prompt sets (default: all; none to skip)")
    parser.add_argument("--t2v-seeds", nargs="+", type=int, default=[0, 1], help="seeds per prompt (default 0 1)")
    parser.add_argument("--steps", type=int, default=None, help="decoding steps (default: the model's, 12)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="token sampling temperature of CG and T2V (default: the model's, pipeline.json)")
    parser.add_argument("--pixel-temperature", type=float, default=None,
                        help="token sampling temperature of the pixel tasks (default: the model's; 0 = argmax)")
    parser.add_argument("--choice-temperature", type=float, default=None,
                        help="Gumbel noise scale of the unmasking order (default: the model's, 4.5; pixel tasks keep a pixel_choice_temperature)")
    parser.add_argument("--top-p", type=float, default=None,
                        help="nucleus sampling of CG and T2V (default: the model's, pipeline.json; 1 = off)")
    parser.add_argument("--schedule", default=None, choices=list(SCHEDULES),
                        help="unmasking schedule (default: the model's, cosine; pixel tasks keep a pixel_schedule)")
    parser.add_argument("--seed", type=int, default=0, help="generation seed of the first clip (default 0)")
    parser.add_argument("--data-seed", type=int, default=0, help="dataset seed of the held-out clips (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--device", default=None, help="cpu or cuda")
    parser.add_argument("--fp32", action="store_true",
                        help="no bf16 autocast (default: the pipeline's choice, bf16 on AVX512-bf16 CPUs)")
    parser.add_argument("--json", default=None, help="write the full report (per-clip rows) here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    from vidgen.pipelines import load_pipeline

    started = time.perf_counter()
    pipe = load_pipeline(args.model, device=args.device, **({"bf16": False} if args.fp32 else {}))
    # Decoding overrides go through the pipeline's settings, which every task call and the diagnostics that
    # decode (--object-refill) read by default. --guidance sets the class- and text-conditioned guidance.
    for key, value in (("temperature", args.temperature), ("pixel_temperature", args.pixel_temperature),
                       ("choice_temperature", args.choice_temperature), ("top_p", args.top_p),
                       ("schedule", args.schedule), ("default_steps", args.steps),
                       ("default_guidance", args.guidance)):
        if value is not None:
            pipe.settings[key] = value
    print(f"model {args.model}: {pipe!r}; torch {torch.__version__}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f}")
    clips = mt.heldout_clips(args.shapes, args.digits, num_frames=pipe.num_frames, size=pipe.height,
                             seed=args.data_seed)
    report = {"model": args.model, "clips": {"shapes": args.shapes, "digits": args.digits, "data_seed": args.data_seed},
              "seed": args.seed, "steps": args.steps, "guidance": args.guidance, "threads": args.threads,
              "temperature": pipe.decoding_default(get_task("T2V"), "temperature"),
              "pixel_temperature": pipe.decoding_default(get_task("FP"), "temperature"),
              "choice_temperature": pipe.decoding_default(get_task("T2V"), "choice_temperature"),
              "top_p": pipe.decoding_default(get_task("T2V"), "top_p"),
              "schedule": pipe.decoding_schedule(get_task("T2V")),
              "torch": torch.__version__}
    if args.condition_use:
        report["condition_use"] = condition_use(pipe, args.condition_use)
        print("class condition use (CG on real tokens, cross-entropy at masked positions, nats):")
        for ratio, r in report["condition_use"].items():
            print(f"  mask {ratio}: right class {r['right']:.3f}, wrong class {r['wrong']:.3f}, null class "
                  f"{r['null']:.3f} (gain {r['gain']:+.3f}); accuracy right {r['accuracy_right']:.1%}, "
                  f"null {r['accuracy_null']:.1%}")
    if args.shape_condition_use:
        report["shape_condition_use"] = shape_condition_use(pipe, args.shape_condition_use)
        print("shape condition use (training clips, cross-entropy at masked positions, nats; gain = swapped "
              "shape - right shape):")
        for shape, rows in report["shape_condition_use"].items():
            for ratio, r in rows.items():
                print(f"  {shape:8s} mask {ratio} ({r['clips']} clips): class {r['class']:.3f} / swapped "
                      f"{r['class_swapped']:.3f} (gain {r['class_gain']:+.3f}); text {r['text']:.3f} / swapped "
                      f"{r['text_swapped']:.3f} (gain {r['text_gain']:+.3f}) / none {r['text_null']:.3f}")
    if args.shape_fidelity:
        report["shape_fidelity"] = shape_fidelity(pipe, args.shape_fidelity, seed=args.data_seed)
        print("shape fidelity (held-out single objects, judged after the first 4 frames; fill ratio per clip):")
        for shape, rows in report["shape_fidelity"].items():
            for name, r in rows.items():
                fills = " ".join("-" if f is None else f"{f:.2f}" for f in r["fill"])
                print(f"  {shape:8s} {name:11s} {r['right']}/{r['n']} judged {shape}; fill {fills}")
    if args.decoder_robustness:
        report["decoder_robustness"] = decoder_robustness(pipe, args.decoder_robustness)
        print("decoder robustness (true tokens, a share refilled by the transformer; judged right / clips):")
        for name, tally in report["decoder_robustness"].items():
            print(f"  {name:12s} " + "  ".join(f"{shape} {r}/{n}" for shape, (r, n) in tally.items()))
    if args.object_refill:
        report["object_refill"] = object_refill(pipe, args.object_refill)
        print("object refill (only the object's tokens unknown, the rest true and fixed; judged right / clips):")
        for shape, rows in report["object_refill"].items():
            print(f"  {shape:8s} ({rows['object_tokens']:.1f} object tokens) " + "  ".join(
                judged_text(name, r) for name, r in rows.items() if name != "object_tokens"))
    if args.object_conditionals:
        report["object_conditionals"] = object_conditionals(pipe, args.object_conditionals)
        print("object conditionals (each object token masked alone, the rest true; CG, right class):")
        for shape, r in report["object_conditionals"].items():
            print(f"  {shape:8s} accuracy {r['accuracy']:.1%} (or a near code {r['near']:.1%}), log p(true) "
                  f"{r['log_p']:.2f}; " + "; ".join(judged_text(name, r[name]) for name in ("rebuilt", "neighbour"))
                  + f"; codes changed by a 0.25-pixel shift {r['shift_changed']:.0%}")
    if args.tasks:
        report["tasks"] = mt.evaluate_tasks(pipe, clips, args.tasks, args.steps, args.guidance, seed=args.seed)
    accuracy = {}
    if not args.no_cg:
        report["cg"] = mt.evaluate_class_generation(pipe, seeds=args.cg_seeds, steps=args.steps, guidance=args.guidance)
        cg = report["cg"]
        print(f"CG: colour {cg['colour']:.1%}  shape {cg['shape']:.1%}  direction {cg['direction']:.1%}  all "
              f"{cg['all']:.1%}  ({cg['n']} videos, {cg['seconds_per_video']:.2f} s each)")
        accuracy[f"CG: {cg['classes']} training classes x {len(args.cg_seeds)} seed(s)"] = cg
    if args.t2v_sets:
        report["t2v"] = mt.evaluate_text_sets(pipe, args.t2v_sets, args.t2v_seeds, args.steps, args.guidance)
        for name, r in report["t2v"].items():
            accuracy[f"T2V {name}"] = r
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    report["cpu_seconds_total"] = round(time.process_time(), 1)
    report["bf16_autocast"] = bool(getattr(pipe, "bf16", False))

    print()
    if "tasks" in report:
        print(mt.markdown_table(report["tasks"]))
        print()
    if accuracy:
        print(mt.attribute_table(accuracy))
        print()
    print(f"total {report['seconds_total']:.0f} s wall, {report['cpu_seconds_total']:.0f} s CPU")
    if args.json:
        from vidgen.modeling import write_json

        write_json(args.json, report)
        print(f"report written to {args.json}")
    print(json.dumps(mt.strip_rows({k: v for k, v in report.items() if k in ("tasks", "cg", "t2v")}),
                     default=float)[:20000])


if __name__ == "__main__":
    main()
