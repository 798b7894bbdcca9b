"""Stage 1: the text encoder: a BPE tokenizer and a small CLIP trained contrastively on the pairs."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPModel, PreTrainedTokenizerFast

from marble.config import RunConfig
from marble.data.folder import ImageCaptionSet
from marble.layout import RunLayout
from marble.text.clip import (
    ClipEmbeddings,
    LockedImageText,
    bank_cross_entropy,
    build_clip,
    image_bank,
    images_to_clip_pixels,
    info_nce,
)
from marble.text.encoders import ClipTextEncoder
from marble.text.minilm import MiniLMTextEncoder
from marble.text.tokenizer import train_tokenizer
from marble.training.artifacts import save_atomically, save_pretrained_atomically
from marble.training.captions import CaptionTable
from marble.training.data import TrainingData
from marble.training.distributed import gather_with_gradient, on_main_process
from marble.training.feed import ImageFeed
from marble.training.loop import Objective, Stage, train_stage


def tokenizer_for_run(config: RunConfig, captions: CaptionTable, stage_dir: Path) -> PreTrainedTokenizerFast:
    """Train the BPE once (main process); a resumed run, and every process, loads the saved one."""
    saved = stage_dir / "tokenizer"
    if not (saved / "tokenizer.json").exists():
        on_main_process(lambda: save_pretrained_atomically(
            train_tokenizer(captions.texts, config.text.vocab_size, config.text.max_length), saved))
    return PreTrainedTokenizerFast.from_pretrained(saved)


def clip_stage(clip: torch.nn.Module, images: ImageFeed, captions: CaptionTable, token_ids: torch.Tensor,
               name: str = "text") -> Stage:
    def loss(model, batch):
        rows = captions.pick(batch.indices, batch.random.choice(captions.counts(batch.indices)))
        pixels = images_to_clip_pixels(images.of(batch)).to(batch.device)  # (B, 3, S, S) in [-1, 1]
        image_embeds, text_embeds, scale = model(pixels, token_ids[rows].to(batch.device))
        # Negatives come from the whole global batch, as on one process: gather every process's share.
        return info_nce(gather_with_gradient(image_embeds), gather_with_gradient(text_embeds), scale)

    objective = Objective("clip", clip, loss, forward_module=ClipEmbeddings(clip))
    return Stage(name, [objective], dataset_size=images.size, batches=images.batches)


def locked_image_stage(clip: CLIPModel, images: ImageFeed, captions: CaptionTable, token_ids: torch.Tensor,
                       name: str = "text-locked-image") -> Stage:
    """The text tower alone: each batch caption's cross-entropy over every training image's embedding."""
    bank = image_bank(clip, images.every_image(256), images.size)

    def loss(model, batch):
        rows = captions.pick(batch.indices, batch.random.choice(captions.counts(batch.indices)))
        text_embeds, all_images, scale = model(token_ids[rows].to(batch.device))
        targets = torch.as_tensor(batch.indices, device=batch.device)  # each caption's own image in the bank
        return bank_cross_entropy(text_embeds, all_images, scale, targets)

    objective = Objective("clip", clip, loss, forward_module=LockedImageText(clip, bank))
    return Stage(name, [objective], dataset_size=images.size)


def train_clip(config: RunConfig, pairs: ImageCaptionSet, stage_dir: Path, progress: bool = True,
               name: str = "text", images: ImageFeed | None = None) -> tuple[CLIPModel, PreTrainedTokenizerFast, dict]:
    """BPE tokenizer + CLIP trained contrastively on `pairs`, resumable from `stage_dir`; (clip, tokenizer, summary).

    `images` streams the pixels of a shard folder; then `pairs` needs captions only.
    """
    images = images or ImageFeed(len(pairs), pairs.images)
    captions = CaptionTable.from_dataset(pairs)
    tokenizer = tokenizer_for_run(config, captions, stage_dir)
    token_ids = tokenizer(captions.texts, padding="max_length", truncation=True,
                          max_length=config.text.max_length, return_tensors="pt").input_ids
    torch.manual_seed(config.text.train.seed)
    clip = build_clip(config.text, config.data.image_size, tokenizer)
    summary = train_stage(clip_stage(clip, images, captions, token_ids, name), config.text.train, stage_dir, progress)
    if config.text.locked_image.steps > 0:
        summary["locked_image"] = train_stage(locked_image_stage(clip, images, captions, token_ids),
                                              config.text.locked_image, stage_dir / "locked-image", progress)
    summary.update(kind="clip", vocab_size=len(tokenizer), captions=len(captions.texts),
                   parameters=sum(p.numel() for p in clip.parameters()))
    return clip, tokenizer, summary


def train_text_stage(config: RunConfig, data: TrainingData, layout: RunLayout, progress: bool = True) -> dict:
    """Write RUN/text/encoder (and RUN/text/clip when CLIP is trained); return the stage summary."""
    if config.text.kind == "minilm":
        on_main_process(lambda: save_atomically(MiniLMTextEncoder(max_length=config.text.max_length).save,
                                                layout.text_encoder))
        return {"stage": "text", "kind": "minilm", "steps": 0, "seconds": 0.0}
    clip, tokenizer, summary = train_clip(config, data.train, layout.stage("text"), progress,
                                          images=data.feed(config.text.train))

    def write() -> None:
        save_pretrained_atomically(clip, layout.clip, tokenizer)
        save_atomically(ClipTextEncoder.from_clip(clip, tokenizer).save, layout.text_encoder)

    on_main_process(write)
    return summary
