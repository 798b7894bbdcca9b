"""Time to quality: each stage's training time from the reference run's logs; FD and CLIP score from
an evaluation report's metrics.json when there is one."""

from __future__ import annotations

import json
from pathlib import Path

STAGES = ("text", "autoencoder", "unet")


def logged_seconds(log: Path) -> float:
    """Training seconds of a train_log.jsonl; a log whose clock restarted at a resume (older runs) is summed
    piece by piece."""
    total, last = 0.0, 0.0
    for line in log.read_text().splitlines():
        seconds = json.loads(line)["seconds"]
        if seconds < last:
            total += last
        last = seconds
    return total + last


def stage_times(run_dir: Path) -> list[dict]:
    """Per stage: steps, seconds and parameters; the text stage's locked-image phase counts in its time."""
    rows = []
    for stage in STAGES:
        summary = json.loads((run_dir / stage / "summary.json").read_text())
        log = run_dir / stage / "train_log.jsonl"
        seconds = logged_seconds(log) if log.is_file() else summary["seconds"]
        steps = str(summary["steps"])
        phase = run_dir / stage / "locked-image" / "train_log.jsonl"
        if phase.is_file():
            seconds += logged_seconds(phase)
            steps += f" + {json.loads(phase.read_text().splitlines()[-1])['step']} locked-image"
        rows.append({"stage": stage, "steps": steps, "seconds": seconds,
                     "parameters": summary.get("parameters"), "final": summary.get("final", {})})
    return rows


def evaluation_numbers(metrics_path: Path) -> dict | None:
    """{"fd": {extractor: (fd, floor, N)}, "clip_score": (generated, real, N)} or None if not evaluated yet."""
    if not metrics_path.is_file():
        return None
    metrics = json.loads(metrics_path.read_text())
    fd = {name: (row["fd"], row["floor"], row["num_images"]) for name, row in metrics.get("fd", {}).items()}
    scores = metrics.get("clip_score", {})
    clip = (scores["generated"]["mean"], scores["real"]["mean"], scores["generated"]["num_images"]) if scores else None
    return {"fd": fd, "clip_score": clip, "settings": metrics.get("settings", {})}
