"""Crash safety of `marble train`: SIGKILL or SIGTERM mid-run, then the same command finishes the job
exactly as an uninterrupted run would have (same weights, same loss at every step)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from marble.cli import main

WEIGHTS = Path("autoencoder/model/diffusion_pytorch_model.safetensors")
TIMEOUT_S = 300  # the subprocess imports torch + diffusers: slow on a busy machine


def train_argv(data: Path, run: Path) -> list[str]:
    # The autoencoder stage needs no other stage; the tiny preset checkpoints every 2 steps.
    return ["train", "autoencoder", "--data", str(data), "--run", str(run), "--preset", "tiny", "--steps", "60",
            "--no-progress"]


def train_in_process(argv: list[str]) -> int:
    """The same command in this process, on one thread like the subprocesses (same float sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


def start_training(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = open(cwd / "subprocess.log", "w")
    return subprocess.Popen([sys.executable, "-m", "marble.cli", *argv], cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def checkpoint_dirs(run: Path) -> list[Path]:
    folder = run / "autoencoder" / "checkpoints"
    return sorted(p for p in folder.iterdir() if p.name.startswith("step-")) if folder.is_dir() else []


def wait_for_checkpoint(process: subprocess.Popen, run: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not checkpoint_dirs(run):
        if process.poll() is not None:
            pytest.fail(f"training exited ({process.returncode}) before its first checkpoint")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint appeared in time")
        time.sleep(0.005)


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix("step-"))


def logged(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "autoencoder" / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(synthetic_dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("whole") / "run"
    assert train_in_process(train_argv(synthetic_dataset, run)) == 0
    return run


def assert_same_training(resumed: Path, whole: Path) -> None:
    ours, theirs = load_file(resumed / WEIGHTS), load_file(whole / WEIGHTS)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert torch.allclose(ours[key], theirs[key], rtol=0, atol=1e-5), key
    ours_log, theirs_log = logged(resumed), logged(whole)
    assert [r["step"] for r in ours_log] == [r["step"] for r in theirs_log] == list(range(1, 61))
    for mine, reference in zip(ours_log, theirs_log):
        assert mine["autoencoder/loss"] == pytest.approx(reference["autoencoder/loss"], rel=1e-5), mine["step"]


def resume(argv: list[str], run: Path, from_step: int) -> None:
    assert train_in_process(argv) == 0
    summary = json.loads((run / "autoencoder" / "summary.json").read_text())
    assert summary["resumed_from"] == from_step and summary["steps"] == 60
    leftovers = [p.name for p in (run / "autoencoder" / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # staging folders of a killed write are cleaned up


def test_sigkill_leaves_whole_checkpoints_and_resume_matches(synthetic_dataset, uninterrupted, tmp_path):
    run = tmp_path / "run"
    argv = train_argv(synthetic_dataset, run)
    process = start_training(argv, tmp_path)
    wait_for_checkpoint(process, run)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(TIMEOUT_S) == -signal.SIGKILL
    assert not (run / "autoencoder" / "model").exists()  # killed before the end, not after

    survivors = checkpoint_dirs(run)
    assert survivors
    for checkpoint in survivors:  # under its final name only when complete
        assert (checkpoint / "state.json").is_file() and (checkpoint / "state.safetensors").is_file()
        assert json.loads((checkpoint / "state.json").read_text())["step"] == step_of(checkpoint)
    last = step_of(survivors[-1])
    assert 0 < last < 60

    resume(argv, run, from_step=last)
    assert_same_training(run, uninterrupted)


def test_sigterm_saves_the_last_step_then_resume_matches(synthetic_dataset, uninterrupted, tmp_path):
    run = tmp_path / "run"
    argv = train_argv(synthetic_dataset, run)
    process = start_training(argv, tmp_path)
    wait_for_checkpoint(process, run)
    process.send_signal(signal.SIGTERM)
    assert process.wait(TIMEOUT_S) == 130
    assert "interrupted; run the same command again to resume" in (tmp_path / "subprocess.log").read_text()
    assert not (run / "autoencoder" / "model").exists()

    last_logged = logged(run)[-1]["step"]
    assert 0 < last_logged < 60
    assert step_of(checkpoint_dirs(run)[-1]) == last_logged  # the step in progress was finished and saved

    resume(argv, run, from_step=last_logged)
    assert_same_training(run, uninterrupted)
