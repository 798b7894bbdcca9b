"""Byte-level BPE tokenizer trained on the captions, wrapped as a transformers tokenizer.

Byte-level pre-tokenization (as in GPT-2 and CLIP) means every Unicode string encodes, in any
language, with no unknown token: unseen characters fall back to their UTF-8 bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BatchEncoding, PreTrainedTokenizerFast

from marble.errors import MarbleError

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
# Order fixes the ids: bos 0, eos 1, pad 2. CLIPTextModel has a legacy pooling branch for
# eos_token_id == 2, so eos must not be 2.
SPECIAL_TOKENS = (START_TOKEN, END_TOKEN, PAD_TOKEN)
BYTE_ALPHABET_SIZE = 256


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (Sennrich et al. 2016) on `texts`; prompts become bos ... eos, padded right."""
    minimum = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise MarbleError(f"vocab_size must be at least {minimum} (all 256 bytes + 3 special tokens), got {vocab_size}")
    if max_length < 2:
        raise MarbleError(f"max_length must leave room for the start and end tokens (>= 2), got {max_length}")
    tokenizer = _untrained_byte_level_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{START_TOKEN} $A {END_TOKEN}",
        special_tokens=[(token, tokenizer.token_to_id(token)) for token in (START_TOKEN, END_TOKEN)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=START_TOKEN,
        eos_token=END_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=max_length,
        padding_side="right",
        truncation_side="right",
    )


def _untrained_byte_level_bpe() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    # NFKC folds full-width and compatibility forms common in CJK text; Strip makes
    # "apple " and "apple" the same prompt.
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip()])
    # A prefix space gives a word the same tokens at the start of a caption as in its middle.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def tokenize_prompts(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str]) -> BatchEncoding:
    """Token ids exactly as diffusers' StableDiffusionPipeline.encode_prompt makes them."""
    return tokenizer(
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )


__all__ = ["train_tokenizer", "tokenize_prompts", "START_TOKEN", "END_TOKEN", "PAD_TOKEN"]
