import dataclasses
import json

import pytest

from marble.config import AutoencoderConfig, RunConfig, UNetConfig, apply_override, from_dict, load_json, preset, save_json, to_dict


@pytest.mark.parametrize("name", ["emoji", "tiny", "emoji4"])
def test_presets_round_trip_through_json(name, tmp_path):
    config = preset(name)
    save_json(config, tmp_path / "run.json")
    assert load_json(RunConfig, tmp_path / "run.json") == config
    assert from_dict(RunConfig, json.loads(json.dumps(to_dict(config)))) == config


def test_unknown_preset_and_keys_are_errors():
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nope")
    with pytest.raises(ValueError, match="unknown config keys"):
        from_dict(RunConfig, {"name": "x", "colour": "red"})


def test_overrides_parse_by_field_type():
    config = preset("tiny")
    config = apply_override(config, "unet.prediction_type=v_prediction")
    config = apply_override(config, "unet.train.steps=9")
    config = apply_override(config, "autoencoder.block_out_channels=8,16")
    config = apply_override(config, "unet.min_snr_gamma=0")
    config = apply_override(config, "unet.block_out_channels=[16, 32]")  # brackets as JSON writes a list
    assert config.unet.prediction_type == "v_prediction"
    assert config.unet.train.steps == 9
    assert config.autoencoder.block_out_channels == (8, 16)
    assert config.unet.min_snr_gamma == 0.0
    assert config.unet.block_out_channels == (16, 32)
    assert preset("tiny").unet.train.steps != 9  # presets are not mutated


@pytest.mark.parametrize("bad, message", [
    ("unet.foo=1", "unet.foo: unknown key 'foo'"),
    ("unet.train.steps=abc", "cannot read 'abc' as int"),
    ("unet.block_out_channels=32;64", "cannot read '32;64' as comma-separated int values"),
    ("nokey", "is not KEY=VALUE"),
    ("unet.train=3", "cannot be set"),
    ("unet.train.steps.x=1", "has no sub-keys"),
])
def test_bad_overrides_name_the_key(bad, message):
    with pytest.raises(ValueError, match=message):
        apply_override(preset("tiny"), bad)


def test_emoji4_preset_has_16x16_latents_at_128_px_and_leaves_emoji_alone():
    from marble.autoencoder.model import downsampling_factor, latent_shape

    emoji, emoji4 = preset("emoji"), preset("emoji4")
    assert emoji.data == RunConfig().data
    # Only the pooled-text path and the U-Net's batch and steps (2,600 of 32 in the time of 1,600 of 64) differ.
    assert dataclasses.replace(emoji.unet, train=UNetConfig.train) == UNetConfig(pooled_text_heads=4)
    assert (emoji.unet.train.batch_size, emoji.unet.train.steps) == (32, 2600)
    assert emoji4.unet.train.batch_size == 64  # emoji4 keeps the batch it was configured with
    assert emoji.autoencoder == AutoencoderConfig(corner_weight=32.0) and emoji4.autoencoder.corner_weight == 32.0
    assert emoji4.data.image_size == 128 and downsampling_factor(emoji4.autoencoder) == 8
    assert latent_shape(emoji4.autoencoder, 128) == latent_shape(emoji.autoencoder, 64) == (4, 16, 16)
    assert 128 // emoji4.text.patch_size == 64 // emoji.text.patch_size  # same CLIP patch grid
    assert emoji4.unet.block_out_channels == emoji.unet.block_out_channels
