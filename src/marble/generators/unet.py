"""The latent noise predictor: a diffusers UNet2DConditionModel cross-attending to the text."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor

from marble.config import UNetConfig
from marble.errors import MarbleError


def build_unet(config: UNetConfig, latent_channels: int, latent_size: int, context_width: int) -> UNet2DConditionModel:
    """U-Net with time-step embedding; blocks flagged in `cross_attention_blocks` attend to the text."""
    if len(config.cross_attention_blocks) != len(config.block_out_channels):
        raise ValueError("cross_attention_blocks needs one flag per entry of block_out_channels")
    down = tuple("CrossAttnDownBlock2D" if attend else "DownBlock2D" for attend in config.cross_attention_blocks)
    up = tuple("CrossAttnUpBlock2D" if attend else "UpBlock2D" for attend in reversed(config.cross_attention_blocks))
    unet = UNet2DConditionModel(
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
        **pooled_text_settings(config.pooled_text_heads, context_width),
    )
    if config.pooled_text_heads:
        silence_pooled_text(unet)
    return unet


def pooled_text_settings(heads: int, context_width: int) -> dict:
    """UNet2DConditionModel arguments for `unet.pooled_text_heads` (none when it is 0)."""
    if heads < 0 or (heads and context_width % heads):
        raise MarbleError(
            f"unet.pooled_text_heads must be 0 (off) or divide the text width {context_width}, got {heads}"
        )
    return {"addition_embed_type": "text", "addition_embed_type_num_heads": heads} if heads else {}


def silence_pooled_text(unet: UNet2DConditionModel) -> None:
    """Zero the pooled-text path's last layer norm, so it adds nothing until training opens it.

    Why: a U-Net continued from one without this path then starts as exactly that model, and a
    fresh one starts as a plain U-Net, as adaLN-Zero starts DiT's conditioning at zero.
    """
    torch.nn.init.zeros_(unet.add_embedding.norm2.weight)
    torch.nn.init.zeros_(unet.add_embedding.norm2.bias)


def use_matmul_attention_on_cpu(unet: torch.nn.Module, device: torch.device) -> None:
    """On a CPU, attention as plain matmuls + softmax instead of PyTorch's fused SDPA kernel (a U-Net or ControlNet).

    Why: at these lengths (64 and 16 queries, 32 text tokens) the backward of SDPA's CPU flash
    kernel took 37% of a bf16 U-Net training step; with matmul attention the step at batch 64 took
    0.55 s instead of 0.79 s (docs/reference-model.md). GPUs keep the fused kernel. Weights are unaffected.
    """
    if device.type == "cpu":
        unet.set_attn_processor(AttnProcessor())

