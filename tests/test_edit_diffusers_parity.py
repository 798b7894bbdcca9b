"""Marble's SDEdit and inpainting loops give diffusers' img2img / inpainting latents when fed the same random draws.

Marble differs from those pipelines on purpose in two places (docs/editing.md): it encodes the source with
the posterior mean (diffusers samples it) and, at strength 1, starts img2img from pure noise. Feeding both
the same sampled source latents and noise isolates everything else: timesteps, start, kept region, guidance.
diffusers' inpainting pipeline takes only 4- or 9-channel U-Nets, so that half runs on the shipped model.
"""

import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline
from PIL import Image

from marble.autoencoder.model import images_to_model
from marble.diffusion.editing import edit_latents, latent_mask
from marble.diffusion.samplers import make_scheduler
from marble.export.diffusers_folder import as_diffusers_pipeline
from marble.pipeline import GenerationRequest, MarblePipeline

SEED, STEPS, GUIDANCE = 4, 6, 3.0


def random_image(size: int) -> torch.Tensor:
    return torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def marble(tiny_run) -> MarblePipeline:
    return MarblePipeline.load(tiny_run)


@pytest.fixture(scope="module")
def reference() -> MarblePipeline:
    from marble.reference import reference_model_dir

    return MarblePipeline.load(reference_model_dir())


def diffusers_pipeline(kind, marble: MarblePipeline, sampler: str):
    pipeline = kind(**as_diffusers_pipeline(marble).components)
    pipeline.scheduler = make_scheduler(sampler, marble.scheduler_config)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def marble_latents(marble: MarblePipeline, source_image, sampler: str, strength: float, mask=None, extra_draws: int = 0):
    """Marble's loop with diffusers' draws: a sampled source latent, then the noise (then unused draws)."""
    generator = torch.Generator().manual_seed(SEED)
    posterior = marble.vae.encode(images_to_model(source_image[None])).latent_dist
    source = posterior.sample(generator) * marble.vae.config.scaling_factor
    noise = torch.randn(source.shape, generator=generator)
    for _ in range(extra_draws):
        torch.randn(source.shape, generator=generator)
    request = GenerationRequest("red circle", steps=STEPS, guidance=GUIDANCE)
    denoise = marble._denoiser(marble.contexts(request), GUIDANCE)
    scheduler = make_scheduler(sampler, marble.scheduler_config)
    return edit_latents(denoise, scheduler, source, noise, STEPS, strength, generator, mask=mask)


def picture(tensor: torch.Tensor) -> Image.Image:
    return Image.fromarray(tensor.permute(1, 2, 0).numpy() if tensor.dim() == 3 else tensor.numpy())


@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "euler-a"])
def test_sdedit_equals_diffusers_img2img(marble, sampler):
    source = random_image(16)
    theirs = diffusers_pipeline(StableDiffusionImg2ImgPipeline, marble, sampler)(
        "red circle", image=picture(source), strength=0.5, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
        generator=torch.Generator().manual_seed(SEED), output_type="latent").images
    assert torch.allclose(marble_latents(marble, source, sampler, 0.5), theirs, atol=1e-4)


@pytest.mark.parametrize("sampler, strength", [("ddim", 1.0), ("ddim", 0.5), ("euler-a", 0.5)])
def test_inpainting_equals_diffusers_inpainting_with_a_plain_unet(reference, sampler, strength):
    source, mask = random_image(64), torch.zeros(64, 64, dtype=torch.bool)
    mask[8:40, 16:60] = True  # whole 4 × 4 latent cells: diffusers' nearest resize and Marble's max-pool agree
    theirs = diffusers_pipeline(StableDiffusionInpaintPipeline, reference, sampler)(
        "red circle", image=picture(source), mask_image=picture(mask.to(torch.uint8) * 255), height=64, width=64,
        strength=strength, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
        generator=torch.Generator().manual_seed(SEED), output_type="latent").images
    # diffusers also encodes the masked-out image (a third draw) that a 4-channel U-Net never reads.
    cells = latent_mask(mask, 16)
    ours = marble_latents(reference, source, sampler, strength, cells, extra_draws=1)
    assert torch.allclose(ours, theirs, atol=1e-4)
    inside = cells.expand_as(ours) == 1
    assert (ours[inside] - theirs[inside]).abs().max() < 1e-4  # the repainted cells too, not only the kept ones
