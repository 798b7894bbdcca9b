"""Text encoders: BPE tokenizer, Marble's small CLIP, frozen MiniLM, one encode() interface."""

from marble.text.clip import build_clip, contrastive_loss, images_to_clip_pixels
from marble.text.encoders import ClipTextEncoder, TextEncoder, TextEncoding, load_text_encoder
from marble.text.minilm import MiniLMTextEncoder
from marble.text.tokenizer import tokenize_prompts, train_tokenizer

__all__ = [
    "train_tokenizer", "tokenize_prompts", "build_clip", "contrastive_loss", "images_to_clip_pixels",
    "TextEncoding", "TextEncoder", "ClipTextEncoder", "MiniLMTextEncoder", "load_text_encoder",
]
