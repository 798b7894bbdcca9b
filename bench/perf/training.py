"""Training: Marble's U-Net stage (cached latents and contexts, its own loop) beside a diffusers-style
loop that encodes every batch's images with the VAE and captions with the text encoder, in fp32."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from diffusers.training_utils import EMAModel

from marble.autoencoder.model import images_to_model
from marble.config import RunConfig, load_json, replace_train
from marble.data.folder import ImageCaptionSet, SkipReport, load_image_folder
from marble.export.diffusers_folder import text_components
from marble.generators.unet import build_unet
from marble.layout import RunLayout
from marble.text.encoders import load_text_encoder
from marble.text.tokenizer import tokenize_prompts
from marble.training.data import TrainingData
from marble.training.loop import train_stage
from marble.training.unet_stage import prepare_inputs, scheduler_for, trainable_unet, unet_stage
from perf.timing import interleaved, paired_ratio, summarize


def training_images(params: dict, image_size: int) -> tuple[ImageCaptionSet, str]:
    """The first N images of the real dataset if given, else N synthetic colour fields with captions."""
    folder = params.get("data")
    count = params["images"]
    if folder and Path(folder).is_dir():
        data, _ = load_image_folder(Path(folder), image_size, progress=False)
        return data.subset(range(min(count, len(data)))), f"{min(count, len(data))} images of {folder}"
    generator = torch.Generator().manual_seed(0)
    colours = torch.randint(0, 256, (count, 3, 1, 1), generator=generator, dtype=torch.uint8)
    images = colours.expand(count, 3, image_size, image_size).clone()
    captions = [{"text": f"colour {tuple(c.flatten().tolist())}"} for c in colours]
    return ImageCaptionSet(images, captions, [f"{k}.png" for k in range(count)]), f"{count} synthetic images"


def run_config(layout: RunLayout, params: dict, steps: int, compile_unet: bool = False) -> RunConfig:
    """The reference run's configuration with the bench's batch size and a log line every step, and a fresh
    U-Net drawn uniformly (no init_from, no balance_by), as the diffusers-style loop trains one."""
    config = load_json(RunConfig, layout.run_config)
    train = dict(steps=steps, batch_size=params["batch"], log_every=1, checkpoint_every=10**9, sample_every=0,
                 compile=compile_unet)
    unet = dataclasses.replace(replace_train(config.unet, **train), init_from="", balance_by="")
    return dataclasses.replace(config, unet=unet)


class MarbleLoop:
    """Marble's U-Net stage: inputs cached once (timed separately), then train_stage for k steps a round;
    `compile_unet`: with `unet.train.compile`, its first round (the warm-up) pays the compile."""

    def __init__(self, layout: RunLayout, data: ImageCaptionSet, params: dict, compile_unet: bool = False):
        self.params, self.scratch = params, Path(tempfile.mkdtemp(prefix="marble-bench-"))
        self.compile_unet = compile_unet
        started = time.perf_counter()
        self.inputs = prepare_inputs(layout, TrainingData(data, data.subset([]), SkipReport()), progress=False)
        self.cache_seconds = time.perf_counter() - started
        config = run_config(layout, params, params["steps_per_round"])
        self.unet = trainable_unet(config, self.inputs)  # as `marble train unet` builds it (seed 0)
        self.rounds = 0
        self.step_seconds: list[float] = []
        self.first_round_seconds = 0.0

    def run_round(self) -> None:
        self.rounds += 1
        config = run_config(RunLayout(Path(self.params["model"])), self.params, self.params["steps_per_round"],
                            self.compile_unet)
        stage_dir = self.scratch / f"round{self.rounds}"
        started = time.perf_counter()
        train_stage(unet_stage(self.unet, self.inputs, config), config.unet.train, stage_dir, progress=False)
        if self.rounds == 1:
            self.first_round_seconds = time.perf_counter() - started
        log = [json.loads(line) for line in (stage_dir / "train_log.jsonl").read_text().splitlines()]
        # The loop's own clock, step by step: excludes its start-up and the end-of-stage checkpoint.
        clock = [0.0] + [record["seconds"] for record in log]
        self.step_seconds += [b - a for a, b in zip(clock, clock[1:])]


class DiffusersStyleLoop:
    """diffusers' train_text_to_image.py shape: per step VAE-encode the pixels, text-encode the captions,
    add noise, MSE on ε, AdamW, EMAModel; fp32 throughout."""

    def __init__(self, layout: RunLayout, data: ImageCaptionSet, params: dict):
        config = run_config(layout, params, params["steps_per_round"])
        self.data, self.batch = data, params["batch"]
        self.vae = AutoencoderKL.from_pretrained(layout.autoencoder).eval().requires_grad_(False)
        self.text_model, tokenizer = text_components(load_text_encoder(layout.text_encoder))
        self.input_ids = tokenize_prompts(tokenizer, [c["text"] for c in data.captions]).input_ids  # once, as its dataset map does
        torch.manual_seed(0)
        latent_size = data.images.shape[-1] // 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.unet = build_unet(config.unet, self.vae.config.latent_channels, latent_size,
                               self.text_model.config.hidden_size).train()
        self.noise_scheduler = scheduler_for(config)
        train = config.unet.train
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
        self.ema = EMAModel(self.unet.parameters(), decay=config.unet.ema_decay)
        self.steps = params["steps_per_round"]
        self.step_seconds: list[float] = []
        self.generator = torch.Generator().manual_seed(0)

    def step(self) -> None:
        started = time.perf_counter()
        rows = torch.randint(0, len(self.data), (self.batch,), generator=self.generator)
        with torch.no_grad():
            latents = self.vae.encode(images_to_model(self.data.images[rows])).latent_dist.sample()
            latents = latents * self.vae.config.scaling_factor
            context = self.text_model(self.input_ids[rows])[0]
        noise = torch.randn_like(latents)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (self.batch,))
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        loss = torch.nn.functional.mse_loss(self.unet(noisy, t, encoder_hidden_states=context).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.step(self.unet.parameters())
        self.step_seconds.append(time.perf_counter() - started)

    def run_round(self) -> None:
        for _ in range(self.steps):
            self.step()


def loops(params: dict) -> tuple[dict, str]:
    layout = RunLayout(Path(params["model"]))
    image_size = load_json(RunConfig, layout.run_config).data.image_size
    data, described = training_images(params, image_size)
    found = {}
    for name in params["loops"]:
        if name.startswith("marble"):
            found[name] = MarbleLoop(layout, data, params, compile_unet=name == "marble-compiled")
        else:
            found[name] = DiffusersStyleLoop(layout, data, params)
    return found, described


def measure_training(params: dict) -> dict:
    """Rounds of k steps, Marble then diffusers-style, alternating; per-step times from each loop's clock."""
    contestants, described = loops(params)
    k = params["steps_per_round"]
    round_seconds = interleaved({name: loop.run_round for name, loop in contestants.items()}, params["rounds"], warmup=1)
    results, round_means = {}, {}
    for name, loop in contestants.items():
        measured = loop.step_seconds[k:]  # drop the warm-up round
        round_means[name] = [sum(measured[i:i + k]) / k for i in range(0, len(measured), k)]
        results[name] = {"step_seconds": summarize(measured), "steps_per_second": 1 / summarize(measured)["median"],
                         "round_wall_seconds": summarize(round_seconds[name])}
    marble_loops = [name for name in contestants if name.startswith("marble")]
    for name in marble_loops:
        results[name]["cache_seconds"] = round(contestants[name].cache_seconds, 2)
        # The warm-up round less an ordinary one: what compiling cost (about 0 uncompiled).
        results[name]["first_round_extra_seconds"] = round(
            contestants[name].first_round_seconds - k * results[name]["step_seconds"]["median"], 1)
    speedups = ({name: paired_ratio(round_means["diffusers-style"], round_means[name]) for name in marble_loops}
                if "diffusers-style" in contestants else {})
    return {"loops": results, "speedup": speedups.get("marble"), "speedups": speedups, "data": described,
            "batch": params["batch"], "steps_per_round": k}


def measure_training_memory(params: dict) -> dict:
    contestants, _ = loops({**params, "loops": [params["path"]]})
    contestants[params["path"]].run_round()
    return {"path": params["path"]}
