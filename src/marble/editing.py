"""The edit part of a generation request: source image, strength and mask, read from files or bytes and checked.

img2img is SDEdit (Meng et al. 2021); inpainting keeps the unmasked latents (marble.diffusion.editing).
Every message starts with the request field it is about: init_image, strength, mask or paste_unmasked.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from marble.data.folder import MAX_IMAGE_PIXELS, UnusableImage, decode_image, flatten_on_white, pad_to_square
from marble.errors import MarbleError

IMG2IMG_STRENGTH = 0.8  # diffusers' img2img default: most of the layout survives, details are redrawn
INPAINT_STRENGTH = 1.0  # the masked region starts from pure noise (diffusers' inpainting default)
MAX_FILE_BYTES = 20_000_000  # the dataset loader's limit
FILE_FORMATS = ("PNG", "JPEG")
MASK_THRESHOLD = 128  # grey level from which a mask pixel means "repaint"


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value
class ImageEdit:
    image: torch.Tensor  # (3, H, W) uint8, the source
    strength: float = IMG2IMG_STRENGTH  # 0: the source back; 1: the source's noise level is pure noise
    mask: torch.Tensor | None = None  # (H, W) bool, True = repaint; None: img2img over the whole image
    paste_unmasked: bool = False  # copy the source's unmasked pixels into the result (exact, may show a seam)

    def validate(self) -> None:
        """Raise MarbleError naming the first bad field."""
        if not (isinstance(self.image, torch.Tensor) and self.image.dtype == torch.uint8 and self.image.dim() == 3
                and self.image.shape[0] == 3):
            raise MarbleError("init_image: must be a (3, H, W) uint8 image")
        strength = self.strength
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
            raise MarbleError(f"strength: must be a finite number, got {strength!r}")
        if not 0 <= strength <= 1:
            raise MarbleError(f"strength: must be between 0 and 1, got {strength}")
        if self.mask is not None:
            self._validate_mask()
        elif self.paste_unmasked:
            raise MarbleError("paste_unmasked: needs a mask (without one, every pixel is repainted)")

    def _validate_mask(self) -> None:
        if not (isinstance(self.mask, torch.Tensor) and self.mask.dtype == torch.bool):
            raise MarbleError("mask: must be an (H, W) bool tensor")
        if self.mask.shape != self.image.shape[1:]:
            raise MarbleError(f"mask: is {_size(self.mask.shape)} but init_image is {_size(self.image.shape[1:])}; "
                              "they must be the same size")
        if not self.mask.any():
            raise MarbleError("mask: has no white pixel, so nothing would be repainted (white = repaint, black = keep)")

    def check_size(self, image_size: int) -> None:
        if tuple(self.image.shape[1:]) != (image_size, image_size):
            raise MarbleError(f"init_image: the model draws {image_size}×{image_size} images, this one is "
                              f"{_size(self.image.shape[1:])}; resize it (marble generate --resize does)")

    def resized(self, image_size: int) -> ImageEdit:
        """Padded to a square (white; the mask black, kept) and scaled to `image_size`, as the dataset loader does."""
        picture = pad_to_square(Image.fromarray(self.image.permute(1, 2, 0).numpy(), "RGB"))
        image = _rgb_tensor(picture.resize((image_size, image_size), Image.Resampling.BICUBIC))
        if self.mask is None:
            return replace(self, image=image)
        mask = pad_to_square(Image.fromarray(self.mask.numpy().astype(np.uint8) * 255, "L"), fill=0)
        mask = mask.resize((image_size, image_size), Image.Resampling.NEAREST)
        return replace(self, image=image, mask=_bool_mask(mask))

    def composite(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) uint8 results with the source's unmasked pixels pasted in, if asked."""
        if not self.paste_unmasked:
            return images
        return torch.where(self.mask, images, self.image)

    def settings(self) -> dict:
        """JSON-safe summary for PNG metadata and job status; the pixels themselves are not repeated."""
        return {"strength": self.strength, "mask": self.mask is not None, "paste_unmasked": self.paste_unmasked,
                "size": list(self.image.shape[1:])}


def make_edit(image: Path | bytes | None, strength: float | None = None, mask: Path | bytes | None = None,
              paste_unmasked: bool = False, formats: tuple[str, ...] = FILE_FORMATS,
              max_pixels: int = MAX_IMAGE_PIXELS) -> ImageEdit | None:
    """The request's edit from image files (CLI) or bytes (server), or None for plain text-to-image."""
    if image is None:
        options = {"mask": mask, "strength": strength, "paste_unmasked": paste_unmasked or None}
        given = [name for name, value in options.items() if value is not None]  # strength 0 counts as given
        if given:
            raise MarbleError(f"{given[0]}: needs init_image, the source image to edit")
        return None
    source = _rgb_tensor(flatten_on_white(read_image(image, "init_image", formats, max_pixels)))
    repaint = None if mask is None else _bool_mask(_on_black(read_image(mask, "mask", formats, max_pixels)))
    default = IMG2IMG_STRENGTH if repaint is None else INPAINT_STRENGTH
    edit = ImageEdit(source, default if strength is None else strength, repaint, paste_unmasked)
    edit.validate()
    return edit


def read_image(source: Path | bytes, field: str, formats: tuple[str, ...] = FILE_FORMATS,
               max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode a file or bytes in one of `formats`, refusing decompression bombs; errors name `field`."""
    if isinstance(source, bytes):
        return _decoded(io.BytesIO(source), field, formats, max_pixels)
    path = Path(source)
    if not path.is_file():
        raise MarbleError(f"{field}: no such file: {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise MarbleError(f"{field}: {path} is over {MAX_FILE_BYTES // 1_000_000} MB")
    return _decoded(path, f"{field}: {path}", formats, max_pixels)


def _decoded(source, where: str, formats: tuple[str, ...], max_pixels: int) -> Image.Image:
    try:
        return decode_image(source, formats, max_pixels)
    except UnusableImage as unusable:
        hint = f" ({' or '.join(formats)} expected)" if unusable.reason == "not an image" else ""
        raise MarbleError(f"{where}: {unusable.reason}{hint}") from None


def decode_base64(text: str, field: str) -> bytes:
    """Bytes of a base64 string or a `data:...;base64,` URL (what a page's canvas.toDataURL gives)."""
    payload = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise MarbleError(f"{field}: not valid base64") from None


def _on_black(picture: Image.Image) -> Image.Image:
    """Greyscale with transparency as black (kept): strokes painted on a transparent layer are the mask."""
    rgba = picture.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("L")


def _rgb_tensor(picture: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(picture.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _bool_mask(picture: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(picture.convert("L"), dtype=np.uint8) >= MASK_THRESHOLD)


def _size(shape) -> str:
    height, width = shape
    return f"{width}×{height}"
