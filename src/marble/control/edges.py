"""Binary-image algorithms behind the conditions: Canny edges and Zhang–Suen thinning (numpy + scipy)."""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

# Neighbour offsets (dy, dx) across each quantised gradient direction: 0°, 45°, 90°, 135°.
_ACROSS = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
# Zhang & Suen's P2..P9: north, then clockwise.
_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 → (H, W) float in [0, 1], ITU-R BT.601 weights."""
    weights = np.array([0.299, 0.587, 0.114]).reshape(3, 1, 1)
    return (rgb.astype(np.float64) * weights).sum(axis=0) / 255.0


def _sobel(gray: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(gy, gx) of the image smoothed by a Gaussian of width `sigma` (none at 0)."""
    smooth = ndimage.gaussian_filter(gray, sigma, mode="nearest") if sigma > 0 else gray
    return ndimage.sobel(smooth, axis=0, mode="nearest"), ndimage.sobel(smooth, axis=1, mode="nearest")


@functools.lru_cache(maxsize=None)
def _unit_step_response(sigma: float) -> float:
    """Peak gradient magnitude of a sharp step of height 1 under the same smoothing."""
    half = int(4 * sigma) + 4
    step = np.zeros((2 * half, 2 * half))
    step[:, half:] = 1.0
    return float(np.abs(_sobel(step, sigma)[1]).max())


def gradient(gray: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude and direction of the smoothed Sobel gradient; a sharp step of height h reads h at any sigma."""
    gy, gx = _sobel(gray, sigma)
    return np.hypot(gx, gy) / _unit_step_response(sigma), np.arctan2(gy, gx)


def _shifted(values: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """values[y + dy, x + dx], zero outside the image."""
    padded = np.pad(values, 1)
    height, width = values.shape
    return padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]


def non_maximum_suppression(magnitude: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Pixels whose magnitude peaks across the edge (Canny 1986); ties go to the first pixel, so edges stay 1 px."""
    direction = np.round(np.mod(angle, np.pi) / (np.pi / 4)).astype(int) % 4
    peak = np.zeros(magnitude.shape, dtype=bool)
    for quadrant, (dy, dx) in _ACROSS.items():
        ahead, behind = _shifted(magnitude, dy, dx), _shifted(magnitude, -dy, -dx)
        peak |= (direction == quadrant) & (magnitude >= ahead) & (magnitude > behind)
    return peak


def hysteresis(candidates: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Keep the 8-connected components of `candidates` that contain a strong pixel (Canny 1986)."""
    labels, _ = ndimage.label(candidates, structure=np.ones((3, 3)))
    keep = np.unique(labels[strong & candidates])
    return np.isin(labels, keep[keep > 0])


def canny(gray: np.ndarray, sigma: float, low: float, high: float) -> np.ndarray:
    """(H, W) bool edges: Gaussian smoothing, Sobel gradient, non-maximum suppression, double threshold."""
    magnitude, angle = gradient(gray, sigma)
    thin = non_maximum_suppression(magnitude, angle)
    return hysteresis(thin & (magnitude >= low), magnitude >= high)


def _zhang_suen_pass(image: np.ndarray, first: bool) -> np.ndarray:
    """Pixels one sub-iteration deletes (Zhang & Suen 1984, conditions (a)-(d) or (a)-(b), (c')-(d'))."""
    p = [_shifted(image, dy, dx) for dy, dx in _RING]  # p[0] = P2 ... p[7] = P9
    neighbours = sum(p)
    transitions = sum((p[k] == 0) & (p[(k + 1) % 8] == 1) for k in range(8))
    if first:
        sides = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
    else:
        sides = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
    return (image == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & sides


def thin(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool → its 1-pixel-wide skeleton (Zhang & Suen 1984)."""
    image = mask.astype(np.uint8)
    while True:
        changed = False
        for first in (True, False):
            delete = _zhang_suen_pass(image, first)
            if delete.any():
                image[delete] = 0
                changed = True
        if not changed:
            return image.astype(bool)
