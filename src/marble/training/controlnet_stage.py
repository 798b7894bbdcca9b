"""ControlNet training on a finished run (Zhang et al. 2023): the base U-Net frozen, only the ControlNet learns.

It reuses the U-Net stage's cached latents and contexts and its objective; the one difference is
the prediction, which now passes the ControlNet's residuals into the frozen U-Net.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import torch
from accelerate import PartialState
from diffusers import ControlNetModel, UNet2DConditionModel

from marble.config import RunConfig, load_json, save_json
from marble.control.conditions import check_condition, condition_images, condition_to_model
from marble.control.config import ControlNetConfig
from marble.control.files import ControlNetFolder
from marble.control.model import build_controlnet, control_residuals
from marble.training.distributed import launched_processes
from marble.errors import MarbleError
from marble.generators.unet import use_matmul_attention_on_cpu
from marble.layout import RunLayout
from marble.training.artifacts import save_pretrained_atomically, write_json
from marble.training.data import load_training_data
from marble.training.loop import Objective, Stage, train_stage
from marble.training.unet_stage import Predict, UNetInputs, denoising_loss, prepare_inputs


def controlnet_predict(unet: UNet2DConditionModel, conditions: torch.Tensor) -> Predict:
    """The frozen U-Net's prediction with the trained ControlNet's residuals; conditions (N, 3, H, W) uint8."""

    def predict(controlnet, x_t, t, context, indices):
        residuals = control_residuals(controlnet, x_t, t, context, condition_to_model(conditions[indices]))
        return unet(x_t, t, encoder_hidden_states=context, **residuals).sample

    return predict


def controlnet_stage(controlnet: ControlNetModel, unet: UNet2DConditionModel, inputs: UNetInputs,
                     conditions: torch.Tensor, base: RunConfig, config: ControlNetConfig) -> Stage:
    unet.requires_grad_(False).eval()  # gradients flow through it to the residuals, never into it
    objective = dataclasses.replace(base, unet=dataclasses.replace(base.unet, caption_dropout=config.caption_dropout))
    loss = denoising_loss(inputs, objective, predict=controlnet_predict(unet, conditions))
    return Stage("controlnet", [Objective("controlnet", controlnet, loss)], dataset_size=len(conditions),
                 ema_decay=config.ema_decay)


def open_controlnet_folder(out_dir: Path, config: ControlNetConfig) -> ControlNetFolder:
    """Create the folder, or check that an existing one was started with the same settings (steps may grow)."""
    folder = ControlNetFolder(Path(out_dir))
    if folder.config.exists():
        saved = load_json(ControlNetConfig, folder.config)
        same_steps = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=saved.train.steps))
        if same_steps != saved or config.train.steps < saved.train.steps:
            raise MarbleError(f"{out_dir} holds a ControlNet trained with other settings ({folder.config}); "
                              "use a new --out folder or the same options (only --steps may grow)")
    folder.root.mkdir(parents=True, exist_ok=True)
    save_json(config, folder.config)
    return folder


def check_base_run(layout: RunLayout) -> RunConfig:
    missing = [p for p in (layout.run_config, layout.text_encoder, layout.autoencoder, layout.unet) if not p.exists()]
    if missing:
        raise MarbleError(f"--base {layout.root} is not a trained run: missing {', '.join(str(p) for p in missing)}")
    return load_json(RunConfig, layout.run_config)


def train_controlnet(base_dir: Path, data_dir: Path, out_dir: Path, config: ControlNetConfig, progress: bool = True,
                     report: Callable[[str], None] = print) -> dict:
    """Train a ControlNet for `config.condition` on the images in `data_dir`, on top of the run `base_dir`."""
    # Not yet made multi-process: every process would write OUT, and the frozen U-Net and the
    # condition images stay on the CPU.
    if launched_processes() > 1:
        raise MarbleError("`marble train controlnet` runs on one process; start it without `accelerate launch`")
    check_condition(config.condition)
    layout = RunLayout(Path(base_dir))
    base = check_base_run(layout)
    data = load_training_data(data_dir, base.data, progress)  # the base run's size, languages and split
    folder = open_controlnet_folder(out_dir, config)
    report(f"data: {data.describe()}")
    inputs = prepare_inputs(layout, data, progress)
    conditions = condition_images(config.condition, data.train.images, progress)  # (N, 3, H, W) uint8
    unet = UNet2DConditionModel.from_pretrained(layout.unet)
    torch.manual_seed(config.train.seed)  # the condition encoder's first layers start random
    controlnet = build_controlnet(unet, config, base.data.image_size // inputs.latent_mean.shape[-1])
    for model in (unet, controlnet):
        use_matmul_attention_on_cpu(model, PartialState().device)
    stage = controlnet_stage(controlnet, unet, inputs, conditions, base, config)
    summary = train_stage(stage, config.train, folder.root, progress)
    save_pretrained_atomically(controlnet, folder.model)  # EMA weights: the loop copied them in at the end
    summary.update(base_run=str(Path(base_dir).resolve()), condition=config.condition,
                   parameters=sum(p.numel() for p in controlnet.parameters()),
                   unet_parameters=sum(p.numel() for p in unet.parameters()))
    write_json(folder.summary, summary)
    report(f"controlnet: {json.dumps(summary, ensure_ascii=False)}\n  wrote {folder.root}")
    return summary
