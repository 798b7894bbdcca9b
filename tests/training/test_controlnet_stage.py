"""ControlNet training on the tiny run: only the ControlNet learns, the U-Net objective is reused, resume, errors."""

import dataclasses
import json

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

from marble.config import RunConfig, load_json
from marble.control.conditions import condition_images
from marble.control.config import ControlNetConfig, controlnet_config, tiny_controlnet
from marble.control.files import load_controlnet
from marble.control.model import build_controlnet
from marble.errors import MarbleError
from marble.layout import RunLayout
from marble.training.controlnet_stage import controlnet_predict, controlnet_stage, train_controlnet
from marble.training.data import load_training_data
from marble.training.loop import train_stage
from marble.training.randomness import make_batch
from marble.training.unet_stage import denoising_loss, prepare_inputs


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def trained(tiny_run, synthetic_dataset, tmp_path_factory):
    """`train_controlnet` end to end into a fresh folder: (folder, summary)."""
    out = tmp_path_factory.mktemp("controlnet") / "canny"
    summary = train_controlnet(tiny_run, synthetic_dataset, out, controlnet_config("tiny", "canny"), progress=False,
                               report=quiet)
    return out, summary


@pytest.fixture(scope="module")
def parts(tiny_run, synthetic_dataset):
    """The base run's config, cached U-Net inputs and canny conditions of the tiny training images."""
    layout = RunLayout(tiny_run)
    base = load_json(RunConfig, layout.run_config)
    data = load_training_data(synthetic_dataset, base.data, progress=False)
    return layout, base, prepare_inputs(layout, data, progress=False), condition_images("canny", data.train.images)


def fresh(layout):
    unet = UNet2DConditionModel.from_pretrained(layout.unet)
    torch.manual_seed(0)
    return unet, build_controlnet(unet, tiny_controlnet(), downsampling=2)


def test_training_steps_change_the_controlnet_and_not_the_unet(parts, tmp_path):
    layout, base, inputs, conditions = parts
    unet, controlnet = fresh(layout)
    unet_before = {k: v.clone() for k, v in unet.state_dict().items()}
    controlnet_before = {k: v.clone() for k, v in controlnet.state_dict().items()}
    stage = controlnet_stage(controlnet, unet, inputs, conditions, base, tiny_controlnet())
    train_stage(stage, tiny_controlnet().train, tmp_path, progress=False)
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in unet_before.items())
    changed = [k for k, v in controlnet.state_dict().items() if not torch.equal(v, controlnet_before[k])]
    assert any(k.startswith("controlnet_down_blocks") for k in changed)  # the zero convolutions left zero
    assert any(k.startswith("down_blocks") for k in changed)  # and the trainable copy itself learns
    assert all(controlnet_before[f"controlnet_down_blocks.{k}.weight"].abs().max() == 0
               for k in range(len(controlnet.controlnet_down_blocks)))


def test_gradients_reach_only_the_controlnet(parts):
    layout, base, inputs, conditions = parts
    unet, controlnet = fresh(layout)
    objective = controlnet_stage(controlnet, unet, inputs, conditions, base, tiny_controlnet()).objectives[0]
    loss, _ = objective.loss(controlnet, make_batch(0, 0, len(conditions), 8))
    loss.backward()
    assert all(p.grad is None for p in unet.parameters())
    assert controlnet.controlnet_mid_block.weight.grad.abs().max() > 0


def test_a_fresh_controlnet_gives_the_unet_stage_loss(parts):
    """The same objective, with zero residuals, is the U-Net stage's loss to the last bit."""
    layout, base, inputs, conditions = parts
    unet, controlnet = fresh(layout)
    predict = controlnet_predict(unet.eval(), conditions)
    with torch.no_grad():
        for step in range(3):
            batch = lambda: make_batch(0, step, len(conditions), 8)  # fresh per loss: a Batch counts its draws
            plain = denoising_loss(inputs, base)(unet, batch())[0]
            controlled = denoising_loss(inputs, base, predict=predict)(controlnet, batch())[0]
            assert torch.equal(plain, controlled)


def test_train_controlnet_reports_and_saves_what_it_trained(trained):
    out, summary = trained
    controlnet, config = load_controlnet(out)
    assert config.condition == "canny" and summary["condition"] == "canny" and summary["steps"] == 4
    assert controlnet.controlnet_mid_block.weight.abs().max() > 0
    assert 0 < summary["parameters"] < summary["unet_parameters"]  # a copy of the encoder half only


def test_the_saved_controlnet_is_safetensors_with_its_condition(trained):
    out, _ = trained
    assert (out / "model" / "diffusion_pytorch_model.safetensors").is_file()
    assert load_file(str(out / "model" / "diffusion_pytorch_model.safetensors"))
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))
    assert json.loads((out / "controlnet.json").read_text())["condition"] == "canny"
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 4


def test_more_steps_resume_from_the_last_checkpoint(tiny_run, synthetic_dataset, tmp_path):
    out = tmp_path / "mask"
    first = train_controlnet(tiny_run, synthetic_dataset, out, controlnet_config("tiny", "mask", steps=2),
                             progress=False, report=quiet)
    more = train_controlnet(tiny_run, synthetic_dataset, out, controlnet_config("tiny", "mask", steps=4),
                            progress=False, report=quiet)
    assert (first["resumed_from"], more["resumed_from"], more["steps"]) == (0, 2, 4)


def test_other_settings_in_the_same_folder_are_refused(trained, tiny_run, synthetic_dataset):
    out, _ = trained
    with pytest.raises(MarbleError, match="trained with other settings"):
        train_controlnet(tiny_run, synthetic_dataset, out, controlnet_config("tiny", "mask"), progress=False,
                         report=quiet)


def test_unknown_condition_and_missing_base_are_clear_errors(tiny_run, synthetic_dataset, tmp_path):
    bad = dataclasses.replace(tiny_controlnet(), condition="depth")
    with pytest.raises(MarbleError, match="unknown condition 'depth'"):
        train_controlnet(tiny_run, synthetic_dataset, tmp_path / "c", bad, progress=False, report=quiet)
    with pytest.raises(MarbleError, match="is not a trained run"):
        train_controlnet(tmp_path / "nothing", synthetic_dataset, tmp_path / "c", tiny_controlnet(), progress=False,
                         report=quiet)
    assert not (tmp_path / "c").exists()


def test_config_overrides_and_bad_presets():
    config = controlnet_config("tiny", "scribble", ["caption_dropout=0.25"], steps=7, learning_rate=None)
    assert (config.condition, config.caption_dropout, config.train.steps) == ("scribble", 0.25, 7)
    assert config.train.learning_rate == tiny_controlnet().train.learning_rate
    assert isinstance(controlnet_config("emoji", "canny"), ControlNetConfig)
    with pytest.raises(ValueError, match="unknown preset"):
        controlnet_config("huge", "canny")
