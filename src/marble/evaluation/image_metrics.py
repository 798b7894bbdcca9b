"""Pixel-space image metrics: PSNR for autoencoder reconstructions."""

from __future__ import annotations

import torch
from torch import Tensor

from marble.errors import MarbleError

PEAK = 255.0


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB, 10·log10(255² / MSE), of uint8 (N, C, H, W) pairs; +inf where identical."""
    if a.dtype != torch.uint8 or b.dtype != torch.uint8:
        raise MarbleError(f"psnr expects uint8 images, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape or a.dim() != 4:
        raise MarbleError(
            f"psnr expects two (N, C, H, W) batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    mse = (a.double() - b.double()).square().flatten(1).mean(dim=1)  # (N,)
    return 10.0 * torch.log10(PEAK**2 / mse)


def mean_psnr(a: Tensor, b: Tensor) -> float:
    """PSNR averaged over images (each image's dB, then the mean, as reconstruction papers report)."""
    return float(psnr(a, b).mean())
