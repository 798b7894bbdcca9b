"""A trained ControlNet's folder, and reading the images a user hands in (sources and control maps).

    OUT/controlnet.json     ControlNetConfig: which condition, widths, training settings
    OUT/model/              diffusers ControlNetModel (config.json + safetensors, EMA weights)
    OUT/summary.json        base run, time, losses
    OUT/checkpoints/        resumable training state; OUT/train_log.jsonl, OUT/tensorboard/
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import ControlNetModel
from PIL import Image, UnidentifiedImageError

from marble.config import load_json
from marble.control.config import ControlNetConfig
from marble.data.folder import flatten_on_white, pad_to_square
from marble.errors import MarbleError

RUN_CONTROLNETS = "controlnet"  # RUN/controlnet/<condition>/: where `train controlnet` writes by default


@dataclass(frozen=True)
class ControlNetFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "controlnet.json"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"


def default_controlnet_dir(run_dir: Path, condition: str) -> Path:
    return Path(run_dir) / RUN_CONTROLNETS / condition


def load_controlnet(directory: Path) -> tuple[ControlNetModel, ControlNetConfig]:
    folder = ControlNetFolder(Path(directory))
    if not (folder.config.is_file() and folder.model.is_dir()):
        raise MarbleError(f"no trained ControlNet at {directory} (needs controlnet.json and model/); "
                          "train one with `marble train controlnet`")
    return ControlNetModel.from_pretrained(folder.model).eval(), load_json(ControlNetConfig, folder.config)


def find_controlnet(run_dir: Path) -> Path:
    """The one trained ControlNet inside a run folder, for `generate --control` without --controlnet."""
    found = sorted(p.parent for p in (Path(run_dir) / RUN_CONTROLNETS).glob("*/controlnet.json")
                   if (p.parent / "model").is_dir())
    if len(found) != 1:
        which = f"found {', '.join(str(p) for p in found)}" if found else f"none in {Path(run_dir) / RUN_CONTROLNETS}"
        raise MarbleError(f"--control needs a ControlNet: pass --controlnet DIR ({which})")
    return found[0]


def read_rgb(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 of an image file, transparency composited on white as the training data is."""
    try:
        with Image.open(path) as image:
            image.load()
            return torch.from_numpy(np.array(flatten_on_white(image), dtype=np.uint8)).permute(2, 0, 1).contiguous()
    except FileNotFoundError:
        raise MarbleError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as error:
        raise MarbleError(f"cannot read image {path}: {error}") from None


def fit_control_image(image: torch.Tensor, size: int, resize: bool, name: str = "control image") -> torch.Tensor:
    """(3, H, W) uint8 at exactly size x size, resized only when asked: a silently rescaled edge map moves edges."""
    height, width = image.shape[-2:]
    if (height, width) == (size, size):
        return image
    if not resize:
        raise MarbleError(f"{name} is {width}x{height} pixels; this model needs {size}x{size} "
                          "(make it at that size, e.g. with `marble condition --size`, or pass --resize)")
    picture = Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB").resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(picture, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def fit_source_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) uint8 → (3, size, size) the way the training loader fits images: pad to square, bicubic resize."""
    if size < 8:
        raise MarbleError(f"--size must be at least 8 pixels, got {size}")
    picture = pad_to_square(Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB"))
    if picture.size != (size, size):
        picture = picture.resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(picture, dtype=np.uint8)).permute(2, 0, 1).contiguous()
