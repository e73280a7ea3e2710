"""How fast does `predict` answer, against plain `model.generate` + parse on the same inputs?

Four ways to answer the same prompts, one model, one process, in turn:

- predict: `RexOmni.predict` / `predict_batch` as shipped: the lean greedy loop
  (`model/fast_decode.py`), grammar-constrained, every region scored (the confidence recorder),
  coordinate-mass decoding where the checkpoint asks for it;
- predict, free: the same with `constrained=False` (the released wrapper's decoding, still scored);
- predict via generate: `predict(fast_decode=False)`, the same answers token for token through
  transformers' `generate` (what `predict` ran before the lean loop);
- generate + parse: `model.generate` on the inputs `RexOmni.encode(images, [chat_text(prompt)])`
  builds, with the released demo's settings and no logits processor, then `grammar.parse`;
- lean loop alone (floor): the same inputs through the lean loop with no logits processor, one
  token a step: the cost per token of the model's own operations, below which no loop that keeps
  `generate`'s floating-point results goes (drafting aside, which needs a grammar).

Measured on held-out 5-object shapes scenes (phrases: the categories present): latency p50/p95 at
batch 1, images/s at batch 8, ms per generated token (time over generated tokens, so the prefill
and image encoding are included) in wall time and in this process's CPU time (on a machine shared
with other work the wall clock counts their time too; CPU time is what an idle machine's wall
clock would read, up to cache and memory contention), the speed-up per token over
"generate + parse" (CPU), tokens per box, and marginal tokens per box (the slope of answer length
over box count, the paper's "5 tokens per box").

    python benchmarks/inference_speed.py                 # the shipped nano, 16 scenes (a few minutes)
    python benchmarks/inference_speed.py --images 4      # a quick smoke run
    python benchmarks/inference_speed.py --released-3b   # also a randomly initialised model of the
                                                         # released 3B's configuration, bf16, CPU (~8 GB)
    python benchmarks/inference_speed.py --skip-nano --released-3b --released-3b-dtype float32 \
        --released-3b-max-new-tokens 16                  # the 3B on a CPU without native bf16 (~16 GB)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from rexomni_core.data.worlds import generate as generate_scene  # noqa: E402
from rexomni_core.grammar import IM_END, parse  # noqa: E402
from rexomni_core.model import RexOmni, generation_settings  # noqa: E402
from rexomni_core.model.fast_decode import greedy_decode  # noqa: E402
from rexomni_core.nano.heldout import HELDOUT_SEED  # noqa: E402
from rexomni_core.regions import Prediction  # noqa: E402
from rexomni_core.tasks import MAX_PIXELS, build_prompt  # noqa: E402

OBJECTS = 5
BATCH = 8

# The released checkpoint's architecture (Qwen2.5-VL-3B-Instruct, which Rex-Omni fine-tunes);
# the vocabulary is the released one's size, the tokenizer nano's (only speed is measured).
RELEASED_3B_TEXT = dict(
    vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
    num_key_value_heads=2, max_position_embeddings=128000,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
)
RELEASED_3B_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14, spatial_merge_size=2,
    temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
)


@dataclass(frozen=True)
class Scene:
    image: object
    categories: list[str]


def five_object_scenes(count: int) -> list[Scene]:
    """Held-out shapes scenes (normal split, scene seeds from the held-out seed) with 5 objects."""
    scenes, seed = [], HELDOUT_SEED * 10
    while len(scenes) < count:
        scene = generate_scene("shapes", seed, "normal")
        seed += 1
        if len(scene.annotations) == OBJECTS:
            scenes.append(Scene(scene.image, sorted({a.category for a in scene.annotations})))
    return scenes


Answer = Callable[[RexOmni, list[Scene]], list[Prediction]]


def by_predict(**options) -> Answer:
    def answer(model: RexOmni, scenes: list[Scene]) -> list[Prediction]:
        return model.predict_batch([s.image for s in scenes], categories=[s.categories for s in scenes], **options)
    return answer


def plain_answers(decode: Callable[[RexOmni, dict, int, dict], torch.Tensor]) -> Answer:
    """`decode(model, inputs, eos, settings)` on `encode` + `chat_text` with the released
    settings, then `parse`."""
    def answer(model: RexOmni, scenes: list[Scene]) -> list[Prediction]:
        prompts = [build_prompt("detection", s.categories) for s in scenes]
        inputs = model.encode([s.image for s in scenes], [model.chat_text(p) for p in prompts]).to(model.device)
        eos = model.tokenizer.convert_tokens_to_ids(IM_END)
        settings = generation_settings(model.model.generation_config.max_new_tokens, {})
        with torch.inference_mode():
            output = decode(model, inputs, eos, settings)
        predictions = []
        for row, scene in zip(output[:, inputs["input_ids"].shape[1]:].tolist(), scenes):
            row = row[: row.index(eos) + 1] if eos in row else row
            prediction = parse(model.tokenizer.decode(row, skip_special_tokens=False), *scene.image.size)
            prediction.num_output_tokens = len(row)
            predictions.append(prediction)
        return predictions
    return answer


# `model.generate`, no logits processor.
generate_and_parse = plain_answers(lambda model, inputs, eos, settings: model.model.generate(
    **inputs, eos_token_id=eos, pad_token_id=model.tokenizer.pad_token_id, **settings))
# The lean loop with no logits processor (so no repetition penalty, grammar or coordinate mass,
# other answers than predict's) and one token a step: the model's own operations per token, what
# any loop that keeps `generate`'s floating-point results costs at least.
lean_loop_alone = plain_answers(lambda model, inputs, eos, settings: greedy_decode(
    model.model, inputs, (), settings["max_new_tokens"], eos, model.tokenizer.pad_token_id, jump_forward=False))


ARMS: dict[str, Answer] = {
    "predict": by_predict(),
    "predict, free": by_predict(constrained=False),
    "predict via generate": by_predict(fast_decode=False),
    "generate + parse": generate_and_parse,
    "lean loop alone (floor)": lean_loop_alone,
}
BASELINE = "generate + parse"  # the per-token speed-up is against it


@dataclass(frozen=True)
class Row:
    arm: str
    p50: float
    p95: float
    p50_cpu: float
    ms_per_token: float
    ms_per_token_cpu: float
    images_per_second: float
    ms_per_token_batch: float
    ms_per_token_batch_cpu: float
    tokens_per_answer: float
    boxes_per_answer: float
    marginal_tokens_per_box: float
    well_formed: float


def measure(model: RexOmni, arms: dict[str, Answer], scenes: list[Scene]) -> list[Row]:
    """Every arm on every scene, interleaved (the arms take turns, in rotating order), so that
    a machine shared with other work slows them alike."""
    names = list(arms)
    for name in names:
        arms[name](model, scenes[:1])  # warm-up
    single: dict[str, list[tuple[float, float, int, int, bool]]] = {name: [] for name in names}
    for i, scene in enumerate(scenes):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start, cpu = time.perf_counter(), time.process_time()
            (prediction,) = arms[name](model, [scene])
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
            single[name].append((seconds, cpu_seconds, prediction.num_output_tokens, len(prediction.regions),
                                 prediction.well_formed))
    batched = {name: [0.0, 0.0, 0] for name in names}
    for j, first in enumerate(range(0, len(scenes), BATCH)):
        for name in names[j % len(names):] + names[: j % len(names)]:
            start, cpu = time.perf_counter(), time.process_time()
            predictions = arms[name](model, scenes[first:first + BATCH])
            batched[name][0] += time.perf_counter() - start
            batched[name][1] += time.process_time() - cpu
            batched[name][2] += sum(p.num_output_tokens for p in predictions)
    rows = []
    for name in names:
        latencies, cpu_latencies, tokens, boxes, well_formed = (list(column) for column in zip(*single[name]))
        batch_seconds, batch_cpu, batch_tokens = batched[name]
        slope = float(np.polyfit(boxes, tokens, 1)[0]) if len(set(boxes)) > 1 else float("nan")
        rows.append(Row(
            name, statistics.median(latencies), float(np.percentile(latencies, 95)), statistics.median(cpu_latencies),
            1000 * sum(latencies) / sum(tokens), 1000 * sum(cpu_latencies) / sum(tokens),
            len(scenes) / batch_seconds, 1000 * batch_seconds / batch_tokens, 1000 * batch_cpu / batch_tokens,
            float(np.mean(tokens)), float(np.mean(boxes)), slope, float(np.mean(well_formed)),
        ))
    return rows


def table(title: str, rows: list[Row]) -> str:
    header = ("| arm | p50 s (b1) | p95 s (b1) | p50 CPU s (b1) | ms/token (b1) | CPU ms/token (b1) | images/s (b8) "
              "| ms/token (b8) | CPU ms/token (b8) | × baseline per token, CPU (b1 / b8) | tokens/answer | boxes/answer "
              "| tokens/box | marginal tokens/box | well-formed |")
    lines = [f"**{title}**", "", header, "|" + "---|" * 15]
    baseline = next((r for r in rows if r.arm == BASELINE), None)
    for r in rows:
        per_box = r.tokens_per_answer / r.boxes_per_answer if r.boxes_per_answer else float("nan")
        speedup = (f"{baseline.ms_per_token_cpu / r.ms_per_token_cpu:.2f} / "
                   f"{baseline.ms_per_token_batch_cpu / r.ms_per_token_batch_cpu:.2f}") if baseline else "-"
        lines.append(f"| {r.arm} | {r.p50:.3f} | {r.p95:.3f} | {r.p50_cpu:.3f} | {r.ms_per_token:.2f} | "
                     f"{r.ms_per_token_cpu:.2f} | {r.images_per_second:.2f} | {r.ms_per_token_batch:.2f} | "
                     f"{r.ms_per_token_batch_cpu:.2f} | {speedup} | {r.tokens_per_answer:.1f} | {r.boxes_per_answer:.1f} | "
                     f"{per_box:.1f} | {r.marginal_tokens_per_box:.1f} | {r.well_formed:.0%} |")
    return "\n".join(lines)


def random_released_3b(dtype: torch.dtype = torch.bfloat16, max_new_tokens: int = 256) -> RexOmni:
    """The released 3B's architecture, randomly initialised in `dtype`, with nano's tokenizer and
    the released wrapper's image bounds (no square view, no coordinate-mass decoding: as released).
    A random model never stops by itself: every answer runs to `max_new_tokens`."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from rexomni_core.nano.architecture import build_nano, nano_config

    nano = build_nano(seed=0, text={"num_hidden_layers": 1}, vision={"depth": 1})
    config = nano_config(nano.tokenizer, text=RELEASED_3B_TEXT, vision=RELEASED_3B_VISION)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config.max_new_tokens = max_new_tokens
    return RexOmni(model.eval(), nano.processor, max_pixels=MAX_PIXELS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="5-object scenes (batch 1 each, then in batches of 8)")
    parser.add_argument("--released-3b", action="store_true", help="also the released 3B's configuration, random weights")
    parser.add_argument("--released-3b-images", type=int, default=2)
    parser.add_argument("--released-3b-dtype", choices=["bfloat16", "float32"], default="bfloat16",
                        help="bfloat16 as on a GPU; float32 where the CPU only emulates bfloat16 (AVX2: ~20x slower)")
    parser.add_argument("--released-3b-max-new-tokens", type=int, default=256,
                        help="every answer of a random model runs this long")
    parser.add_argument("--skip-nano", action="store_true", help="only the released 3B's configuration")
    args = parser.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}; scenes: {args.images} held-out 5-object shapes scenes")
    scenes = five_object_scenes(args.images)
    if not args.skip_nano:
        nano = RexOmni.from_pretrained(device="cpu")
        print(table("shipped nano (float32, CPU)", measure(nano, ARMS, scenes)))
    if args.released_3b:
        dtype = getattr(torch, args.released_3b_dtype)
        model = random_released_3b(dtype, args.released_3b_max_new_tokens)
        rows = measure(model, ARMS, scenes[: args.released_3b_images])
        print(table(f"released 3B configuration, random weights ({args.released_3b_dtype}, CPU, "
                    f"{args.released_3b_max_new_tokens} tokens an answer; speed only)", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
