"""Sampling with a ControlNet: the base pipeline with its U-Net wrapped, nothing else changed."""

from __future__ import annotations

import math

import torch
from diffusers import ControlNetModel

from marble.control.conditions import condition_to_model
from marble.control.model import ControlledUNet, check_fits
from marble.errors import MarbleError
from marble.pipeline import MarblePipeline

MAX_CONTROL_SCALE = 10.0


def check_control_scale(scale: float) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise MarbleError(f"control scale: must be a finite number, got {scale!r}")
    if not 0 <= scale <= MAX_CONTROL_SCALE:
        raise MarbleError(f"control scale: must be between 0 and {MAX_CONTROL_SCALE:g}, got {scale}")


def controlled_pipeline(pipeline: MarblePipeline, controlnet: ControlNetModel, conditions: torch.Tensor,
                        scale: float = 1.0) -> MarblePipeline:
    """`pipeline` steered by `controlnet` with conditions (k, 3, H, W) uint8: one for every image, or one
    per prompt of generate_batch. Scale 0 (or a fresh, zero-initialised ControlNet) is the base pipeline."""
    check_control_scale(scale)
    size = pipeline.image_size
    if conditions.dim() != 4 or tuple(conditions.shape[1:]) != (3, size, size) or conditions.dtype != torch.uint8:
        raise MarbleError(f"control images must be (k, 3, {size}, {size}) uint8 for this model, "
                          f"got {tuple(conditions.shape)} {conditions.dtype}")
    check_fits(controlnet, pipeline.unet, size)
    unet = ControlledUNet(pipeline.unet, controlnet.eval(), condition_to_model(conditions), float(scale))
    # Same inference options; the wrapper always runs in torch (the ONNX export is of a plain U-Net).
    return MarblePipeline(pipeline.text_encoder, unet, pipeline.vae, pipeline.scheduler_config,
                          pipeline.options, pipeline.cache_dir)
