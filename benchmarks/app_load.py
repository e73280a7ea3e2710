"""Does the demo hold its load? Concurrent gradio_client users against `python app.py`, loopback only.

Starts the app (the embedded nano, the queue and launch options the app always runs with) as a
process of its own on 127.0.0.1, then runs USERS threads, each with its own `gradio_client.Client`,
sending detection requests back to back for SECONDS. One user asks for all 30 of the nano's
phrases in every request (a long prompt and a long answer), to see whether a normal request's
wait stays bounded behind it. Reports
requests served, errors, p50/p95 latency, and the server's resident memory before and after.

    python benchmarks/app_load.py                       # 16 users for 120 s (the issue's test)
    python benchmarks/app_load.py --users 4 --seconds 20  # a quick run

Every request goes to 127.0.0.1; the run stops by itself after SECONDS (+ the requests in flight).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NORMAL = "red circle, blue star"
LONG = ", ".join(f"{colour} {shape}" for colour in ("red", "yellow", "green", "cyan", "blue", "magenta")
                 for shape in ("circle", "square", "triangle", "star", "hexagon"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_app(port: int) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return process
        except OSError:
            time.sleep(1)
    process.kill()
    raise RuntimeError("the app did not start within 180 s")


def user(url: str, image: str, seconds: float, categories: str, results: list, errors: list) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        start = time.perf_counter()
        try:
            client.predict(handle_file(image), categories, api_name="/detect")
            results.append((categories is NORMAL, time.perf_counter() - start))
        except Exception as error:  # noqa: BLE001  every failure is counted, none stops the run
            errors.append(f"{type(error).__name__}: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO_ROOT))
    from rexomni_core.data.worlds import generate

    image = Path("/tmp") / f"rexomni-load-{os.getpid()}.png"
    generate("shapes", seed=11, split="few").image.save(image)
    port = free_port()
    app = start_app(port)
    url = f"http://127.0.0.1:{port}/"
    try:
        before = resident_mb(app.pid)
        results: list[tuple[bool, float]] = []
        errors: list[str] = []
        threads = [
            threading.Thread(target=user, args=(url, str(image), args.seconds, LONG if i == 0 else NORMAL, results, errors))
            for i in range(args.users)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        after = resident_mb(app.pid)
    finally:
        app.terminate()
        app.wait(timeout=30)
        image.unlink(missing_ok=True)

    normal = sorted(seconds for is_normal, seconds in results if is_normal)
    long = sorted(seconds for is_normal, seconds in results if not is_normal)

    def quantile(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    print(f"{args.users} users for {args.seconds:.0f} s ({wall:.0f} s with the requests in flight), one server worker")
    print("| requests served | errors | normal p50 (s) | normal p95 (s) | long-prompt p50 (s) | served/s "
          "| server RSS before → after (MB) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(results)} | {len(errors)} | {quantile(normal, 0.5):.2f} | {quantile(normal, 0.95):.2f} | "
          f"{statistics.median(long) if long else float('nan'):.2f} | {len(results) / wall:.2f} | {before:.0f} → {after:.0f} |")
    for message in sorted(set(errors))[:5]:
        print(f"  error: {message}")


if __name__ == "__main__":
    main()
