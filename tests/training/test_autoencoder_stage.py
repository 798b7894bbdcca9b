import dataclasses
import json

from marble.config import preset
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
    assert (tmp_path / "autoencoder" / "model" / "config.json").exists()
    assert json.loads((tmp_path / "autoencoder" / "model" / "config.json").read_text())["scaling_factor"] == summary["latent_scale"]
