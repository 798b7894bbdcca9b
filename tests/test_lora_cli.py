"""`marble train lora`, `generate --lora`, `lora merge` in-process, and their one-line errors."""

import contextlib
import io
import json

import pytest

from marble.cli import main


def run_cli(*args: str) -> tuple[int, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main([*map(str, args)])
    return code, stdout.getvalue()


@pytest.fixture(scope="module")
def adapter(tiny_run, synthetic_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-lora") / "adapter"
    code, printed = run_cli("train", "lora", "--base", tiny_run, "--data", synthetic_dataset, "--out", out,
                            "--rank", "2", "--steps", "2", "--batch-size", "4", "--text-encoder", "--no-progress")
    assert code == 0, printed
    return out, printed


def assert_one_line_error(capsys, code: int, fragment: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("marble: error:") and fragment in err, err


def test_train_lora_reports_the_adapter_beside_the_unet(adapter):
    out, printed = adapter
    assert "lora: 2 steps" in printed and "of its parameters; wrote" in printed
    config = json.loads((out / "lora.json").read_text())
    assert config["rank"] == 2 and config["alpha"] == 2.0 and set(config["targets"]) == {"unet", "text_encoder"}


def test_generate_applies_several_adapters_and_merge_writes_a_run(adapter, tiny_run, tmp_path):
    out, _ = adapter
    code, printed = run_cli("generate", "red circle", "--model", tiny_run, "--steps", "2", "--num-images", "1",
                            "--out", tmp_path / "images", "--lora", f"{out}:0.5", "--lora", out)
    assert code == 0 and "wrote" in printed
    code, printed = run_cli("lora", "merge", "--base", tiny_run, "--lora", f"{out}:0.5", "--out", tmp_path / "merged")
    assert code == 0 and (tmp_path / "merged" / "unet" / "model").is_dir()
    code, _ = run_cli("generate", "red circle", "--model", tmp_path / "merged", "--steps", "2", "--num-images", "1",
                      "--out", tmp_path / "merged-images")
    assert code == 0


def test_bad_lora_options_are_one_line_errors(adapter, tiny_run, synthetic_dataset, tmp_path, capsys):
    out, _ = adapter
    generate = ("generate", "red circle", "--model", tiny_run, "--steps", "2", "--out", tmp_path)
    assert_one_line_error(capsys, run_cli(*generate, "--lora", f"{out}:strong")[0], "must be a number")
    assert_one_line_error(capsys, run_cli(*generate, "--lora", tmp_path / "missing")[0], "does not exist")
    assert_one_line_error(capsys, run_cli("train", "lora", "--data", synthetic_dataset, "--out", tmp_path / "x")[0],
                          "needs --base RUN")
    assert_one_line_error(capsys, run_cli("train", "lora", "--base", tiny_run, "--data", synthetic_dataset, "--out",
                                          tmp_path / "x", "--rank", "0")[0], "--rank must be a positive integer")
    assert_one_line_error(capsys, run_cli("train", "unet", "--run", tmp_path / "r", "--data", synthetic_dataset,
                                          "--rank", "4")[0], "options of `marble train lora`")
    assert_one_line_error(capsys, run_cli("train", "text", "--run", tmp_path / "r", "--data", synthetic_dataset,
                                          "--text-encoder")[0], "clip or minilm")
    assert_one_line_error(capsys, run_cli("lora", "merge", "--base", tmp_path, "--lora", out, "--out",
                                          tmp_path / "m")[0], "not a finished run")
