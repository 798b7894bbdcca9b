"""Calibration prompts: chosen deterministically from training captions, saved with the U-Net, read back safely."""

import json

import pytest

from marble.errors import MarbleError
from marble.inference.calibration import choose_calibration_prompts, read_calibration_prompts, write_calibration_prompts
from marble.layout import RunLayout


def test_prompts_are_distinct_non_empty_and_the_same_for_the_same_seed():
    captions = [f"caption {k % 40}" for k in range(200)] + ["", "  "]
    chosen = choose_calibration_prompts(captions, seed=3, count=16)
    assert len(chosen) == len(set(chosen)) == 16
    assert all(prompt.startswith("caption ") for prompt in chosen)
    assert chosen == choose_calibration_prompts(list(reversed(captions)), seed=3, count=16)  # order-free
    assert chosen != choose_calibration_prompts(captions, seed=4, count=16)


def test_fewer_captions_than_asked_gives_them_all():
    assert sorted(choose_calibration_prompts(["a", "b", "a"], count=16)) == ["a", "b"]


def test_write_then_read_round_trips_any_language(tmp_path):
    path = tmp_path / "unet" / "calibration_prompts.json"
    write_calibration_prompts(["red apple", "紅蘋果", "りんご"], path)
    assert read_calibration_prompts(path) == ["red apple", "紅蘋果", "りんご"]
    assert not list(path.parent.glob("*.tmp"))


def test_a_run_without_the_file_has_no_prompts(tmp_path):
    assert read_calibration_prompts(tmp_path / "missing.json") == []


@pytest.mark.parametrize("content", ["{not json", json.dumps({"a": 1}), json.dumps(["ok", ""]), json.dumps([1, 2])])
def test_a_malformed_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "calibration_prompts.json"
    path.write_text(content)
    with pytest.raises(MarbleError, match="calibration_prompts.json"):
        read_calibration_prompts(path)


def test_the_unet_stage_saves_prompts_from_its_captions(tiny_run, synthetic_dataset):
    prompts = read_calibration_prompts(RunLayout(tiny_run).calibration_prompts)
    rows = [json.loads(line) for line in (synthetic_dataset / "metadata.jsonl").read_text().splitlines()]
    captions = {row["text"] for row in rows} | {text for row in rows for text in row["captions"].values()}
    assert 0 < len(prompts) <= 16 and set(prompts) <= captions
