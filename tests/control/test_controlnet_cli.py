"""`marble condition`, `marble train controlnet` and `marble generate --control`: files written, one-line errors."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from marble.cli import main
from marble.control.conditions import condition_image
from marble.control.files import read_rgb


def assert_one_line_error(capsys, code: int, *fragments: str) -> None:
    err = capsys.readouterr().err
    # In-process, the weight-loading bars are on (the CLI turns them off before its imports, too late here).
    lines = [line for line in err.strip().splitlines() if not line.startswith("Loading weights")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("marble: error:"), err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def run_with_controlnet(tiny_run, synthetic_dataset, tmp_path_factory):
    """A copy of the tiny run with a canny ControlNet trained by the CLI into its default folder."""
    run = tmp_path_factory.mktemp("cli-control") / "run"
    shutil.copytree(tiny_run, run)
    code = main(["train", "controlnet", "--base", str(run), "--data", str(synthetic_dataset), "--condition", "canny",
                 "--preset", "tiny", "--no-progress"])
    assert code == 0
    return run


@pytest.fixture
def edges(synthetic_dataset, tmp_path):
    out = tmp_path / "edges.png"
    assert main(["condition", "canny", str(synthetic_dataset / "000.png"), "--out", str(out)]) == 0
    return out


def test_condition_writes_what_the_model_sees(synthetic_dataset, edges):
    expected = condition_image("canny", read_rgb(synthetic_dataset / "000.png"))
    assert torch.equal(read_rgb(edges), expected)


def test_condition_size_fits_the_image_first(synthetic_dataset, tmp_path):
    out = tmp_path / "mask.png"
    assert main(["condition", "mask", str(synthetic_dataset / "000.png"), "--size", "32", "--out", str(out)]) == 0
    assert Image.open(out).size == (32, 32)


def test_train_controlnet_writes_into_the_run(run_with_controlnet):
    folder = run_with_controlnet / "controlnet" / "canny"
    assert (folder / "controlnet.json").is_file() and (folder / "model" / "config.json").is_file()


def test_generate_with_control_writes_images(run_with_controlnet, edges, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["generate", "red circle", "--model", str(run_with_controlnet), "--control", str(edges), "--steps", "2",
                 "--num-images", "1", "--control-scale", "1.5", "--out", str(out)])
    assert code == 0
    assert np.array(Image.open(out / "red-circle-seed0-0.png")).shape == (16, 16, 3)


def test_generate_refuses_a_control_image_of_another_size(run_with_controlnet, tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.new("RGB", (32, 24)).save(big)
    args = ["generate", "red circle", "--model", str(run_with_controlnet), "--control", str(big), "--steps", "2",
            "--num-images", "1", "--out", str(tmp_path / "out")]
    assert_one_line_error(capsys, main(args), "big.png is 32x24 pixels; this model needs 16x16", "--resize")
    assert main([*args, "--resize"]) == 0


def test_generate_control_without_a_controlnet_says_how_to_get_one(tiny_run, edges, tmp_path, capsys):
    code = main(["generate", "red circle", "--model", str(tiny_run), "--control", str(edges), "--out", str(tmp_path)])
    assert_one_line_error(capsys, code, "--control needs a ControlNet: pass --controlnet DIR")


@pytest.mark.parametrize("extra, fragment", [
    (["--control-scale", "2"], "--control-scale: only used with --control IMAGE"),
    (["--controlnet", "x"], "--controlnet: only used with --control IMAGE"),
    (["--control", "missing.png"], "control image missing.png does not exist"),
    (["--control", "{edges}", "--control-scale", "-1"], "control scale: must be between 0 and 10"),
    (["--control", "{edges}", "--controlnet", "{tmp}"], "no trained ControlNet at"),
])
def test_generate_control_errors_are_one_line(tiny_run, edges, tmp_path, capsys, extra, fragment):
    extra = [e.format(edges=edges, tmp=tmp_path) for e in extra]
    code = main(["generate", "red circle", "--model", str(tiny_run), "--steps", "2", "--out", str(tmp_path), *extra])
    assert_one_line_error(capsys, code, fragment)


def test_unknown_conditions_are_one_line(synthetic_dataset, tiny_run, tmp_path, capsys):
    assert_one_line_error(capsys, main(["condition", "depth", str(synthetic_dataset / "000.png")]),
                          "unknown condition 'depth'; choose one of: canny, mask, scribble")
    code = main(["train", "controlnet", "--base", str(tiny_run), "--data", str(synthetic_dataset), "--condition",
                 "depth", "--preset", "tiny", "--out", str(tmp_path / "c"), "--no-progress"])
    assert_one_line_error(capsys, code, "unknown condition 'depth'")


def test_train_controlnet_option_errors_are_one_line(synthetic_dataset, tiny_run, tmp_path, capsys):
    base = ["train", "controlnet", "--data", str(synthetic_dataset), "--preset", "tiny", "--no-progress"]
    assert_one_line_error(capsys, main([*base, "--condition", "canny"]), "needs --base RUN")
    assert_one_line_error(capsys, main([*base, "--base", "reference", "--condition", "canny"]), "pass --out DIR")
    assert_one_line_error(capsys, main([*base, "--base", str(tiny_run), "--condition", "canny", "--run", "x"]),
                          "not --run")
    assert_one_line_error(capsys, main(["train", "unet", "--data", str(synthetic_dataset), "--run", str(tmp_path),
                                        "--condition", "canny"]), "an option of `marble train controlnet`")


def test_condition_of_an_unreadable_file_is_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert_one_line_error(capsys, main(["condition", "canny", str(broken)]), "cannot read image")
