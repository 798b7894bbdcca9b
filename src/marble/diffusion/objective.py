"""The denoising training objective: what the network predicts, how each timestep is weighted, the loss."""

from __future__ import annotations

import torch
from torch import Tensor

from marble.diffusion.schedule import NoiseSchedule
from marble.errors import MarbleError

PREDICTION_TYPES = ("epsilon", "v_prediction")


def check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise MarbleError(
            f"unknown prediction_type {prediction_type!r}; choose one of: {', '.join(PREDICTION_TYPES)}"
        )


def training_target(prediction_type: str, x0: Tensor, noise: Tensor, t: Tensor, schedule: NoiseSchedule) -> Tensor:
    """ε (Ho et al. 2020, eq. 14) or v (Salimans & Ho 2022, §4): what the network learns to output."""
    check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return noise
    return schedule.velocity(x0, noise, t)


def min_snr_weights(t: Tensor, schedule: NoiseSchedule, gamma: float, prediction_type: str) -> Tensor:
    """Per-sample loss weights (B,): Min-SNR-γ (Hang et al. 2023, eq. 9) expressed for ε or v targets."""
    check_prediction_type(prediction_type)
    snr = schedule.snr(t).float()
    if gamma <= 0:
        return torch.ones_like(snr)
    clipped = torch.clamp(snr, max=gamma)
    # The paper weights the x0-space loss by min(SNR, γ); an ε-loss already carries a factor SNR
    # and a v-loss a factor SNR + 1 relative to it, so divide those out.
    if prediction_type == "epsilon":
        return clipped / snr
    return clipped / (snr + 1)


def diffusion_loss(model_output: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """Weighted MSE: per-sample mean over non-batch dims, times weights (B,), mean over the batch."""
    if model_output.shape != target.shape:
        raise MarbleError(f"model output {tuple(model_output.shape)} and target {tuple(target.shape)} differ")
    # float32 even under bf16 autocast: bf16's 8-bit mantissa would make the mean of small squared
    # residuals too coarse to train on (diffusers' training scripts upcast the same way).
    per_sample = (model_output.float() - target.float()).pow(2).flatten(1).mean(dim=1)  # (B,)
    if weights is not None:
        per_sample = per_sample * weights.float()
    return per_sample.mean()
