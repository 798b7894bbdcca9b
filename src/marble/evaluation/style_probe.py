"""Which of two styles an image is drawn in: a linear probe on a CLIP's image features.

The evaluation CLIP learned Twemoji captions only, so a zero-shot "Noto style" prompt means nothing
to it; a logistic regression fitted on its features of real images of both styles asks the
features themselves (the linear-probe protocol of Radford et al. 2021, §3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from marble.errors import MarbleError


@dataclass
class StyleProbe:
    names: tuple[str, str]  # class 0, class 1
    mean: torch.Tensor  # (D,) feature standardisation, from the fitting set
    std: torch.Tensor  # (D,)
    weight: torch.Tensor  # (D,)
    bias: torch.Tensor  # ()

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N,) log-odds of class 1."""
        return ((features.float() - self.mean) / self.std) @ self.weight + self.bias

    def is_second(self, features: torch.Tensor) -> torch.Tensor:
        """(N,) bool: classified as names[1]."""
        return self.logits(features) > 0

    def accuracy(self, first: torch.Tensor, second: torch.Tensor) -> float:
        correct = (~self.is_second(first)).sum() + self.is_second(second).sum()
        return float(correct) / (len(first) + len(second))


def probe_loss(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    """Mean binary cross-entropy plus (l2 / 2)·|w|²: a strictly convex objective with one minimum."""
    return F.binary_cross_entropy_with_logits(x @ weight + bias, y) + 0.5 * l2 * weight.square().sum()


def fit_style_probe(first: torch.Tensor, second: torch.Tensor, names: tuple[str, str], l2: float = 1e-2,
                    iterations: int = 100) -> StyleProbe:
    """L2-regularised logistic regression, class 0 = `first` (N0, D), class 1 = `second` (N1, D), by L-BFGS."""
    if first.ndim != 2 or second.ndim != 2 or first.shape[1] != second.shape[1] or not len(first) or not len(second):
        raise MarbleError(f"a style probe needs two non-empty (N, D) feature sets, got {tuple(first.shape)} "
                          f"and {tuple(second.shape)}")
    features = torch.cat([first, second]).double()
    mean, std = features.mean(0), features.std(0).clamp_min(1e-8)
    x = (features - mean) / std
    y = torch.cat([torch.zeros(len(first)), torch.ones(len(second))]).double()
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = probe_loss(weight, bias, x, y, l2)
        loss.backward()
        return loss

    optimizer.step(closure)
    as_float = lambda t: t.detach().float()  # noqa: E731
    return StyleProbe(names, as_float(mean), as_float(std), as_float(weight), as_float(bias))


__all__ = ["StyleProbe", "fit_style_probe", "probe_loss"]
