import math

import numpy as np
import pytest
import torch

from marble.errors import MarbleError
from marble.evaluation.image_metrics import corner_error, edge_fringe, mean_edge_fringe, mean_psnr, psnr, ssim


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


def test_corner_error_reads_only_the_four_corner_pixels():
    a = torch.full((2, 3, 5, 5), 200, dtype=torch.uint8)
    b = a.clone()
    b[0, :, 1:-1, :] = 0  # every pixel but the top and bottom rows: no corner touched
    b[0, :, 0, 1:-1] = 0  # the top row between its corners
    b[1, 0, 0, 0] = 80  # one channel of one corner: 120 / (3 channels x 4 corners)
    b[1, :, -1, -1] = 210  # all channels of another: 3 x 10 / 12
    assert corner_error(a, b).tolist() == [0.0, pytest.approx((120 + 30) / 12)]
    assert corner_error(b, a).tolist() == corner_error(a, b).tolist()  # no uint8 wrap-around


def _rgb(image, row, column, colour):
    image[:, row, column] = torch.tensor(colour, dtype=torch.uint8)


def test_edge_fringe_golden_values():
    real = torch.full((2, 3, 5, 5), 255, dtype=torch.uint8)
    _rgb(real[0], 2, 2, (255, 0, 0))  # one red pixel: its four neighbours are the background beside it
    _rgb(real[0], 3, 2, (240, 250, 245))  # still background (every channel > 235), chroma 10
    reconstructed = real.clone()
    _rgb(reconstructed[0], 1, 2, (255, 255, 200))  # beside, above: adds chroma 55
    _rgb(reconstructed[0], 2, 1, (200, 255, 255))  # beside, left: adds 55
    _rgb(reconstructed[0], 3, 2, (245, 245, 245))  # beside, below: chroma 10 → 0, which adds nothing
    _rgb(reconstructed[0], 1, 1, (0, 255, 255))  # diagonal: not beside
    _rgb(reconstructed[0], 2, 2, (0, 0, 255))  # the shape itself: not counted
    values = edge_fringe(real, reconstructed)
    assert values[0].item() == pytest.approx((55 + 55 + 0 + 0) / 4)
    assert math.isnan(values[1].item())  # all background: no edge to measure
    assert mean_edge_fringe(real, reconstructed) == pytest.approx(27.5)  # the image without edges left out
    assert mean_edge_fringe(real[1:], reconstructed[1:]) is None


def test_bad_inputs_are_marble_errors():
    a = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(MarbleError, match="uint8"):
        psnr(a, a.float())
    with pytest.raises(MarbleError, match="shape"):
        psnr(a, a[..., :3])
    with pytest.raises(MarbleError, match="corner_error expects uint8"):
        corner_error(a, a.float())
    with pytest.raises(MarbleError, match="edge_fringe needs RGB"):
        edge_fringe(a[:, :1], a[:, :1])


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 written out with loops: weighted window statistics at every valid position."""
    offsets = np.arange(11) - 5
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for channel in range(a.shape[0]):
        for i in range(a.shape[1] - 10):
            for j in range(a.shape[2] - 10):
                x = a[channel, i:i + 11, j:j + 11].astype(np.float64)
                y = b[channel, i:i + 11, j:j + 11].astype(np.float64)
                mean_x, mean_y = (window * x).sum(), (window * y).sum()
                var_x, var_y = (window * (x - mean_x) ** 2).sum(), (window * (y - mean_y) ** 2).sum()
                cov = (window * (x - mean_x) * (y - mean_y)).sum()
                values.append(((2 * mean_x * mean_y + c1) * (2 * cov + c2))
                              / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)))
    return float(np.mean(values))


def random_images(shape, seed):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_ssim_of_an_image_with_itself_is_one():
    images = random_images((2, 3, 16, 16), seed=0)
    assert ssim(images, images).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)


def test_ssim_matches_a_loop_reference():
    a = random_images((2, 3, 14, 13), seed=1)
    noise = random_images((2, 3, 14, 13), seed=2).to(torch.int16) // 4 - 32
    b = (a.to(torch.int16) + noise).clamp(0, 255).to(torch.uint8)  # correlated with a, so SSIM is well inside (0, 1)
    values = ssim(a, b)
    assert values.shape == (2,) and values.dtype == torch.float64
    for k in range(2):
        assert values[k].item() == pytest.approx(reference_ssim(a[k].numpy(), b[k].numpy()), rel=1e-10)
    assert 0.1 < values.min() and values.max() < 0.99


def test_ssim_of_flat_images_is_the_luminance_term():
    # No structure: σ = 0, so SSIM = (2·μx·μy + C1) / (μx² + μy² + C1).
    a, b = torch.full((1, 1, 11, 11), 100, dtype=torch.uint8), torch.full((1, 1, 11, 11), 150, dtype=torch.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b).item() == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1), rel=1e-12)


def test_ssim_falls_as_noise_grows():
    clean = torch.linspace(0, 255, 32).round().to(torch.uint8).expand(1, 3, 32, 32).contiguous()
    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    scores = [ssim(clean, (clean.float() + level * noise).clamp(0, 255).round().to(torch.uint8)).item()
              for level in (0, 5, 20, 60)]
    assert scores[0] == pytest.approx(1.0)
    assert scores == sorted(scores, reverse=True) and scores[-1] < 0.5


def test_ssim_rejects_images_smaller_than_the_window_and_float_images():
    with pytest.raises(MarbleError, match="11x11"):
        ssim(torch.zeros(1, 3, 10, 16, dtype=torch.uint8), torch.zeros(1, 3, 10, 16, dtype=torch.uint8))
    with pytest.raises(MarbleError, match="uint8"):
        ssim(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))
