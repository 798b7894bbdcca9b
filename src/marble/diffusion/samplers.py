"""Sampler registry: a name → a diffusers scheduler class plus the options that make it that sampler."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from marble.errors import MarbleError


@dataclass(frozen=True)
class SamplerSpec:
    scheduler_class: type[SchedulerMixin]
    description: str
    options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


SAMPLERS: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(DDPMScheduler, "ancestral DDPM (Ho et al. 2020, Alg. 2); needs hundreds of steps"),
    "ddim": SamplerSpec(DDIMScheduler, "deterministic DDIM, eta = 0 (Song et al. 2021)"),
    "dpm++": SamplerSpec(
        DPMSolverMultistepScheduler,
        "DPM-Solver++(2M), second-order multistep (Lu et al. 2022)",
        MappingProxyType({"algorithm_type": "dpmsolver++", "solver_order": 2}),
    ),
    "dpm++-sde": SamplerSpec(
        DPMSolverMultistepScheduler,
        "SDE-DPM-Solver++(2M), stochastic multistep (Lu et al. 2022)",
        MappingProxyType({"algorithm_type": "sde-dpmsolver++"}),
    ),
    "euler": SamplerSpec(EulerDiscreteScheduler, "Euler on the probability-flow ODE (Karras et al. 2022, Alg. 2, no churn)"),
    "euler-a": SamplerSpec(
        EulerAncestralDiscreteScheduler, "Euler ancestral: an Euler step, then fresh noise each step"
    ),
    "heun": SamplerSpec(HeunDiscreteScheduler, "Heun 2nd order (Karras et al. 2022, Alg. 1); two model calls a step"),
    "unipc": SamplerSpec(UniPCMultistepScheduler, "UniPC predictor-corrector (Zhao et al. 2023)"),
    "pndm": SamplerSpec(
        PNDMScheduler,
        "PLMS pseudo linear multistep (Liu et al. 2022), Stable Diffusion v1's default",
        MappingProxyType({"skip_prk_steps": True}),
    ),
}


def make_scheduler(name: str, scheduler_config: dict) -> SchedulerMixin:
    """A fresh scheduler for sampler `name`, given the keys of `NoiseSchedule.scheduler_config`."""
    if name not in SAMPLERS:
        raise MarbleError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    spec = SAMPLERS[name]
    accepted = _init_parameters(spec.scheduler_class)
    # Each scheduler takes a different subset (Euler has no clip_sample, PNDM no solver_order).
    kwargs = {key: value for key, value in scheduler_config.items() if key in accepted}
    kwargs.update(spec.options)
    return spec.scheduler_class(**kwargs)


def _init_parameters(scheduler_class: type[SchedulerMixin]) -> set[str]:
    return set(inspect.signature(scheduler_class.__init__).parameters) - {"self"}
