"""Sample grids during U-Net training, so progress can be seen as well as read off the loss."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL

from marble.config import RunConfig
from marble.images import grid, save_png
from marble.layout import RunLayout
from marble.pipeline import GenerationRequest, MarblePipeline
from marble.text.encoders import load_text_encoder
from marble.training.unet_stage import scheduler_for

SAMPLE_PROMPTS = ("red apple", "smiling face with sunglasses", "紅蘋果", "dog face", "red heart", "rocket", "sun", "pizza")
SAMPLE_STEPS = 20


def training_sampler(layout: RunLayout, config: RunConfig):
    """on_sample(step, directory, unet) for the loop: one image per prompt, fixed seeds."""
    parts: dict = {}

    def on_sample(step: int, directory: Path, unet: torch.nn.Module) -> None:
        if not parts:  # load the frozen stages once, at the first grid
            parts["text"] = load_text_encoder(layout.text_encoder)
            parts["vae"] = AutoencoderKL.from_pretrained(layout.autoencoder)
        pipeline = MarblePipeline(parts["text"], unet, parts["vae"], dict(scheduler_for(config).config))
        images = [pipeline.generate(GenerationRequest(p, steps=SAMPLE_STEPS, sampler="ddim", seed=i)).images
                  for i, p in enumerate(SAMPLE_PROMPTS)]
        unet.train()  # the pipeline switched it to eval mode
        save_png(grid(torch.cat(images), columns=4), Path(directory) / f"step-{step:08d}.png")

    return on_sample
