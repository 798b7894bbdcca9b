"""Load check for `marble serve` (not a test): a burst of 4x queue-depth clients, then sequential jobs.

    python bench/serve_load.py --model RUN            # a trained run, or 'reference'
    python bench/serve_load.py --tiny                 # trains the tiny preset on 16 synthetic images first

Everything stays on 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from PIL import Image

from marble.cli import resolve_model
from marble.pipeline import MarblePipeline
from marble.server.app import create_app
from marble.server.settings import ServerSettings

DEADLINE_SECONDS = 900


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tiny_run(root: Path) -> Path:
    from marble.config import preset
    from marble.training.run import train_stages

    data = root / "data"
    data.mkdir()
    colours = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (240, 210, 30)}
    lines = []
    for k in range(16):
        name, colour = list(colours.items())[k % 4]
        pixels = np.full((16, 16, 3), 255, np.uint8)
        pixels[4 + k // 8: 12, 4: 12 - k // 8] = colour
        Image.fromarray(pixels).save(data / f"{k:02d}.png")
        lines.append(json.dumps({"file_name": f"{k:02d}.png", "text": f"{name} square"}))
    (data / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    train_stages(["text", "autoencoder", "unet"], preset("tiny"), data, root / "run", progress=False,
                 report=lambda line: None)
    return root / "run"


def start_server(app) -> tuple[uvicorn.Server, str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{listener.getsockname()[1]}"


def run_job(http: httpx.Client, job: dict) -> str:
    """Follow the job's event stream to its end; 'done', 'failed' or 'cancelled'."""
    last = ""
    with http.stream("GET", job["events_url"]) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                last = line[7:]
    return "done" if last == "done" else last


def burst(base: str, clients: int, body: dict) -> dict:
    barrier, answers, accepted = threading.Barrier(clients), [], []

    def client() -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            barrier.wait()
            try:
                response = http.post("/api/jobs", json=body)
            except httpx.HTTPError as error:
                answers.append(type(error).__name__)
                return
            answers.append(response.status_code)
            if response.status_code == 429:
                answers.append(f"Retry-After={response.headers.get('Retry-After')}")
            if response.status_code == 202:
                accepted.append(run_job(http, response.json()))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_SECONDS)
    codes = [a for a in answers if isinstance(a, int)]
    return {"clients": clients, "202": codes.count(202), "429": codes.count(429),
            "other": [a for a in answers if not isinstance(a, int) and not str(a).startswith("Retry")],
            "retry_after": sorted({a for a in answers if str(a).startswith("Retry")}),
            "accepted_jobs_ended": {state: accepted.count(state) for state in set(accepted)}}


def sequential(base: str, count: int, body: dict) -> dict:
    seconds, rss, states = [], {}, []
    started = time.monotonic()
    with httpx.Client(base_url=base, timeout=60) as http:
        for k in range(1, count + 1):
            begin = time.perf_counter()
            job = http.post("/api/jobs", json={**body, "seed": k}).json()
            states.append(run_job(http, job))
            status = http.get(job["status_url"]).json()
            assert all(http.get(image["url"]).status_code == 200 for image in status["images"])
            seconds.append(time.perf_counter() - begin)
            if k in (1, 10, 50, 100, 150, 200) or k == count:
                rss[k] = round(resident_mib(), 1)
            if time.monotonic() - started > DEADLINE_SECONDS:
                break
    return {"jobs": len(seconds), "done": states.count("done"), "rss_mib_after_job": rss,
            "rss_growth_10_to_end_mib": round(rss[max(rss)] - rss.get(10, rss[min(rss)]), 1),
            "job_seconds_p50": round(statistics.median(seconds), 3),
            "job_seconds_p95": round(sorted(seconds)[int(0.95 * (len(seconds) - 1))], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="reference")
    parser.add_argument("--tiny", action="store_true", help="train and serve the tiny preset instead")
    parser.add_argument("--queue-depth", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run = tiny_run(Path(scratch)) if args.tiny else resolve_model(args.model)
        app = create_app({"model": MarblePipeline.load(run)}, ServerSettings(queue_depth=args.queue_depth))
        server, base = start_server(app)
        body = {"prompt": "red square", "steps": args.steps, "seed": 0, "num_images": 1, "preview_every": 5}
        report = {"model": "tiny" if args.tiny else args.model, "queue_depth": args.queue_depth, "steps": args.steps,
                  "burst": burst(base, 4 * args.queue_depth, body), "sequential": sequential(base, args.jobs, body)}
        server.should_exit = True
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
