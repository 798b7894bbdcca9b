"""The KL autoencoder (diffusers AutoencoderKL) built from an AutoencoderConfig, and pixel conversions."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from torch import Tensor

from marble.config import AutoencoderConfig
from marble.errors import MarbleError


def downsampling_factor(cfg: AutoencoderConfig) -> int:
    return 2 ** (len(cfg.block_out_channels) - 1)


def build_autoencoder(cfg: AutoencoderConfig, image_size: int) -> AutoencoderKL:
    """A freshly initialised KL-regularised autoencoder (Rombach et al. 2022, §3)."""
    _check_config(cfg, image_size)
    blocks = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=image_size,
        scaling_factor=1.0,  # measured after training (latent_scale.py) and set then
    )


def latent_shape(cfg: AutoencoderConfig, image_size: int) -> tuple[int, int, int]:
    """(C, h, w) of the latent for a square image of side `image_size`."""
    _check_config(cfg, image_size)
    side = image_size // downsampling_factor(cfg)
    return (cfg.latent_channels, side, side)


def images_to_model(images: Tensor) -> Tensor:
    """uint8 (N, 3, H, W) in [0, 255] → float32 in [−1, 1], as diffusers' VaeImageProcessor.preprocess."""
    if images.dtype != torch.uint8:
        raise MarbleError(f"expected uint8 images, got {images.dtype}")
    return 2.0 * (images.float() / 255.0) - 1.0


def model_to_images(decoded: Tensor) -> Tensor:
    """float (N, 3, H, W) in [−1, 1] → uint8, as diffusers' VaeImageProcessor.postprocess + numpy_to_pil."""
    unit = (decoded * 0.5 + 0.5).clamp(0, 1).float()
    return (unit * 255).round().to(torch.uint8)


def _check_config(cfg: AutoencoderConfig, image_size: int) -> None:
    factor = downsampling_factor(cfg)
    if image_size <= 0 or image_size % factor:
        raise MarbleError(f"image size {image_size} must be a positive multiple of the downsampling factor {factor}")
    uneven = [c for c in cfg.block_out_channels if c % cfg.norm_num_groups]
    if uneven:
        raise MarbleError(f"block_out_channels {uneven} are not divisible by norm_num_groups={cfg.norm_num_groups}")
