"""Adapters for the tiny run with random (not trained) weights, so their effect is visible at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from marble.finetune.adapter import AdapterRecord, save_adapter
from marble.finetune.apply import adaptable_parts
from marble.finetune.lora import TEXT_TARGETS, UNET_TARGETS, add_lora, lora_weights, weights_fingerprint
from marble.pipeline import MarblePipeline


def make_adapter(run: Path, out: Path, seed: int, text_encoder: bool = False, rank: int = 2, alpha: float = 4.0) -> Path:
    pipeline = MarblePipeline.load(run)
    parts = adaptable_parts(pipeline.unet, pipeline.text_encoder)
    if not text_encoder:
        parts.pop("text_encoder")
    targets = {"unet": UNET_TARGETS, "text_encoder": TEXT_TARGETS}
    fingerprints = {part: weights_fingerprint(module) for part, module in parts.items()}
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for part, module in parts.items():
        add_lora(module, "default", rank, alpha, targets[part])
        weights[part] = {key: torch.randn(value.shape, generator=generator) * 0.2
                         for key, value in lora_weights(module, "default").items()}
    record = AdapterRecord(rank, alpha, {part: list(targets[part]) for part in parts}, fingerprints, str(run))
    save_adapter(out, record, weights)
    return out


@pytest.fixture(scope="session")
def unet_adapter(tiny_run, tmp_path_factory) -> Path:
    return make_adapter(tiny_run, tmp_path_factory.mktemp("adapters") / "unet-only", seed=0)


@pytest.fixture(scope="session")
def text_adapter(tiny_run, tmp_path_factory) -> Path:
    return make_adapter(tiny_run, tmp_path_factory.mktemp("adapters") / "with-text", seed=1, text_encoder=True)
