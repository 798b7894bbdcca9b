"""The text stage's locked-image phase, run from the CLI on the synthetic shapes."""

import json

import torch
from transformers import CLIPModel

from marble.cli import main


def train_text(data, run, *extra) -> int:
    return main(["train", "text", "--preset", "tiny", "--data", str(data), "--run", str(run), "--no-progress", *extra])


def towers(run):
    clip = CLIPModel.from_pretrained(run / "text" / "clip").state_dict()
    vision = {k: v for k, v in clip.items() if k.startswith(("vision_model.", "visual_projection."))}
    text = {k: v for k, v in clip.items() if k.startswith(("text_model.", "text_projection."))}
    return vision, text


def test_raising_locked_image_steps_continues_a_run_with_the_image_tower_frozen(synthetic_dataset, tmp_path):
    run = tmp_path / "run"
    small = ["--set", "text.locked_image.batch_size=8", "--set", "text.locked_image.log_every=1"]
    assert train_text(synthetic_dataset, run, *small) == 0
    vision_before, text_before = towers(run)
    assert not (run / "text" / "locked-image").exists()

    assert train_text(synthetic_dataset, run, *small, "--set", "text.locked_image.steps=3") == 0
    vision_after, text_after = towers(run)
    for name, value in vision_before.items():
        assert torch.equal(value, vision_after[name]), name
    assert any(not torch.equal(value, text_after[name]) for name, value in text_before.items())
    lines = (run / "text" / "locked-image" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    summary = json.loads((run / "text" / "summary.json").read_text())
    assert summary["locked_image"]["steps"] == 3
    assert summary["resumed_from"] == summary["steps"]  # the contrastive phase was done already


def test_locked_image_phase_trains_on_a_shard_folder_too(shards, tmp_path):
    run = tmp_path / "run"
    assert train_text(shards, run, "--set", "text.locked_image.steps=2", "--set", "text.locked_image.batch_size=8",
                      "--set", "text.locked_image.log_every=1") == 0
    lines = (run / "text" / "locked-image" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
