"""Many images for evaluation: one per (prompt, seed), sampled in batches, each image made once and reused."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from marble.errors import MarbleError
from marble.pipeline import MarblePipeline

DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class SamplingOptions:
    steps: int = 30
    sampler: str = "dpm++"
    guidance: float = 5.0
    negative_prompt: str = ""

    def describe(self) -> str:
        return f"{self.sampler}, {self.steps} steps, guidance {self.guidance:g}"


def image_seeds(base_seed: int, count: int) -> list[int]:
    """Image k of any evaluation set gets seed base + k: the same noise for caption k in every comparison."""
    return [base_seed + k for k in range(count)]


def generate_batch(pipeline: MarblePipeline, prompts: Sequence[str], seeds: Sequence[int],
                   options: SamplingOptions) -> torch.Tensor:
    """One image per (prompt, seed) in a single pipeline call; (n, 3, H, W) uint8."""
    return pipeline.generate_batch(list(prompts), list(seeds), options.steps, options.guidance, options.sampler,
                                   options.negative_prompt)


class SampleCache:
    """Generates each (prompt, seed, options) image once: the guidance sweep and per-language scores reuse them."""

    def __init__(self, pipeline: MarblePipeline, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True):
        if batch_size < 1:
            raise MarbleError(f"batch size must be at least 1, got {batch_size}")
        self.pipeline, self.batch_size, self.progress = pipeline, batch_size, progress
        self.images: dict[tuple, torch.Tensor] = {}
        self.seconds = 0.0  # sampling time of every image made so far
        self.generated = 0

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], options: SamplingOptions,
                 description: str = "generating") -> torch.Tensor:
        """(n, 3, H, W) uint8, image k for prompts[k] with seeds[k]; only the images not made before are sampled."""
        if len(prompts) != len(seeds):
            raise MarbleError(f"one seed per prompt needed, got {len(prompts)} prompts and {len(seeds)} seeds")
        keys = [(prompt, seed, options) for prompt, seed in zip(prompts, seeds)]
        missing = list(dict.fromkeys(key for key in keys if key not in self.images))
        with tqdm(total=len(missing), desc=description, unit="img", disable=not self.progress or not missing) as bar:
            for start in range(0, len(missing), self.batch_size):
                self._sample(missing[start:start + self.batch_size], options)
                bar.update(len(missing[start:start + self.batch_size]))
        return torch.stack([self.images[key] for key in keys])

    def _sample(self, keys: list[tuple], options: SamplingOptions) -> None:
        started = time.perf_counter()
        images = generate_batch(self.pipeline, [key[0] for key in keys], [key[1] for key in keys], options)
        self.seconds += time.perf_counter() - started
        self.generated += len(keys)
        self.images.update(zip(keys, images))

    @property
    def seconds_per_image(self) -> float | None:
        return self.seconds / self.generated if self.generated else None


__all__ = ["SamplingOptions", "SampleCache", "generate_batch", "image_seeds", "DEFAULT_BATCH_SIZE"]
