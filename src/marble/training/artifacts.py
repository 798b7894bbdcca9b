"""Final model folders are written like checkpoints: all at once or not at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from marble.training.checkpoint import atomic_directory


def save_atomically(write: Callable[[Path], None], target: Path) -> None:
    """Run `write(staging_dir)` and move the result to `target` in one rename."""
    with atomic_directory(Path(target)) as staging:
        write(staging)


def save_pretrained_atomically(model, target: Path, *companions) -> None:
    """`save_pretrained` of a model plus companions (e.g. its tokenizer) into one folder.

    Both transformers 5 and diffusers write safetensors by default; tests check no pickle appears.
    """

    def write(directory: Path) -> None:
        for part in (model, *companions):
            part.save_pretrained(directory)

    save_atomically(write, target)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
