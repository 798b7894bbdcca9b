"""The evaluation CLIP: its own seed, all images and languages, saved atomically; `marble train eval-clip` smoke."""

import contextlib
import io
import json

import pytest
import torch
from safetensors.torch import load_file

from marble.cli import main
from marble.config import preset, save_json
from marble.errors import MarbleError
from marble.evaluation.clip_score import load_clip_with_tokenizer
from marble.evaluation.eval_clip import DEFAULT_SEED, eval_clip_config, train_eval_clip


def eval_clip_args(data, out, *extra) -> list[str]:
    return ["train", "eval-clip", "--data", str(data), "--out", str(out), "--preset", "tiny", "--steps", "2",
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def trained_eval_clip(synthetic_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-clip") / "clip"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(eval_clip_args(synthetic_dataset, out))
    return out, code, stdout.getvalue()


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marble: error:"), lines
    return lines[0]


def test_config_differs_from_the_run_encoder_in_seed_and_sees_every_language():
    config = eval_clip_config("tiny", steps=3, batch_size=4)
    run_text = preset("tiny").text
    assert config.text.train.seed == DEFAULT_SEED != run_text.train.seed
    assert config.text.train.steps == 3 and config.text.train.batch_size == 4
    assert config.text.kind == "clip" and config.data.langs == ()
    assert config.text.width == run_text.width  # the preset's architecture otherwise


def test_the_judge_skips_the_generators_locked_image_phase():
    assert preset("emoji").text.locked_image.steps > 0
    config = eval_clip_config("emoji")
    assert config.text.locked_image.steps == 0
    assert config.text.train.steps == preset("emoji").text.train.steps


@pytest.mark.parametrize("changes, fragment", [
    ({"preset_name": "huge"}, "unknown preset"),
    ({"steps": 0}, "steps must be positive"),
    ({"learning_rate": float("nan")}, "learning_rate must be positive"),
    ({"seed": -1}, "non-negative"),
])
def test_bad_settings_are_clear_errors(changes, fragment):
    with pytest.raises(MarbleError, match=fragment):
        eval_clip_config(**{"preset_name": "tiny", **changes})


def test_cli_writes_a_loadable_clip_trained_on_all_images(trained_eval_clip):
    out, code, stdout = trained_eval_clip
    assert code == 0
    assert f"wrote {out}" in stdout
    summary = json.loads((out / "summary.json").read_text())
    # All 32 synthetic images, the 8 the run holds out included.
    assert summary["images"] == 32 and summary["seed"] == DEFAULT_SEED and summary["steps"] == 2
    assert summary["stage"] == "eval-clip"
    clip, tokenizer = load_clip_with_tokenizer(out)
    assert clip.config.vision_config.image_size == 16
    assert tokenizer("red circle").input_ids[0] == tokenizer.bos_token_id
    assert not (out / "training").exists()  # the finished model replaced its checkpoints in one rename
    assert not [p for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".pkl", ".pth")]


def test_eval_clip_is_not_the_run_clip(trained_eval_clip, tiny_run):
    ours = load_file(str(trained_eval_clip[0] / "model.safetensors"))
    runs = load_file(str(tiny_run / "text" / "clip" / "model.safetensors"))
    name = "visual_projection.weight"
    assert ours[name].shape == runs[name].shape
    assert not torch.equal(ours[name], runs[name])


def test_existing_eval_clip_is_not_overwritten(trained_eval_clip, synthetic_dataset, capsys):
    out = trained_eval_clip[0]
    before = (out / "model.safetensors").read_bytes()
    assert main(eval_clip_args(synthetic_dataset, out)) == 2
    assert "already holds a trained evaluation CLIP" in one_line_error(capsys)
    assert (out / "model.safetensors").read_bytes() == before


def test_unfinished_run_with_other_settings_is_refused(synthetic_dataset, tmp_path):
    out = tmp_path / "clip"
    (out / "training").mkdir(parents=True)
    save_json(eval_clip_config("tiny", steps=7), out / "training" / "run.json")
    with pytest.raises(MarbleError, match="other settings"):
        train_eval_clip(synthetic_dataset, out, eval_clip_config("tiny", steps=2), progress=False)


@pytest.mark.parametrize("argv, fragment", [
    (["train", "eval-clip", "--data", "d", "--preset", "tiny"], "needs --out"),
    (["train", "eval-clip", "--data", "d", "--out", "o", "--run", "r"], "not --run"),
    (["train", "unet", "--data", "d"], "needs --run"),
    (["train", "unet", "--data", "d", "--run", "r", "--seed", "3"], "options of `marble train eval-clip`"),
])
def test_cli_option_mistakes_are_one_line_errors(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert fragment in one_line_error(capsys)
    assert not list(tmp_path.iterdir())  # nothing written
