"""Stage 2: the autoencoder, trained on images alone (no captions); its decoder makes the pixels."""

from __future__ import annotations

import json
import math

import torch
from diffusers import AutoencoderKL

from marble.autoencoder.latent_scale import measure_latent_scale
from marble.autoencoder.loss import (
    PatchDiscriminator,
    generator_adversarial_loss,
    hinge_discriminator_loss,
    reconstruction_loss,
)
from marble.autoencoder.model import build_autoencoder, images_to_model, latent_shape, model_to_images
from marble.autoencoder.preview import fit_latent_rgb
from marble.config import AutoencoderConfig, RunConfig
from marble.errors import MarbleError
from marble.evaluation.image_metrics import corner_error, mean_edge_fringe, psnr
from marble.layout import RunLayout
from marble.training.artifacts import save_pretrained_atomically
from marble.training.data import TrainingData
from marble.training.distributed import on_main_process
from marble.training.init_from import load_initial_weights, model_folder
from marble.training.feed import ImageFeed
from marble.training.loop import Objective, Stage, train_stage

EVAL_BATCH = 64
PREVIEW_FIT_IMAGES = 512


class Reconstruction(torch.nn.Module):
    """encode → sample → decode → loss as one forward call, so that DDP sees the whole step."""

    def __init__(self, autoencoder: AutoencoderKL, settings: AutoencoderConfig):
        super().__init__()
        self.autoencoder, self.settings = autoencoder, settings

    def forward(self, images: torch.Tensor, noise: torch.Tensor):
        return reconstruction_loss(self.autoencoder, images, noise, self.settings.kl_weight,
                                   self.settings.corner_weight, self.settings.chroma_weight)


def autoencoder_stage(autoencoder: AutoencoderKL, config: RunConfig, images: ImageFeed) -> Stage:
    settings = config.autoencoder
    if not (settings.corner_weight > 0 and math.isfinite(settings.corner_weight)):
        raise MarbleError(f"autoencoder.corner_weight must be a positive number (1: no extra weight), got {settings.corner_weight}")
    if not (settings.chroma_weight >= 0 and math.isfinite(settings.chroma_weight)):
        raise MarbleError(f"autoencoder.chroma_weight must be a number ≥ 0 (0: no chroma term), got {settings.chroma_weight}")
    shape = latent_shape(settings, config.data.image_size)
    discriminator = PatchDiscriminator() if settings.gan_weight > 0 else None
    judged: dict[str, torch.Tensor] = {}  # this step's real and reconstructed images, for the discriminator

    def autoencoder_loss(model, batch):
        real = images_to_model(images.of(batch).to(batch.device))
        loss, logs, reconstruction = model(real, batch.random.randn(*shape))
        if discriminator is not None and batch.step >= settings.gan_start_step:
            adversarial = generator_adversarial_loss(discriminator(reconstruction))
            loss = loss + settings.gan_weight * adversarial
            logs.update(loss=loss.item(), adversarial=adversarial.item())
        judged.update(real=real, fake=reconstruction.detach())
        return loss, logs

    def discriminator_loss(model, batch):
        loss = hinge_discriminator_loss(model(judged["real"]), model(judged["fake"]))
        return loss, {"loss": loss.item()}

    objectives = [Objective("autoencoder", autoencoder, autoencoder_loss,
                            forward_module=Reconstruction(autoencoder, settings))]
    if discriminator is not None:
        objectives.append(Objective("discriminator", discriminator, discriminator_loss, starts_at=settings.gan_start_step))
    return Stage("autoencoder", objectives, dataset_size=images.size, batches=images.batches)


@torch.no_grad()
def reconstruct(autoencoder: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """uint8 images → uint8 reconstructions through the posterior mean."""
    autoencoder.eval()
    out = []
    for start in range(0, len(images), EVAL_BATCH):
        latents = autoencoder.encode(images_to_model(images[start:start + EVAL_BATCH])).latent_dist.mean
        out.append(model_to_images(autoencoder.decode(latents).sample))
    return torch.cat(out)


@torch.no_grad()
def fit_preview_map(autoencoder: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """Latent → RGB map on *scaled* latents, the space the sampler works in."""
    sample = images[:PREVIEW_FIT_IMAGES]
    latents = autoencoder.encode(images_to_model(sample)).latent_dist.mean * autoencoder.config.scaling_factor
    return fit_latent_rgb(latents, sample)


def initial_autoencoder(config: RunConfig) -> tuple[AutoencoderKL, float | None]:
    """A fresh autoencoder, or the one `init_from` names with its latent scale; with `decoder_only` the
    encoder's weights are frozen (the optimizer skips them)."""
    settings = config.autoencoder
    if settings.decoder_only and not settings.init_from:
        raise MarbleError("autoencoder.decoder_only needs autoencoder.init_from: the trained encoder to keep")
    torch.manual_seed(settings.train.seed)
    autoencoder = build_autoencoder(settings, config.data.image_size)
    if not settings.init_from:
        return autoencoder, None
    saved = load_initial_weights(autoencoder, AutoencoderKL, model_folder(settings.init_from, lambda run: run.autoencoder))
    if not settings.decoder_only:
        return autoencoder, None  # a changing encoder: measure its scale again after training
    for part in (autoencoder.encoder, autoencoder.quant_conv):
        part.requires_grad_(False)
    return autoencoder, float(saved.scaling_factor)  # the latent space U-Nets were trained in


def train_autoencoder_stage(config: RunConfig, data: TrainingData, layout: RunLayout, progress: bool = True) -> dict:
    autoencoder, kept_scale = initial_autoencoder(config)
    stage = autoencoder_stage(autoencoder, config, data.feed(config.autoencoder.train))
    summary = train_stage(stage, config.autoencoder.train, layout.stage("autoencoder"), progress)
    on_main_process(lambda: summary.update(measure_and_save(autoencoder, data, layout, kept_scale)))
    return summary


def measure_and_save(autoencoder: AutoencoderKL, data: TrainingData, layout: RunLayout,
                     kept_scale: float | None = None) -> dict:
    """Latent scale (measured, or `kept_scale` when the encoder was frozen), preview map and held-out PSNR
    of the trained autoencoder; writes it with its scale."""
    autoencoder.eval()
    train_images, holdout_images = data.measure_images("train"), data.measure_images("holdout")
    scale = kept_scale if kept_scale is not None else measure_latent_scale(autoencoder, train_images)
    autoencoder.register_to_config(scaling_factor=scale)
    save_pretrained_atomically(autoencoder, layout.autoencoder)
    layout.preview_map.write_text(json.dumps(fit_preview_map(autoencoder, train_images).tolist()))
    reconstructed = reconstruct(autoencoder, holdout_images)
    holdout_psnr = psnr(holdout_images, reconstructed).mean().item()
    holdout_corner = corner_error(holdout_images, reconstructed).mean().item()
    holdout_fringe = mean_edge_fringe(holdout_images, reconstructed)
    return dict(latent_scale=scale, holdout_psnr_db=round(holdout_psnr, 2),
                holdout_corner_error=round(holdout_corner, 2),
                holdout_edge_fringe=None if holdout_fringe is None else round(holdout_fringe, 2),
                holdout_images=len(holdout_images),
                parameters=sum(p.numel() for p in autoencoder.parameters()))
