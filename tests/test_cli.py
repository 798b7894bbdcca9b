"""`marble …` in-process: the train-all smoke run, generate's files, and one-line errors for bad input."""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from marble.cli import main

STAGES = ("text", "autoencoder", "unet")


def train_args(data, run, *extra) -> list[str]:
    return ["train", *extra, "--data", str(data), "--run", str(run), "--preset", "tiny", "--no-progress"]


@pytest.fixture(scope="module")
def trained(synthetic_dataset, tmp_path_factory):
    """The smoke run the project requires: `marble train all` with the tiny preset; (run dir, exit code, stdout)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["train", "all", "--data", str(synthetic_dataset), "--run", str(run), "--preset", "tiny",
                     "--no-progress"])
    return run, code, stdout.getvalue()


def generate_args(run, out, *extra) -> list[str]:
    return ["generate", "red circle", "--model", str(run), "--steps", "3", "--num-images", "2", "--out", str(out),
            "--preview", "1", "--seed", "5", *extra]


def assert_one_line_error(capsys, code: int, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marble: error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# --- train all, then generate ------------------------------------------------------------------


def test_train_all_reports_what_each_stage_wrote(trained):
    run, code, out = trained
    assert code == 0
    assert "data: 24 training images, 8 held out; no files skipped" in out
    for stage in STAGES:
        assert f"wrote {run / stage}" in out
        summary = json.loads((run / stage / "summary.json").read_text())
        assert summary["stage"] == stage and summary["steps"] == 4 and summary["seconds"] >= 0
    assert "holdout_psnr_db" in json.loads((run / "autoencoder" / "summary.json").read_text())
    for model in ("text/encoder", "autoencoder/model", "unet/model", "unet/scheduler"):
        assert (run / model).is_dir()
    assert json.loads((run / "data.json").read_text())["skipped"] == {}


def test_generate_writes_images_grid_and_previews(trained, tmp_path, capsys):
    run = trained[0]
    assert main(generate_args(run, tmp_path / "out")) == 0
    printed = capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    stem = "red-circle-seed5"
    assert names == sorted([f"{stem}-0.png", f"{stem}-1.png", f"{stem}-grid.png", f"{stem}-preview-strip.png",
                            f"{stem}-preview.gif"])
    for name in names:
        assert f"wrote {tmp_path / 'out' / name}" in printed
    with Image.open(tmp_path / "out" / f"{stem}-0.png") as image:
        assert image.size == (16, 16) and image.mode == "RGB"
        settings = json.loads(image.text["marble"])
    assert settings["prompt"] == "red circle" and settings["seed"] == 5 and settings["steps"] == 3
    with Image.open(tmp_path / "out" / f"{stem}-grid.png") as image:
        assert image.size == (2 * (64 + 2) + 2, 64 + 4)  # two 16 px images zoomed 4x, side by side
    with Image.open(tmp_path / "out" / f"{stem}-preview-strip.png") as image:
        assert image.size == (3 * (134 + 2) + 2, 68 + 4)  # one grid per step, in a row
    with Image.open(tmp_path / "out" / f"{stem}-preview.gif") as gif:
        assert gif.n_frames == 3


def test_generate_twice_gives_identical_pixels(trained, tmp_path):
    run = trained[0]
    assert main(generate_args(run, tmp_path / "a")) == 0
    assert main(generate_args(run, tmp_path / "b")) == 0
    for k in (0, 1):
        first, second = (np.array(Image.open(tmp_path / d / f"red-circle-seed5-{k}.png")) for d in ("a", "b"))
        assert np.array_equal(first, second)
        assert first.std() > 0  # a real image, not a blank canvas


def test_another_seed_writes_other_pixels(trained, tmp_path):
    run = trained[0]
    assert main(generate_args(run, tmp_path / "a")) == 0
    assert main(generate_args(run, tmp_path / "b", "--seed", "6")) == 0
    first = np.array(Image.open(tmp_path / "a" / "red-circle-seed5-0.png"))
    other = np.array(Image.open(tmp_path / "b" / "red-circle-seed6-0.png"))
    assert not np.array_equal(first, other)


# --- generate errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"--steps": "0"}, "steps"),
        ({"--steps": "1001"}, "steps"),
        ({"--guidance": "nan"}, "guidance"),
        ({"--guidance": "-1"}, "guidance"),
        ({"--num-images": "0"}, "num_images"),
        ({"--sampler": "warp-drive"}, "sampler"),
        ({"--seed": "-3"}, "seed"),
        ({"--model": "/nonexistent/marble-run"}, "no trained model"),
    ],
)
def test_generate_errors_are_one_line(trained, tmp_path, capsys, change, fragment):
    args = {"prompt": "red circle", "--model": str(trained[0]), "--steps": "3", "--out": str(tmp_path / "out")}
    args.update(change)
    argv = ["generate", args.pop("prompt"), *[item for pair in args.items() for item in pair]]
    assert_one_line_error(capsys, main(argv), fragment)
    assert not (tmp_path / "out").exists()


def test_argument_type_errors_exit_with_code_two(capsys):
    for argv in (["generate", "red circle", "--steps", "abc"], ["generate"], ["train", "warp", "--data", "d", "--run", "r"],
                 ["frobnicate"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


# --- train errors ------------------------------------------------------------------------------


def test_train_on_a_missing_folder_is_one_line(tmp_path, capsys):
    code = main(train_args(tmp_path / "no-such-data", tmp_path / "run", "autoencoder"))
    assert_one_line_error(capsys, code, str(tmp_path / "no-such-data"), "does not exist")


def test_train_with_an_unknown_preset_is_one_line(synthetic_dataset, tmp_path, capsys):
    argv = train_args(synthetic_dataset, tmp_path / "run", "autoencoder")
    argv[argv.index("tiny")] = "nope"
    assert_one_line_error(capsys, main(argv), "nope")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("option", "value"), [("--steps", "0"), ("--steps", "-5"), ("--batch-size", "0"),
                                               ("--lr", "0"), ("--lr", "nan"), ("--lr", "-0.001")])
def test_train_overrides_must_be_positive(synthetic_dataset, tmp_path, capsys, option, value):
    code = main(train_args(synthetic_dataset, tmp_path / "run", "autoencoder", option, value))
    assert_one_line_error(capsys, code, option, "positive")
    assert not (tmp_path / "run").exists()


def test_unet_before_its_prerequisites_says_what_to_train(synthetic_dataset, tmp_path, capsys):
    code = main(train_args(synthetic_dataset, tmp_path / "fresh", "unet"))
    assert_one_line_error(capsys, code, "run `marble train text`")
    assert not (tmp_path / "fresh" / "unet" / "model").exists()


def test_reusing_a_run_with_other_options_is_refused(trained, synthetic_dataset, capsys):
    run = trained[0]
    before = (run / "run.json").read_text()
    code = main(train_args(synthetic_dataset, run, "autoencoder", "--lr", "0.5"))  # (only --steps may grow)
    assert_one_line_error(capsys, code, "different configuration")
    assert (run / "run.json").read_text() == before
    assert json.loads((run / "autoencoder" / "summary.json").read_text())["steps"] == 4


def test_emoji_data_without_npm_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # an empty npm tarball cache
    monkeypatch.setattr("shutil.which", lambda name: None)
    code = main(["data", "emoji", "--out", str(tmp_path / "emoji")])
    assert_one_line_error(capsys, code, "npm")
    assert not (tmp_path / "emoji").exists()


# --- bad files in the dataset ------------------------------------------------------------------


def test_bad_files_are_skipped_counted_and_recorded(synthetic_dataset, tmp_path, capsys):
    data = tmp_path / "shapes"
    shutil.copytree(synthetic_dataset, data)
    whole = (data / "000.png").read_bytes()
    (data / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (data / "text.png").write_text("this is a text file, not a picture\n")
    with open(data / "metadata.jsonl", "a") as metadata:
        metadata.write(json.dumps({"file_name": "truncated.png", "text": "red circle"}) + "\n")
        metadata.write(json.dumps({"file_name": "text.png", "text": "blue square"}) + "\n")
    run = tmp_path / "run"
    assert main(train_args(data, run, "autoencoder", "--steps", "2")) == 0
    assert "skipped 2 files: 1 truncated, 1 not an image" in capsys.readouterr().out
    record = json.loads((run / "data.json").read_text())
    assert record["skipped"] == {"truncated": 1, "not an image": 1}
    assert record["train"] + record["holdout"] == 32
    assert (run / "autoencoder" / "model").is_dir()
