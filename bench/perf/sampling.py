"""Sampling: Marble's generate beside diffusers' StableDiffusionPipeline on the same exported weights."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from marble.diffusion.samplers import make_scheduler
from marble.pipeline import GenerationRequest, MarblePipeline
from perf.timing import current_rss_mib, interleaved, paired_ratio, summarize
from perf.variants import PATHS

DIFFUSERS = "diffusers"
Sampler = Callable[[GenerationRequest], np.ndarray]  # request → (n, H, W, 3) floats in [0, 255]


def load_diffusers(folder: str, sampler: str) -> StableDiffusionPipeline:
    pipeline = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipeline.scheduler = make_scheduler(sampler, dict(pipeline.scheduler.config))  # the same sampler as Marble's
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def diffusers_sampler(pipeline: StableDiffusionPipeline) -> Sampler:
    def sample(request: GenerationRequest) -> np.ndarray:
        output = pipeline(request.prompt, negative_prompt=request.negative_prompt, num_inference_steps=request.steps,
                          guidance_scale=request.guidance, num_images_per_prompt=request.num_images,
                          generator=torch.Generator().manual_seed(request.seed), output_type="np")
        return output.images * 255.0  # before diffusers' own rounding to uint8

    return sample


def marble_sampler(params: dict, name: str) -> Sampler:
    pipeline = MarblePipeline.load(Path(params["model"]), PATHS[name])
    pipeline.cache_dir = Path(params["cache_dir"])  # a scratch folder: the suite never writes into the model

    def sample(request: GenerationRequest) -> np.ndarray:
        return pipeline.generate(request).images.permute(0, 2, 3, 1).float().numpy()

    sample.pipeline = pipeline
    return sample


def samplers(params: dict, names: list[str]) -> dict[str, Sampler]:
    found = {}
    for name in names:
        found[name] = (diffusers_sampler(load_diffusers(params["diffusers_folder"], params["sampler"]))
                       if name == DIFFUSERS else marble_sampler(params, name))
    return found


def request_for(params: dict, batch: int) -> GenerationRequest:
    return GenerationRequest(params["prompt"], "", params["steps"], params["guidance"], params["sampler"],
                             params["seed"], batch)


def timed(sample: Sampler, request: GenerationRequest) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    images = sample(request)
    return time.perf_counter() - started, images


def _compile_seconds(pipeline) -> float:
    """Exports and compiles of the U-Net and, on the exported-graph backends, the decoder."""
    return pipeline.unet_forward().compile_seconds + getattr(pipeline.decoder(), "compile_seconds", 0.0)


def measure_sampling(params: dict) -> dict:
    """Per batch size: seconds per call of each path (interleaved), images/s, ratio to diffusers, pixel gap."""
    contestants = samplers(params, [DIFFUSERS, *params["paths"]])
    results = {}
    for batch in params["batches"]:
        request = request_for(params, batch)
        # First call: exports or compiles where the path does, and fills the text-context cache.
        first = {name: timed(sample, request) for name, sample in contestants.items()}
        calls = {name: (lambda s: lambda: s(request))(sample) for name, sample in contestants.items()}
        times = interleaved(calls, params["rounds"], warmup=0)
        results[str(batch)] = {name: {
            "seconds": summarize(times[name]),
            "images_per_second": batch / summarize(times[name])["median"],
            "first_call_seconds": round(first[name][0], 2),
            "max_level_difference": float(np.abs(first[name][1] - first[DIFFUSERS][1]).max()),
            "speedup_vs_diffusers": paired_ratio(times[DIFFUSERS], times[name]),
        } for name in contestants}
    compile_seconds = {name: round(_compile_seconds(sample.pipeline), 2)
                       for name, sample in contestants.items() if name != DIFFUSERS}
    return {"batches": results, "compile_seconds": compile_seconds}


def measure_sampling_memory(params: dict) -> dict:
    """Peak RSS of one path alone: load it, then one sampling call at the largest batch."""
    batch, name = max(params["batches"]), params["path"]
    sample = samplers(params, [name])[name]
    loaded = current_rss_mib()
    sample(request_for(params, batch))
    return {"path": name, "batch": batch, "rss_after_load_mib": round(loaded, 1)}
