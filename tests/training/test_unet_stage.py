"""The U-Net objective wiring: targets, caption dropout and caption choice, checked with oracle models."""

import dataclasses
import json
import shutil

import pytest
import torch

from marble.cli import main
from marble.config import preset
from marble.diffusion.schedule import NoiseSchedule
from marble.training.captions import CaptionTable
from marble.training.randomness import make_batch
from marble.training.unet_stage import UNetInputs, unet_stage

LATENT = torch.randn(1, 2, 4, 4)


def inputs(contexts=None):
    contexts = torch.arange(3 * 2 * 5, dtype=torch.float32).reshape(3, 2, 5) if contexts is None else contexts
    return UNetInputs(
        latent_mean=LATENT, latent_std=torch.zeros_like(LATENT), latent_scale=0.5,
        contexts=contexts, empty_context=torch.full((2, 5), -1.0),
        captions=CaptionTable(["a", "b", "c"], [[1, 2]]),
    )


class Oracle(torch.nn.Module):
    """Knows x0 (one image, zero posterior std), so it can answer with the exact ε or v."""

    def __init__(self, schedule, prediction_type):
        super().__init__()
        self.schedule, self.prediction_type, self.contexts = schedule, prediction_type, []
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t, encoder_hidden_states):
        self.contexts.append(encoder_hidden_states)
        x0 = LATENT * 0.5
        alpha_bar = self.schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
        eps = (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
        out = eps if self.prediction_type == "epsilon" else alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0
        return type("Output", (), {"sample": out + 0 * self.dummy})


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_exact_prediction_has_zero_loss_and_the_other_one_does_not(prediction_type):
    config = preset("tiny")
    config = dataclasses.replace(config, unet=dataclasses.replace(config.unet, prediction_type=prediction_type))
    schedule = NoiseSchedule.from_unet_config(config.unet)
    right = unet_stage(Oracle(schedule, prediction_type), inputs(), config).objectives[0]
    other = "v_prediction" if prediction_type == "epsilon" else "epsilon"
    wrong = unet_stage(Oracle(schedule, other), inputs(), config).objectives[0]
    batch = lambda: make_batch(0, 3, 1, 8)
    assert right.loss(right.module, batch())[0].item() < 1e-8
    assert wrong.loss(wrong.module, batch())[0].item() > 1e-3


def test_caption_dropout_trains_the_empty_prompt_and_otherwise_the_images_own_captions():
    config = preset("tiny")
    schedule = NoiseSchedule.from_unet_config(config.unet)
    for dropout, expect_empty in ((1.0, True), (0.0, False)):
        config = dataclasses.replace(config, unet=dataclasses.replace(config.unet, caption_dropout=dropout))
        oracle = Oracle(schedule, "epsilon")
        objective = unet_stage(oracle, inputs(), config).objectives[0]
        objective.loss(oracle, make_batch(0, 0, 1, 16))
        used = oracle.contexts[-1]
        is_empty = (used == -1).flatten(1).all(1)
        assert bool(is_empty.all()) == expect_empty
        if not expect_empty:
            rows = {int(u[0, 0]) // 10 for u in used}  # contexts[k] starts at 10·k
            assert rows == {1, 2}  # both captions of the image are used, never caption 0 ("a")


def test_balanced_unet_training_runs_from_the_cli_and_reports_its_groups(tiny_run, synthetic_dataset, tmp_path):
    run = tmp_path / "run"
    for stage in ("text", "autoencoder"):  # the frozen stages the U-Net trains on
        shutil.copytree(tiny_run / stage, run / stage)
    assert main(["train", "unet", "--preset", "tiny", "--data", str(synthetic_dataset), "--run", str(run),
                 "--steps", "2", "--set", "unet.balance_by=shape", "--no-progress"]) == 0
    summary = json.loads((run / "unet" / "summary.json").read_text())
    assert summary["balanced_by"] == "shape" and summary["groups"] == 4  # circle, square, triangle, ring


def test_init_from_starts_the_unet_at_another_runs_weights(tiny_run, synthetic_dataset, tmp_path):
    from diffusers import UNet2DConditionModel

    def train(run, *extra):
        for stage in ("text", "autoencoder"):
            shutil.copytree(tiny_run / stage, run / stage)
        return main(["train", "unet", "--preset", "tiny", "--data", str(synthetic_dataset), "--run", str(run),
                     "--steps", "1", "--lr", "1e-12", "--no-progress",
                     "--set", "unet.train.seed=5", *extra])  # another seed than tiny_run's: another fresh init

    source = UNet2DConditionModel.from_pretrained(tiny_run / "unet" / "model").state_dict()

    def largest_change(run):
        trained = UNet2DConditionModel.from_pretrained(run / "unet" / "model").state_dict()
        return max((trained[k] - v).abs().max().item() for k, v in source.items())

    assert train(tmp_path / "continued", "--set", f"unet.init_from={tiny_run}") == 0
    assert train(tmp_path / "fresh") == 0
    assert largest_change(tmp_path / "continued") < 1e-6  # a learning rate of 1e-12 moves nothing
    assert largest_change(tmp_path / "fresh") > 1e-2
    saved = json.loads((tmp_path / "continued" / "run.json").read_text())
    assert saved["unet"]["init_from"] == str(tiny_run)  # the run records where it started


def test_init_from_a_folder_without_a_unet_fails_clearly(tiny_run, synthetic_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    for stage in ("text", "autoencoder"):
        shutil.copytree(tiny_run / stage, run / stage)
    assert main(["train", "unet", "--preset", "tiny", "--data", str(synthetic_dataset), "--run", str(run),
                 "--steps", "1", "--no-progress", "--set", f"unet.init_from={tmp_path / 'nothing'}"]) == 2
    assert "no model to start from in" in capsys.readouterr().err


def test_init_from_brings_the_models_text_encoder_and_autoencoder_into_an_empty_run(
        tiny_run, synthetic_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "unet", "--preset", "tiny", "--data", str(synthetic_dataset), "--run", str(run),
                 "--steps", "1", "--no-progress", "--set", f"unet.init_from={tiny_run}"]) == 0
    out = capsys.readouterr().out
    for stage, needed in (("text", "encoder/encoder.json"), ("autoencoder", "model/config.json")):
        assert f"{stage}: copied from {tiny_run / stage}" in out
        assert (run / stage / needed).read_bytes() == (tiny_run / stage / needed).read_bytes()
        assert not (run / stage / "checkpoints").exists()  # only the trained model, not its training state
    assert (run / "unet" / "model").is_dir()


def test_a_run_keeps_its_own_text_encoder_when_starting_from_another_unet(tiny_run, synthetic_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run / "text", run / "text")
    (run / "text" / "ours.txt").write_text("this run's own text stage")
    assert main(["train", "unet", "--preset", "tiny", "--data", str(synthetic_dataset), "--run", str(run),
                 "--steps", "1", "--no-progress", "--set", f"unet.init_from={tiny_run}"]) == 0
    out = capsys.readouterr().out
    assert "text: copied" not in out and "autoencoder: copied" in out
    assert (run / "text" / "ours.txt").is_file()
