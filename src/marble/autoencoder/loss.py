"""Autoencoder losses: L1 reconstruction + KL (Rombach et al. 2022, §3) and a hinge patch-GAN."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import Tensor, nn

from marble.evaluation.image_metrics import CORNERS


def reconstruction_loss(
    autoencoder: AutoencoderKL, images: Tensor, noise: Tensor, kl_weight: float, corner_weight: float = 1.0,
    chroma_weight: float = 0.0,
) -> tuple[Tensor, dict[str, float], Tensor]:
    """L1(x, D(z)) + kl_weight·KL(q(z|x) ‖ N(0, I)) + chroma_weight·chroma L1, z = μ + σ·noise; images
    float (N, 3, H, W) in [−1, 1].

    The L1 counts the four corner pixels `corner_weight` times (see `corner_weighted_l1`); the logged
    "l1" is always the plain mean, comparable across runs, and "chroma" is `chroma_l1` whatever its weight.
    """
    posterior = autoencoder.encode(images).latent_dist
    # The caller draws the noise (N, C, h, w): training draws it per sample, so runs resume exactly.
    latents = posterior.mean + posterior.std * noise.to(posterior.mean.dtype)
    reconstruction = autoencoder.decode(latents).sample  # (N, 3, H, W)
    difference = reconstruction.float() - images.float()
    error = difference.abs()
    l1 = error.mean()
    # LDM sums both terms per sample; L1 here is a mean per pixel value, so the KL (summed over
    # latent elements, averaged over the batch) is divided by pixel values per sample too. The
    # ratio of the two terms, and hence kl_weight (1e-6 in LDM), keeps LDM's meaning.
    kl = posterior.kl().float().mean() / images[0].numel()
    # Weight 1 keeps the plain mean's exact arithmetic, so runs made before the weight existed resume bit for bit.
    loss = (l1 if corner_weight == 1.0 else corner_weighted_l1(error, corner_weight)) + kl_weight * kl
    chroma = chroma_l1(difference)
    if chroma_weight:  # 0 keeps the loss's exact arithmetic, so earlier runs resume bit for bit
        loss = loss + chroma_weight * chroma
    logs = {"loss": loss.item(), "l1": l1.item(), "kl": kl.item(), "chroma": chroma.item()}
    return loss, logs, reconstruction


def chroma_l1(difference: Tensor) -> Tensor:
    """Mean |difference − its mean over the colour channels|, of a signed (N, 3, H, W) difference: the part
    of the error that changes a pixel's colour rather than its brightness.

    Why: the decoder's errors at the edges of a shape differ from channel to channel, and a shape on
    white then gets a coloured fringe (cyan beside red) that the eye sees far more than the same error
    in grey; a plain L1 weighs the two alike (docs/reference-model.md, "The decoder, fine-tuned again").
    """
    return (difference - difference.mean(dim=1, keepdim=True)).abs().mean()


def corner_weighted_l1(error: Tensor, corner_weight: float) -> Tensor:
    """Weighted mean of |error| (N, C, H, W) in which each of the four corner pixels weighs `corner_weight`, the rest 1.

    Why: with zero padding, every convolution sees the corners through the most padding, and a plain
    mean gives 4 of H·W pixels too little pull to undo that: a longer plain decoder fine-tune raised
    held-out PSNR but left the corner error where it was (docs/reference-model.md).
    """
    weights = torch.ones(error.shape[-2:], device=error.device)
    weights[CORNERS] = corner_weight
    return (error * weights).mean() / weights.mean()


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017, §3.2.2): one real/fake logit per overlapping image patch."""

    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_downsamples: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = base_channels
        for _ in range(num_downsamples - 1):
            layers += _conv_norm_act(channels, channels * 2, stride=2)
            channels *= 2
        layers += _conv_norm_act(channels, channels * 2, stride=1)
        layers.append(nn.Conv2d(channels * 2, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """(N, C, H, W) → patch logits (N, 1, H/2^d − 2, W/2^d − 2) for d = num_downsamples."""
        return self.layers(images)


def _conv_norm_act(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    # GroupNorm instead of pix2pix's BatchNorm: batch statistics mix real and fake batches.
    return [
        nn.Conv2d(in_channels, out_channels, 4, stride=stride, padding=1),
        nn.GroupNorm(math.gcd(32, out_channels), out_channels),
        nn.LeakyReLU(0.2),
    ]


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """½(E[relu(1 − D(x))] + E[relu(1 + D(x̂))]) (Lim & Ye 2017; the LDM/taming form with ½)."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """−E[D(x̂)]: the hinge-GAN generator loss (Lim & Ye 2017)."""
    return -fake_logits.mean()
