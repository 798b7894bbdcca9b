"""Marble's controlled sampling equals diffusers' StableDiffusionControlNetPipeline on the exported tiny run."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionControlNetPipeline

from marble.control.config import tiny_controlnet
from marble.control.generation import controlled_pipeline
from marble.control.model import build_controlnet
from marble.diffusion.samplers import make_scheduler
from marble.export.diffusers_folder import export_diffusers
from marble.images import to_pil
from marble.pipeline import GenerationRequest, MarblePipeline


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_diffusers_controlnet_pipeline_gives_marbles_images(tiny_run, tmp_path, monkeypatch, guidance):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = MarblePipeline.load(tiny_run)
    torch.manual_seed(0)
    controlnet = build_controlnet(base.unet, tiny_controlnet(), downsampling=2)
    torch.manual_seed(1)
    for zero_conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                      controlnet.controlnet_cond_embedding.conv_out]:
        torch.nn.init.normal_(zero_conv.weight, std=0.3)  # as if trained: the residuals matter
    condition = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    condition[:, :, 4:12, 4] = condition[:, :, 4, 4:12] = 255
    request = GenerationRequest("red circle", negative_prompt="blue", steps=4, guidance=guidance, sampler="ddim",
                                seed=3, num_images=2)
    ours = controlled_pipeline(base, controlnet, condition, 0.7).generate(request).images
    ours = ours.permute(0, 2, 3, 1).numpy() / 255.0

    theirs_pipeline = StableDiffusionControlNetPipeline.from_pretrained(
        export_diffusers(tiny_run, tmp_path / "sd"), controlnet=controlnet, local_files_only=True)
    theirs_pipeline.scheduler = make_scheduler("ddim", dict(theirs_pipeline.scheduler.config))
    theirs_pipeline.set_progress_bar_config(disable=True)
    theirs = theirs_pipeline(
        "red circle", image=to_pil(condition[0]), negative_prompt="blue", num_inference_steps=4,
        guidance_scale=guidance, num_images_per_prompt=2, controlnet_conditioning_scale=0.7, height=16, width=16,
        generator=torch.Generator().manual_seed(3), output_type="np",
    ).images
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 0.5 / 255 + 1e-3
