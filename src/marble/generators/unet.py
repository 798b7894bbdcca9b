"""The latent noise predictor: a diffusers UNet2DConditionModel cross-attending to the text."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor

from marble.config import UNetConfig


def build_unet(config: UNetConfig, latent_channels: int, latent_size: int, context_width: int) -> UNet2DConditionModel:
    """U-Net with time-step embedding; blocks flagged in `cross_attention_blocks` attend to the text."""
    if len(config.cross_attention_blocks) != len(config.block_out_channels):
        raise ValueError("cross_attention_blocks needs one flag per entry of block_out_channels")
    down = tuple("CrossAttnDownBlock2D" if attend else "DownBlock2D" for attend in config.cross_attention_blocks)
    up = tuple("CrossAttnUpBlock2D" if attend else "UpBlock2D" for attend in reversed(config.cross_attention_blocks))
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
        cross_attention_dim=context_width,
    )


def use_matmul_attention_on_cpu(unet: torch.nn.Module, device: torch.device) -> None:
    """On a CPU, attention as plain matmuls + softmax instead of PyTorch's fused SDPA kernel (a U-Net or ControlNet).

    Why: at these lengths (64 and 16 queries, 32 text tokens) the backward of SDPA's CPU flash
    kernel took 37% of a bf16 U-Net training step; with matmul attention the step at batch 64 took
    0.55 s instead of 0.79 s (docs/reference-model.md). GPUs keep the fused kernel. Weights are unaffected.
    """
    if device.type == "cpu":
        unet.set_attn_processor(AttnProcessor())

