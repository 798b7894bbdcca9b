"""Writing images: PNG files, grids, preview strips and GIFs from uint8 (N, 3, H, W) tensors."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image, PngImagePlugin


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) uint8 → PIL RGB."""
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy(), "RGB")


def grid(images: torch.Tensor, columns: int | None = None, padding: int = 2) -> torch.Tensor:
    """(N, 3, H, W) → one (3, H', W') image, white between tiles."""
    n, _, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = torch.full((3, rows * (h + padding) + padding, columns * (w + padding) + padding), 255, dtype=torch.uint8)
    for k in range(n):
        top, left = padding + (k // columns) * (h + padding), padding + (k % columns) * (w + padding)
        canvas[:, top:top + h, left:left + w] = images[k]
    return canvas


def save_png(image: torch.Tensor, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write one image; `metadata` goes into PNG text chunks (prompt, seed... to reproduce it)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(key, value)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    to_pil(image).save(path, pnginfo=info)
    return Path(path)


def save_gif(frames: list[torch.Tensor], path: Path, frame_ms: int = 150) -> Path:
    """Frames (3, H, W) uint8 → an endlessly looping GIF that holds the last frame longer."""
    pictures = [to_pil(f) for f in frames]
    durations = [frame_ms] * (len(pictures) - 1) + [frame_ms * 8]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return Path(path)


def upscale(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour enlargement so small emoji are visible in grids."""
    return images.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1) if factor > 1 else images
