"""The evaluation CLIP: trained apart from the generator's text encoder, so a model is not graded by its own judge.

It has its own seed and sees every image (train and held-out) with every caption language, then
scores prompts against images (CLIP score) and embeds images (the "clip" Fréchet extractor).

    OUT/                 CLIPModel.save_pretrained + tokenizer + summary.json, written in one rename
    OUT/training/        while training only: checkpoints, train_log.jsonl, the config (resumes if present)
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

from marble.config import RunConfig, load_json, preset, replace_train, save_json
from marble.data.folder import load_image_folder
from marble.errors import MarbleError
from marble.training.artifacts import save_atomically, write_json
from marble.training.distributed import is_main_process, on_main_process
from marble.training.text_stage import train_clip

TRAINING_DIR = "training"
STAGE_NAME = "eval-clip"
DEFAULT_SEED = 1  # the generator's text encoder trains with seed 0 by default: a different start


def eval_clip_config(preset_name: str = "emoji", seed: int = DEFAULT_SEED, **train_changes) -> RunConfig:
    """The preset's CLIP settings with the evaluation seed and every caption language, without the
    locked-image phase; `train_changes` (steps, batch_size, learning_rate) override its TrainConfig where not None."""
    try:
        config = preset(preset_name)
    except ValueError as error:
        raise MarbleError(str(error)) from None
    changes = {name: value for name, value in train_changes.items() if value is not None}
    for name, value in changes.items():
        if name not in ("steps", "batch_size", "learning_rate"):
            raise MarbleError(f"the evaluation CLIP's {name} cannot be changed here")
        if not (math.isfinite(value) and value > 0):  # `nan <= 0` is False: test the good case
            raise MarbleError(f"{name} must be positive, got {value}")
    if seed < 0:
        raise MarbleError(f"the seed must be non-negative, got {seed}")
    # The contrastive phase only: the judge does not share the generator's locked-image tuning.
    no_locked_phase = dataclasses.replace(config.text.locked_image, steps=0)
    text = replace_train(dataclasses.replace(config.text, kind="clip", locked_image=no_locked_phase), seed=seed, **changes)
    data = dataclasses.replace(config.data, langs=())  # () keeps every caption language
    return dataclasses.replace(config, name=f"{config.name}-eval-clip", text=text, data=data)


def train_eval_clip(data_dir: Path, out_dir: Path, config: RunConfig, progress: bool = True) -> dict:
    """Train the evaluation CLIP on all of `data_dir`; write it to `out_dir`; return its summary.

    Under `accelerate launch` every process trains; only the main one writes.
    """
    out_dir, progress = Path(out_dir), progress and is_main_process()
    if (out_dir / "config.json").is_file():
        raise MarbleError(f"{out_dir} already holds a trained evaluation CLIP; choose another --out or delete it")
    pairs, skipped = load_image_folder(Path(data_dir), config.data.image_size, config.data.max_image_bytes, progress)
    training_dir = _open_training_dir(out_dir / TRAINING_DIR, config)
    clip, tokenizer, summary = train_clip(config, pairs, training_dir, progress, name=STAGE_NAME)
    summary.update(stage=STAGE_NAME, seed=config.text.train.seed, images=len(pairs), skipped=dict(skipped.counts),
                   data_dir=str(Path(data_dir).resolve()), image_size=config.data.image_size)

    def write(staging: Path) -> None:
        clip.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        save_json(config, staging / "run.json")
        shutil.copy2(training_dir / "train_log.jsonl", staging / "train_log.jsonl")
        write_json(staging / "summary.json", summary)

    # Replaces OUT (and the finished training/ checkpoints inside it) with the final model in one rename.
    on_main_process(lambda: save_atomically(write, out_dir))
    return summary


def _open_training_dir(training_dir: Path, config: RunConfig) -> Path:
    """Create OUT/training, or check that the interrupted run there used the same settings."""
    saved = training_dir / "run.json"
    if saved.is_file():
        if load_json(RunConfig, saved) != config:
            raise MarbleError(f"{training_dir.parent} holds an unfinished evaluation CLIP trained with other settings "
                              f"({saved}); use the same options or another --out")
        return training_dir

    def write() -> None:
        training_dir.mkdir(parents=True, exist_ok=True)
        save_json(config, saved)

    on_main_process(write)
    return training_dir


__all__ = ["eval_clip_config", "train_eval_clip", "DEFAULT_SEED"]
