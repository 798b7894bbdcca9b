"""Running stages against a run folder: the config it was started with, then text → autoencoder → unet."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable

from marble.config import RunConfig, TrainConfig, load_json, save_json, to_dict
from marble.errors import MarbleError
from marble.layout import RunLayout
from marble.training.artifacts import write_json
from marble.training.autoencoder_stage import train_autoencoder_stage
from marble.training.data import TrainingData, load_training_data
from marble.training.distributed import is_main_process, on_main_process
from marble.training.init_from import source_run
from marble.training.sample_grid import training_sampler
from marble.training.text_stage import train_text_stage
from marble.training.unet_stage import train_unet_stage

STAGES = ("text", "autoencoder", "unet")


def only_trains_longer(saved: RunConfig, config: RunConfig) -> bool:
    """True if `config` is `saved` with some step counts raised (continue training), or `compile` switched.

    Every TrainConfig of a stage counts (the text stage's locked-image phase has its own).
    """
    same_steps = saved
    for stage in STAGES:
        stage_saved, stage_new = getattr(same_steps, stage), getattr(config, stage)
        for field in dataclasses.fields(stage_saved):
            old, new = getattr(stage_saved, field.name), getattr(stage_new, field.name)
            if not isinstance(old, TrainConfig) or not isinstance(new, TrainConfig):
                continue
            if new.steps < old.steps:
                return False
            stage_saved = dataclasses.replace(stage_saved, **{field.name: dataclasses.replace(old, steps=new.steps, compile=new.compile)})
        same_steps = dataclasses.replace(same_steps, **{stage: stage_saved})
    return same_steps == config


def setting_differences(saved: RunConfig, config: RunConfig, limit: int = 3) -> list[str]:
    """'unet.pooled_text_heads: run 0, now 4' for the first `limit` settings that differ."""
    def flat(tree: dict, prefix: str = "") -> dict:
        items = {}
        for key, value in tree.items():
            items.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
        return items

    old, new = flat(to_dict(saved)), flat(to_dict(config))
    keys = [key for key in old if old[key] != new.get(key)]
    shown = [f"{key}: run {old[key]}, now {new.get(key)}" for key in keys[:limit]]
    return shown + ([f"and {len(keys) - limit} more"] if len(keys) > limit else [])


def open_run(run_dir: Path, config: RunConfig) -> RunLayout:
    """Create the run folder, or check that an existing one was started with the same config.

    Raising a stage's steps is allowed: it resumes from the last checkpoint and trains on, its
    learning-rate schedule stretched to the new length.
    """
    layout = RunLayout(Path(run_dir))
    saved = load_json(RunConfig, layout.run_config) if layout.run_config.exists() else None
    if saved is not None and not only_trains_longer(saved, config):
        raise MarbleError(f"{run_dir} was started with a different configuration ({layout.run_config}: "
                          f"{'; '.join(setting_differences(saved, config))}); use a new --run folder or "
                          "the same options (only step counts may grow; --set KEY=VALUE gives the run's value)")

    def write() -> None:
        layout.root.mkdir(parents=True, exist_ok=True)
        save_json(config, layout.run_config)

    on_main_process(write)
    return layout


def _run_stage(name: str, config: RunConfig, data: TrainingData, layout: RunLayout, progress: bool) -> dict:
    trainers: dict[str, Callable[..., dict]] = {
        "text": train_text_stage,
        "autoencoder": train_autoencoder_stage,
        "unet": lambda *args: train_unet_stage(*args, on_sample=training_sampler(layout, config)),
    }
    return trainers[name](config, data, layout, progress)


# The stages a U-Net reads, frozen: where each keeps the model the U-Net needs.
FROZEN_FOR_UNET = {"text": lambda layout: layout.text_encoder, "autoencoder": lambda layout: layout.autoencoder}


def adopt_frozen_stages(config: RunConfig, layout: RunLayout, report: Callable[[str], None]) -> None:
    """A U-Net started from another model (`unet.init_from`) reads that model's text context and latents:
    a run without its own text or autoencoder stage copies that model's (a stage it has stays its own)."""
    if not config.unet.init_from:
        return
    source = source_run(config.unet.init_from)
    for stage, needed in FROZEN_FOR_UNET.items():
        if needed(layout).is_dir() or not needed(source).is_dir():
            continue
        on_main_process(lambda: shutil.copytree(source.stage(stage), layout.stage(stage), dirs_exist_ok=True,
                                                ignore=shutil.ignore_patterns("checkpoints", "tensorboard")))
        report(f"{stage}: copied from {source.stage(stage)} (the U-Net starts from that model and reads its {stage})")


def check_prerequisites(name: str, layout: RunLayout) -> None:
    needed = FROZEN_FOR_UNET.items() if name == "unet" else []
    for stage, path_in in needed:
        path = path_in(layout)
        if not path.is_dir():
            raise MarbleError(f"the {name} stage needs a trained {stage} stage first ({path} is missing): "
                              f"run `marble train {stage}` with the same --run")


def train_stages(names: list[str], config: RunConfig, data_dir: Path, run_dir: Path, progress: bool = True,
                 report: Callable[[str], None] = print) -> dict[str, dict]:
    """Train the named stages in order; each writes its summary.json and reports what it wrote.

    Under `accelerate launch` every process runs this; only the main one writes, shows and reports.
    """
    for name in names:
        if name not in STAGES:
            raise MarbleError(f"unknown stage {name!r}; choose from {', '.join(STAGES)} or all")
    main = is_main_process()
    progress, report = progress and main, report if main else (lambda line: None)
    data = load_training_data(data_dir, config.data, progress)  # first: bad data must not leave a run folder
    layout = open_run(run_dir, config)
    report(f"data: {data.describe()}")
    on_main_process(lambda: write_json(layout.root / "data.json", {
        "data_dir": str(Path(data_dir).resolve()), "train": len(data.train), "holdout": len(data.holdout),
        "skipped": dict(data.skipped.counts)}))
    summaries = {}
    for name in names:
        if name == "unet":
            adopt_frozen_stages(config, layout, report)
        check_prerequisites(name, layout)
        summary = _run_stage(name, config, data, layout, progress)
        on_main_process(lambda: write_json(layout.summary(name), summary))
        summaries[name] = summary
        report(f"{name}: {json.dumps(summary, ensure_ascii=False)}\n  wrote {layout.stage(name)}")
    return summaries
