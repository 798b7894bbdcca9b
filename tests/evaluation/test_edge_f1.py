"""Edge F1 on hand-made edge maps whose precision, recall and F1 are worked out by hand."""

import pytest
import torch

from marble.errors import MarbleError
from marble.evaluation.edge_f1 import EdgeCounts, edge_counts, edge_f1_scores, pooled


def blank(size: int = 12) -> torch.Tensor:
    return torch.zeros(size, size, dtype=torch.bool)


def column(x: int, rows: slice = slice(2, 10)) -> torch.Tensor:
    """A vertical edge at column x over rows 2..9: eight pixels."""
    edges = blank()
    edges[rows, x] = True
    return edges


def test_identical_edges_score_one():
    counts = edge_counts(column(5), column(5), radius=0)
    assert counts == EdgeCounts(8, 8, 8, 8)
    assert (counts.precision, counts.recall, counts.f1) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("shift, radius, f1", [(1, 0, 0.0), (1, 1, 1.0), (2, 1, 0.0), (2, 2, 1.0), (3, 2, 0.0)])
def test_a_shifted_edge_counts_only_within_the_radius(shift, radius, f1):
    assert edge_counts(column(5 + shift), column(5), radius).f1 == f1


def test_the_radius_is_euclidean_so_a_diagonal_neighbour_is_sqrt_two_away():
    predicted, target = blank(), blank()
    predicted[4, 4] = True
    target[5, 5] = True
    assert edge_counts(predicted, target, radius=1.0).f1 == 0.0
    assert edge_counts(predicted, target, radius=1.5).f1 == 1.0


def test_extra_predicted_edges_cost_precision_only():
    predicted = column(5) | column(10)  # the right edge plus eight spurious pixels
    counts = edge_counts(predicted, column(5), radius=1)
    assert counts == EdgeCounts(8, 16, 8, 8)
    assert counts.precision == 0.5 and counts.recall == 1.0
    assert counts.f1 == pytest.approx(2 / 3)


def test_a_half_drawn_edge_costs_recall_only():
    counts = edge_counts(column(5, slice(2, 6)), column(5), radius=1)
    # Predicted rows 2-5; target rows 6 lies within 1 of row 5, rows 7-9 do not: 5 of 8 recalled.
    assert counts == EdgeCounts(4, 4, 5, 8)
    assert counts.precision == 1.0 and counts.recall == 5 / 8
    assert counts.f1 == pytest.approx(2 * 1.0 * 0.625 / 1.625)


def test_empty_maps():
    assert edge_counts(blank(), blank()).f1 == 1.0  # nothing to draw, nothing drawn
    nothing = edge_counts(blank(), column(5))
    assert (nothing.precision, nothing.recall, nothing.f1) == (1.0, 0.0, 0.0)
    spurious = edge_counts(column(5), blank())
    assert (spurious.precision, spurious.recall, spurious.f1) == (0.0, 1.0, 0.0)


def test_pooling_sums_counts_rather_than_averaging_scores():
    predicted = torch.stack([column(5), column(5) | column(10)])
    target = torch.stack([column(5), column(5)])
    per_image = edge_f1_scores(predicted, target, radius=1)
    assert [c.f1 for c in per_image] == [1.0, pytest.approx(2 / 3)]
    total = pooled(per_image)
    assert total == EdgeCounts(16, 24, 16, 16)
    assert total.f1 == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))  # 0.8, not the mean of per-image F1s (0.833)


def test_mismatched_shapes_and_bad_radius_are_errors():
    with pytest.raises(MarbleError, match="one size"):
        edge_counts(blank(12), blank(10))
    with pytest.raises(MarbleError, match="\\(N, H, W\\)"):
        edge_f1_scores(blank(), blank())
    with pytest.raises(MarbleError, match="radius"):
        edge_counts(blank(), blank(), radius=-1)
