"""Atomic, pickle-free checkpoints: tensors in safetensors, everything else in JSON.

A checkpoint directory appears under its final name only once every file in it is written and
fsynced, so a run killed at any moment leaves either the previous checkpoint or the new one,
never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
CHECKPOINT_PREFIX = "step-"


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(target: Path):
    """Yield a temporary sibling directory; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the result is an ordinary folder
    try:
        yield staging
        _fsync_tree(staging)
        if target.exists():
            # Move the old version aside first: rename cannot replace a non-empty directory.
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, retired / target.name)
            os.replace(staging, target)
            shutil.rmtree(retired)
        else:
            os.replace(staging, target)
        _fsync_dir(target.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# --- flattening state dicts into safetensors + JSON ------------------------------------------


def _tensor_state(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage: store independent copies.
    return {f"{prefix}{key}": value.detach().cpu().contiguous().clone() for key, value in state.items()}


def flatten_optimizer(name: str, state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON-able metadata."""
    tensors, scalars = {}, {}
    for param_id, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            flat = f"optimizer.{name}.{param_id}.{key}"
            if torch.is_tensor(value):
                tensors[flat] = value.detach().cpu().contiguous().clone()
            else:
                scalars[flat] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(name: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    prefix = f"optimizer.{name}."
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        if flat.startswith(prefix):
            param_id, key = flat[len(prefix):].split(".", 1)
            state.setdefault(int(param_id), {})[key] = value
    # JSON turned tuples (AdamW's betas) into lists; "params" is the one list that must stay one.
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in group.items()}
              for group in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_training_state(
    directory: Path,
    step: int,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    ema: dict[str, torch.Tensor] | None,
    extra: dict | None = None,
) -> None:
    """Write one checkpoint atomically: modules, optimizers, EMA shadow, step."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict = {"step": step, "optimizers": {}, "extra": extra or {}}
    for name, module in modules.items():
        tensors.update(_tensor_state(f"module.{name}.", module.state_dict()))
    for name, optimizer in optimizers.items():
        optimizer_tensors, optimizer_meta = flatten_optimizer(name, optimizer.state_dict())
        tensors.update(optimizer_tensors)
        meta["optimizers"][name] = optimizer_meta
    if ema is not None:
        tensors.update(_tensor_state("ema.", ema))
    with atomic_directory(directory) as staging:
        save_file(tensors, str(staging / STATE_TENSORS))
        (staging / STATE_JSON).write_text(json.dumps(meta, indent=1))


def load_training_state(
    directory: Path,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
) -> tuple[int, dict[str, torch.Tensor] | None, dict]:
    """Restore modules and optimizers in place; return (step, EMA shadow or None, extra)."""
    tensors = load_file(str(Path(directory) / STATE_TENSORS))
    meta = json.loads((Path(directory) / STATE_JSON).read_text())
    for name, module in modules.items():
        prefix = f"module.{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(unflatten_optimizer(name, tensors, meta["optimizers"][name]))
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")} or None
    return meta["step"], ema, meta["extra"]


def checkpoint_path(checkpoints_dir: Path, step: int) -> Path:
    return Path(checkpoints_dir) / f"{CHECKPOINT_PREFIX}{step:08d}"


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete checkpoint (temporary directories start with '.' and are ignored)."""
    if not Path(checkpoints_dir).is_dir():
        return None
    found = sorted(p for p in Path(checkpoints_dir).iterdir() if p.name.startswith(CHECKPOINT_PREFIX))
    return found[-1] if found else None


def prune_checkpoints(checkpoints_dir: Path, keep: int) -> None:
    found = sorted(p for p in Path(checkpoints_dir).iterdir() if p.name.startswith(CHECKPOINT_PREFIX))
    for old in found[:-keep]:
        shutil.rmtree(old)
    for stale in [*Path(checkpoints_dir).glob(".*.tmp-*"), *Path(checkpoints_dir).glob(".*.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a run killed mid-write
