"""`rexomni data synth | convert | show`: make nano-world datasets, convert formats, look at samples."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from ..errors import add_lenient_option


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="make, convert and show training data")
    data = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data.required = True

    synth = data.add_parser("synth", help="generate a nano-world dataset: images + one COCO JSON")
    synth.add_argument("--world", required=True, choices=["shapes", "ocr", "gui", "keypoints"])
    synth.add_argument("--split", default="normal",
                       help="shapes: 'normal', 'dense', 'few', 'single' or 'novel' (colours the shipped nano never saw)")
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
    add_lenient_option(convert)
    convert.add_argument("--overwrite", action="store_true", help="replace an existing destination dataset")
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


def run_synth(args: argparse.Namespace) -> int:
    from .synth import write_synthetic_dataset

    result = write_synthetic_dataset(args.out, args.world, args.n, seed=args.seed, split=args.split, progress=True)
    print(f"wrote {result.written} images ({result.reused} already there) and {result.annotations}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import SkipReport
    from .formats import check_conversion, open_dataset, write_dataset

    check_conversion(args.source, args.source_format, args.destination, args.destination_format, args.overwrite)
    report = SkipReport()
    dataset = open_dataset(args.source, args.source_format, lenient=args.lenient, report=report, image_root=args.image_root)
    # A bar on a terminal only: in a log or captured output, an error is then the one line there.
    records = tqdm(iter(dataset), total=len(dataset), desc="convert", unit="img", disable=None)
    count = write_dataset(records, args.destination, args.destination_format)
    print(f"wrote {count} records to {args.destination} ({report.summary()})")
    for example in report.examples:
        print(f"  skipped: {example}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from .samplers import WORLD_TASKS, record_conversation, sample_conversation
    from .show import render_conversation
    from .synth import scene_seed
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
