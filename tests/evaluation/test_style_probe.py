"""The logistic-regression style probe: it reaches the objective's minimum and separates what is separable."""

import pytest
import torch

from marble.errors import MarbleError
from marble.evaluation.style_probe import fit_style_probe, probe_loss


def clusters(shift: float, n: int = 200, dim: int = 6, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    first = torch.randn(n, dim, generator=generator)
    second = torch.randn(n, dim, generator=generator) + shift * torch.eye(dim)[0]
    return first, second


def test_the_fit_is_the_minimum_of_the_regularised_objective():
    first, second = clusters(shift=1.5)
    probe = fit_style_probe(first, second, ("a", "b"), l2=1e-2)
    x = ((torch.cat([first, second]) - probe.mean) / probe.std).double()
    y = torch.cat([torch.zeros(200), torch.ones(200)]).double()
    weight = probe.weight.double().requires_grad_()
    bias = probe.bias.double().requires_grad_()
    probe_loss(weight, bias, x, y, 1e-2).backward()
    assert weight.grad.abs().max() < 1e-4 and bias.grad.abs() < 1e-4  # zero gradient: the convex minimum
    assert probe.weight[0] > 5 * probe.weight[1:].abs().max()  # it found the one informative direction


def test_separable_styles_are_told_apart_on_held_out_features_and_identical_ones_are_not():
    probe = fit_style_probe(*clusters(shift=8.0), ("twemoji", "noto"))
    assert probe.accuracy(*clusters(shift=8.0, seed=1)) == 1.0
    assert probe.is_second(clusters(shift=8.0, seed=2)[1]).all()
    chance = fit_style_probe(*clusters(shift=0.0), ("a", "b"))
    assert abs(chance.accuracy(*clusters(shift=0.0, seed=3)) - 0.5) < 0.1


def test_mismatched_or_empty_feature_sets_are_refused():
    with pytest.raises(MarbleError, match="two non-empty"):
        fit_style_probe(torch.zeros(3, 4), torch.zeros(3, 5), ("a", "b"))
    with pytest.raises(MarbleError, match="two non-empty"):
        fit_style_probe(torch.zeros(0, 4), torch.zeros(3, 4), ("a", "b"))
