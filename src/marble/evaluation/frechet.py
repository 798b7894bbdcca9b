"""Fréchet distance (FID, Heusel et al. 2017) and kernel distance (KID, Bińkowski et al. 2018) of feature sets.

Everything runs in float64 with symmetric eigendecompositions: no scipy `sqrtm`, whose complex
round-off parts pytorch-fid has to strip, and no failure on rank-deficient covariances (N < D).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from marble.errors import MarbleError


@dataclass(frozen=True)
class FeatureStats:
    """A Gaussian fitted to N feature vectors: mean (D,), unbiased covariance (D, D), both float64."""

    mean: Tensor
    cov: Tensor
    count: int

    @property
    def dim(self) -> int:
        return self.mean.shape[0]


def feature_stats(features: Tensor) -> FeatureStats:
    """Mean and unbiased covariance (divide by N - 1) of (N, D) features."""
    _check_features(features, "features")
    x = features.double()
    mean = x.mean(dim=0)  # (D,)
    centred = x - mean  # (N, D)
    cov = centred.T @ centred / (len(x) - 1)  # (D, D)
    return FeatureStats(mean=mean, cov=cov, count=len(x))


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """‖μa − μb‖² + tr Σa + tr Σb − 2 tr (Σa^½ Σb Σa^½)^½ (Dowson & Landau 1982; FID eq. 6)."""
    if a.dim != b.dim:
        raise MarbleError(f"feature sets have different dimensions: {a.dim} and {b.dim}")
    mean_a, mean_b = a.mean.double(), b.mean.double()
    cov_a, cov_b = _symmetric(a.cov.double()), _symmetric(b.cov.double())
    sqrt_a = _psd_sqrt(cov_a)
    # Σa^½ Σb Σa^½ is symmetric PSD and has the same eigenvalues as Σa Σb, so its root's trace is
    # the sum of the square roots of its eigenvalues.
    middle = _symmetric(sqrt_a @ cov_b @ sqrt_a)
    trace_sqrt = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return max(float(distance), 0.0)


def kernel_inception_distance(
    x: Tensor, y: Tensor, subsets: int = 100, subset_size: int = 1000, generator: torch.Generator | None = None
) -> tuple[float, float]:
    """Mean and std over random subsets of unbiased MMD², kernel (x·y / D + 1)³ (KID, Bińkowski et al. 2018)."""
    _check_features(x, "x")
    _check_features(y, "y")
    if x.shape[1] != y.shape[1]:
        raise MarbleError(f"feature sets have different dimensions: {x.shape[1]} and {y.shape[1]}")
    if subsets < 1:
        raise MarbleError(f"subsets must be at least 1, got {subsets}")
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise MarbleError(f"subset_size must be at least 2, got {subset_size}")
    x, y = x.double(), y.double()
    estimates = torch.stack([
        _unbiased_mmd2(_random_rows(x, size, generator), _random_rows(y, size, generator)) for _ in range(subsets)
    ])  # (subsets,)
    spread = estimates.std() if subsets > 1 else torch.zeros((), dtype=torch.float64)
    return float(estimates.mean()), float(spread)


def _unbiased_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """MMD²_u (Gretton et al. 2012, eq. 3): within-set kernel means off the diagonal, minus twice the cross mean."""
    m, dim = x.shape
    k_xx = (x @ x.T / dim + 1) ** 3  # (m, m)
    k_yy = (y @ y.T / dim + 1) ** 3
    k_xy = (x @ y.T / dim + 1) ** 3
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.mean()


def _random_rows(features: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    return features[torch.randperm(len(features), generator=generator)[:count]]


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """Principal square root of a symmetric PSD matrix; round-off negative eigenvalues count as 0."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def _symmetric(matrix: Tensor) -> Tensor:
    return (matrix + matrix.T) / 2


def _check_features(features: Tensor, name: str) -> None:
    if features.dim() != 2:
        raise MarbleError(f"{name} must be an (N, D) matrix of feature vectors, got shape {tuple(features.shape)}")
    if len(features) < 2:
        raise MarbleError(f"{name}: need at least 2 feature vectors for a covariance, got {len(features)}")
    if not torch.isfinite(features).all():
        raise MarbleError(f"{name} contains NaN or infinite values")


__all__ = ["FeatureStats", "feature_stats", "frechet_distance", "kernel_inception_distance"]
