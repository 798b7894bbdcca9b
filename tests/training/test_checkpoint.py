import os

import pytest
import torch

from marble.training.checkpoint import (
    atomic_directory,
    checkpoint_path,
    latest_checkpoint,
    load_training_state,
    prune_checkpoints,
    save_training_state,
)


def _model_and_optimizer(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).square().mean().backward()
        optimizer.step()
    return model, optimizer


def test_round_trip_restores_model_optimizer_and_ema(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    ema = {k: v * 0.5 for k, v in model.state_dict().items()}
    save_training_state(tmp_path / "ck", 3, {"net": model}, {"net": optimizer}, ema, extra={"note": "x"})

    fresh, fresh_optimizer = _model_and_optimizer(1)
    step, restored_ema, extra = load_training_state(tmp_path / "ck", {"net": fresh}, {"net": fresh_optimizer})
    assert step == 3 and extra == {"note": "x"}
    for key, value in model.state_dict().items():
        assert torch.allclose(fresh.state_dict()[key], value, atol=1e-5)
        assert torch.allclose(restored_ema[key], ema[key], atol=1e-5)
    saved, loaded = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for pid, state in saved["state"].items():
        for key, value in state.items():
            assert torch.allclose(loaded["state"][pid][key], value)


def test_no_pickle_in_checkpoint(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    save_training_state(tmp_path / "ck", 1, {"net": model}, {"net": optimizer}, None)
    assert sorted(os.listdir(tmp_path / "ck")) == ["state.json", "state.safetensors"]


def test_atomic_directory_leaves_old_version_on_failure(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "a.txt").write_text("new")
            raise RuntimeError("killed mid-write")
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_latest_ignores_temporary_dirs_and_prune_keeps_newest(tmp_path):
    for step in (10, 20, 30):
        checkpoint_path(tmp_path, step).mkdir()
    (tmp_path / ".step-00000040.tmp-abc").mkdir()  # a write killed half-way
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 30)
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000020", "step-00000030"]
    assert latest_checkpoint(tmp_path / "missing") is None


def test_atomic_directory_has_ordinary_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "out") as staging:
            (staging / "a.txt").write_text("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
