"""`marble train all` under `accelerate launch` with 2 CPU processes (gloo), stopped by SIGTERM and
resumed, trains the same weights as one process with the same global batch and seed; only the
main process writes, and each checkpoint is written once.

accelerate's `--cpu` launcher starts one process unless given an MPI hostfile, so the test
launches with `--multi_gpu` (torchrun); Marble joins the processes with gloo when there is no GPU.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import marble
from marble.cli import main
from marble.config import preset

AUDITED_MARBLE = Path(__file__).with_name("audited_marble.py")
SHARD_IDS_MARBLE = Path(__file__).with_name("shard_ids_marble.py")  # audited, and records streamed batch ids
UNET_STEPS = 20  # long enough to stop mid-stage after its first checkpoint (every 2 steps)
TIMEOUT_S = 300  # each process imports torch + diffusers: slow on a busy machine
WEIGHTS = ("text/encoder/text_encoder/model.safetensors", "autoencoder/model/diffusion_pytorch_model.safetensors",
           "unet/model/diffusion_pytorch_model.safetensors")
# Per-step losses of the global batch: the same float32 numbers summed in another order (two
# half-batch means averaged instead of one mean), so they agree to a few float32 roundings.
LOSS_RTOL = 1e-5
# Weights: AdamW divides each gradient by its running RMS, so an element whose gradient is zero in
# exact arithmetic (attention key biases: softmax ignores a shift shared by all keys) turns
# rounding noise into steps of up to lr in either direction, at most 2·lr·steps apart. Every
# other element agrees far more closely: allow 1% of elements between 1e-5 and that bound.
# Measured: 99.84% (CLIP), 99.995% (autoencoder), 99.999% (U-Net) within 1e-5, max 1.1e-4.
# Without gradient averaging, or with CLIP negatives from one process only, most elements differ.
CLOSE_ATOL, CLOSE_FRACTION = 1e-5, 0.99


def train_argv(data: Path, run: Path) -> list[str]:
    return ["train", "all", "--data", str(data), "--run", str(run), "--preset", "tiny", "--no-progress",
            "--set", f"unet.train.steps={UNET_STEPS}"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_two_processes(argv: list[str], run: Path, audit: Path, script: Path = AUDITED_MARBLE) -> subprocess.Popen:
    """`accelerate launch` of `marble …` in 2 processes, each recording its writes under `run`."""
    source_root = str(Path(marble.__file__).parents[1])  # the subprocesses import this same marble
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MARBLE_AUDIT_ROOT": str(run), "MARBLE_AUDIT_OUT": str(audit),
           "PYTHONPATH": os.pathsep.join([source_root, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(free_port()), str(script), *argv]
    log = open(audit.with_suffix(".log"), "w")
    return subprocess.Popen(command, cwd=run.parent, env=env, stdout=log, stderr=subprocess.STDOUT)


def unet_checkpoints(run: Path) -> list[Path]:
    folder = run / "unet" / "checkpoints"
    return sorted(p for p in folder.iterdir() if p.name.startswith("step-")) if folder.is_dir() else []


def stop_after_first_unet_checkpoint(process: subprocess.Popen, run: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not unet_checkpoints(run):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no U-Net checkpoint before the launch ended ({process.returncode})")
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)  # the launcher forwards it to both processes


def audited(audit: Path, rank: int) -> list[tuple[str, str]]:
    return [tuple(event) for event in json.loads(Path(f"{audit}.rank{rank}.json").read_text())]


def logged(run: Path, stage: str) -> list[dict]:
    return [json.loads(line) for line in (run / stage / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_process(synthetic_dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("one") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like each launched process
    try:
        assert main(train_argv(synthetic_dataset, run)) == 0
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="module")
def two_processes(synthetic_dataset, tmp_path_factory) -> dict:
    """Launch, SIGTERM after the first U-Net checkpoint, launch the same command again."""
    folder = tmp_path_factory.mktemp("two")
    run, argv = folder / "run", train_argv(synthetic_dataset, folder / "run")
    first = launch_two_processes(argv, run, folder / "audit-first")
    stop_after_first_unet_checkpoint(first, run)
    first_code = first.wait(TIMEOUT_S)
    stopped_at = int(unet_checkpoints(run)[-1].name.removeprefix("step-"))
    finished_early = (run / "unet" / "model").exists()
    second = launch_two_processes(argv, run, folder / "audit-second")
    assert second.wait(TIMEOUT_S) == 0, (folder / "audit-second.log").read_text()[-3000:]
    return {"run": run, "first_code": first_code, "stopped_at": stopped_at, "finished_early": finished_early,
            "first_log": (folder / "audit-first.log").read_text(),
            "audits": [folder / "audit-first", folder / "audit-second"]}


def test_sigterm_stops_both_processes_at_a_checkpoint_and_the_relaunch_resumes(two_processes):
    assert two_processes["first_code"] != 0 and not two_processes["finished_early"]
    assert two_processes["first_log"].count("interrupted; run the same command again to resume") == 2
    stopped_at = two_processes["stopped_at"]
    assert 0 < stopped_at < UNET_STEPS
    summary = json.loads((two_processes["run"] / "unet" / "summary.json").read_text())
    assert summary["resumed_from"] == stopped_at and summary["steps"] == UNET_STEPS


def test_losses_equal_one_process_at_every_step(two_processes, one_process):
    for stage in ("text", "autoencoder", "unet"):
        ours, theirs = logged(two_processes["run"], stage), logged(one_process, stage)
        assert [r["step"] for r in ours] == [r["step"] for r in theirs]
        for mine, reference in zip(ours, theirs):
            for key in reference.keys() - {"step", "seconds"}:
                assert mine[key] == pytest.approx(reference[key], rel=LOSS_RTOL), (stage, mine["step"], key)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_weights_equal_one_process(two_processes, one_process, weights):
    config = preset("tiny")
    bound = 2 * config.unet.train.learning_rate * UNET_STEPS  # the largest lr and step count of the stages
    ours, theirs = load_file(two_processes["run"] / weights), load_file(one_process / weights)
    assert ours.keys() == theirs.keys()
    differences = torch.cat([(ours[key].float() - theirs[key].float()).abs().flatten() for key in theirs])
    assert differences.max() <= bound
    assert (differences <= CLOSE_ATOL).float().mean() >= CLOSE_FRACTION


def test_only_the_main_process_writes_and_each_checkpoint_once(two_processes):
    first, second = two_processes["audits"]
    assert audited(first, rank=1) == [] and audited(second, rank=1) == []
    renamed = [Path(path) for event, path in audited(first, 0) + audited(second, 0) if event == "rename"]
    checkpoints = [path for path in renamed if path.parent.name == "checkpoints"]
    assert len(checkpoints) == len(set(checkpoints))  # written once: no process wrote one twice
    unet = sorted(path.name for path in checkpoints if path.parent.parent.name == "unet")
    stopped_at = two_processes["stopped_at"]
    expected = {step for step in range(2, UNET_STEPS + 1, 2)} | {stopped_at}
    assert unet == [f"step-{step:08d}" for step in sorted(expected)]


def test_two_processes_stream_disjoint_shares_of_the_shards(shards, tmp_path):
    """Each process reads its own share of the shards (rank and world from accelerate), and only the main one writes."""
    run, audit = tmp_path / "run", tmp_path / "audit"
    argv = ["train", "all", "--data", str(shards), "--run", str(run), "--preset", "tiny", "--no-progress"]
    process = launch_two_processes(argv, run, audit, SHARD_IDS_MARBLE)
    assert process.wait(TIMEOUT_S) == 0, audit.with_suffix(".log").read_text()[-3000:]
    assert audited(audit, rank=1) == []
    assert json.loads((run / "autoencoder" / "summary.json").read_text())["holdout_images"] == 8
    assert (run / "unet" / "model" / "config.json").is_file()
    share = preset("tiny").text.train.batch_size // 2
    by_rank = [json.loads(Path(f"{audit}.ids.rank{rank}.json").read_text()) for rank in range(2)]
    assert [len(streams) for streams in by_rank] == [2, 2]  # text and autoencoder stream; the U-Net uses the cache
    for stage in range(2):
        first, second = by_rank[0][stage], by_rank[1][stage]
        assert [step for step, _ in first] == [step for step, _ in second] == [0, 1, 2, 3]
        # 2 processes x 2 workers read 6 of the 24 training samples each per epoch: the first two
        # steps' 16 samples all come from the first epoch, so no id may repeat across processes.
        early = [i for _, ids in first[:2] + second[:2] for i in ids]
        assert all(len(ids) == share for _, ids in first + second)
        assert len(set(early)) == len(early) == 16 and max(early) < 24
