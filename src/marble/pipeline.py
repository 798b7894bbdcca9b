"""prompt → context → latent → image: Marble's one inference entry point.

The sampling loop, guidance and decoding mirror diffusers' StableDiffusionPipeline exactly, so a
run exported to a diffusers folder gives the same pixels there (see export/diffusers_folder.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from marble.autoencoder.model import images_to_model, model_to_images
from marble.diffusion.editing import edit_latents, latent_mask
from marble.diffusion.samplers import SAMPLERS, make_scheduler
from marble.diffusion.sampling import StepInfo, classifier_free_guidance, predict_x0, sample
from marble.editing import ImageEdit
from marble.errors import MarbleError
from marble.inference.context_cache import ContextCache
from marble.inference.calibration import (CALIBRATION_GUIDANCE, CALIBRATION_IMAGES, CALIBRATION_STEPS,
                                          read_calibration_prompts)
from marble.inference.onnx_decoder import make_decoder
from marble.inference.options import EXACT, InferenceOptions
from marble.inference.unet_forward import UNetForward, make_unet_forward, onnx_ready
from marble.layout import RunLayout
from marble.text.encoders import TextEncoder, load_text_encoder

MAX_SEED = 2**63 - 1
MAX_IMAGES = 64
MAX_STEPS = 1000


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    negative_prompt: str = ""
    steps: int = 30
    guidance: float = 5.0
    sampler: str = "dpm++"
    seed: int = 0
    num_images: int = 1
    preview_every: int = 0  # 0: no previews; k: decode the predicted clean image every k steps
    edit: ImageEdit | None = None  # img2img / inpainting from a source image; None: text-to-image

    def validate(self) -> None:
        """Raise MarbleError naming the first bad field."""
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise MarbleError("prompt: must be a non-empty text")
        if not isinstance(self.negative_prompt, str):
            raise MarbleError("negative_prompt: must be text")
        _check_int("steps", self.steps, 1, MAX_STEPS)
        _check_int("num_images", self.num_images, 1, MAX_IMAGES)
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_int("preview_every", self.preview_every, 0, MAX_STEPS)
        if isinstance(self.guidance, bool) or not isinstance(self.guidance, (int, float)) or not math.isfinite(self.guidance):
            raise MarbleError(f"guidance: must be a finite number, got {self.guidance!r}")
        if not 0 <= self.guidance <= 50:
            raise MarbleError(f"guidance: must be between 0 and 50, got {self.guidance}")
        if self.sampler not in SAMPLERS:
            raise MarbleError(f"sampler: unknown {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.edit is not None:
            if not isinstance(self.edit, ImageEdit):
                raise MarbleError(f"edit: must be an ImageEdit, got {type(self.edit).__name__}")
            self.edit.validate()

    def settings(self) -> dict:
        """The fields as JSON-safe values (PNG metadata, job status); an edit is summarised, not its pixels."""
        fields = dict(self.__dict__)
        edit = fields.pop("edit")
        return fields if edit is None else {**fields, "edit": edit.settings()}


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MarbleError(f"{name}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise MarbleError(f"{name}: must be between {low} and {high}, got {value}")


@dataclass
class Preview:
    step: int  # 1-based index of the sampling step just taken
    total: int
    images: torch.Tensor  # (n, 3, H, W) uint8, the decoded predicted clean image


@dataclass
class GenerationResult:
    images: torch.Tensor  # (n, 3, H, W) uint8
    request: GenerationRequest
    seconds: float


class MarblePipeline:
    def __init__(self, text_encoder: TextEncoder, unet: UNet2DConditionModel, vae: AutoencoderKL, scheduler_config: dict,
                 options: InferenceOptions = EXACT, cache_dir: Path | None = None, calibration_prompts: list[str] = ()):
        self.text_encoder = text_encoder
        self.unet = unet.eval()
        self.vae = vae.eval()
        self.scheduler_config = dict(scheduler_config)
        self.prediction_type = self.scheduler_config.get("prediction_type", "epsilon")
        options.validate()
        self.options, self.cache_dir = options, cache_dir  # cache_dir: where backend onnx keeps its export
        self._unet_forward: UNetForward | None = None
        self._unet_forward_key: tuple | None = None
        self._decoder, self._decoder_vae = None, None
        self.context_cache = ContextCache(text_encoder)
        self.calibration_prompts = list(calibration_prompts)  # what precision int8 samples to calibrate on

    @classmethod
    def load(cls, run_dir: Path, options: InferenceOptions = EXACT) -> "MarblePipeline":
        layout = RunLayout(Path(run_dir))
        missing = [p for p in (layout.text_encoder, layout.unet, layout.autoencoder, layout.scheduler) if not p.is_dir()]
        if missing:
            raise MarbleError(f"no trained model at {run_dir}: missing {', '.join(str(p) for p in missing)}; "
                              "train one with `marble train all` or pass --model")
        return cls(
            load_text_encoder(layout.text_encoder),
            UNet2DConditionModel.from_pretrained(layout.unet),
            AutoencoderKL.from_pretrained(layout.autoencoder),
            dict(DDPMScheduler.load_config(layout.scheduler)),
            options, layout.inference_cache, read_calibration_prompts(layout.calibration_prompts),
        )

    @property
    def image_size(self) -> int:
        return self.unet.config.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (n, C, h, w) → uint8 images (n, 3, H, W)."""
        return model_to_images(self.decoder()(latents / self.vae.config.scaling_factor))

    def decoder(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The decoder as self.options say (eager, or the exported graph); rebuilt if self.vae was replaced."""
        if self._decoder is None or self._decoder_vae is not self.vae:
            self._decoder, self._decoder_vae = make_decoder(self.vae, self.options, self.cache_dir), self.vae
        return self._decoder

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (n, 3, H, W) → scaled latents (n, C, h, w): the posterior mean, as the U-Net was trained on."""
        return self.vae.encode(images_to_model(images)).latent_dist.mean * self.vae.config.scaling_factor

    def contexts(self, request: GenerationRequest) -> torch.Tensor:
        """(n, L, D); (2n, L, D) when guiding: n negative contexts then n prompt contexts (diffusers' order)."""
        once = self.prompt_contexts([request.prompt], request.negative_prompt, request.guidance)
        return once.repeat_interleave(request.num_images, dim=0)

    def prompt_contexts(self, prompts: list[str], negative_prompt: str, guidance: float) -> torch.Tensor:
        """One context per prompt, (n, L, D); (2n, L, D) when guiding: n negative contexts then the n prompts'."""
        if guidance <= 1:
            return self.context_cache.encode(prompts)
        encoded = self.context_cache.encode([negative_prompt, *prompts])
        return torch.cat([encoded[:1].repeat(len(prompts), 1, 1), encoded[1:]])

    def unet_forward(self) -> UNetForward:
        """The U-Net call as self.options say; rebuilt if self.unet was replaced or LoRA layers came or went."""
        key = (id(self.unet), onnx_ready(self.unet))
        if self._unet_forward is None or key != self._unet_forward_key:
            calibration = (self.calibration_prompts, self.calibration_feeds)
            self._unet_forward = make_unet_forward(self.unet, self.options, self.cache_dir, calibration)
            self._unet_forward_key = key
        return self._unet_forward

    def calibration_feeds(self) -> list[dict]:
        """The U-Net inputs met while sampling each calibration prompt on the bf16 graph: int8's calibration data."""
        float_path = MarblePipeline(self.text_encoder, self.unet, self.vae, self.scheduler_config,
                                    InferenceOptions(precision="auto", backend="openvino"), self.cache_dir)
        forward, feeds = float_path.unet_forward(), []
        forward.on_feed = feeds.append
        for seed, prompt in enumerate(self.calibration_prompts):
            float_path.generate(GenerationRequest(prompt, steps=CALIBRATION_STEPS, guidance=CALIBRATION_GUIDANCE,
                                                  num_images=CALIBRATION_IMAGES, seed=seed))
        return feeds

    def _denoiser(self, context: torch.Tensor, guidance: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        guided = guidance > 1
        unet_forward = self.unet_forward()

        def denoise(x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            model_input = torch.cat([x_in, x_in]) if guided else x_in  # one batched call for both halves
            output = unet_forward(model_input, t, context)
            return classifier_free_guidance(*output.chunk(2), guidance) if guided else output

        return denoise

    def _latent_shape(self, count: int) -> tuple[int, int, int, int]:
        return (count, self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)

    @torch.no_grad()
    def generate(self, request: GenerationRequest, on_preview: Callable[[Preview], None] | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> GenerationResult:
        """Sample `request`; `on_preview` gets decoded x0 estimates, `on_progress(done, total)` every model call."""
        request.validate()
        started = time.perf_counter()
        scheduler = make_scheduler(request.sampler, self.scheduler_config)
        denoise = self._denoiser(self.contexts(request), request.guidance)
        generator = torch.Generator("cpu").manual_seed(request.seed)
        noise = torch.randn(self._latent_shape(request.num_images), generator=generator)
        on_step = self._step_callback(request, scheduler, on_preview, on_progress)
        if request.edit is None:
            images = self.decode(sample(denoise, scheduler, noise, request.steps, generator, on_step))
        else:
            images = self._edited_images(request, denoise, scheduler, noise, generator, on_step)
        return GenerationResult(images, request, time.perf_counter() - started)

    def _edited_images(self, request: GenerationRequest, denoise, scheduler, noise, generator, on_step) -> torch.Tensor:
        """img2img / inpainting from the request's source image (marble.diffusion.editing), (n, 3, H, W) uint8."""
        edit = request.edit
        edit.check_size(self.image_size)
        source = self.encode(edit.image[None]).expand_as(noise)  # one source for the batch, (n, C, h, w)
        mask = None if edit.mask is None else latent_mask(edit.mask, self.unet.config.sample_size)
        latents = edit_latents(denoise, scheduler, source, noise, request.steps, edit.strength, generator, on_step, mask)
        return edit.composite(self.decode(latents))

    @torch.no_grad()
    def generate_batch(self, prompts: list[str], seeds: list[int], steps: int = 30, guidance: float = 5.0,
                       sampler: str = "dpm++", negative_prompt: str = "") -> torch.Tensor:
        """One image per (prompt, seed) in one batch, (n, 3, H, W) uint8; image k equals generate() of
        prompt k with seed k and num_images 1 (up to batch round-off): each image draws from its own generator."""
        if len(prompts) != len(seeds) or not prompts:
            raise MarbleError(f"generate_batch needs one seed per prompt and at least one prompt, "
                              f"got {len(prompts)} prompts and {len(seeds)} seeds")
        for prompt, seed in zip(prompts, seeds):
            GenerationRequest(prompt, negative_prompt, steps, guidance, sampler, seed).validate()
        scheduler = make_scheduler(sampler, self.scheduler_config)
        denoise = self._denoiser(self.prompt_contexts(list(prompts), negative_prompt, guidance), guidance)
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        noise = torch.cat([torch.randn(self._latent_shape(1), generator=g) for g in generators])  # (n, C, h, w)
        # diffusers' schedulers draw per-sample noise from a list of generators (randn_tensor).
        return self.decode(sample(denoise, scheduler, noise, steps, generators))

    def _step_callback(self, request: GenerationRequest, scheduler, on_preview, on_progress):
        def on_step(info: StepInfo) -> None:
            done = info.index + 1
            if on_progress is not None:
                on_progress(done, info.total)
            wants_preview = request.preview_every and (done % request.preview_every == 0 or done == info.total)
            if on_preview is not None and wants_preview:
                x0 = predict_x0(info.x_in, info.model_output, info.t, scheduler.alphas_cumprod, self.prediction_type)
                on_preview(Preview(done, info.total, self.decode(x0)))

        return on_step
