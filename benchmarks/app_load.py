"""Does the demo hold its load? Concurrent gradio_client users against `python app.py`, loopback only.

Starts the app (the embedded nano, the queue and launch options the app always runs with) as a
process of its own on 127.0.0.1, then:

1. times the longest request the input limits allow, once, alone: MAX_CATEGORIES phrases padded
   until the prompt leaves just the checkpoint's max_new_tokens of the model's positions
   (longer prompts are refused); its answer runs to max_new_tokens. With one request served at a
   time, a request's wait in the queue is at most (its place in line) × that time.
2. runs USERS threads, each with its own `gradio_client.Client`, sending detection requests back
   to back for SECONDS. One user asks for all 30 of the nano's phrases in every request (a long
   prompt and a long answer) to probe head-of-line blocking behind it.

Reports requests served, errors, p50/p95 latency of the normal and the long requests, the
longest wait of a normal request in the queue (its latency less its own model time, which the
app reports in its summary), and the server's resident memory: idle, after the first quarter of
the run (warm: caches and allocator pools filled) and at the end.

    python benchmarks/app_load.py                          # 16 users for 120 s (the issue's test)
    python benchmarks/app_load.py --users 4 --seconds 20   # a quick run
    python benchmarks/app_load.py --skip-longest           # without the limits' longest request

Every request goes to 127.0.0.1; the run stops by itself after SECONDS (+ the requests in flight).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from rexomni_core.tasks import MAX_CATEGORIES, MAX_PHRASE_CHARS  # noqa: E402

COLOURS = ("red", "yellow", "green", "cyan", "blue", "magenta")
SHAPES = ("circle", "square", "triangle", "star", "hexagon")
NORMAL = "red circle, blue star"
LONG = ", ".join(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)
PADDING = " x"  # one token of the nano tokenizer: the prompt grows by MAX_CATEGORIES tokens a step
# The app's summary line: "N regions · 0.37 s · 61 prompt tokens · 17 output tokens".
SUMMARY = re.compile(r"(\d+) regions · ([\d.]+) s · (\d+) prompt tokens · (\d+) output tokens")
TOO_LONG = re.compile(r"the prompt is (\d+) tokens .* up to (\d+) answer tokens .* this model's (\d+) positions")


@dataclass
class Served:
    long: bool
    seconds: float  # as the user waited for it: queue + model + transfer
    model_seconds: float  # the model's own time, from the app's summary
    prompt_tokens: int
    output_tokens: int

    @property
    def queued(self) -> float:
        return self.seconds - self.model_seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_app(port: int, cache: Path) -> subprocess.Popen:
    # A fresh example cache: one left from other examples would be served as theirs.
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(REPO_ROOT),
               GRADIO_EXAMPLES_CACHE=str(cache))
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600  # it answers every example first (cache_examples)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with code {process.returncode} while starting")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            return process
        except OSError:
            time.sleep(2)
    process.kill()
    raise RuntimeError("the app did not start within 600 s")


def ask(client, image: str, categories: str, long: bool = False) -> Served:
    from gradio_client import handle_file

    start = time.perf_counter()
    _, summary, *_ = client.predict(handle_file(image), categories, api_name="/detect")
    seconds = time.perf_counter() - start
    found = SUMMARY.search(summary)
    if found is None:
        raise RuntimeError(f"no timing in the app's summary: {summary!r}")
    return Served(long, seconds, float(found.group(2)), int(found.group(3)), int(found.group(4)))


def longest_allowed(client, image: str) -> tuple[Served, int]:
    """The longest request the limits let through, served alone, and its longest phrase: MAX_CATEGORIES
    phrases padded (within MAX_PHRASE_CHARS) until the next padding would be refused for running past
    the model's positions. Each refusal costs only the prompt's encoding."""

    def categories(padding: int) -> str:
        return ", ".join(f"{COLOURS[i % 6]} {SHAPES[i // 6 % 5]} {i}{PADDING * padding}" for i in range(MAX_CATEGORIES))

    padding = (MAX_PHRASE_CHARS - len(f"magenta triangle {MAX_CATEGORIES}")) // len(PADDING)
    tokens = {}
    while padding >= 0:
        try:
            text = categories(padding)
            return ask(client, image, text), max(len(phrase) for phrase in text.split(", "))
        except Exception as error:  # noqa: BLE001  the refusal says how long the prompt was
            too_long = TOO_LONG.search(str(error))
            if too_long is None:
                raise
            prompt, answer, positions = map(int, too_long.groups())
            tokens[padding] = prompt
            if padding + 1 in tokens:  # two refusals give the tokens per padding: jump near the limit
                step = tokens[padding + 1] - prompt
                padding = min(padding - 1, padding - math.ceil((prompt - (positions - answer)) / max(step, 1)))
            else:
                padding -= 1
    raise RuntimeError("no padding fits the model's positions")


def user(url: str, image: str, seconds: float, long: bool, served: list, errors: list) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            served.append(ask(client, image, LONG if long else NORMAL, long))
        except Exception as error:  # noqa: BLE001  every failure is counted, none stops the run
            errors.append(f"{type(error).__name__}: {error}")


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--skip-longest", action="store_true", help="do not time the limits' longest request")
    args = parser.parse_args()

    from gradio_client import Client

    from rexomni_core.data.worlds import generate
    from rexomni_core.demo import QUEUE_OPTIONS

    with tempfile.TemporaryDirectory(prefix="rexomni-load-") as scratch:
        image = str(Path(scratch) / "scene.png")
        generate("shapes", seed=11, split="few").image.save(image)
        port = free_port()
        app = start_app(port, Path(scratch) / "examples-cache")
        url = f"http://127.0.0.1:{port}/"
        try:
            idle = resident_mb(app.pid)
            longest = None
            if not args.skip_longest:
                longest = longest_allowed(Client(url, verbose=False, download_files=False), image)
            served: list[Served] = []
            errors: list[str] = []
            threads = [
                threading.Thread(target=user, args=(url, image, args.seconds, i == 0, served, errors))
                for i in range(args.users)
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            memory = []  # (seconds into the run, MB), every 2 s
            while any(thread.is_alive() for thread in threads):
                memory.append((time.perf_counter() - started, resident_mb(app.pid)))
                time.sleep(2)
            wall = time.perf_counter() - started
        finally:
            app.terminate()
            app.wait(timeout=30)

    normal = [s for s in served if not s.long]
    long = [s for s in served if s.long]
    warm = next(mb for t, mb in memory if t >= args.seconds / 4)
    end, peak = memory[-1][1], max(mb for _, mb in memory)
    slowest = max((s.model_seconds for s in served), default=float("nan"))
    print(f"{args.users} users for {args.seconds:.0f} s ({wall:.0f} s with the requests in flight); queue "
          f"{QUEUE_OPTIONS}; {len(served)} served, {len(errors)} errors, {len(served) / wall:.2f} served/s")
    print("| requests | n | p50 (s) | p95 (s) | max (s) | model time p50 (s) | output tokens p50 |")
    print("|---|---|---|---|---|---|---|")
    for name, group in (("normal (2 phrases)", normal), ("long (30 phrases)", long)):
        seconds = [s.seconds for s in group]
        print(f"| {name} | {len(group)} | {quantile(seconds, 0.5):.2f} | {quantile(seconds, 0.95):.2f} | "
              f"{max(seconds, default=float('nan')):.2f} | {quantile([s.model_seconds for s in group], 0.5):.2f} | "
              f"{quantile([s.output_tokens for s in group], 0.5):.0f} |")
    worst_wait = max((s.queued for s in normal), default=float("nan"))
    print(f"longest wait of a normal request in the queue: {worst_wait:.2f} s; bound at this load "
          f"({args.users - 1} ahead × the slowest request served, {slowest:.2f} s): {(args.users - 1) * slowest:.1f} s")
    if longest is not None:
        request, phrase_chars = longest
        print(f"longest request the limits allow ({MAX_CATEGORIES} phrases of up to {phrase_chars} characters, "
              f"{request.prompt_tokens} prompt + {request.output_tokens} output tokens): "
              f"{request.model_seconds:.1f} s of model time; "
              f"a full queue ({QUEUE_OPTIONS['max_size']}) of them keeps the last waiting up to "
              f"{QUEUE_OPTIONS['max_size'] - 1} × {request.model_seconds:.1f} s = "
              f"{(QUEUE_OPTIONS['max_size'] - 1) * request.model_seconds / 60:.0f} min")
    print(f"server RSS (MB): idle {idle:.0f}, warm (at {args.seconds / 4:.0f} s) {warm:.0f}, end {end:.0f}, "
          f"peak {peak:.0f}; growth after warm-up {end - warm:+.0f}")
    for message in sorted(set(errors))[:5]:
        print(f"  error: {message}")


if __name__ == "__main__":
    main()
