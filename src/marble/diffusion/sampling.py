"""The reverse-process loop over a denoiser callable, classifier-free guidance, and x0 previews.

The loop is the one diffusers' StableDiffusionPipeline.__call__ runs (0.42.1), step for step, so
a Marble model sampled here gives the same latents as the same weights in that pipeline.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from marble.diffusion.objective import check_prediction_type
from marble.errors import MarbleError

# (model_input (B, C, h, w), t 0-d tensor) -> model output (B, C, h, w), ε or v as trained.
Denoiser = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class StepInfo:
    """What a step callback sees; `total` counts model calls (Heun makes 2·steps − 1 of them)."""

    index: int
    total: int
    t: Tensor
    x_in: Tensor  # scaled model input, variance-preserving space
    model_output: Tensor
    latents_after: Tensor


def sample(
    denoise: Denoiser,
    scheduler,
    latents: Tensor,
    steps: int,
    generator: torch.Generator | None,
    on_step: Callable[[StepInfo], None] | None = None,
) -> Tensor:
    """Run `scheduler` from unit-variance noise `latents` (B, C, h, w) to clean latents."""
    set_sampling_steps(scheduler, steps, latents.device)
    # After set_timesteps: sigma-parameterised schedulers (Euler, Heun) start at sigma_max.
    latents = latents * scheduler.init_noise_sigma
    return run_timesteps(denoise, scheduler, latents, scheduler.timesteps, generator, on_step)


def set_sampling_steps(scheduler, steps: int, device: torch.device) -> None:
    """`scheduler.set_timesteps(steps)` once the count is known to be valid."""
    if steps <= 0:
        raise MarbleError(f"sampling steps must be >= 1, got {steps}")
    train_steps = scheduler.config.num_train_timesteps
    if steps > train_steps:
        raise MarbleError(f"sampling steps ({steps}) cannot exceed the {train_steps} training timesteps")
    scheduler.set_timesteps(steps, device=device)


def run_timesteps(
    denoise: Denoiser,
    scheduler,
    latents: Tensor,
    timesteps: Tensor,
    generator: torch.Generator | None,
    on_step: Callable[[StepInfo], None] | None = None,
    after_step: Callable[[int, Tensor], Tensor] | None = None,
) -> Tensor:
    """The reverse loop over `timesteps` (all of the scheduler's, or a tail for SDEdit); `after_step(index,
    latents)` may replace each step's result (inpainting puts the known region back)."""
    step_kwargs = _extra_step_kwargs(scheduler, generator)
    for index, t in enumerate(timesteps):
        x_in = scheduler.scale_model_input(latents, t)
        model_output = denoise(x_in, t)
        latents = scheduler.step(model_output, t, latents, **step_kwargs, return_dict=False)[0]
        if after_step is not None:
            latents = after_step(index, latents)
        if on_step is not None:
            on_step(StepInfo(index, len(timesteps), t, x_in, model_output, latents))
    return latents


def _extra_step_kwargs(scheduler, generator: torch.Generator | None) -> dict:
    """eta = 0 (deterministic DDIM) and the generator, for the schedulers whose step takes them."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs: dict = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


def classifier_free_guidance(uncond: Tensor, cond: Tensor, scale: float) -> Tensor:
    """ε̃ = ε(∅) + s·(ε(c) − ε(∅)) (Ho & Salimans 2022, eq. 6)."""
    return uncond + scale * (cond - uncond)


def predict_x0(x_in: Tensor, model_output: Tensor, t: Tensor, alphas_cumprod: Tensor, prediction_type: str) -> Tensor:
    """Clean-latent estimate from the scaled model input: inverts x = sqrt(ᾱ)x0 + sqrt(1−ᾱ)ε (DDPM eq. 4)."""
    check_prediction_type(prediction_type)
    alpha_bar = _alpha_bar_at(alphas_cumprod, t).to(device=x_in.device, dtype=x_in.dtype)
    if prediction_type == "epsilon":
        return (x_in - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()
    # v = sqrt(ᾱ)ε − sqrt(1−ᾱ)x0 (Salimans & Ho 2022) ⇒ x0 = sqrt(ᾱ)x − sqrt(1−ᾱ)v.
    return alpha_bar.sqrt() * x_in - (1 - alpha_bar).sqrt() * model_output


def _alpha_bar_at(alphas_cumprod: Tensor, t: Tensor) -> Tensor:
    """ᾱ at a scalar timestep, linearly interpolated where a sigma schedule gives a fractional t."""
    last = len(alphas_cumprod) - 1
    position = min(max(float(t), 0.0), float(last))
    low = int(position)
    high = min(low + 1, last)
    weight = position - low
    return alphas_cumprod[low] * (1 - weight) + alphas_cumprod[high] * weight
