"""`marble train lora`: LoRA adapters on a trained run's U-Net (optionally its CLIP text tower), base frozen.

The objective is the U-Net stage's, on the same cached latents; only the adapters train.

    OUT/training/        while training: checkpoints (adapter weights only), train_log.jsonl, lora_config.json
    OUT/                 when done, in one rename: lora.safetensors, lora.json, summary.json, train_log.jsonl
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from diffusers import UNet2DConditionModel

from marble.config import RunConfig, TrainConfig, load_json, save_json
from marble.errors import MarbleError
from marble.finetune.adapter import RECORD_FILE, WEIGHTS_FILE, AdapterRecord, save_adapter
from marble.finetune.lora import TEXT_TARGETS, UNET_TARGETS, add_lora, lora_weights, parameter_count, weights_fingerprint
from marble.generators.unet import use_matmul_attention_on_cpu
from marble.layout import RunLayout
from marble.text.encoders import ClipTextEncoder, load_text_encoder
from marble.training.artifacts import save_atomically, write_json
from marble.training.data import load_training_data
from marble.training.distributed import launched_processes
from marble.training.loop import Objective, Stage, train_stage
from marble.training.unet_stage import ContextFn, UNetInputs, denoising_loss, prepare_inputs

ADAPTER = "default"  # the peft adapter name while training; saved files do not carry it
TRAINING_DIR = "training"
CONFIG_FILE = "lora_config.json"


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 8
    alpha: float = 8.0  # the update is scaled by alpha / rank
    text_encoder: bool = False  # also adapt the CLIP text tower (captions are then encoded live)
    train: TrainConfig = TrainConfig(steps=500, batch_size=32, learning_rate=1e-3, warmup_steps=20,
                                     mixed_precision="bf16", checkpoint_every=100)

    def validate(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise MarbleError(f"--rank must be a positive integer, got {self.rank!r}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise MarbleError(f"--alpha must be a positive number, got {self.alpha}")


class LoraTrainee(torch.nn.Module):
    """The U-Net (and text tower) with adapters injected. Its state is the trainable weights only,
    so checkpoints hold the adapter and never a copy of the frozen base."""

    def __init__(self, unet: UNet2DConditionModel, text_encoder: ClipTextEncoder | None = None):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder
        self.trainable = {name for name, p in self.named_parameters() if p.requires_grad}

    def forward(self, *args, **kwargs):
        return self.unet(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        return {k: v for k, v in super().state_dict(*args, **kwargs).items() if k in self.trainable}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if strict and set(state_dict) != self.trainable:
            raise MarbleError("the LoRA checkpoint does not match this adapter's layers; use a new --out")
        return super().load_state_dict(state_dict, strict=False, assign=assign)


def live_contexts(encoder: ClipTextEncoder, texts: list[str]) -> ContextFn:
    """Contexts encoded with gradients through the adapted text tower; dropped captions become ""."""

    def contexts(rows: list[int], dropped: torch.Tensor) -> torch.Tensor:
        return encoder([("" if drop else texts[row]) for row, drop in zip(rows, dropped.tolist())]).context

    return contexts


def trained_run(base: Path) -> tuple[RunLayout, RunConfig]:
    layout = RunLayout(Path(base))
    missing = [p for p in (layout.run_config, layout.text_encoder, layout.autoencoder, layout.unet) if not p.exists()]
    if missing:
        raise MarbleError(f"--base {base} is not a trained run: missing {', '.join(str(p) for p in missing)}")
    return layout, load_json(RunConfig, layout.run_config)


def open_training_dir(out_dir: Path, config: LoraConfig) -> Path:
    """Create OUT/training, or check that the interrupted run there used the same settings (steps may grow)."""
    if (out_dir / RECORD_FILE).is_file():
        raise MarbleError(f"{out_dir} already holds a trained LoRA adapter; choose another --out or delete it")
    training_dir = out_dir / TRAINING_DIR
    saved = training_dir / CONFIG_FILE
    if saved.is_file():
        previous = load_json(LoraConfig, saved)
        same = dataclasses.replace(previous, train=dataclasses.replace(previous.train, steps=config.train.steps))
        if same != config or config.train.steps < previous.train.steps:
            raise MarbleError(f"{out_dir} holds an unfinished LoRA trained with other settings ({saved}); "
                              "use the same options (only --steps may grow) or another --out")
    training_dir.mkdir(parents=True, exist_ok=True)
    save_json(config, saved)
    return training_dir


def inject_adapters(unet: UNet2DConditionModel, encoder: ClipTextEncoder | None, config: LoraConfig) -> LoraTrainee:
    torch.manual_seed(config.train.seed)  # A's random initialisation (B starts at zero)
    add_lora(unet, ADAPTER, config.rank, config.alpha, UNET_TARGETS)
    if encoder is not None:
        add_lora(encoder.text_model, ADAPTER, config.rank, config.alpha, TEXT_TARGETS)
    return LoraTrainee(unet, encoder)


def lora_stage(trainee: LoraTrainee, inputs: UNetInputs, run_config: RunConfig) -> Stage:
    """The U-Net stage's objective, training only the adapters (no EMA: they are small and few steps)."""
    encoder = trainee.text_encoder
    contexts = live_contexts(encoder, inputs.captions.texts) if encoder is not None else None
    objective = Objective("lora", trainee, denoising_loss(inputs, run_config, contexts))
    return Stage("lora", [objective], dataset_size=len(inputs.latent_mean))


