"""The DDPM forward process: beta schedules, noising, v-targets and SNR, as diffusers computes them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from marble.config import UNetConfig
from marble.errors import MarbleError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass(frozen=True)
class NoiseSchedule:
    """Discrete variance-preserving noise schedule over `num_train_timesteps` steps."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise MarbleError(
                f"unknown beta_schedule {self.beta_schedule!r}; choose one of: {', '.join(BETA_SCHEDULES)}"
            )
        if self.num_train_timesteps < 1:
            raise MarbleError(f"num_train_timesteps must be >= 1, got {self.num_train_timesteps}")

    @classmethod
    def from_unet_config(cls, cfg: UNetConfig) -> NoiseSchedule:
        return cls(cfg.num_train_timesteps, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)

    @cached_property
    def betas(self) -> Tensor:
        """β_t, float32 (T,), with the same float operations as diffusers' DDPMScheduler."""
        steps = self.num_train_timesteps
        if self.beta_schedule == "linear":
            return torch.linspace(self.beta_start, self.beta_end, steps, dtype=torch.float32)
        if self.beta_schedule == "scaled_linear":
            # Linear in sqrt(β): the latent diffusion schedule (Rombach et al. 2022).
            return torch.linspace(self.beta_start**0.5, self.beta_end**0.5, steps, dtype=torch.float32) ** 2
        return _cosine_betas(steps)

    @cached_property
    def alphas_cumprod(self) -> Tensor:
        """ᾱ_t = Π_{s≤t} (1 − β_s), float32 (T,) (Ho et al. 2020, eq. 4)."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε (Ho et al. 2020, eq. 4); x0, noise (B, ...), t (B,)."""
        alpha_bar = self._alpha_bar_like(x0, t)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    def velocity(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """v = sqrt(ᾱ_t)·ε − sqrt(1−ᾱ_t)·x0 (Salimans & Ho 2022, §4)."""
        alpha_bar = self._alpha_bar_like(x0, t)
        return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t), same shape as t."""
        alpha_bar = self.alphas_cumprod.to(t.device)[t.long()]
        return alpha_bar / (1 - alpha_bar)

    def scheduler_config(self, prediction_type: str) -> dict:
        """Keyword arguments for any diffusers scheduler, as in Stable Diffusion v1's scheduler_config.json."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": self.beta_schedule,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "prediction_type": prediction_type,
            "clip_sample": False,
            "set_alpha_to_one": False,
            "steps_offset": 1,
            "timestep_spacing": "leading",
        }

    def _alpha_bar_like(self, x: Tensor, t: Tensor) -> Tensor:
        """ᾱ_t gathered per sample and shaped (B, 1, ..., 1) to broadcast over x."""
        alpha_bar = self.alphas_cumprod.to(device=x.device, dtype=x.dtype)[t.to(x.device).long()]
        alpha_bar = alpha_bar.flatten()
        return alpha_bar.reshape(alpha_bar.shape + (1,) * (x.dim() - 1))


def _cosine_betas(steps: int, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule discretised from ᾱ(t) (Nichol & Dhariwal 2021, eq. 17), capped at max_beta."""

    def alpha_bar(time: float) -> float:
        return math.cos((time + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)]
    return torch.tensor(betas, dtype=torch.float32)
