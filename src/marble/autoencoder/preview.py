"""A linear latent → RGB map: a live preview of sampling without running the decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from marble.errors import MarbleError


def fit_latent_rgb(latents: Tensor, images: Tensor) -> Tensor:
    """Least-squares (C + 1, 3) map from a latent pixel (+ bias) to its patch's mean RGB in [0, 1]."""
    if latents.dim() != 4 or images.dim() != 4 or len(latents) != len(images) or images.shape[1] != 3:
        raise MarbleError(f"expected latents (N, C, h, w) and images (N, 3, H, W), got "
                          f"{tuple(latents.shape)} and {tuple(images.shape)}")
    patch = images.shape[-1] // max(latents.shape[-1], 1)
    if patch < 1 or images.shape[-2:] != (latents.shape[-2] * patch, latents.shape[-1] * patch):
        raise MarbleError(f"images {tuple(images.shape[-2:])} are not a whole multiple of latents "
                          f"{tuple(latents.shape[-2:])}")
    patch_rgb = F.avg_pool2d(images.double() / 255.0, patch)  # (N, 3, h, w)
    inputs = _with_bias(latents.double())  # (N·h·w, C + 1)
    targets = patch_rgb.permute(0, 2, 3, 1).reshape(-1, 3)  # (N·h·w, 3)
    return torch.linalg.lstsq(inputs, targets).solution.float()


def latent_to_rgb(latents: Tensor, matrix: Tensor, image_size: int) -> Tensor:
    """latents (N, C, h, w) → uint8 preview (N, 3, image_size, image_size), nearest-upsampled."""
    if matrix.shape != (latents.shape[1] + 1, 3):
        raise MarbleError(f"preview matrix {tuple(matrix.shape)} does not fit {latents.shape[1]} latent channels")
    n, _, h, w = latents.shape
    rgb = _with_bias(latents.float()) @ matrix.float().to(latents.device)  # (N·h·w, 3)
    rgb = rgb.reshape(n, h, w, 3).permute(0, 3, 1, 2)  # (N, 3, h, w)
    rgb = F.interpolate(rgb, size=(image_size, image_size), mode="nearest")
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


def _with_bias(latents: Tensor) -> Tensor:
    """(N, C, h, w) → rows of latent pixels with a trailing 1, (N·h·w, C + 1)."""
    pixels = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    return torch.cat([pixels, torch.ones_like(pixels[:, :1])], dim=1)

