"""`marble train lora` on the tiny run: only adapters change, checkpoints hold only them, the file is small."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from marble.config import TrainConfig
from marble.errors import MarbleError
from marble.finetune.adapter import load_adapter
from marble.finetune.apply import apply_adapters
from marble.pipeline import MarblePipeline
from marble.training.checkpoint import STATE_TENSORS, latest_checkpoint
from marble.training.data import load_training_data
from marble.training.lora_stage import (
    LoraConfig, inject_adapters, load_base, lora_stage, open_training_dir, train_lora, trained_run,
)
from marble.training.loop import train_stage
from marble.training.unet_stage import prepare_inputs

QUICK = TrainConfig(steps=2, batch_size=4, learning_rate=1e-2, warmup_steps=1, checkpoint_every=1, log_every=1)


def lora_config(text_encoder: bool = False, steps: int = 2) -> LoraConfig:
    return LoraConfig(rank=2, alpha=2.0, text_encoder=text_encoder, train=dataclasses.replace(QUICK, steps=steps))


@pytest.fixture(scope="module")
def inputs(tiny_run, synthetic_dataset):
    layout, run_config = trained_run(tiny_run)
    return layout, run_config, prepare_inputs(layout, load_training_data(synthetic_dataset, run_config.data, False), False)


def train_in_memory(inputs, config: LoraConfig, stage_dir):
    layout, run_config, cached = inputs
    unet, encoder = load_base(layout, config)
    trainee = inject_adapters(unet, encoder, config)
    base = {k: v.clone() for k, v in trainee.named_parameters() if "lora_" not in k}
    summary = train_stage(lora_stage(trainee, cached, run_config), config.train, stage_dir, progress=False)
    return trainee, base, summary


def test_training_changes_only_the_lora_weights_of_unet_and_text_tower(inputs, tmp_path):
    trainee, base, _ = train_in_memory(inputs, lora_config(text_encoder=True), tmp_path)
    after = dict(trainee.named_parameters())
    assert all(torch.equal(after[name], value) for name, value in base.items())  # bit-identical base
    for part in ("unet.", "text_encoder."):
        b_matrices = [p for name, p in after.items() if name.startswith(part) and "lora_B" in name]
        assert b_matrices and all(p.abs().max() > 0 for p in b_matrices)  # B started at zero


def test_checkpoints_hold_only_the_adapter_and_resume_exactly(inputs, tmp_path):
    straight, _, _ = train_in_memory(inputs, lora_config(steps=3), tmp_path / "straight")
    train_in_memory(inputs, lora_config(steps=2), tmp_path / "resumed")
    saved = load_file(str(latest_checkpoint(tmp_path / "resumed" / "checkpoints") / STATE_TENSORS))
    modules = [key for key in saved if key.startswith("module.")]
    assert modules and all("lora_" in key for key in modules)
    resumed, _, summary = train_in_memory(inputs, lora_config(steps=3), tmp_path / "resumed")
    assert summary["resumed_from"] == 2
    assert straight.state_dict().keys() == resumed.state_dict().keys()
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_train_lora_writes_a_small_adapter_that_applies_to_its_base(tiny_run, synthetic_dataset, tmp_path):
    summary = train_lora(tiny_run, synthetic_dataset, tmp_path / "adapter", lora_config(), progress=False)
    out = tmp_path / "adapter"
    assert sorted(p.name for p in out.iterdir()) == [
        "lora.json", "lora.safetensors", "lora_config.json", "summary.json", "train_log.jsonl"]
    saved = load_file(str(out / "lora.safetensors"))
    assert all(key.startswith("unet.") and (".lora_A." in key or ".lora_B." in key) for key in saved)
    assert sum(t.numel() for t in saved.values()) == summary["adapter_parameters"]
    assert summary["adapter_parameters"] * 10 < summary["unet_parameters"]
    assert summary["adapter_bytes"] < summary["unet_bytes"] / 5
    assert json.loads((out / "summary.json").read_text())["adapter_bytes"] == (out / "lora.safetensors").stat().st_size
    pipeline = MarblePipeline.load(tiny_run)
    apply_adapters(pipeline.unet, pipeline.text_encoder, [(load_adapter(out), 1.0)])  # fingerprint matches


def test_train_lora_refuses_several_processes(tiny_run, synthetic_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as `accelerate launch --num_processes 2` sets it
    with pytest.raises(MarbleError, match="runs on one process"):
        train_lora(tiny_run, synthetic_dataset, tmp_path / "a", lora_config(), progress=False)
    assert not (tmp_path / "a").exists()


def test_bad_bases_settings_and_folders_are_clear_errors(tiny_run, synthetic_dataset, tmp_path):
    with pytest.raises(MarbleError, match="not a trained run"):
        train_lora(tmp_path / "nowhere", synthetic_dataset, tmp_path / "a", lora_config(), progress=False)
    with pytest.raises(MarbleError, match="rank must be a positive integer"):
        train_lora(tiny_run, synthetic_dataset, tmp_path / "a", dataclasses.replace(lora_config(), rank=0), False)
    with pytest.raises(MarbleError, match="alpha must be a positive"):
        train_lora(tiny_run, synthetic_dataset, tmp_path / "a", dataclasses.replace(lora_config(), alpha=float("nan")))
    open_training_dir(tmp_path / "b", lora_config())
    with pytest.raises(MarbleError, match="other settings"):
        open_training_dir(tmp_path / "b", dataclasses.replace(lora_config(), rank=4))
    open_training_dir(tmp_path / "b", lora_config(steps=5))  # only the steps may grow
    (tmp_path / "b" / "lora.json").write_text("{}")
    with pytest.raises(MarbleError, match="already holds a trained LoRA"):
        open_training_dir(tmp_path / "b", lora_config(steps=5))
