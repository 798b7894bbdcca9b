"""One interface for every text encoder: prompts -> (context, mask, pooled), saved as a folder.

A saved encoder folder holds `encoder.json` {"kind", "max_length", "width"}; `load_text_encoder`
dispatches on "kind". The CLIP folder's `tokenizer/` and `text_encoder/` subfolders are the
same as a diffusers StableDiffusionPipeline folder's, so export can copy them as they are.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from transformers import CLIPModel, CLIPTextModel, PreTrainedTokenizerFast

from marble.errors import MarbleError
from marble.text.tokenizer import tokenize_prompts

ENCODER_FILE = "encoder.json"


@dataclass
class TextEncoding:
    context: Tensor  # (B, L, D) float32: what the U-Net cross-attends to
    mask: Tensor  # (B, L) bool: True for real tokens (start .. end), False for padding
    pooled: Tensor  # (B, D) float32: one vector per prompt


@runtime_checkable
class TextEncoder(Protocol):
    kind: str
    max_length: int
    width: int

    def encode(self, prompts: Sequence[str]) -> TextEncoding: ...

    def save(self, directory: Path) -> None: ...


class ClipTextEncoder(torch.nn.Module):
    """The frozen text tower of Marble's CLIP; encodes exactly as StableDiffusionPipeline does."""

    kind = "clip"

    def __init__(self, text_model: CLIPTextModel, tokenizer: PreTrainedTokenizerFast):
        super().__init__()
        self.text_model = text_model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = tokenizer.model_max_length
        self.width = text_model.config.hidden_size

    def train(self, mode: bool = True) -> ClipTextEncoder:
        # Frozen: a parent module's .train() must not switch the encoder out of eval mode.
        return super().train(False)

    @classmethod
    def from_clip(cls, clip: CLIPModel, tokenizer: PreTrainedTokenizerFast) -> ClipTextEncoder:
        text_model = CLIPTextModel(copy.deepcopy(clip.config.text_config))
        text_model.load_state_dict(clip.text_model.state_dict())
        return cls(text_model, tokenizer)

    @classmethod
    def load(cls, directory: Path) -> ClipTextEncoder:
        directory = Path(directory)
        for part in ("tokenizer", "text_encoder"):
            if not (directory / part).is_dir():
                raise MarbleError(f"{directory} is not a saved CLIP text encoder: missing {part}/")
        tokenizer = PreTrainedTokenizerFast.from_pretrained(directory / "tokenizer", local_files_only=True)
        text_model = CLIPTextModel.from_pretrained(directory / "text_encoder", local_files_only=True)
        return cls(text_model, tokenizer)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory / "tokenizer")
        self.text_model.save_pretrained(directory / "text_encoder")  # safetensors
        write_encoder_file(directory, self)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> TextEncoding:
        return self(prompts)

    def forward(self, prompts: Sequence[str]) -> TextEncoding:
        """`encode` with gradients, for fine-tuning adapters on the text tower (LoRA)."""
        check_prompts(prompts)
        tokens = tokenize_prompts(self.tokenizer, prompts)
        device = self.text_model.device
        # No attention mask, as in StableDiffusionPipeline: the model is causal, so padding
        # after the end token cannot change the real tokens' states.
        outputs = self.text_model(tokens.input_ids.to(device))
        return TextEncoding(
            context=outputs.last_hidden_state.float(),  # (B, L, D), after the final layer norm
            mask=tokens.attention_mask.bool().to(device),  # (B, L)
            pooled=outputs.pooler_output.float(),  # (B, D), the first end token's state
        )


def check_prompts(prompts: Sequence[str]) -> None:
    if isinstance(prompts, str):
        raise MarbleError("encode takes a list of prompts, not a single string: wrap it as [prompt]")
    if len(prompts) == 0:
        raise MarbleError("encode needs at least one prompt (use \"\" for the unconditional prompt)")
    not_text = [type(prompt).__name__ for prompt in prompts if not isinstance(prompt, str)]
    if not_text:
        raise MarbleError(f"every prompt must be a string, got {', '.join(sorted(set(not_text)))}")


def write_encoder_file(directory: Path, encoder: TextEncoder) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    description = {"kind": encoder.kind, "max_length": encoder.max_length, "width": encoder.width}
    (directory / ENCODER_FILE).write_text(json.dumps(description, indent=2) + "\n")


def read_encoder_file(directory: Path) -> dict:
    path = Path(directory) / ENCODER_FILE
    if not path.is_file():
        raise MarbleError(f"{directory} is not a saved text encoder: {ENCODER_FILE} is missing")
    try:
        description = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise MarbleError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(description, dict) or "kind" not in description:
        raise MarbleError(f"{path} must be a JSON object with a \"kind\"")
    return description


def load_text_encoder(directory: Path) -> TextEncoder:
    """Load whichever encoder `directory/encoder.json` names."""
    description = read_encoder_file(directory)
    kind = description["kind"]
    if kind == "clip":
        return ClipTextEncoder.load(directory)
    if kind == "minilm":
        # Imported here because minilm.py builds on this module's TextEncoding.
        from marble.text.minilm import MiniLMTextEncoder

        return MiniLMTextEncoder.load(directory)
    raise MarbleError(f"{directory}: unknown text encoder kind {kind!r}; known kinds: clip, minilm")


__all__ = [
    "TextEncoding", "TextEncoder", "ClipTextEncoder", "load_text_encoder",
    "check_prompts", "write_encoder_file", "read_encoder_file",
]
