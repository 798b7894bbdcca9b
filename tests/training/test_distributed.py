"""The process helpers on one process (the launched test, test_multiprocess.py, covers N processes)."""

import pytest
import torch

from marble.errors import MarbleError
from marble.training.distributed import (
    any_process,
    check_process_count,
    cpu_only,
    gather_with_gradient,
    mean_over_processes,
    on_main_process,
)


def test_several_processes_without_a_gpu_join_on_the_cpu(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not cpu_only()  # one process: accelerate's own device choice
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cpu_only() == (not torch.accelerator.is_available())


def test_processes_accelerate_did_not_join_are_an_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(MarbleError, match="2 processes were launched but accelerate joined 1"):
        check_process_count(1)
    check_process_count(2)


def test_one_process_is_main_and_collectives_are_identities():
    calls = []
    assert on_main_process(lambda: calls.append("wrote") or 7) == 7 and calls == ["wrote"]
    rows = torch.randn(3, 4, requires_grad=True)
    assert gather_with_gradient(rows) is rows
    assert mean_over_processes({"loss": 0.5}, torch.device("cpu")) == {"loss": 0.5}
    assert any_process(True, torch.device("cpu")) and not any_process(False, torch.device("cpu"))
