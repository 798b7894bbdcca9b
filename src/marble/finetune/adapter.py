"""A saved LoRA adapter and the `PATH[:SCALE]` option that names one.

    ADAPTER/lora.safetensors   A and B matrices only: "unet.<layer>.lora_A.weight", "text_encoder.<layer>…"
    ADAPTER/lora.json          rank, alpha, target layers, and the fingerprints of the base it was trained on
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from marble.config import from_dict, to_dict
from marble.errors import MarbleError

WEIGHTS_FILE = "lora.safetensors"
RECORD_FILE = "lora.json"
PARTS = ("unet", "text_encoder")
FORMAT = "marble-lora/1"


@dataclass(frozen=True)
class AdapterRecord:
    rank: int
    alpha: float
    targets: dict[str, list[str]]  # part -> names of the adapted layers (peft target_modules)
    base_fingerprints: dict[str, str]  # part -> weights_fingerprint of the base model it was trained on
    base: str  # the base run it was trained on, for messages
    format: str = FORMAT


@dataclass
class LoraAdapter:
    path: Path
    record: AdapterRecord
    weights: dict[str, dict[str, torch.Tensor]]  # part -> peft state dict of that part


def save_adapter(directory: Path, record: AdapterRecord, weights: dict[str, dict[str, torch.Tensor]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    flat = {f"{part}.{key}": value.detach().cpu().contiguous() for part, tensors in weights.items()
            for key, value in tensors.items()}
    save_file(flat, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
    (directory / RECORD_FILE).write_text(json.dumps(to_dict(record), indent=2) + "\n")


def adapter_dir(path: Path) -> Path:
    """The adapter folder, given the folder or one of its two files."""
    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS_FILE, RECORD_FILE):
        return path.parent
    if not path.exists():
        raise MarbleError(f"no LoRA adapter at {path}: it does not exist (train one with `marble train lora`)")
    return path


def load_adapter(path: Path) -> LoraAdapter:
    directory = adapter_dir(path)
    for name in (RECORD_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise MarbleError(f"{directory} is not a LoRA adapter: {name} is missing")
    record = _read_record(directory / RECORD_FILE)
    try:
        flat = load_file(str(directory / WEIGHTS_FILE))
    except (SafetensorError, OSError) as error:
        raise MarbleError(f"{directory / WEIGHTS_FILE} is not a readable safetensors file: {error}") from None
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        part, _, layer = key.partition(".")
        if part not in record.targets or "lora_" not in layer:
            raise MarbleError(f"{directory / WEIGHTS_FILE} holds {key!r}, which is not a LoRA weight of "
                              f"{' or '.join(record.targets)}")
        weights.setdefault(part, {})[layer] = value
    if set(weights) != set(record.targets):
        raise MarbleError(f"{directory}: {RECORD_FILE} names {sorted(record.targets)} "
                          f"but the weights cover {sorted(weights)}")
    return LoraAdapter(directory, record, weights)


def _read_record(path: Path) -> AdapterRecord:
    try:
        record = from_dict(AdapterRecord, json.loads(path.read_text()))
    except (json.JSONDecodeError, ValueError, TypeError) as error:
        raise MarbleError(f"{path} is not a LoRA adapter record: {error}") from None
    if record.format != FORMAT:
        raise MarbleError(f"{path} has format {record.format!r}; this Marble reads {FORMAT!r}")
    if isinstance(record.rank, bool) or not isinstance(record.rank, int) or record.rank < 1:
        raise MarbleError(f"{path}: rank must be a positive integer, got {record.rank!r}")
    if not isinstance(record.alpha, (int, float)) or not (math.isfinite(record.alpha) and record.alpha > 0):
        raise MarbleError(f"{path}: alpha must be a positive number, got {record.alpha!r}")
    unknown = set(record.targets) - set(PARTS)
    if unknown or not record.targets or set(record.base_fingerprints) != set(record.targets):
        raise MarbleError(f"{path}: targets and base_fingerprints must name the same parts among {', '.join(PARTS)}")
    return record


def parse_lora_option(text: str) -> tuple[Path, float]:
    """"PATH" or "PATH:SCALE" -> (path, scale); scale 1 when not given. A path that exists is taken whole."""
    if ":" not in text or Path(text).exists():
        path, scale = text, 1.0
    else:
        path, _, scale_text = text.rpartition(":")
        try:
            scale = float(scale_text)
        except ValueError:
            example = f"{path or 'ADAPTER'}:0.8"
            raise MarbleError(f"--lora {text!r}: the scale after ':' must be a number, e.g. {example}") from None
    if not path:
        raise MarbleError(f"--lora {text!r}: give the adapter folder, e.g. adapters/noto:0.8")
    if not math.isfinite(scale):
        raise MarbleError(f"--lora {text!r}: the scale must be a finite number, got {scale}")
    return Path(path), scale


def read_lora_option(text: str) -> tuple[LoraAdapter, float]:
    path, scale = parse_lora_option(text)
    return load_adapter(path), scale


__all__ = ["AdapterRecord", "LoraAdapter", "save_adapter", "load_adapter", "parse_lora_option", "read_lora_option",
           "WEIGHTS_FILE", "RECORD_FILE", "PARTS"]
