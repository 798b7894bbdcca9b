"""Editing with a trained sampler: SDEdit (start part-way from a noised source) and latent inpainting.

The step choices mirror diffusers' StableDiffusionImg2ImgPipeline / StableDiffusionInpaintPipeline
(0.42.1): `get_timesteps` for the strength, `add_noise` for the start and for the kept region.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from marble.diffusion.sampling import Denoiser, StepInfo, run_timesteps, set_sampling_steps
from marble.errors import MarbleError


def strength_timesteps(scheduler, steps: int, strength: float) -> Tensor:
    """The tail of `scheduler.timesteps` SDEdit runs: the last ⌊steps·strength⌋ of `steps` (Meng et al. 2021, §4.1).

    Call after set_timesteps. Heun's tail holds 2k − 1 model calls for k steps, as in diffusers; PNDM's
    holds k + 1 (its schedule repeats one timestep). Strength below 1/steps keeps no step at all.
    """
    kept = min(int(steps * strength), steps)  # diffusers' get_timesteps, float rounding included
    if kept == 0:
        return scheduler.timesteps[:0]
    start = (steps - kept) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):  # sigma schedulers index their sigmas from here on
        scheduler.set_begin_index(start)
    return scheduler.timesteps[start:]


def noised_source(scheduler, source: Tensor, noise: Tensor, timesteps: Tensor, strength: float) -> Tensor:
    """SDEdit's start x_t0 = sqrt(ᾱ)·x0 + sqrt(1−ᾱ)·ε at the first kept step (DDPM eq. 4); source, noise (B, C, h, w).

    Strength 1 starts from pure noise exactly as text-to-image does (diffusers' inpainting `is_strength_max`),
    so it reproduces plain generation for the same seed; strength 0 (no step kept) is the source itself.
    """
    if strength >= 1:
        return noise * scheduler.init_noise_sigma
    if len(timesteps) == 0:
        return source
    return scheduler.add_noise(source, noise, timesteps[:1].repeat(len(source)))


def latent_mask(mask: Tensor, latent_side: int) -> Tensor:
    """Pixel mask (H, W) bool, True = repaint → (1, 1, h, w) float on the latent grid.

    Max-pooling: a latent cell is regenerated if any pixel it encodes is masked, so the kept cells
    never carry masked content (diffusers' nearest-neighbour resize would drop thin strokes).
    """
    side = mask.shape[-1]
    if mask.shape != (side, side) or side % latent_side:
        raise MarbleError(f"mask: expected a square mask whose side is a multiple of {latent_side}, got {tuple(mask.shape)}")
    return F.max_pool2d(mask.float()[None, None], kernel_size=side // latent_side)


def keep_unmasked(scheduler, source: Tensor, noise: Tensor, mask: Tensor, timesteps: Tensor) -> Callable[[int, Tensor], Tensor]:
    """An `after_step` that resets the unmasked region to the source noised to the next step's level.

    This is Stable Diffusion's inpainting with a plain U-Net (and RePaint, Lugmayr et al. 2022, eq. 8,
    without resampling); after the last step the kept region is the clean source latent exactly.
    """

    def blend(index: int, latents: Tensor) -> Tensor:
        if index + 1 < len(timesteps):
            known = scheduler.add_noise(source, noise, timesteps[index + 1:index + 2].repeat(len(source)))
        else:
            known = source
        return mask * latents + (1 - mask) * known

    return blend


def edit_latents(
    denoise: Denoiser,
    scheduler,
    source: Tensor,
    noise: Tensor,
    steps: int,
    strength: float,
    generator: torch.Generator | None,
    on_step: Callable[[StepInfo], None] | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """SDEdit from clean `source` latents (B, C, h, w); with `mask` (1, 1, h, w), 1 = repaint, only there."""
    set_sampling_steps(scheduler, steps, source.device)
    timesteps = strength_timesteps(scheduler, steps, strength)
    latents = noised_source(scheduler, source, noise, timesteps, strength)
    after_step = None if mask is None else keep_unmasked(scheduler, source, noise, mask, timesteps)
    return run_timesteps(denoise, scheduler, latents, timesteps, generator, on_step, after_step)
