import json
import shutil

import pytest
import torch

from marble.autoencoder.model import build_autoencoder
from marble.cli import main
from marble.config import preset
from marble.errors import MarbleError
from marble.training.autoencoder_stage import autoencoder_stage
from marble.training.checkpoint import latest_checkpoint
from marble.training.data import load_training_data
from marble.training.loop import train_stage
from marble.training.unet_stage import CACHE_BATCH, encode_latent_distribution

CONFIG = preset("tiny")


def train_autoencoder(data, stage_dir):
    torch.manual_seed(0)
    autoencoder = build_autoencoder(CONFIG.autoencoder, CONFIG.data.image_size)
    stage = autoencoder_stage(autoencoder, CONFIG, data.feed(CONFIG.autoencoder.train))
    return autoencoder, train_stage(stage, CONFIG.autoencoder.train, stage_dir, progress=False)


def test_the_autoencoder_trains_on_the_stream_and_resumes_as_if_never_stopped(shards, tmp_path):
    data = load_training_data(shards, CONFIG.data, progress=False)
    whole, _ = train_autoencoder(data, tmp_path / "whole")
    train_autoencoder(data, tmp_path / "cut")
    shutil.rmtree(latest_checkpoint(tmp_path / "cut" / "checkpoints"))  # as if stopped after step 2 of 4
    resumed, summary = train_autoencoder(data, tmp_path / "cut")

    assert summary["resumed_from"] == 2
    torch.manual_seed(0)
    untrained = build_autoencoder(CONFIG.autoencoder, CONFIG.data.image_size).state_dict()
    for name, weight in whole.state_dict().items():
        assert torch.equal(weight, resumed.state_dict()[name]), name
    assert any(not torch.equal(w, untrained[n]) for n, w in whole.state_dict().items())


def test_latents_cached_from_the_stream_equal_those_of_the_folder(shards, synthetic_dataset):
    streamed = load_training_data(shards, CONFIG.data, progress=False)
    in_memory = load_training_data(synthetic_dataset, CONFIG.data, progress=False)
    torch.manual_seed(0)
    vae = build_autoencoder(CONFIG.autoencoder, CONFIG.data.image_size).eval()
    mean, std = encode_latent_distribution(vae, streamed.image_chunks(5), len(streamed.train), progress=False)
    expected = encode_latent_distribution(vae, in_memory.image_chunks(CACHE_BATCH), len(in_memory.train), False)
    assert mean.shape == (24, 2, 8, 8)
    torch.testing.assert_close((mean, std), expected, rtol=1e-5, atol=1e-6)  # batches differ: float order may too


def test_a_lost_image_in_the_cache_pass_is_an_error():
    chunks = [([0, 2], torch.zeros(2, 3, 16, 16, dtype=torch.uint8))]
    vae = build_autoencoder(CONFIG.autoencoder, CONFIG.data.image_size).eval()
    with pytest.raises(MarbleError, match=r"saw 2 images \(2 distinct\) of 3"):
        encode_latent_distribution(vae, chunks, 3, progress=False)


def test_train_all_on_a_shard_folder(shards, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "all", "--data", str(shards), "--run", str(run), "--preset", "tiny", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "24 training images, 8 held out, streamed from 7 shards" in out
    assert json.loads((run / "data.json").read_text())["holdout"] == 8
    assert (run / "unet" / "model" / "config.json").is_file() and (run / "text" / "encoder").is_dir()
    assert json.loads((run / "autoencoder" / "summary.json").read_text())["holdout_images"] == 8
