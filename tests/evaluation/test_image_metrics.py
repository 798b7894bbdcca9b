import math

import pytest
import torch

from marble.errors import MarbleError
from marble.evaluation.image_metrics import mean_psnr, psnr


def test_psnr_golden_values():
    a = torch.full((3, 3, 4, 4), 100, dtype=torch.uint8)
    b = a.clone()
    b[0] += 1  # constant error 1 → 10·log10(255²) = 48.1308 dB
    b[1, :, :2] += 10  # MSE 50 on half the pixels → 10·log10(255² / 50)
    values = psnr(a, b)
    assert values[0].item() == pytest.approx(48.1308, abs=1e-4)
    assert values[1].item() == pytest.approx(10 * math.log10(255**2 / 50))
    assert values[2].item() == math.inf
    assert mean_psnr(a[:2], b[:2]) == pytest.approx((values[0] + values[1]).item() / 2)


def test_psnr_does_not_wrap_around_in_uint8():
    a = torch.zeros(1, 1, 2, 2, dtype=torch.uint8)
    b = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    assert psnr(a, b).item() == pytest.approx(0.0)
    assert psnr(b, a).item() == pytest.approx(0.0)


def test_bad_inputs_are_marble_errors():
    a = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(MarbleError, match="uint8"):
        psnr(a, a.float())
    with pytest.raises(MarbleError, match="shape"):
        psnr(a, a[..., :3])
