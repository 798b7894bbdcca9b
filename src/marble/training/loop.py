"""The one training loop every stage shares: accelerate, AdamW, LR schedule, EMA, checkpoints, logs.

A stage supplies objectives (a module and a loss over a `Batch`); the loop owns everything
else. Batches and their randomness are pure functions of (seed, step) (see randomness.py), so a
resumed run continues exactly where an uninterrupted one would have been, and N processes
(`accelerate launch`) each train on their share of the same global batch: DDP averages their
gradients, which is the gradient of the global batch's mean loss. Only the main process writes.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import threading
import time
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Callable, Iterator

import torch
from accelerate.tracking import TensorBoardTracker
from tqdm.auto import tqdm

from marble.config import TrainConfig
from marble.errors import MarbleError
from marble.training.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_training_state,
    prune_checkpoints,
    save_training_state,
)
from marble.training.distributed import any_process, make_accelerator, mean_over_processes
from marble.training.ema import EMA
from marble.training.randomness import Batch, BatchFactory, Groups, make_batch

LossFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict[str, float]]]
KEEP_CHECKPOINTS = 2


@dataclass
class Objective:
    """One module trained by one loss with its own AdamW (a GAN stage has two)."""

    name: str
    module: torch.nn.Module
    loss: LossFn
    learning_rate: float | None = None  # None: the stage's TrainConfig.learning_rate
    starts_at: int = 0  # first step at which this objective trains (e.g. the discriminator)
    # What the loss calls, when `module`'s own forward is not the training computation (e.g. the
    # autoencoder's encode + decode): a wrapper owning `module`, so that DDP sees one forward.
    forward_module: torch.nn.Module | None = None


@dataclass
class Stage:
    name: str
    objectives: list[Objective]
    dataset_size: int
    ema_decay: float = 0.0  # > 0: keep an EMA of objectives[0].module
    on_sample: Callable[[int, Path, torch.nn.Module], None] | None = None  # (step, dir, live module): a grid
    batches: BatchFactory | None = None  # streamed data; None: indices drawn by make_batch over dataset_size
    groups: Groups | None = None  # in-memory data only: draw every group equally often instead of every image


def learning_rate_at(step: int, config: TrainConfig, base: float) -> float:
    """Linear warm-up, then cosine decay to 10% of the base rate."""
    if step < config.warmup_steps:
        return base * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_optimizer(module: torch.nn.Module, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    # Fused AdamW: 4.6x faster optimizer step on this CPU (DESIGN.md, measured).
    return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay, fused=True)


class TrainLog:
    """train_log.jsonl: one JSON line per logged step; truncated to the checkpoint on resume.

    "seconds" counts training time across resumes, so a resumed run's curve continues in time too.
    """

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if path.exists() and resume_step > 0:
            kept = [json.loads(line) for line in path.read_text().splitlines() if line]
            kept = [record for record in kept if record["step"] <= resume_step]
        self.seconds_before = kept[-1]["seconds"] if kept else 0.0
        self.last = {k: v for k, v in kept[-1].items() if k not in ("step", "seconds")} if kept else {}
        path.write_text("".join(json.dumps(record) + "\n" for record in kept))

    def write(self, step: int, seconds: float, values: dict[str, float]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": step, "seconds": round(self.seconds_before + seconds, 2), **values}) + "\n")


def _autocast(config: TrainConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.mixed_precision == "bf16")


def train_stage(stage: Stage, config: TrainConfig, stage_dir: Path, progress: bool = True) -> dict:
    """Train `stage` to `config.steps`, resuming from the newest checkpoint in `stage_dir`."""
    if config.mixed_precision not in ("no", "bf16"):
        raise MarbleError(f"mixed_precision must be 'no' or 'bf16', got {config.mixed_precision!r}")
    return _StageRun(stage, config, Path(stage_dir)).run(progress)


class _StageRun:
    """State of one stage's training: prepared modules, optimizers, EMA, log and tracker."""

    def __init__(self, stage: Stage, config: TrainConfig, stage_dir: Path):
        self.stage, self.config, self.stage_dir = stage, config, stage_dir
        self.accelerator = make_accelerator()
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        if config.batch_size % self.world:
            raise MarbleError(f"batch size {config.batch_size} must divide evenly across {self.world} processes")
        self.main = self.accelerator.is_main_process
        self.checkpoints = stage_dir / "checkpoints"
        self.modules = {o.name: o.module for o in stage.objectives}
        self.optimizers = {o.name: make_optimizer(o.module, config, self._base_lr(o)) for o in stage.objectives}
        self.ema = EMA(stage.objectives[0].module, stage.ema_decay) if stage.ema_decay > 0 else None
        self.start_step = self._resume()
        self.prepared = {o.name: self._compiled(self.accelerator.prepare(o.forward_module or o.module))
                         for o in stage.objectives}
        self.prepared_optimizers = {n: self.accelerator.prepare(o) for n, o in self.optimizers.items()}

    def _base_lr(self, objective: Objective) -> float:
        return objective.learning_rate or self.config.learning_rate

    def _resume(self) -> int:
        found = latest_checkpoint(self.checkpoints)
        if found is None:
            return 0
        step, ema_shadow, _ = load_training_state(found, self.modules, self.optimizers)
        if self.ema is not None and ema_shadow is not None:
            self.ema.shadow = ema_shadow
        return step

    def _compiled(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module the loss calls; compiled, it shares its parameters with `module`, which checkpoints and EMA
        keep reading, so their keys stay those of the plain module."""
        return torch.compile(module) if self.config.compile else module

    def checkpoint(self, step: int) -> None:
        if self.main:
            shadow = self.ema.shadow if self.ema is not None else None
            save_training_state(checkpoint_path(self.checkpoints, step), step, self.modules, self.optimizers, shadow)
            prune_checkpoints(self.checkpoints, KEEP_CHECKPOINTS)
        self.accelerator.wait_for_everyone()

    def batches(self) -> Iterator[Batch]:
        """This process's batches from the resumed step on, each marked with the device the models train on."""
        config, device = self.config, self.accelerator.device
        if self.stage.batches is None:
            return (make_batch(config.seed, step, self.stage.dataset_size, config.batch_size, self.rank, self.world,
                               device, self.stage.groups) for step in count(self.start_step))
        return (_on_device(batch, device) for batch in self.stage.batches(self.start_step, self.rank, self.world))

    def train_step(self, step: int, batch: Batch) -> dict[str, float]:
        """One optimizer step per active objective, on this process's share of the batch."""
        logs: dict[str, float] = {}
        for objective in self.stage.objectives:
            if step < objective.starts_at:
                continue
            optimizer = self.prepared_optimizers[objective.name]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, self.config, self._base_lr(objective))
            with _autocast(self.config, self.accelerator.device):
                loss, values = objective.loss(self.prepared[objective.name], batch)
            if not torch.isfinite(loss):
                raise MarbleError(f"{self.stage.name}: loss became {loss.item()} at step {step}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            self.accelerator.backward(loss)
            if self.config.grad_clip > 0:
                self.accelerator.clip_grad_norm_(objective.module.parameters(), self.config.grad_clip)
            optimizer.step()
            logs.update({f"{objective.name}/{k}": v for k, v in values.items()})
        if self.ema is not None:
            self.ema.update(self.stage.objectives[0].module, step)
        return logs

    def run(self, progress: bool) -> dict:
        config, main = self.config, self.main
        log = TrainLog(self.stage_dir / "train_log.jsonl", self.start_step) if main else None
        tracker = _start_tracker(self.stage.name, self.stage_dir) if main else None
        bar = tqdm(total=config.steps, initial=self.start_step, desc=f"train {self.stage.name}",
                   disable=not (main and progress), unit="step")
        started, logs, batches = time.perf_counter(), {}, self.batches()
        try:
            with stop_signals() as stop:
                for step in range(self.start_step, config.steps):
                    logs = self.train_step(step, next(batches))
                    done = step + 1
                    bar.update(1)
                    if done % config.log_every == 0 or done == config.steps:
                        logs = mean_over_processes(logs, self.accelerator.device)  # every process takes part
                        if main:
                            log.write(done, time.perf_counter() - started, logs)
                            tracker.log(logs, step=done)
                            bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in logs.items() if "loss" in k})
                    if main and self.stage.on_sample and config.sample_every and done % config.sample_every == 0:
                        self.stage.on_sample(done, self.stage_dir / "samples", _on_cpu(self.stage.objectives[0].module))
                    # A signal reaches processes at different steps: all stop after the same one.
                    if any_process(stop.requested, self.accelerator.device):
                        # Nothing lost on Ctrl-C or SIGTERM: keep the completed step, then stop.
                        self.checkpoint(done)
                        raise KeyboardInterrupt
                    if done % config.checkpoint_every == 0 or done == config.steps:
                        self.checkpoint(done)
        finally:
            bar.close()
            if tracker is not None:
                tracker.finish()
        self.finish()
        seconds = time.perf_counter() - started
        # Across resumes (from the log), so a run resumed only to write its result still says what it took.
        final = logs or (log.last if log else {})
        return {"stage": self.stage.name, "steps": config.steps, "resumed_from": self.start_step,
                "seconds": round(seconds + (log.seconds_before if log else 0.0), 1),
                "final": {k: round(v, 6) for k, v in final.items()}}

    def finish(self) -> None:
        """EMA weights into the sampled module; every module back on the CPU, where the stages save and measure."""
        if self.ema is not None:
            self.ema.copy_to(self.stage.objectives[0].module)
        for module in self.modules.values():
            module.to("cpu")


def _on_device(batch: Batch, device: torch.device) -> Batch:
    """A streamed batch (built without knowing the device) told where its losses move their inputs."""
    batch.device = batch.random.device = device
    return batch


def _on_cpu(module: torch.nn.Module) -> torch.nn.Module:
    """`module` itself on a CPU run; a CPU copy when it trains on a GPU (samplers and savers run on the CPU)."""
    if next(module.parameters()).device.type == "cpu":
        return module
    return copy.deepcopy(module).to("cpu")


class stop_signals:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps (a step is never half-saved)."""

    def __enter__(self):
        self.requested = False
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._request)
        return self

    def _request(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def _start_tracker(name: str, stage_dir: Path) -> TensorBoardTracker:
    tracker = TensorBoardTracker(name, stage_dir / "tensorboard")
    if hasattr(tracker, "start"):  # newer accelerate creates the writer lazily
        tracker.start()
    return tracker
