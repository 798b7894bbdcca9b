"""Representation alignment for the U-Net stage (REPA: Yu et al. 2024, "Representation Alignment for
Generation: Training Diffusion Transformers Is Easier Than You Think").

An early U-Net block is also trained, through a small MLP that is thrown away afterwards, to predict
the frozen CLIP image tower's patch features of the clean image from the noisy latent. Why: much of
a diffusion model's training goes into learning what an image shows; the run's own CLIP image tower
(trained in the text stage) already knows, and this hands it over. The sampled U-Net is unchanged in
architecture and cost.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import CLIPModel

from marble.errors import MarbleError
from marble.layout import RunLayout
from marble.text.clip import patch_features

PROJECTOR_WIDTH = 512  # REPA's projector is a 3-layer MLP; narrower here, as the U-Net is


def wants_alignment(weight: float) -> bool:
    """Whether `unet.align_weight` turns alignment on; a negative or NaN weight is an error, not "off"."""
    if not weight >= 0:
        raise MarbleError(f"unet.align_weight must be 0 (off) or positive, got {weight}")
    return weight > 0


def aligned_block(unet: nn.Module, index: int) -> nn.Module:
    """The last layer of down block `index`: its attention when it has one, else its last ResNet."""
    blocks = unet.down_blocks
    if not 0 <= index < len(blocks):
        raise MarbleError(f"unet.align_block must be a down block index, 0 to {len(blocks) - 1}; got {index}")
    block = blocks[index]
    return block.attentions[-1] if getattr(block, "attentions", None) else block.resnets[-1]


class AlignedUNet(nn.Module):
    """The U-Net plus the projector from one of its blocks' features to the image tower's patch features.

    One forward returns the noise prediction and the projected features, so DDP sees a single call.
    """

    def __init__(self, unet: nn.Module, block_index: int, target_width: int):
        super().__init__()
        self.unet = unet
        aligned_block(unet, block_index)  # a bad index fails here, not at the first step
        self.block_index = block_index
        width = unet.config.block_out_channels[block_index]
        self.projector = nn.Sequential(nn.Linear(width, PROJECTOR_WIDTH), nn.SiLU(),
                                       nn.Linear(PROJECTOR_WIDTH, PROJECTOR_WIDTH), nn.SiLU(),
                                       nn.Linear(PROJECTOR_WIDTH, target_width))

    def forward(self, x_t: Tensor, t: Tensor, encoder_hidden_states: Tensor, patches: int) -> tuple[Tensor, Tensor]:
        """→ the U-Net's output (B, C, h, w), projected features on the image tower's patch grid (B, patches, D)."""
        # A hook for this call only: the bare U-Net (sampling, saving, copying) carries no trace of it.
        captured = []
        hook = aligned_block(self.unet, self.block_index).register_forward_hook(
            lambda module, args, output: captured.append(output[0] if isinstance(output, tuple) else output))
        try:
            prediction = self.unet(x_t, t, encoder_hidden_states=encoder_hidden_states).sample
        finally:
            hook.remove()
        side = math.isqrt(patches)
        # The block's grid and the tower's patch grid need not match: average onto the coarser tower grid.
        grid = F.adaptive_avg_pool2d(captured[0], side)  # (B, width, side, side)
        return prediction, self.projector(grid.flatten(2).transpose(1, 2))


def alignment_loss(projected: Tensor, targets: Tensor) -> Tensor:
    """REPA's objective: minus the mean cosine similarity of each projected patch feature and its target."""
    return -F.cosine_similarity(projected.float(), targets.float(), dim=-1).mean()


def alignment_targets(layout: RunLayout, chunks, count: int) -> Tensor:
    """(count, patches, width) bf16: the run's CLIP image tower's patch features of every training image."""
    if not layout.clip.is_dir():
        raise MarbleError(
            f"unet.align_weight needs the run's own CLIP image tower ({layout.clip}), which `marble train text` "
            "writes; this run has none (a MiniLM text encoder, or a text stage copied from a model); "
            "set unet.align_weight=0"
        )
    features = patch_features(CLIPModel.from_pretrained(layout.clip), chunks, count)
    return features.to(torch.bfloat16)  # halves the cache; cosine targets lose nothing that matters


__all__ = ["AlignedUNet", "aligned_block", "alignment_loss", "alignment_targets", "wants_alignment"]
