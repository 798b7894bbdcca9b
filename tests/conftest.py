"""Shared fixtures: a small synthetic captioned dataset and a tiny trained run built from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (240, 210, 30)}
SHAPES = ("circle", "square", "triangle", "ring")


def draw(shape: str, colour: tuple[int, int, int], size: int, shift: int) -> Image.Image:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx, r = size / 2 + shift, size / 2 - shift, size / 3
    inside = {
        "circle": (yy - cy) ** 2 + (xx - cx) ** 2 < r**2,
        "square": (abs(yy - cy) < r * 0.8) & (abs(xx - cx) < r * 0.8),
        "triangle": (yy > cy - r) & (yy < cy + r) & (abs(xx - cx) < (yy - (cy - r)) / 2),
        "ring": abs(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r * 0.8) < r * 0.25,
    }[shape]
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[inside] = (*colour, 255)  # transparent outside: loaders composite on white
    return Image.fromarray(rgba, "RGBA")


def write_synthetic_dataset(root: Path, count: int = 32, size: int = 16) -> Path:
    """`count` RGBA shapes with captions like "red circle" (+ a Chinese caption) in imagefolder layout."""
    root.mkdir(parents=True, exist_ok=True)
    chinese = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色"}
    lines = []
    for k in range(count):
        colour = list(COLOURS)[k % 4]
        shape = SHAPES[(k // 4) % 4]
        name = f"{k:03d}.png"
        draw(shape, COLOURS[colour], size, shift=k // 16).save(root / name)
        captions = {"en": f"{colour} {shape}", "zh": f"{chinese[colour]}{shape}"}
        lines.append(json.dumps({"file_name": name, "text": f"{colour} {shape}", "captions": captions, "shape": shape},
                                ensure_ascii=False))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "shapes")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synthetic_dataset) -> Path:
    """A run trained end to end with the tiny preset (shared by the pipeline, CLI and export tests)."""
    from marble.config import preset
    from marble.training.run import train_stages

    run = tmp_path_factory.mktemp("runs") / "tiny"
    train_stages(["text", "autoencoder", "unet"], preset("tiny"), synthetic_dataset, run, progress=False,
                 report=lambda line: None)
    return run


@pytest.fixture(scope="session")
def tiny_pooled_run(tmp_path_factory, tiny_run) -> Path:
    """`tiny_run` with its U-Net given the pooled-text path (`unet.pooled_text_heads`), that path's last
    layer norm drawn at random so it really moves the output (training would start it at zero)."""
    import dataclasses
    import shutil

    import torch
    from diffusers import UNet2DConditionModel

    from marble.config import preset
    from marble.generators.unet import build_unet
    from marble.layout import RunLayout
    from marble.training.init_from import load_initial_weights

    run = shutil.copytree(tiny_run, tmp_path_factory.mktemp("runs") / "tiny-pooled")
    layout = RunLayout(run)
    plain = UNet2DConditionModel.from_pretrained(layout.unet)
    torch.manual_seed(5)
    config = dataclasses.replace(preset("tiny").unet, pooled_text_heads=2)
    pooled = build_unet(config, plain.config.in_channels, plain.config.sample_size, plain.config.cross_attention_dim)
    load_initial_weights(pooled, UNet2DConditionModel, layout.unet, new_parts=("add_embedding.",))
    with torch.no_grad():
        pooled.add_embedding.norm2.weight.normal_(0, 1.0)
        pooled.add_embedding.norm2.bias.normal_(0, 0.5)
    shutil.rmtree(layout.unet)
    pooled.save_pretrained(layout.unet)
    return run
