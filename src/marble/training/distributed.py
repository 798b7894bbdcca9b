"""What training needs from the processes `accelerate launch` starts: who writes, barriers, collectives.

Every process runs the same code on the same files; only the main process writes, and a write
is bracketed by barriers so that no process reads a file while another is writing it. On one
process every function here is a plain call.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from accelerate import Accelerator, PartialState
from accelerate.utils import get_int_from_env

from marble.errors import MarbleError

T = TypeVar("T")
# Where launchers put the number of processes: torchrun (accelerate launch), then MPI flavours.
WORLD_SIZE_VARIABLES = ["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"]


def launched_processes() -> int:
    return get_int_from_env(WORLD_SIZE_VARIABLES, 1)


def cpu_only() -> bool:
    """True when several processes were launched on a machine without a GPU (or other accelerator).

    accelerate then needs cpu=True to pick gloo; without it every process believes it is alone.
    """
    return launched_processes() > 1 and not torch.accelerator.is_available()


def process_state() -> PartialState:
    """accelerate's process group (created on first use, with the same CPU choice as the Accelerator)."""
    return PartialState(cpu=cpu_only())


def make_accelerator() -> Accelerator:
    accelerator = Accelerator(cpu=cpu_only())
    check_process_count(accelerator.num_processes)
    return accelerator


def check_process_count(joined: int) -> None:
    """A launcher started N processes but accelerate joined them into a different number: every
    process would train alone and overwrite the others' files, so stop."""
    launched = launched_processes()
    if joined != launched:
        raise MarbleError(f"{launched} processes were launched but accelerate joined {joined}; "
                          "check `accelerate config` (see docs/scale.md)")


def is_main_process() -> bool:
    return process_state().is_main_process


def wait_for_everyone() -> None:
    process_state().wait_for_everyone()


def on_main_process(write: Callable[[], T]) -> T | None:
    """Run `write` on the main process only; every process returns once it is done.

    The first barrier makes sure no process is still deciding from (reading) the old files.
    """
    wait_for_everyone()
    result = write() if is_main_process() else None
    wait_for_everyone()
    return result


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGradient(torch.autograd.Function):
    """all_gather whose backward hands each process the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:  # (n, ...) -> (world * n, ...)
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local.contiguous())
        ctx.rows = slice(dist.get_rank() * len(local), (dist.get_rank() + 1) * len(local))
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        # Every process's loss depends on every process's rows: a row's gradient is the sum over
        # processes (a reduce-scatter, written as all_reduce so that gloo can do it too).
        gradient = gradient.contiguous()
        dist.all_reduce(gradient)
        return gradient[ctx.rows]


def gather_with_gradient(local: torch.Tensor) -> torch.Tensor:
    """This process's rows (n, ...) → the whole batch's (world·n, ...) in process order, differentiably.

    For losses that couple samples (CLIP's contrastive loss needs every pair of the global
    batch), as in OpenCLIP's gather_with_grad. The identity on one process.
    """
    return _GatherWithGradient.apply(local) if _distributed() else local


def mean_over_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each logged number averaged over the processes: the global batch's mean when shares are equal."""
    if not _distributed() or not values:
        return values
    stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(stacked)
    return {key: value / dist.get_world_size() for key, value in zip(values, stacked.tolist())}


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process if it is True on any (e.g. a stop signal that reached one process first)."""
    if not _distributed():
        return flag
    raised = torch.tensor([int(flag)], device=device)
    dist.all_reduce(raised, op=dist.ReduceOp.MAX)
    return bool(raised.item())
