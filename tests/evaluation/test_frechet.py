import math

import numpy as np
import pytest
import torch

from marble.errors import MarbleError
from marble.evaluation.frechet import FeatureStats, feature_stats, frechet_distance, kernel_inception_distance


def gaussian(mean, cov) -> FeatureStats:
    return FeatureStats(torch.tensor(mean, dtype=torch.float64), torch.tensor(cov, dtype=torch.float64), count=100)


def random_orthogonal(dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return q


def random_features(count: int, dim: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, dim, generator=generator, dtype=torch.float64) + shift


def test_stats_are_mean_and_unbiased_covariance():
    x = random_features(7, 3, seed=0)
    stats = feature_stats(x.float())
    assert stats.count == 7 and stats.mean.dtype == stats.cov.dtype == torch.float64
    np.testing.assert_allclose(stats.mean.numpy(), x.float().double().numpy().mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(stats.cov.numpy(), np.cov(x.float().double().numpy(), rowvar=False, ddof=1), atol=1e-12)


def test_one_dimensional_closed_form():
    # FD of N(1, 4) and N(-2, 9): (1 + 2)² + (2 - 3)² = 10.
    assert frechet_distance(gaussian([1.0], [[4.0]]), gaussian([-2.0], [[9.0]])) == pytest.approx(10.0, abs=1e-12)


def test_diagonal_covariances_closed_form():
    var_a, var_b = np.array([1.0, 4.0, 0.25, 9.0]), np.array([2.0, 1.0, 0.25, 0.5])
    mean_a, mean_b = np.array([0.0, 1.0, -1.0, 2.0]), np.array([0.5, 1.0, 1.0, -2.0])
    expected = ((mean_a - mean_b) ** 2).sum() + (var_a + var_b - 2 * np.sqrt(var_a * var_b)).sum()
    distance = frechet_distance(gaussian(mean_a, np.diag(var_a)), gaussian(mean_b, np.diag(var_b)))
    assert distance == pytest.approx(expected, rel=1e-12)


def test_commuting_covariances_match_eigenvalue_form():
    # Σa = Q diag(a) Qᵀ, Σb = Q diag(b) Qᵀ commute: FD = ‖Δμ‖² + Σ (√a − √b)².
    q = random_orthogonal(6, seed=1)
    a, b = torch.tensor([3.0, 1.0, 0.5, 2.0, 0.1, 5.0]), torch.tensor([1.0, 1.0, 2.0, 0.3, 0.1, 4.0])
    stats_a = FeatureStats(torch.zeros(6, dtype=torch.float64), q @ torch.diag(a.double()) @ q.T, 10)
    stats_b = FeatureStats(torch.full((6,), 0.5, dtype=torch.float64), q @ torch.diag(b.double()) @ q.T, 10)
    expected = 6 * 0.25 + (a.double().sqrt() - b.double().sqrt()).square().sum().item()
    assert frechet_distance(stats_a, stats_b) == pytest.approx(expected, rel=1e-10)


def test_non_commuting_two_by_two_golden_value():
    # For 2x2 matrices with eigenvalues ≥ 0: tr √(ΣaΣb) = √(tr(ΣaΣb) + 2√det(ΣaΣb)).
    cov_a, cov_b = np.array([[2.0, 1.0], [1.0, 2.0]]), np.array([[1.0, 0.0], [0.0, 4.0]])
    product = cov_a @ cov_b
    trace_sqrt = math.sqrt(np.trace(product) + 2 * math.sqrt(np.linalg.det(product)))
    expected = 1.0 + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt  # Δμ = (1, 0)
    assert expected == pytest.approx(10 - 2 * math.sqrt(10 + 2 * math.sqrt(12)))  # 1.77122...
    distance = frechet_distance(gaussian([1.0, 0.0], cov_a), gaussian([0.0, 0.0], cov_b))
    assert distance == pytest.approx(expected, rel=1e-12)


def test_matches_eigenvalues_of_covariance_product_on_real_features():
    # Independent reference: tr √(ΣaΣb) = Σ √λ over the (real, ≥ 0) eigenvalues of the non-symmetric ΣaΣb.
    a, b = feature_stats(random_features(300, 12, seed=2)), feature_stats(random_features(200, 12, seed=3) * 1.5 + 0.2)
    eigenvalues = np.linalg.eigvals(a.cov.numpy() @ b.cov.numpy())
    trace_sqrt = np.sqrt(np.clip(eigenvalues.real, 0, None)).sum()
    expected = ((a.mean - b.mean) ** 2).sum().item() + a.cov.trace().item() + b.cov.trace().item() - 2 * trace_sqrt
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_identical_sets_are_at_distance_zero_and_distance_is_symmetric():
    a, b = feature_stats(random_features(400, 32, seed=4)), feature_stats(random_features(400, 32, seed=5, shift=0.3))
    assert frechet_distance(a, a) <= 1e-8
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a, b) > 32 * 0.3**2 * 0.5  # the mean shift alone is 2.88


def test_rank_deficient_covariances_stay_non_negative():
    # N < D: singular covariances, where sqrtm-based code returns complex or negative values.
    few, other = random_features(5, 64, seed=6), random_features(4, 64, seed=7)
    a, b = feature_stats(few), feature_stats(other)
    assert torch.linalg.matrix_rank(a.cov) == 4
    assert 0.0 <= frechet_distance(a, a) <= 1e-8
    assert frechet_distance(a, b) > 0.0
    assert frechet_distance(a, feature_stats(few * 3)) > 0.0


def test_kid_matches_direct_unbiased_mmd():
    # N = M = 5 ≤ subset_size: every subset is a permutation of all rows, and MMD² ignores order.
    x, y = random_features(5, 3, seed=8), random_features(5, 3, seed=9, shift=0.5)

    def k(u, v):
        return (float(u @ v) / 3 + 1) ** 3

    m = 5
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    expected = within - 2 * sum(k(xi, yj) for xi in x for yj in y) / m**2
    mean, std = kernel_inception_distance(x, y, subsets=3, subset_size=1000, generator=torch.Generator().manual_seed(0))
    assert mean == pytest.approx(expected, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_near_zero_for_one_distribution_and_positive_for_shifted():
    x, same = random_features(300, 16, seed=10), random_features(300, 16, seed=11)
    shifted = random_features(300, 16, seed=12, shift=0.5)
    generator = torch.Generator().manual_seed(0)
    same_mean, same_std = kernel_inception_distance(x, same, subsets=20, subset_size=100, generator=generator)
    shifted_mean, shifted_std = kernel_inception_distance(x, shifted, subsets=20, subset_size=100, generator=generator)
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert shifted_mean > 10 * abs(same_mean) and shifted_mean > 5 * shifted_std
    assert same_std > 0


def test_kid_is_reproducible_with_a_seeded_generator():
    x, y = random_features(50, 8, seed=13), random_features(40, 8, seed=14, shift=0.2)
    first = kernel_inception_distance(x, y, subsets=5, subset_size=10, generator=torch.Generator().manual_seed(3))
    again = kernel_inception_distance(x, y, subsets=5, subset_size=10, generator=torch.Generator().manual_seed(3))
    assert first == again


def test_bad_inputs_are_marble_errors():
    with pytest.raises(MarbleError, match="at least 2"):
        feature_stats(torch.zeros(1, 4))
    with pytest.raises(MarbleError, match=r"\(N, D\)"):
        feature_stats(torch.zeros(4))
    with pytest.raises(MarbleError, match="NaN"):
        feature_stats(torch.tensor([[0.0], [float("nan")]]))
    with pytest.raises(MarbleError, match="dimensions"):
        frechet_distance(feature_stats(torch.randn(3, 2)), feature_stats(torch.randn(3, 4)))
    with pytest.raises(MarbleError, match="at least 2"):
        kernel_inception_distance(torch.zeros(1, 4), torch.zeros(5, 4))
    with pytest.raises(MarbleError, match="dimensions"):
        kernel_inception_distance(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(MarbleError, match="subset_size"):
        kernel_inception_distance(torch.randn(3, 4), torch.randn(3, 4), subset_size=1)
