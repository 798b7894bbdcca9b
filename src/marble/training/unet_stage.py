"""Stage 3: the latent noise predictor, trained by the DDPM forward process on cached inputs.

The text encoder and the autoencoder are frozen by now, so every image's latent distribution
and every caption's context are computed once; a training step then costs only the U-Net.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from accelerate import PartialState
from diffusers import AutoencoderKL, UNet2DConditionModel
from tqdm.auto import tqdm

from marble.autoencoder.model import images_to_model
from marble.config import RunConfig
from marble.diffusion.samplers import make_scheduler
from marble.diffusion.objective import diffusion_loss, min_snr_weights, training_target
from marble.diffusion.schedule import NoiseSchedule
from marble.errors import MarbleError
from marble.generators.unet import build_unet, use_matmul_attention_on_cpu
from marble.inference.calibration import choose_calibration_prompts, write_calibration_prompts
from marble.layout import RunLayout
from marble.text.encoders import TextEncoder, load_text_encoder
from marble.training.alignment import AlignedUNet, alignment_loss, alignment_targets, wants_alignment
from marble.training.artifacts import save_atomically, save_pretrained_atomically
from marble.training.captions import CaptionTable
from marble.training.data import TrainingData
from marble.training.distributed import on_main_process
from marble.training.init_from import load_initial_weights, model_folder
from marble.training.loop import LossFn, Objective, Stage, train_stage
from marble.training.randomness import Groups

CACHE_BATCH = 128


@dataclass
class UNetInputs:
    """Everything a U-Net training step reads, precomputed."""

    latent_mean: torch.Tensor  # (N, C, h, w) posterior means of the training images
    latent_std: torch.Tensor  # (N, C, h, w) posterior standard deviations
    latent_scale: float  # makes scaled latents unit-variance (Rombach et al. 2022, §4.3.2)
    contexts: torch.Tensor  # (K, L, D) one per unique caption
    empty_context: torch.Tensor  # (L, D) the "" prompt, trained in place of dropped captions
    captions: CaptionTable


@torch.no_grad()
def encode_latent_distribution(vae: AutoencoderKL, chunks: Iterable[tuple[list[int], torch.Tensor]], size: int,
                               progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior (mean, std) of images 0..size-1, from (ids, uint8 images) chunks in any order."""
    mean = std = None  # (size, C, h, w) each, filled row by row: a streamed set arrives out of order
    seen = torch.zeros(size, dtype=torch.long)
    for chunk_ids, images in tqdm(chunks, total=math.ceil(size / CACHE_BATCH), desc="cache latents",
                                  disable=not progress, unit="batch"):
        posterior = vae.encode(images_to_model(images)).latent_dist
        if mean is None:
            mean, std = (posterior.mean.new_empty((size, *posterior.mean.shape[1:])) for _ in range(2))
        rows = torch.as_tensor(chunk_ids)
        mean[rows], std[rows] = posterior.mean, posterior.std
        seen.index_add_(0, rows, torch.ones_like(rows))
    if mean is None or not bool((seen == 1).all()):
        raise MarbleError(f"caching latents saw {int(seen.sum())} images ({int((seen > 0).sum())} distinct) of {size}")
    return mean, std


@torch.no_grad()
def encode_contexts(encoder: TextEncoder, texts: list[str], progress: bool) -> torch.Tensor:
    chunks = range(0, len(texts), CACHE_BATCH)
    return torch.cat([encoder.encode(texts[s:s + CACHE_BATCH]).context
                      for s in tqdm(chunks, desc="cache text", disable=not progress, unit="batch")])


def prepare_inputs(layout: RunLayout, data: TrainingData, progress: bool) -> UNetInputs:
    vae = AutoencoderKL.from_pretrained(layout.autoencoder).eval()
    encoder = load_text_encoder(layout.text_encoder)
    captions = CaptionTable.from_dataset(data.train)
    mean, std = encode_latent_distribution(vae, data.image_chunks(CACHE_BATCH), len(data.train), progress)
    return UNetInputs(mean, std, float(vae.config.scaling_factor), encode_contexts(encoder, captions.texts, progress),
                      encoder.encode([""]).context[0], captions)


