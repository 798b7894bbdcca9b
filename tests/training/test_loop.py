import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from marble.config import TrainConfig
from marble.errors import MarbleError
from marble.training.loop import Objective, Stage, learning_rate_at, train_stage

INPUTS = torch.linspace(-1, 1, 24).reshape(12, 2)
TARGETS = INPUTS @ torch.tensor([[2.0], [-1.0]]) + 0.5


def regression_stage(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(2, 1)

    def loss(module, batch):
        x = INPUTS[batch.indices] + 0.01 * batch.random.randn(2)  # noisy inputs exercise per-sample draws
        error = module(x) - TARGETS[batch.indices]
        value = error.square().mean()
        return value, {"loss": value.item()}

    return Stage("regression", [Objective("net", model, loss)], dataset_size=12, ema_decay=0.9)


CONFIG = TrainConfig(steps=12, batch_size=4, learning_rate=0.05, warmup_steps=2, checkpoint_every=4, log_every=1)


def test_loss_decreases_and_log_is_written(tmp_path):
    stage = regression_stage()
    summary = train_stage(stage, CONFIG, tmp_path, progress=False)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))
    assert log[-1]["net/loss"] < log[0]["net/loss"]
    assert summary["steps"] == 12 and summary["resumed_from"] == 0
    assert any((tmp_path / "tensorboard").rglob("events.out.tfevents*"))


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    whole = regression_stage()
    train_stage(whole, CONFIG, tmp_path / "whole", progress=False)

    # Die abruptly during step 10 (last checkpoint: step 8), then resume from a fresh state.
    first = regression_stage()
    healthy_loss = first.objectives[0].loss

    def dying_loss(module, batch):
        if batch.step == 9:
            raise SystemExit("killed")
        return healthy_loss(module, batch)

    first.objectives[0].loss = dying_loss
    with pytest.raises(SystemExit):
        train_stage(first, CONFIG, tmp_path / "split", progress=False)
    resumed = regression_stage(seed=123)  # different init: everything must come from the checkpoint
    summary = train_stage(resumed, CONFIG, tmp_path / "split", progress=False)
    assert summary["resumed_from"] == 8
    for key, value in whole.objectives[0].module.state_dict().items():
        assert torch.allclose(resumed.objectives[0].module.state_dict()[key], value, atol=1e-6)
    lines = lambda d: [json.loads(x) for x in (tmp_path / d / "train_log.jsonl").read_text().splitlines()]
    assert [r["net/loss"] for r in lines("split")] == pytest.approx([r["net/loss"] for r in lines("whole")], rel=1e-5)
    seconds = [r["seconds"] for r in lines("split")]
    assert seconds == sorted(seconds)  # training time keeps counting across the resume
    assert summary["seconds"] >= round(seconds[7], 1)  # the summary counts the time before the resume too


def test_compiled_training_matches_eager_and_checkpoints_the_plain_module(tmp_path):
    eager, compiled = regression_stage(), regression_stage()
    train_stage(eager, CONFIG, tmp_path / "eager", progress=False)
    train_stage(compiled, dataclasses.replace(CONFIG, compile=True), tmp_path / "compiled", progress=False)
    for key, value in eager.objectives[0].module.state_dict().items():
        torch.testing.assert_close(compiled.objectives[0].module.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    plain_keys = set(load_file(next((tmp_path / "eager" / "checkpoints").rglob("*.safetensors"))))
    assert set(load_file(next((tmp_path / "compiled" / "checkpoints").rglob("*.safetensors")))) == plain_keys


def test_a_run_resumed_at_its_end_reports_the_logged_result(tmp_path):
    train_stage(regression_stage(), CONFIG, tmp_path, progress=False)
    last = json.loads((tmp_path / "train_log.jsonl").read_text().splitlines()[-1])
    summary = train_stage(regression_stage(), CONFIG, tmp_path, progress=False)
    assert summary["resumed_from"] == 12
    assert summary["final"] == {"net/loss": pytest.approx(last["net/loss"], abs=1e-6)}
    assert summary["seconds"] == pytest.approx(last["seconds"], abs=0.1)


def test_learning_rate_schedule_warms_up_then_decays():
    config = TrainConfig(steps=100, warmup_steps=10)
    assert learning_rate_at(0, config, 1.0) == pytest.approx(0.1)
    assert learning_rate_at(9, config, 1.0) == pytest.approx(1.0)
    assert learning_rate_at(100, config, 1.0) == pytest.approx(0.1)
    assert learning_rate_at(55, config, 1.0) == pytest.approx(0.55)


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(MarbleError, match="mixed_precision"):
        train_stage(regression_stage(), TrainConfig(mixed_precision="fp8"), tmp_path)


def test_non_finite_loss_stops_with_a_message(tmp_path):
    stage = regression_stage()
    stage.objectives[0].loss = lambda module, batch: (torch.tensor(float("nan"), requires_grad=True), {})
    with pytest.raises(MarbleError, match="loss became nan"):
        train_stage(stage, CONFIG, tmp_path, progress=False)
