import dataclasses
import json

import pytest
import torch

from marble.config import preset
from marble.errors import MarbleError
from marble.layout import RunLayout
from marble.training.autoencoder_stage import train_autoencoder_stage
from marble.training.data import load_training_data


def test_patch_gan_joins_after_its_warm_up_and_the_stage_reports_psnr(synthetic_dataset, tmp_path):
    config = preset("tiny")
    gan = dataclasses.replace(config.autoencoder, gan_weight=0.1, gan_start_step=2)
    config = dataclasses.replace(config, autoencoder=gan)
    data = load_training_data(synthetic_dataset, config.data, progress=False)
    summary = train_autoencoder_stage(config, data, RunLayout(tmp_path), progress=False)
    log = [json.loads(line) for line in (tmp_path / "autoencoder" / "train_log.jsonl").read_text().splitlines()]
    assert "discriminator/loss" not in log[0] and "autoencoder/adversarial" not in log[0]  # step 1: warm-up
    assert "discriminator/loss" in log[-1] and "autoencoder/adversarial" in log[-1]
    assert summary["holdout_psnr_db"] > 0 and summary["latent_scale"] > 0
    assert 0 < summary["holdout_corner_error"] < 255  # a 4-step autoencoder reconstructs no corner exactly
    assert 0 < summary["holdout_edge_fringe"] < 255  # nor the white beside its shapes
    assert (tmp_path / "autoencoder" / "model" / "config.json").exists()
    assert json.loads((tmp_path / "autoencoder" / "model" / "config.json").read_text())["scaling_factor"] == summary["latent_scale"]


def _autoencoder_config(**changes):
    config = preset("tiny")
    train = dataclasses.replace(config.autoencoder.train, steps=3, learning_rate=1e-2)
    return dataclasses.replace(config, autoencoder=dataclasses.replace(config.autoencoder, train=train, **changes))


def _weights(folder):
    from diffusers import AutoencoderKL

    model = AutoencoderKL.from_pretrained(folder)
    return model.state_dict(), model.config.scaling_factor


def test_decoder_only_keeps_the_encoder_and_its_latent_scale_and_trains_the_decoder(tiny_run, synthetic_dataset,
                                                                                    tmp_path):
    config = _autoencoder_config(init_from=str(tiny_run), decoder_only=True)
    data = load_training_data(synthetic_dataset, config.data, progress=False)
    summary = train_autoencoder_stage(config, data, RunLayout(tmp_path), progress=False)
    (before, scale_before), (after, scale_after) = _weights(tiny_run / "autoencoder" / "model"), _weights(tmp_path / "autoencoder" / "model")
    frozen = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    trained = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert frozen and trained and len(frozen) + len(trained) == len(before)
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert max((before[k] - after[k]).abs().max().item() for k in trained) > 1e-3
    assert scale_after == scale_before == summary["latent_scale"]


def test_init_from_without_decoder_only_starts_every_weight_there(tiny_run, synthetic_dataset, tmp_path):
    config = _autoencoder_config(init_from=str(tiny_run))
    config = dataclasses.replace(config, autoencoder=dataclasses.replace(
        config.autoencoder, train=dataclasses.replace(config.autoencoder.train, steps=1, learning_rate=1e-12)))
    data = load_training_data(synthetic_dataset, config.data, progress=False)
    train_autoencoder_stage(config, data, RunLayout(tmp_path), progress=False)
    before, after = _weights(tiny_run / "autoencoder" / "model")[0], _weights(tmp_path / "autoencoder" / "model")[0]
    assert max((before[k] - after[k]).abs().max().item() for k in before) < 1e-6


def test_decoder_only_without_a_model_to_keep_is_a_clear_error(synthetic_dataset, tmp_path):
    config = _autoencoder_config(decoder_only=True)
    data = load_training_data(synthetic_dataset, config.data, progress=False)
    with pytest.raises(MarbleError, match="decoder_only needs autoencoder.init_from"):
        train_autoencoder_stage(config, data, RunLayout(tmp_path), progress=False)


@pytest.mark.parametrize("weight", [0.0, -2.0, float("nan"), float("inf")])
def test_a_corner_weight_that_is_not_a_positive_number_is_a_clear_error(synthetic_dataset, tmp_path, weight):
    config = _autoencoder_config(corner_weight=weight)
    data = load_training_data(synthetic_dataset, config.data, progress=False)
    with pytest.raises(MarbleError, match="corner_weight must be a positive number"):
        train_autoencoder_stage(config, data, RunLayout(tmp_path), progress=False)


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_a_chroma_weight_that_is_not_a_number_at_least_zero_is_a_clear_error(synthetic_dataset, tmp_path, weight):
    config = _autoencoder_config(chroma_weight=weight)
    data = load_training_data(synthetic_dataset, config.data, progress=False)
    with pytest.raises(MarbleError, match="chroma_weight must be a number ≥ 0"):
        train_autoencoder_stage(config, data, RunLayout(tmp_path), progress=False)


def test_the_chroma_term_is_logged_and_weighted_into_the_loss(synthetic_dataset, tmp_path):
    config = _autoencoder_config(chroma_weight=3.0)
    data = load_training_data(synthetic_dataset, config.data, progress=False)
    train_autoencoder_stage(config, data, RunLayout(tmp_path), progress=False)
    first = json.loads((tmp_path / "autoencoder" / "train_log.jsonl").read_text().splitlines()[0])
    expected = first["autoencoder/l1"] + 3.0 * first["autoencoder/chroma"] + config.autoencoder.kl_weight * first["autoencoder/kl"]
    assert first["autoencoder/chroma"] > 0 and first["autoencoder/loss"] == pytest.approx(expected, rel=1e-4)