ContextFn = Callable[[list[int], torch.Tensor], torch.Tensor]  # (caption rows, (B,) dropped) -> (B, L, D)


def cached_contexts(inputs: UNetInputs) -> ContextFn:
    """Contexts from the frozen text encoder's cache; dropped captions get the "" prompt's context."""

    def contexts(rows: list[int], dropped: torch.Tensor) -> torch.Tensor:
        # The cache stays on the CPU; only this batch's rows move to the device the loss runs on.
        empty, cached = inputs.empty_context.to(dropped.device), inputs.contexts[rows].to(dropped.device)
        return torch.where(dropped[:, None, None], empty, cached)

    return contexts


# (trained module, x_t (B, C, h, w), t (B,), context (B, L, D), dataset indices) -> ε or v (B, C, h, w)
Predict = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, list[int]], torch.Tensor]


def predict_with_unet(unet: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                      indices: list[int]) -> torch.Tensor:
    return unet(x_t, t, encoder_hidden_states=context).sample


def denoising_loss(inputs: UNetInputs, config: RunConfig, contexts: ContextFn | None = None,
                   predict: Predict = predict_with_unet) -> LossFn:
    """The DDPM objective over cached latents for any noise predictor `model(x_t, t, encoder_hidden_states=)`.

    `contexts` supplies the text contexts (default: the cache); a LoRA stage that adapts the text
    encoder passes one that encodes the captions live. `predict` turns the trained module's output
    into ε or v; a ControlNet stage passes one that feeds its residuals to the frozen U-Net.
    """
    schedule = NoiseSchedule.from_unet_config(config.unet)
    settings = config.unet
    latent_shape = tuple(inputs.latent_mean.shape[1:])
    contexts = contexts or cached_contexts(inputs)

    def loss(model, batch):
        idx, draw, device = batch.indices, batch.random, batch.device
        mean, std = inputs.latent_mean[idx].to(device), inputs.latent_std[idx].to(device)
        x0 = (mean + std * draw.randn(*latent_shape)) * inputs.latent_scale
        t = draw.randint(schedule.num_train_timesteps)
        noise = draw.randn(*latent_shape)
        rows = inputs.captions.pick(idx, draw.choice(inputs.captions.counts(idx)))
        dropped = draw.rand() < settings.caption_dropout  # (B,) on the device; unconditional: enables guidance
        prediction = predict(model, schedule.q_sample(x0, t, noise), t, contexts(rows, dropped), idx)
        target = training_target(settings.prediction_type, x0, noise, t, schedule)
        weights = min_snr_weights(t, schedule, settings.min_snr_gamma, settings.prediction_type)
        value = diffusion_loss(prediction.float(), target, weights)
        return value, {"loss": value.item()}

    return loss


def unet_stage(unet: torch.nn.Module, inputs: UNetInputs, config: RunConfig, on_sample=None,
               groups: Groups | None = None, align_targets: torch.Tensor | None = None) -> Stage:
    """The U-Net's training stage; with `align_targets` (the image tower's patch features of every training
    image) the REPA loss is added and the trained module is the AlignedUNet holding the U-Net."""
    if align_targets is None:
        objective, sample = Objective("unet", unet, denoising_loss(inputs, config)), on_sample
    else:
        objective = aligned_objective(unet, inputs, config, align_targets)
        sample = on_sample and (lambda step, directory, module: on_sample(step, directory, module.unet))
    return Stage("unet", [objective], dataset_size=len(inputs.latent_mean), ema_decay=config.unet.ema_decay,
                 on_sample=sample, groups=groups)


