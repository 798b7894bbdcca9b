"""Starting a stage from another model: weights copied exactly, any dtype, clear errors otherwise."""

import dataclasses

import pytest
import torch
from diffusers import UNet2DConditionModel

from marble.config import preset
from marble.errors import MarbleError
from marble.generators.unet import build_unet
from marble.layout import RunLayout
from marble.reference import reference_model_dir
from marble.training.init_from import load_initial_weights, model_folder


def tiny_unet(seed: int, **changes):
    torch.manual_seed(seed)
    return build_unet(dataclasses.replace(preset("tiny").unet, **changes), 2, 8, 16)


def test_loaded_weights_equal_the_saved_ones_and_differ_from_a_fresh_init(tmp_path):
    source = tiny_unet(seed=1)
    source.save_pretrained(tmp_path / "unet")
    target = tiny_unet(seed=2)
    assert not torch.equal(target.conv_in.weight, source.conv_in.weight)
    config = load_initial_weights(target, UNet2DConditionModel, tmp_path / "unet")
    assert tuple(config.block_out_channels) == tuple(source.config.block_out_channels)
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name


def test_half_precision_weights_load_into_a_float32_model(tmp_path):
    source = tiny_unet(seed=1)
    source.half().save_pretrained(tmp_path / "unet")
    target = tiny_unet(seed=2)
    load_initial_weights(target, UNet2DConditionModel, tmp_path / "unet")
    assert target.conv_in.weight.dtype == torch.float32
    assert torch.equal(target.conv_in.weight, source.conv_in.weight.float())


def test_another_architecture_or_a_missing_model_is_a_clear_error(tmp_path):
    tiny_unet(seed=1, block_out_channels=(8, 8), norm_num_groups=4).save_pretrained(tmp_path / "narrow")
    with pytest.raises(MarbleError, match="does not match this run's config"):
        load_initial_weights(tiny_unet(seed=2), UNet2DConditionModel, tmp_path / "narrow")
    with pytest.raises(MarbleError, match="config.json missing"):
        load_initial_weights(tiny_unet(seed=2), UNet2DConditionModel, tmp_path / "nowhere")


def test_init_from_names_the_reference_a_run_or_a_model_folder(tmp_path):
    unet_of = lambda run: run.unet
    assert model_folder("reference", unet_of) == RunLayout(reference_model_dir()).unet
    (tmp_path / "run" / "unet" / "model").mkdir(parents=True)
    assert model_folder(str(tmp_path / "run"), unet_of) == tmp_path / "run" / "unet" / "model"
    assert model_folder(str(tmp_path / "elsewhere"), unet_of) == tmp_path / "elsewhere"


def test_a_unet_continued_with_the_pooled_text_path_starts_as_the_saved_one(tmp_path):
    source = tiny_unet(seed=1).eval()
    source.save_pretrained(tmp_path / "unet")
    target = tiny_unet(seed=2, pooled_text_heads=2).eval()
    load_initial_weights(target, UNet2DConditionModel, tmp_path / "unet", new_parts=("add_embedding.",))
    x, t, context = torch.randn(2, 2, 8, 8), torch.tensor([3, 900]), torch.randn(2, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(target(x, t, context).sample, source(x, t, context).sample, atol=0, rtol=0)


def test_new_parts_admit_only_the_parts_named(tmp_path):
    tiny_unet(seed=1).save_pretrained(tmp_path / "unet")
    with pytest.raises(MarbleError, match="does not match this run's config"):  # not named: still an error
        load_initial_weights(tiny_unet(seed=2, pooled_text_heads=2), UNet2DConditionModel, tmp_path / "unet")
    tiny_unet(seed=1, pooled_text_heads=2).save_pretrained(tmp_path / "pooled")
    with pytest.raises(MarbleError, match="does not match this run's config"):  # the saved model has more
        load_initial_weights(tiny_unet(seed=2), UNet2DConditionModel, tmp_path / "pooled", new_parts=("add_embedding.",))
