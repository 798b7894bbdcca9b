"""A held-out split fixed by file name alone, so it is the same on every run and machine."""

from __future__ import annotations

import hashlib
from typing import Sequence

from marble.data.folder import ImageCaptionSet
from marble.errors import MarbleError


def holdout_score(file_name: str) -> float:
    """A uniform-looking number in [0, 1) from the SHA-1 of the file name (not Python's salted hash)."""
    return int(hashlib.sha1(file_name.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def holdout_mask(file_names: Sequence[str], fraction: float) -> list[bool]:
    """True for each file held out for evaluation: its score is below `fraction`."""
    if not 0.0 <= fraction < 1.0:
        raise MarbleError(f"holdout fraction must be in [0, 1), got {fraction}")
    scores = [holdout_score(name) for name in file_names]
    mask = [score < fraction for score in scores]
    # A tiny set would otherwise hold out nothing and never be evaluated.
    if fraction > 0 and len(mask) >= 2 and not any(mask):
        mask[min(range(len(scores)), key=scores.__getitem__)] = True
    return mask


def split_positions(file_names: Sequence[str], fraction: float) -> tuple[list[int], list[int]]:
    """(train, holdout) positions in `file_names` by `holdout_mask`: one rule for folders and shards."""
    mask = holdout_mask(file_names, fraction)
    if all(mask):
        raise MarbleError(
            f"holdout fraction {fraction} leaves no training images out of {len(mask)}; lower it"
        )
    train = [i for i, held in enumerate(mask) if not held]
    holdout = [i for i, held in enumerate(mask) if held]
    return train, holdout


def split_holdout(data: ImageCaptionSet, fraction: float) -> tuple[ImageCaptionSet, ImageCaptionSet]:
    """(train, holdout) subsets of `data` by `holdout_mask` of its file names."""
    train, holdout = split_positions(data.file_names, fraction)
    return data.subset(train), data.subset(holdout)


__all__ = ["holdout_score", "holdout_mask", "split_positions", "split_holdout"]
