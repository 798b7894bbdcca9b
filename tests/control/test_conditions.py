"""Conditions on hand-made images: Canny edges where the steps are, filled masks, thinned strokes, clear errors."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from marble.control.conditions import CANNY_HIGH, CANNY_LOW, condition_image, condition_images, edges_of
from marble.control.edges import canny, gradient, hysteresis, thin
from marble.errors import MarbleError


def step_image(height: float, size: int = 16) -> np.ndarray:
    """Dark left half (0), brighter right half (height): one vertical step between columns 7 and 8."""
    gray = np.zeros((size, size))
    gray[:, size // 2:] = height
    return gray


def rgb(gray_levels: np.ndarray) -> torch.Tensor:
    """(H, W) uint8 grey levels → (3, H, W) uint8."""
    return torch.from_numpy(gray_levels.astype(np.uint8)).expand(3, -1, -1).contiguous()


def disk(size: int = 24, radius: float = 7.0, ring: float = 0.0) -> np.ndarray:
    """Boolean disk (or, with ring > 0, an annulus of that width) centred in a size x size image."""
    yy, xx = np.mgrid[0:size, 0:size]
    distance = np.hypot(yy - (size - 1) / 2, xx - (size - 1) / 2)
    return (distance <= radius) & (distance > radius - ring) if ring else distance <= radius


@pytest.mark.parametrize("sigma", [0.0, 1.0, 2.0])
def test_a_sharp_step_reads_its_height_at_any_blur(sigma):
    magnitude, angle = gradient(step_image(0.6), sigma)
    assert magnitude.max() == pytest.approx(0.6, abs=1e-9)
    assert np.allclose(angle[magnitude > 0.01], 0.0)  # the gradient points across the step, to the right


def test_canny_marks_one_pixel_wide_edge_on_the_step():
    edges = canny(step_image(1.0), 1.0, CANNY_LOW, CANNY_HIGH)
    expected = np.zeros((16, 16), bool)
    expected[:, 7] = True  # ties between columns 7 and 8 go to the first: the edge stays one pixel wide
    assert np.array_equal(edges, expected)


@pytest.mark.parametrize("height, found", [(0.05, False), (0.15, False), (0.3, True)])
def test_canny_needs_a_step_above_the_high_threshold(height, found):
    # 0.15 clears the low threshold but no pixel is strong, so hysteresis keeps nothing.
    assert canny(step_image(height), 1.0, CANNY_LOW, CANNY_HIGH).any() == found


def test_hysteresis_keeps_weak_pixels_only_when_connected_to_a_strong_one():
    candidates = np.zeros((5, 7), bool)
    candidates[:, 1] = True  # a column touching one strong pixel
    candidates[1:4, 5] = True  # a weak-only column
    strong = np.zeros_like(candidates)
    strong[2, 1] = True
    kept = hysteresis(candidates, strong)
    assert np.array_equal(kept, np.pad(np.ones((5, 1), bool), ((0, 0), (1, 5))))


def test_uniform_image_has_no_canny_edges():
    assert not condition_image("canny", rgb(np.full((16, 16), 128))).any()


def test_canny_of_a_square_traces_its_outline():
    gray = np.full((16, 16), 255)
    gray[4:12, 4:12] = 0
    edges = edges_of(rgb(gray)[None])[0].numpy()
    inside = np.zeros((16, 16), bool)
    inside[4:12, 4:12] = True
    boundary = inside & ~ndimage.binary_erosion(inside)
    near_boundary = ndimage.binary_dilation(boundary, structure=np.ones((3, 3)))
    assert edges.any() and not (edges & ~near_boundary).any()
    for side in (edges[3:5, 5:11], edges[11:13, 5:11], edges[5:11, 3:5], edges[5:11, 11:13]):
        assert side.any()  # all four sides are traced


def test_mask_is_the_non_white_object_with_its_holes_filled():
    picture = np.full((24, 24), 255)
    picture[disk(ring=2.5)] = 40  # a dark ring with a white inside, like a face's white eyes
    picture[0, :] = 250  # near-white noise counts as background
    mask = condition_image("mask", rgb(picture))
    assert mask.shape == (3, 24, 24) and mask.dtype == torch.uint8
    assert torch.equal(mask[0], mask[1]) and torch.equal(mask[0], mask[2])
    assert set(mask.unique().tolist()) == {0, 255}
    assert np.array_equal(mask[0].numpy() == 255, disk())


def test_thinning_leaves_a_one_pixel_skeleton_inside_the_shape():
    bar = np.zeros((9, 15), bool)
    bar[3:6, 2:13] = True  # three pixels thick
    skeleton = thin(bar)
    assert skeleton.any() and not (skeleton & ~bar).any()
    assert skeleton.sum(axis=0).max() == 1  # one pixel per column
    assert skeleton[4, 4:11].all()  # along the bar's middle row
    line = np.zeros((5, 9), bool)
    line[2, 1:8] = True
    assert np.array_equal(thin(line), line)  # already thin: unchanged


def test_scribble_of_a_disk_is_a_stroke_ring_about_three_pixels_wide():
    picture = np.full((32, 32), 255)
    picture[disk(32, 10)] = 0
    strokes = condition_image("scribble", rgb(picture))[0].numpy() == 255
    yy, xx = np.mgrid[0:32, 0:32]
    distance = np.hypot(yy - 15.5, xx - 15.5)
    assert not strokes[distance < 6].any() and not strokes[distance > 14].any()  # only near the outline
    assert strokes[16, :16].sum() in (2, 3, 4)  # crossing the stroke once: a few pixels, not one
    assert strokes[np.abs(distance - 10) < 2].mean() > 0.5  # the ring is mostly drawn


def test_conditions_keep_the_image_size_and_batch():
    images = torch.randint(0, 256, (2, 3, 12, 20), dtype=torch.uint8)
    for name in ("canny", "mask", "scribble"):
        out = condition_images(name, images)
        assert out.shape == (2, 3, 12, 20) and out.dtype == torch.uint8


def test_unknown_condition_names_the_choices():
    with pytest.raises(MarbleError, match="unknown condition 'depth'; choose one of: canny, mask, scribble"):
        condition_image("depth", rgb(np.zeros((8, 8))))


def test_a_condition_needs_a_uint8_rgb_image():
    with pytest.raises(MarbleError, match="needs a \\(3, H, W\\) uint8 image"):
        condition_image("canny", torch.zeros(3, 8, 8))
    with pytest.raises(MarbleError, match="needs a \\(3, H, W\\) uint8 image"):
        condition_image("canny", torch.zeros(1, 8, 8, dtype=torch.uint8))
