"""Pixel-space image metrics for autoencoder reconstructions: PSNR, SSIM, corner error and colour fringe."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from marble.errors import MarbleError

PEAK = 255.0
# Wang et al. 2004, section III-C: an 11x11 circular-symmetric Gaussian window, sigma 1.5.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
# (rows, columns) indexing the four corner pixels of an (..., H, W) tensor.
CORNERS = ([0, 0, -1, -1], [0, -1, 0, -1])
# A pixel counts as background when every channel is above this (emoji are composited on white).
BACKGROUND_LEVEL = 235


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB, 10·log10(255² / MSE), of uint8 (N, C, H, W) pairs; +inf where identical."""
    _check_pair(a, b, "psnr")
    mse = (a.double() - b.double()).square().flatten(1).mean(dim=1)  # (N,)
    return 10.0 * torch.log10(PEAK**2 / mse)


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Per-image SSIM (Wang et al. 2004, eq. 13) of uint8 (N, C, H, W) pairs, averaged over windows and channels."""
    _check_pair(a, b, "ssim")
    if min(a.shape[-2:]) < SSIM_WINDOW:
        size = tuple(a.shape[-2:])
        raise MarbleError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {size}")
    x, y = a.double(), b.double()
    mean_x, mean_y = _local_mean(x), _local_mean(y)  # (N, C, H - 10, W - 10): "valid" windows only, as the paper's code
    var_x = _local_mean(x * x) - mean_x.square()
    var_y = _local_mean(y * y) - mean_y.square()
    covariance = _local_mean(x * y) - mean_x * mean_y
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    numerator = (2 * mean_x * mean_y + c1) * (2 * covariance + c2)
    denominator = (mean_x.square() + mean_y.square() + c1) * (var_x + var_y + c2)
    return (numerator / denominator).flatten(1).mean(dim=1)  # (N,)


def corner_error(a: Tensor, b: Tensor) -> Tensor:
    """Per-image mean absolute difference, in levels of 255, over the four corner pixels of uint8 (N, C, H, W) pairs.

    Why: a convolutional decoder with zero padding errs most at the corners (the reference decoder's
    four corner pixels were its four worst positions on held-out images), a speck PSNR hides.
    """
    _check_pair(a, b, "corner_error")
    difference = a[..., CORNERS[0], CORNERS[1]].double() - b[..., CORNERS[0], CORNERS[1]].double()  # (N, C, 4)
    return difference.abs().flatten(1).mean(dim=1)


def edge_fringe(real: Tensor, reconstructed: Tensor) -> Tensor:
    """Per-image colour fringe, in levels of 255, of uint8 RGB (N, 3, H, W) pairs: over the background
    pixels of `real` that touch a shape (a 4-neighbour is not background), the mean chroma (max − min
    channel) that `reconstructed` adds there; NaN for an image with no such pixel.

    Why: the decoder draws coloured fringes beside shapes on white (cyan beside red), which the eye
    sees at once but PSNR averages away over the whole image.
    """
    _check_pair(real, reconstructed, "edge_fringe")
    if real.shape[1] != 3:
        raise MarbleError(f"edge_fringe needs RGB images (N, 3, H, W), got {tuple(real.shape)}")
    background = real.min(dim=1).values > BACKGROUND_LEVEL  # (N, H, W)
    shape = (~background).double().unsqueeze(1)
    vertical = F.max_pool2d(shape, (3, 1), stride=1, padding=(1, 0))  # a shape pixel above, below or here
    horizontal = F.max_pool2d(shape, (1, 3), stride=1, padding=(0, 1))
    beside = background & (torch.maximum(vertical, horizontal).squeeze(1) > 0)
    added = (_chroma(reconstructed) - _chroma(real)).clamp(min=0)
    return (added * beside).flatten(1).sum(dim=1) / beside.flatten(1).sum(dim=1)


def mean_edge_fringe(real: Tensor, reconstructed: Tensor) -> float | None:
    """`edge_fringe` averaged over the images that have background beside a shape; None if none has
    (photographs: the measure is for shapes on white)."""
    values = edge_fringe(real, reconstructed)
    values = values[~values.isnan()]
    return float(values.mean()) if len(values) else None


def _chroma(images: Tensor) -> Tensor:
    images = images.double()
    return images.max(dim=1).values - images.min(dim=1).values


def _local_mean(images: Tensor) -> Tensor:
    """Gaussian-weighted mean over each 11x11 window, each channel on its own."""
    channels = images.shape[1]
    window = _gaussian_window().to(images).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)
    return F.conv2d(images, window, groups=channels)


def _gaussian_window() -> Tensor:
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    profile = torch.exp(-offsets.square() / (2 * SSIM_SIGMA**2))
    window = profile[:, None] * profile[None, :]  # (11, 11), separable
    return window / window.sum()


def _check_pair(a: Tensor, b: Tensor, metric: str) -> None:
    if a.dtype != torch.uint8 or b.dtype != torch.uint8:
        raise MarbleError(f"{metric} expects uint8 images, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape or a.dim() != 4:
        raise MarbleError(
            f"{metric} expects two (N, C, H, W) batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def mean_psnr(a: Tensor, b: Tensor) -> float:
    """PSNR averaged over images (each image's dB, then the mean, as reconstruction papers report)."""
    return float(psnr(a, b).mean())