def load_base(layout: RunLayout, config: LoraConfig) -> tuple[UNet2DConditionModel, ClipTextEncoder | None]:
    unet = UNet2DConditionModel.from_pretrained(layout.unet)
    use_matmul_attention_on_cpu(unet, PartialState().device)
    if not config.text_encoder:
        return unet, None
    encoder = load_text_encoder(layout.text_encoder)
    if not isinstance(encoder, ClipTextEncoder):
        raise MarbleError(f"--text-encoder adapts a CLIP text tower; this run's text encoder is {encoder.kind}")
    return unet, encoder


def train_lora(base: Path, data_dir: Path, out_dir: Path, config: LoraConfig, progress: bool = True) -> dict:
    """Train an adapter on `data_dir` for the run at `base`; write it to `out_dir`; return the summary."""
    # Every process would write OUT, and the live text contexts bypass DDP's forward: one process only.
    if launched_processes() > 1:
        raise MarbleError("`marble train lora` runs on one process; start it without `accelerate launch`")
    config.validate()
    out_dir = Path(out_dir)
    layout, run_config = trained_run(base)
    data = load_training_data(data_dir, run_config.data, progress)  # bad data fails before OUT is made
    unet, encoder = load_base(layout, config)
    training_dir = open_training_dir(out_dir, config)
    parts = {"unet": unet} if encoder is None else {"unet": unet, "text_encoder": encoder.text_model}
    fingerprints = {part: weights_fingerprint(module) for part, module in parts.items()}
    inputs = prepare_inputs(layout, data, progress)
    summary = train_stage(lora_stage(inject_adapters(unet, encoder, config), inputs, run_config), config.train,
                          training_dir, progress)
    weights = {part: lora_weights(module, ADAPTER) for part, module in parts.items()}
    targets = {"unet": list(UNET_TARGETS), "text_encoder": list(TEXT_TARGETS)}
    record = AdapterRecord(config.rank, config.alpha, {part: targets[part] for part in parts}, fingerprints,
                           str(Path(base)))

    def write(staging: Path) -> None:
        save_adapter(staging, record, weights)
        summary.update(size_summary(weights, unet, layout, staging / WEIGHTS_FILE), data=data.describe())
        save_json(config, staging / CONFIG_FILE)
        shutil.copy2(training_dir / "train_log.jsonl", staging / "train_log.jsonl")
        write_json(staging / "summary.json", summary)

    save_atomically(write, out_dir)  # replaces OUT/training's checkpoints with the finished adapter
    return summary


def size_summary(weights: dict[str, dict[str, torch.Tensor]], unet: torch.nn.Module, layout: RunLayout,
                 adapter_file: Path) -> dict:
    """The adapter beside the U-Net it adapts: parameters and bytes on disk."""
    adapter_parameters = sum(parameter_count(w) for w in weights.values())
    unet_parameters = sum(p.numel() for name, p in unet.named_parameters() if "lora_" not in name)
    unet_bytes = sum(f.stat().st_size for f in layout.unet.glob("*.safetensors"))
    return {"adapter_parameters": adapter_parameters, "adapter_bytes": adapter_file.stat().st_size,
            "unet_parameters": unet_parameters, "unet_bytes": unet_bytes,
            "unet_to_adapter_parameters": round(unet_parameters / adapter_parameters, 1)}


__all__ = ["LoraConfig", "LoraTrainee", "train_lora", "lora_stage", "inject_adapters", "load_base", "trained_run"]
