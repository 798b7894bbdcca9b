"""The spatial conditions a ControlNet learns from, computed from an image itself.

Every condition is a white-on-black map, (3, H, W) uint8, the same size as its image: ControlNet
conditioning images are RGB (diffusers' default of 3 channels), so a user can also draw one.

- canny:    Canny (1986) edges of the luminance, 1 px wide.
- mask:     the object's silhouette. Marble's loader composites RGBA images on white, so the mask
            is the non-white pixels with enclosed holes filled (white eyes inside a face are the
            object too); it is the same function for training data and for a user's image.
- scribble: the outline a person would draw: coarse edges (larger blur, so small details drop
            out), closed, thinned to 1 px (Zhang & Suen 1984), then widened to 3 px strokes.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from marble.control.edges import canny, luminance, thin
from marble.errors import MarbleError

CONDITIONS = ("canny", "mask", "scribble")
CANNY_SIGMA, CANNY_LOW, CANNY_HIGH = 1.0, 0.1, 0.2  # thresholds: the height of a sharp step (0..1)
SCRIBBLE_SIGMA = 2.0
WHITE_TOLERANCE = 10  # channel values above 255 - this count as white background
_CROSS = ndimage.generate_binary_structure(2, 1)


def check_condition(name: str) -> None:
    if name not in CONDITIONS:
        raise MarbleError(f"unknown condition {name!r}; choose one of: {', '.join(CONDITIONS)}")


def canny_map(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 → (H, W) bool edges."""
    return canny(luminance(rgb), CANNY_SIGMA, CANNY_LOW, CANNY_HIGH)


def mask_map(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 → (H, W) bool silhouette: non-white pixels, holes filled."""
    return ndimage.binary_fill_holes((rgb < 255 - WHITE_TOLERANCE).any(axis=0))


def scribble_map(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 → (H, W) bool strokes about 3 px wide along the coarse outlines."""
    edges = canny(luminance(rgb), SCRIBBLE_SIGMA, CANNY_LOW, CANNY_HIGH)
    closed = ndimage.binary_closing(np.pad(edges, 1), structure=np.ones((3, 3)))[1:-1, 1:-1]
    return ndimage.binary_dilation(thin(closed), structure=_CROSS)


_MAPS = {"canny": canny_map, "mask": mask_map, "scribble": scribble_map}


def condition_image(name: str, image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) uint8 image → (3, H, W) uint8 condition: 255 where the map is on, 0 elsewhere."""
    check_condition(name)
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
        raise MarbleError(f"a condition needs a (3, H, W) uint8 image, got {tuple(image.shape)} {image.dtype}")
    on = torch.from_numpy(_MAPS[name](image.numpy()))
    return (on.to(torch.uint8) * 255).expand(3, -1, -1).contiguous()


def condition_images(name: str, images: torch.Tensor, progress: bool = False) -> torch.Tensor:
    """(N, 3, H, W) uint8 → (N, 3, H, W) uint8 conditions, one per image."""
    check_condition(name)
    return torch.stack([condition_image(name, image)
                        for image in tqdm(images, desc=f"{name} conditions", disable=not progress, unit="img")])


def condition_to_model(conditions: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float in [0, 1], the range diffusers' ControlNet pipelines feed."""
    return conditions.float() / 255.0


def edges_of(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 → (N, H, W) bool Canny edges: what faithfulness is measured on."""
    return torch.stack([torch.from_numpy(canny_map(image.numpy())) for image in images])