def aligned_objective(unet: torch.nn.Module, inputs: UNetInputs, config: RunConfig, targets: torch.Tensor) -> Objective:
    """The denoising loss plus `unet.align_weight` times REPA's alignment loss (training/alignment.py).

    The projector is part of the trained module, so it trains, checkpoints and is averaged with the U-Net.
    """
    model = AlignedUNet(unet, config.unet.align_block, targets.shape[-1])
    patches, last = targets.shape[1], {}

    def predict(module, x_t, t, context, indices):
        prediction, projected = module(x_t, t, context, patches)
        last["align"] = alignment_loss(projected, targets[indices].to(projected.device))
        return prediction

    denoise = denoising_loss(inputs, config, predict=predict)

    def loss(module, batch):
        value, logs = denoise(module, batch)
        align = last.pop("align")
        return value + config.unet.align_weight * align, {**logs, "align": align.item()}

    return Objective("unet", model, loss)


def sampling_groups(config: RunConfig, data: TrainingData) -> Groups | None:
    """The training images gathered by the metadata field `unet.balance_by`, or None when it is unset."""
    field = config.unet.balance_by
    if not field:
        return None
    if not isinstance(data, TrainingData):
        raise MarbleError(f"unet.balance_by {field!r} needs an image folder in memory; shards stream in a fixed order")
    return Groups.of(data.train.field_values(field))


def scheduler_for(config: RunConfig):
    """The training noise schedule as a diffusers DDPM scheduler (saved beside the U-Net)."""
    schedule = NoiseSchedule.from_unet_config(config.unet)
    return make_scheduler("ddpm", schedule.scheduler_config(config.unet.prediction_type))


def trainable_unet(config: RunConfig, inputs: UNetInputs) -> UNet2DConditionModel:
    """The U-Net the stage trains: fresh (seeded) or from `unet.init_from`, with the attention this
    device trains fastest with."""
    latent_channels, latent_size = inputs.latent_mean.shape[1], inputs.latent_mean.shape[-1]
    torch.manual_seed(config.unet.train.seed)
    unet = build_unet(config.unet, latent_channels, latent_size, inputs.contexts.shape[-1])
    if config.unet.init_from:  # a checkpoint of this run, if any, still wins: the loop resumes from it
        # A U-Net without the pooled-text path may be continued with it: the path starts silent.
        load_initial_weights(unet, UNet2DConditionModel, model_folder(config.unet.init_from, lambda run: run.unet),
                             new_parts=("add_embedding.",))
    use_matmul_attention_on_cpu(unet, PartialState().device)
    return unet


def train_unet_stage(config: RunConfig, data: TrainingData, layout: RunLayout, progress: bool = True,
                     on_sample=None) -> dict:
    groups = sampling_groups(config, data)  # before caching: a missing field fails at once
    align_targets = None  # before caching too: a bad weight or a missing image tower fails at once
    if wants_alignment(config.unet.align_weight):
        align_targets = alignment_targets(layout, data.image_chunks(CACHE_BATCH), len(data.train))
    inputs = prepare_inputs(layout, data, progress)
    unet = trainable_unet(config, inputs)
    stage = unet_stage(unet, inputs, config, on_sample, groups, align_targets)
    summary = train_stage(stage, config.unet.train, layout.stage("unet"), progress)

    def write() -> None:
        save_pretrained_atomically(unet, layout.unet)  # EMA weights: the loop copied them in at the end
        save_atomically(scheduler_for(config).save_config, layout.scheduler)
        prompts = choose_calibration_prompts(list(inputs.captions.texts), config.unet.train.seed)
        write_calibration_prompts(prompts, layout.calibration_prompts)

    on_main_process(write)
    summary.update(parameters=sum(p.numel() for p in unet.parameters()), latent_scale=inputs.latent_scale)
    if groups:
        summary.update(balanced_by=config.unet.balance_by, groups=len(groups.members))
    return summary

