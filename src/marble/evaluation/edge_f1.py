"""Edge F1: how faithfully an image's edges follow a target edge map, with a distance tolerance.

The boundary benchmark of Martin et al. (2004) scores a predicted edge pixel as correct when a
target edge lies within a small radius, and a target edge as recalled when a predicted one does.
This is its simple form: matching by distance transform rather than one-to-one bipartite matching,
so a thick predicted edge next to a thin target is not penalised for its thickness in recall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from marble.errors import MarbleError

DEFAULT_RADIUS = 2.0  # pixels, Euclidean: a one-pixel shift in any direction, diagonals included


@dataclass(frozen=True)
class EdgeCounts:
    """Matched and total edge pixels; summing counts over images pools them (the benchmark's dataset score)."""

    matched_predicted: int
    predicted: int
    matched_target: int
    target: int

    def __add__(self, other: "EdgeCounts") -> "EdgeCounts":
        return EdgeCounts(self.matched_predicted + other.matched_predicted, self.predicted + other.predicted,
                          self.matched_target + other.matched_target, self.target + other.target)

    @property
    def precision(self) -> float:
        """Share of predicted edges near a target edge; 1 when nothing is predicted (nothing is wrong)."""
        return self.matched_predicted / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        """Share of target edges near a predicted edge; 1 when there is no target edge."""
        return self.matched_target / self.target if self.target else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall; 0 when both are 0."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _near(edges: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within `radius` (Euclidean) of any pixel of `edges`; none when `edges` is empty."""
    if not edges.any():
        return np.zeros_like(edges)
    return ndimage.distance_transform_edt(~edges) <= radius


def edge_counts(predicted: torch.Tensor, target: torch.Tensor, radius: float = DEFAULT_RADIUS) -> EdgeCounts:
    """Counts for one pair of (H, W) boolean edge maps."""
    if predicted.shape != target.shape or predicted.dim() != 2:
        raise MarbleError(f"edge maps must be two (H, W) maps of one size, got {tuple(predicted.shape)} "
                          f"and {tuple(target.shape)}")
    if not radius >= 0:
        raise MarbleError(f"edge F1 radius must be >= 0, got {radius}")
    pred, true = predicted.numpy().astype(bool), target.numpy().astype(bool)
    return EdgeCounts(int((pred & _near(true, radius)).sum()), int(pred.sum()),
                      int((true & _near(pred, radius)).sum()), int(true.sum()))


def edge_f1_scores(predicted: torch.Tensor, target: torch.Tensor, radius: float = DEFAULT_RADIUS) -> list[EdgeCounts]:
    """Per-image counts for (N, H, W) boolean edge maps; sum them for the pooled score."""
    if predicted.shape != target.shape or predicted.dim() != 3:
        raise MarbleError(f"edge maps must be (N, H, W) of one shape, got {tuple(predicted.shape)} "
                          f"and {tuple(target.shape)}")
    return [edge_counts(p, t, radius) for p, t in zip(predicted, target)]


def pooled(counts: list[EdgeCounts]) -> EdgeCounts:
    return sum(counts, EdgeCounts(0, 0, 0, 0))
