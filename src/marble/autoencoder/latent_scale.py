"""The latent scale factor that gives the diffusion model unit-variance latents."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from torch import Tensor

from marble.autoencoder.model import images_to_model
from marble.errors import MarbleError


@torch.no_grad()
def measure_latent_scale(autoencoder: AutoencoderKL, images: Tensor, batch_size: int = 64) -> float:
    """1 / std of the posterior means over `images` uint8 (N, 3, H, W) (Rombach et al. 2022, §4.3.2)."""
    if len(images) < 1 or batch_size < 1:
        raise MarbleError("measuring the latent scale needs at least one image and a batch size >= 1")
    parameter = next(autoencoder.parameters())
    was_training = autoencoder.training
    autoencoder.eval()
    # Streaming float64 sums: the whole data set's latents need not fit in memory at once.
    total = total_squares = torch.zeros((), dtype=torch.float64)
    count = 0
    try:
        for start in range(0, len(images), batch_size):
            batch = images_to_model(images[start : start + batch_size]).to(parameter.device, parameter.dtype)
            means = autoencoder.encode(batch).latent_dist.mean.double().cpu()  # (B, C, h, w)
            total = total + means.sum()
            total_squares = total_squares + means.square().sum()
            count += means.numel()
    finally:
        autoencoder.train(was_training)
    if count < 2:
        raise MarbleError("measuring the latent scale needs at least two latent values")
    # Unbiased variance, as torch.std (LDM computes 1 / z.flatten().std()).
    variance = (total_squares - total * total / count) / (count - 1)
    if variance <= 0:
        raise MarbleError("the encoder's latents are constant: the autoencoder is not usable")
    return float(1.0 / variance.sqrt())
