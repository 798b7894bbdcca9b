"""A small CLIP (Radford et al. 2021) built from scratch with transformers, and its contrastive loss."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig, PreTrainedTokenizerFast

from marble.config import TextConfig
from marble.errors import MarbleError


def build_clip(cfg: TextConfig, image_size: int, tokenizer: PreTrainedTokenizerFast) -> CLIPModel:
    """A randomly initialised CLIPModel whose text tower matches `tokenizer` (vocab, length, special ids)."""
    _check_shapes(cfg, image_size, tokenizer)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.width,
        intermediate_size=4 * cfg.width,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        max_position_embeddings=cfg.max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attention_dropout=0.0,
        projection_dim=cfg.projection_dim,
    )
    vision_config = CLIPVisionConfig(
        image_size=image_size,
        patch_size=cfg.patch_size,
        hidden_size=cfg.vision_width,
        intermediate_size=4 * cfg.vision_width,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        num_channels=3,
        attention_dropout=0.0,
        projection_dim=cfg.projection_dim,
    )
    config = CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=cfg.projection_dim)
    return CLIPModel(config)


def _check_shapes(cfg: TextConfig, image_size: int, tokenizer: PreTrainedTokenizerFast) -> None:
    if cfg.width % cfg.heads or cfg.vision_width % cfg.vision_heads:
        raise MarbleError(
            f"text width {cfg.width} / vision width {cfg.vision_width} must divide by "
            f"their head counts {cfg.heads} / {cfg.vision_heads}"
        )
    if image_size % cfg.patch_size:
        raise MarbleError(f"image size {image_size} must be a multiple of the CLIP patch size {cfg.patch_size}")
    if tokenizer.model_max_length != cfg.max_length:
        raise MarbleError(
            f"tokenizer pads to {tokenizer.model_max_length} tokens but the text config says {cfg.max_length}: "
            "retrain the tokenizer with the config's max_length"
        )


def images_to_clip_pixels(images_uint8: Tensor) -> Tensor:
    """(N, 3, S, S) uint8 in [0, 255] -> float32 in [-1, 1]; trained from scratch, so no ImageNet statistics."""
    if images_uint8.dtype != torch.uint8:
        raise MarbleError(f"expected uint8 images, got {images_uint8.dtype}")
    return images_uint8.float() / 127.5 - 1.0


class ClipEmbeddings(nn.Module):
    """CLIPModel's forward reduced to what the contrastive loss needs, as one call (DDP syncs a forward)."""

    def __init__(self, clip: CLIPModel):
        super().__init__()
        self.clip = clip

    def forward(self, pixel_values: Tensor, input_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """→ unit image embeddings (N, P), unit text embeddings (N, P), exp(logit_scale) ()."""
        outputs = self.clip(input_ids=input_ids, pixel_values=pixel_values)
        return outputs.image_embeds, outputs.text_embeds, self.clip.logit_scale.exp()


def info_nce(image_embeds: Tensor, text_embeds: Tensor, scale: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Symmetric InfoNCE over the batch's image-text cosine logits (CLIP, Radford et al. 2021, Fig. 3)."""
    # The same float operations as transformers' CLIPModel.forward.
    logits_per_image = (torch.matmul(text_embeds, image_embeds.t()) * scale).t()  # (N images, N texts)
    targets = torch.arange(len(logits_per_image), device=logits_per_image.device)
    image_to_text = F.cross_entropy(logits_per_image, targets)
    text_to_image = F.cross_entropy(logits_per_image.t(), targets)
    loss = (image_to_text + text_to_image) / 2
    accuracy = (logits_per_image.argmax(dim=1) == targets).float().mean()
    return loss, {"loss": loss.item(), "accuracy": accuracy.item()}


@torch.no_grad()
def per_image_rows(clip: CLIPModel, chunks: Iterable[tuple[list[int], Tensor]], count: int, embed) -> Tensor:
    """Row i is `embed(uint8 images)` of the image with id i of `chunks` ((ids, uint8 images) pairs covering
    ids 0 .. count-1, in any order), with the CLIP in eval mode."""
    clip.eval()
    rows = None
    for ids, images_uint8 in chunks:
        values = embed(images_uint8).float()
        if rows is None:
            rows = values.new_full((count, *values.shape[1:]), float("nan"))
        rows[torch.as_tensor(ids)] = values
    clip.train()
    missing = count if rows is None else int(rows.isnan().flatten(1).any(dim=1).sum())
    if missing:
        raise MarbleError(f"the image tower's rows are missing {missing} of {count} images")
    return rows


def image_bank(clip: CLIPModel, chunks: Iterable[tuple[list[int], Tensor]], count: int) -> Tensor:
    """(count, P) unit embeddings by the image tower, as CLIPModel.forward computes them."""

    def embed(images_uint8: Tensor) -> Tensor:
        pooled = clip.vision_model(pixel_values=images_to_clip_pixels(images_uint8)).pooler_output
        return F.normalize(clip.visual_projection(pooled), dim=-1)

    return per_image_rows(clip, chunks, count, embed)


def patch_features(clip: CLIPModel, chunks: Iterable[tuple[list[int], Tensor]], count: int) -> Tensor:
    """(count, patches, width) unit features of the image tower's last layer, one per image patch (no class token)."""

    def embed(images_uint8: Tensor) -> Tensor:
        hidden = clip.vision_model(pixel_values=images_to_clip_pixels(images_uint8)).last_hidden_state
        return F.normalize(hidden[:, 1:], dim=-1)

    return per_image_rows(clip, chunks, count, embed)


class LockedImageText(nn.Module):
    """The text tower trained against a fixed bank of image embeddings (locked-image tuning, LiT).

    Freezes the image tower: only the text tower, its projection and the temperature train.
    """

    def __init__(self, clip: CLIPModel, bank: Tensor):
        super().__init__()
        self.clip = clip
        clip.vision_model.requires_grad_(False)
        clip.visual_projection.requires_grad_(False)
        self.register_buffer("bank", bank, persistent=False)

    def forward(self, input_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """→ unit text embeddings (B, P), the bank (N, P), exp(logit_scale) ()."""
        pooled = self.clip.text_model(input_ids=input_ids).pooler_output
        text = F.normalize(self.clip.text_projection(pooled), dim=-1)
        return text, self.bank, self.clip.logit_scale.exp()


def bank_cross_entropy(text_embeds: Tensor, bank: Tensor, scale: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Each caption's cross-entropy of its own image among all N in the bank; top-1 accuracy over all N."""
    logits = text_embeds.float() @ bank.float().t() * scale
    loss = F.cross_entropy(logits, targets)
    accuracy = (logits.argmax(dim=1) == targets).float().mean()
    return loss, {"loss": loss.item(), "accuracy": accuracy.item()}


def contrastive_loss(model: CLIPModel, pixel_values: Tensor, input_ids: Tensor) -> tuple[Tensor, dict[str, float]]:
    """InfoNCE of one batch through `model`.

    No attention mask: the text tower is causal and pools at the first eos, so padding after it
    cannot change the result (the same call StableDiffusionPipeline makes).
    """
    return info_nce(*ClipEmbeddings(model)(pixel_values, input_ids))


__all__ = ["build_clip", "images_to_clip_pixels", "ClipEmbeddings", "info_nce", "image_bank", "patch_features",
           "LockedImageText", "bank_cross_entropy", "contrastive_loss"]
