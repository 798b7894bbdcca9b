import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES, infer_diffusers_model_type
from safetensors.torch import load_file

from marble.cli import main
from marble.diffusion.samplers import make_scheduler
from marble.errors import MarbleError
from marble.export.single_file import check_round_trip, export_single_file, ldm_text_encoder, ldm_unet
from marble.pipeline import GenerationRequest, MarblePipeline
from marble.text.minilm import MiniLMTextEncoder

PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.")


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    return export_single_file(tiny_run, tmp_path_factory.mktemp("single") / "tiny.safetensors")


@pytest.fixture(scope="module")
def loaded(exported, tmp_path_factory) -> StableDiffusionPipeline:
    weights, config = exported
    pipeline = StableDiffusionPipeline.from_single_file(str(weights), config=str(config), local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def sd_v1_shaped_unet(**changes) -> UNet2DConditionModel:
    """Stable Diffusion v1's block structure (4 levels, 2 layers, no attention at the bottom), tiny channels."""
    settings = dict(block_out_channels=(8, 8, 8, 8), layers_per_block=2, norm_num_groups=4, attention_head_dim=2,
                    cross_attention_dim=8, sample_size=8)
    return UNet2DConditionModel(**{**settings, **changes})


def test_file_has_only_the_three_stable_diffusion_parts(tiny_run, exported):
    tensors = load_file(exported[0])
    marble = MarblePipeline.load(tiny_run)
    expected = sum(len(m.state_dict()) for m in (marble.unet, marble.vae, marble.text_encoder.text_model))
    assert len(tensors) == expected and all(key.startswith(PREFIXES) for key in tensors)
    assert tensors["first_stage_model.encoder.mid.attn_1.q.weight"].dim() == 4  # LDM: 1x1 convolutions
    assert CHECKPOINT_KEY_NAMES["clip"] in tensors  # how diffusers recognises the SD v1 text encoder
    assert not list(exported[1].rglob("*.safetensors"))  # the config folder carries no weights


def test_stable_diffusion_v1_structure_gets_its_original_names():
    """Golden names from the SD v1.5 checkpoint (CompVis layout), and diffusers recognises it as v1."""
    tensors = ldm_unet(sd_v1_shaped_unet())
    names = {key.removeprefix("model.diffusion_model.") for key in tensors}
    for golden in ("time_embed.0.weight", "input_blocks.0.0.weight", "input_blocks.1.1.proj_in.weight",
                   "input_blocks.3.0.op.weight", "input_blocks.11.0.emb_layers.1.weight",
                   "middle_block.1.transformer_blocks.0.attn2.to_k.weight", "middle_block.2.out_layers.3.bias",
                   "output_blocks.2.1.conv.weight", "output_blocks.5.2.conv.weight",
                   "output_blocks.11.1.transformer_blocks.0.ff.net.2.weight", "out.2.bias"):
        assert golden in names, golden
    assert "input_blocks.10.1.proj_in.weight" not in names  # SD v1's bottom level has no attention
    assert infer_diffusers_model_type(tensors) == "v1"


def test_loaded_weights_equal_the_runs(tiny_run, loaded):
    marble = MarblePipeline.load(tiny_run)
    for ours, theirs in ((marble.unet, loaded.unet), (marble.vae, loaded.vae),
                         (marble.text_encoder.text_model, loaded.text_encoder)):
        mine, loaded_state = ours.state_dict(), theirs.state_dict()
        assert mine.keys() == loaded_state.keys()
        assert all(torch.equal(mine[key], loaded_state[key]) for key in mine)
    assert loaded.vae.config.scaling_factor == marble.vae.config.scaling_factor


@pytest.mark.parametrize("sampler", ["ddim", "dpm++"])
def test_single_file_images_equal_marble_images(tiny_run, loaded, sampler):
    request = GenerationRequest("red circle", negative_prompt="blue", steps=5, guidance=3.0, sampler=sampler,
                                seed=11, num_images=2)
    ours = MarblePipeline.load(tiny_run).generate(request).images.permute(0, 2, 3, 1).numpy() / 255.0
    loaded.scheduler = make_scheduler(sampler, dict(loaded.scheduler.config))
    theirs = loaded("red circle", negative_prompt="blue", num_inference_steps=5, guidance_scale=3.0,
                    num_images_per_prompt=2, generator=torch.Generator().manual_seed(11), output_type="np").images
    # Marble stores uint8 pixels: allow half a quantisation level on top of the 1e-3 tolerance.
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 0.5 / 255 + 1e-3


def test_cli_writes_the_file_and_its_config(tiny_run, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert main(["export", str(tiny_run), "--format", "single-file", str(out)]) == 0
    assert out.is_file() and (tmp_path / "model-config" / "model_index.json").is_file()
    assert "from_single_file" in capsys.readouterr().out


def test_refuses_what_the_layout_cannot_hold(tiny_run, tmp_path, capsys):
    assert main(["export", str(tiny_run), "--format", "single-file", str(tmp_path / "model.ckpt")]) == 2
    assert ".safetensors file" in capsys.readouterr().err
    with pytest.raises(MarbleError, match="CLIP text encoder"):
        ldm_text_encoder(MiniLMTextEncoder().bert)
    with pytest.raises(MarbleError, match="no name for"):  # class embeddings: SD v1 has none
        ldm_unet(sd_v1_shaped_unet(num_class_embeds=3))
    with pytest.raises(MarbleError, match="no name for .add_embedding"):  # unet.pooled_text_heads: nor this
        ldm_unet(sd_v1_shaped_unet(addition_embed_type="text", addition_embed_type_num_heads=2))
    with pytest.raises(MarbleError, match="one layers_per_block"):
        ldm_unet(sd_v1_shaped_unet(layers_per_block=(1, 2, 2, 2)))
    weights = {"conv_in.weight": torch.ones(1)}
    with pytest.raises(MarbleError, match="does not survive"):  # the guard behind every export
        check_round_trip(weights, {"conv_out.weight": torch.ones(1)}, "U-Net")
    with pytest.raises(MarbleError, match="does not survive"):
        check_round_trip(weights, {"conv_in.weight": torch.zeros(1)}, "U-Net")
