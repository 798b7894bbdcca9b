import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from marble.diffusion.samplers import make_scheduler
from marble.export.diffusers_folder import export_diffusers
from marble.pipeline import GenerationRequest, MarblePipeline


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    return export_diffusers(tiny_run, tmp_path_factory.mktemp("export") / "sd")


def test_folder_has_the_stable_diffusion_layout_and_no_pickle(exported):
    index = json.loads((exported / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (exported / part).is_dir()
    assert not list(exported.rglob("*.bin")) and not list(exported.rglob("*.pt"))
    assert list(exported.rglob("*.safetensors"))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "euler-a", "dpm++"])
def test_diffusers_images_equal_marble_images(tiny_run, exported, sampler, monkeypatch):
    assert_diffusers_draws_as_marble(tiny_run, exported, sampler, monkeypatch)


def test_a_unet_with_the_pooled_text_path_exports_too(tiny_pooled_run, tmp_path, monkeypatch):
    # diffusers' StableDiffusionPipeline passes only the text states; the U-Net pools them itself.
    exported = export_diffusers(tiny_pooled_run, tmp_path / "sd")
    assert json.loads((exported / "unet" / "config.json").read_text())["addition_embed_type"] == "text"
    assert_diffusers_draws_as_marble(tiny_pooled_run, exported, "dpm++", monkeypatch)


def assert_diffusers_draws_as_marble(run, exported, sampler, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    request = GenerationRequest("red circle", negative_prompt="blue", steps=5, guidance=3.0, sampler=sampler,
                                seed=11, num_images=2)
    ours = MarblePipeline.load(run).generate(request).images.permute(0, 2, 3, 1).numpy() / 255.0

    theirs_pipeline = StableDiffusionPipeline.from_pretrained(exported, local_files_only=True)
    theirs_pipeline.scheduler = make_scheduler(sampler, dict(theirs_pipeline.scheduler.config))
    theirs_pipeline.set_progress_bar_config(disable=True)
    theirs = theirs_pipeline(
        "red circle", negative_prompt="blue", num_inference_steps=5, guidance_scale=3.0, num_images_per_prompt=2,
        generator=torch.Generator().manual_seed(11), output_type="np",
    ).images
    # Marble stores uint8 pixels: allow half a quantisation level on top of the 1e-3 tolerance.
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 0.5 / 255 + 1e-3
