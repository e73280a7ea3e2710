"""`rexomni data synth | convert | show`: make nano-world datasets, convert formats, look at samples."""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="make, convert and show training data")
    data = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data.required = True

    synth = data.add_parser("synth", help="generate a nano-world dataset: images + one COCO JSON")
    synth.add_argument("--world", required=True, choices=["shapes", "ocr", "gui", "keypoints"])
    synth.add_argument("--split", default="normal", help="shapes: 'normal', 'dense', 'few' or 'single'")
    synth.add_argument("--n", type=int, required=True, help="number of images")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", required=True, help="output folder (images/ and annotations.json)")
    synth.set_defaults(func=run_synth)

    convert = data.add_parser("convert", help="convert a dataset between coco, tsv and jsonl")
    convert.add_argument("source", help="COCO file, TSV folder or JSONL file")
    convert.add_argument("destination", help="COCO file, TSV folder or JSONL file to write")
    convert.add_argument("--from", dest="source_format", required=True, choices=["coco", "tsv", "jsonl"])
    convert.add_argument("--to", dest="destination_format", required=True, choices=["coco", "tsv", "jsonl"])
    convert.add_argument("--image-root", help="COCO: folder holding the images (default: the file's folder)")
    convert.add_argument("--lenient", action="store_true", help="skip bad records and report them instead of stopping")
    convert.set_defaults(func=run_convert)

    show = data.add_parser("show", help="render samples with their prompt and answer text to PNG")
    source = show.add_mutually_exclusive_group(required=True)
    source.add_argument("--world", choices=["shapes", "ocr", "gui", "keypoints"])
    source.add_argument("--input", help="a dataset to show (with --format)")
    show.add_argument("--format", choices=["coco", "tsv", "jsonl"], default="coco")
    show.add_argument("--task", help="task to pose (default: every task the world poses, in turn)")
    show.add_argument("--split", default="normal")
    show.add_argument("--n", type=int, default=4)
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--out", required=True, help="output folder for PNGs")
    show.set_defaults(func=run_show)


def scene_seed(seed: int, index: int) -> int:
    """Seed of image `index` of a run with `seed` (independent streams, no overlap between runs)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def run_synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .formats import CocoWriter
    from .formats.records import Record
    from .worlds import WORLD_CATEGORIES, generate

    if args.n < 1:
        raise ValueError("--n must be at least 1")
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    writer = CocoWriter(WORLD_CATEGORIES[args.world])
    skipped = 0
    for i in tqdm(range(args.n), desc=f"synth {args.world}", unit="img"):
        scene = generate(args.world, scene_seed(args.seed, i), args.split)
        file_name = f"images/{i:06d}.png"
        if (out / file_name).exists():
            skipped += 1  # resumed run: the image is deterministic, only its annotations are needed
        else:
            scene.image.save(out / file_name)
        writer.add(Record(scene.image, scene.width, scene.height, scene.annotations, name=f"{i:06d}"), file_name)
    writer.write(out / "annotations.json")
    print(f"wrote {args.n - skipped} images ({skipped} already there) and {out / 'annotations.json'}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .formats import SkipReport, open_dataset, write_dataset

    report = SkipReport()
    dataset = open_dataset(args.source, args.source_format, lenient=args.lenient, report=report, image_root=args.image_root)
    records = tqdm(iter(dataset), total=len(dataset), desc="convert", unit="img")
    count = write_dataset(records, args.destination, args.destination_format)
    print(f"wrote {count} records to {args.destination} ({report.summary()})")
    for example in report.examples:
        print(f"  skipped: {example}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from .samplers import WORLD_TASKS, record_conversation, sample_conversation
    from .show import render_conversation
    from .worlds import generate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    if args.world:
        tasks = [args.task] if args.task else list(WORLD_TASKS[args.world])
        conversations = []
        for i in range(args.n):
            scene = generate(args.world, scene_seed(args.seed, i), args.split)
            conversation = sample_conversation(scene, tasks[i % len(tasks)], rng)
            if conversation is not None:
                conversations.append(conversation)
    else:
        from .formats import open_dataset

        dataset = open_dataset(args.input, args.format)
        conversations = [record_conversation(dataset[i]) for i in range(min(args.n, len(dataset)))]
    for i, conversation in enumerate(conversations):
        path = out / f"sample_{i:03d}_{conversation.task}.png"
        render_conversation(conversation).save(path)
        print(path)
    return 0
