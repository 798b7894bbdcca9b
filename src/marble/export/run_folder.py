"""A run reduced to what generating needs: no checkpoints, no TensorBoard; optionally half-size weights."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from marble.errors import MarbleError
from marble.layout import RunLayout
from marble.training.artifacts import save_atomically

# Relative to the run folder: inference artefacts, then the records of how they were made.
NEEDED = ("text/encoder", "autoencoder/model", "autoencoder/preview.json", "unet/model", "unet/scheduler")
RECORDS = ("run.json", "data.json", "text/summary.json", "autoencoder/summary.json", "unet/summary.json",
           "text/train_log.jsonl", "text/locked-image/train_log.jsonl", "autoencoder/train_log.jsonl",
           "unet/train_log.jsonl", "unet/calibration_prompts.json")


def halve_safetensors(path: Path) -> None:
    """Store float32 tensors as float16: half the bytes; loaders cast back to the model's dtype."""
    tensors = load_file(str(path))
    save_file({k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}, str(path))


def finished_run(run_dir: Path) -> Path:
    """The run's root folder; MarbleError if anything generating needs is missing."""
    run = RunLayout(Path(run_dir)).root
    missing = [name for name in NEEDED if not (run / name).exists()]
    if missing:
        raise MarbleError(f"{run} is not a finished run: missing {', '.join(missing)}")
    return run


def export_run_folder(run_dir: Path, out_dir: Path, half: bool = False,
                      replaced: dict[str, Callable[[Path], None]] | None = None) -> Path:
    """Copy the run's inference files to `out_dir`; `replaced` maps a relative name to a writer that
    makes that file or folder instead of the copy (a merged U-Net, a record of the merge)."""
    run = finished_run(run_dir)
    replaced = replaced or {}

    def write(staging: Path) -> None:
        for name in NEEDED + tuple(r for r in RECORDS if (run / r).exists()):
            if name in replaced:
                continue
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if (run / name).is_dir() else shutil.copy2)(run / name, target)
        for name, write_part in replaced.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            write_part(staging / name)
        if half:
            for weights in staging.rglob("*.safetensors"):
                halve_safetensors(weights)

    save_atomically(write, Path(out_dir))
    return Path(out_dir)
