"""Writing a dataset folder all at once: built beside its destination, then swapped in by rename."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from marble.errors import MarbleError


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise MarbleError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise MarbleError(f"{out_dir} is not empty; choose another folder or pass overwrite")


@contextlib.contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """A sibling folder to build in, swapped in as `out_dir` on success and removed on failure."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.building-"))
    staging.chmod(0o755)  # mkdtemp makes it private; the dataset is not
    try:
        yield staging
        publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(staging: Path, out_dir: Path) -> None:
    """Swap the finished `staging` folder in as `out_dir`, so readers never see half a dataset."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    retired = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
    out_dir.rename(retired / "old")
    staging.rename(out_dir)
    shutil.rmtree(retired, ignore_errors=True)


__all__ = ["check_out_dir", "staged", "publish"]
