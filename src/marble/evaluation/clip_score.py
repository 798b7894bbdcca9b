"""CLIPScore (Hessel et al. 2021): how well each image matches its prompt under a CLIP model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import CLIPModel, PreTrainedTokenizerFast

from marble.errors import MarbleError
from marble.evaluation.extractors import load_clip, resize_for
from marble.text.clip import images_to_clip_pixels
from marble.text.tokenizer import tokenize_prompts

CLIP_SCORE_WEIGHT = 100.0  # w in CLIP-S = w · max(cos, 0); 100 as torchmetrics (Hessel et al. use 2.5)


@torch.no_grad()
def clip_score(
    clip: CLIPModel, tokenizer: PreTrainedTokenizerFast, images_uint8: Tensor, prompts: Sequence[str],
    batch_size: int = 64,
) -> Tensor:
    """Per-pair CLIP-S = 100 · max(cos(image embed, text embed), 0) (Hessel et al. 2021, eq. 1); (N,) float64."""
    if len(images_uint8) != len(prompts):
        raise MarbleError(
            f"clip_score needs one prompt per image, got {len(images_uint8)} images and {len(prompts)} prompts"
        )
    if len(prompts) == 0:
        raise MarbleError("clip_score needs at least one image-prompt pair")
    was_training = clip.training
    clip.eval()  # scoring mid-training must not see dropout; the caller's mode comes back after
    try:
        scores = [
            _score_batch(clip, tokenizer, images_uint8[start:start + batch_size], prompts[start:start + batch_size])
            for start in range(0, len(prompts), batch_size)
        ]
    finally:
        clip.train(was_training)
    return torch.cat(scores)


def _score_batch(clip: CLIPModel, tokenizer: PreTrainedTokenizerFast, images: Tensor, prompts: Sequence[str]) -> Tensor:
    pixels = images_to_clip_pixels(resize_for(images, clip.config.vision_config.image_size))  # (B, 3, S, S)
    input_ids = tokenize_prompts(tokenizer, prompts).input_ids  # (B, L)
    # No attention mask, as in training: the causal text tower pools at the first end token.
    image_embeds = clip.get_image_features(pixel_values=pixels).pooler_output  # (B, P)
    text_embeds = clip.get_text_features(input_ids=input_ids).pooler_output  # (B, P)
    cosine = F.cosine_similarity(image_embeds.double(), text_embeds.double(), dim=-1)  # (B,)
    return CLIP_SCORE_WEIGHT * cosine.clamp(min=0)


def load_clip_with_tokenizer(clip_dir: str | Path) -> tuple[CLIPModel, PreTrainedTokenizerFast]:
    """The CLIP and its BPE tokenizer as training saves them together in RUN/text/clip."""
    model = load_clip(clip_dir)
    if not (Path(clip_dir) / "tokenizer.json").is_file():
        raise MarbleError(f"no tokenizer saved beside the CLIP in {clip_dir} (expected tokenizer.json)")
    return model, PreTrainedTokenizerFast.from_pretrained(clip_dir, local_files_only=True)


__all__ = ["clip_score", "load_clip_with_tokenizer", "CLIP_SCORE_WEIGHT"]
