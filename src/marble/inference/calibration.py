"""Calibration prompts: a few training captions saved with the U-Net, sampled to calibrate precision int8."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from marble.errors import MarbleError

CALIBRATION_PROMPTS = 16
CALIBRATION_STEPS = 10  # per prompt: dpm++ crosses the whole noise range in 10 steps
CALIBRATION_IMAGES = 2  # per prompt; with guidance each U-Net call sees 4 latents: 16 x 10 = 160 feeds
CALIBRATION_GUIDANCE = 5.0


def choose_calibration_prompts(captions: list[str], seed: int = 0, count: int = CALIBRATION_PROMPTS) -> list[str]:
    """`count` distinct non-empty captions, drawn with `seed` so a retrain picks the same ones."""
    distinct = sorted({caption for caption in captions if caption.strip()})
    return random.Random(seed).sample(distinct, min(count, len(distinct)))


def write_calibration_prompts(prompts: list[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps(prompts, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(staging, path)


def read_calibration_prompts(path: Path) -> list[str]:
    """The saved prompts, or [] for a run trained before they were saved."""
    if not path.is_file():
        return []
    try:
        prompts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MarbleError(f"{path}: not a JSON list of prompts ({error})") from None
    if not isinstance(prompts, list) or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise MarbleError(f"{path}: must be a JSON list of non-empty prompts")
    return prompts
