"""The ControlNet: built from a U-Net as Zhang et al. (2023) do, and joined to it to steer sampling."""

from __future__ import annotations

import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from marble.control.config import ControlNetConfig
from marble.errors import MarbleError

# Config keys a ControlNet copies from its U-Net: if any differ, its residuals do not fit that U-Net.
SHARED_KEYS = ("in_channels", "block_out_channels", "down_block_types", "layers_per_block", "cross_attention_dim")


def conditioning_widths(widths: tuple[int, ...], downsampling: int) -> tuple[int, ...]:
    """The first log2(downsampling) + 1 widths: that many stride-2 convs take the image to the latent size."""
    convs = downsampling.bit_length() - 1
    if downsampling < 1 or 2**convs != downsampling:
        raise MarbleError(f"the autoencoder's downsampling ({downsampling}) must be a power of two")
    if len(widths) < convs + 1:
        raise MarbleError(f"conditioning_widths {widths} needs at least {convs + 1} entries for "
                          f"{downsampling}x downsampling")
    return tuple(widths[:convs + 1])


def build_controlnet(unet: UNet2DConditionModel, config: ControlNetConfig, downsampling: int) -> ControlNetModel:
    """Zhang et al. 2023, §3.2: a trainable copy of the U-Net's encoder and middle block whose outputs pass
    zero-initialised convolutions, so before training it adds exactly nothing to the U-Net."""
    return ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=conditioning_widths(config.conditioning_widths, downsampling),
        conditioning_channels=3,
    )


def check_fits(controlnet: ControlNetModel, unet: UNet2DConditionModel, image_size: int) -> None:
    """MarbleError unless `controlnet` was built for a U-Net shaped like `unet` at this image size."""
    differ = [key for key in SHARED_KEYS if _plain(controlnet.config[key]) != _plain(unet.config[key])]
    if differ:
        raise MarbleError(f"this ControlNet was trained for another base model ({', '.join(differ)} differ); "
                          "use it with the run it was trained on")
    factor = 2 ** (len(controlnet.config.conditioning_embedding_out_channels) - 1)
    if factor * unet.config.sample_size != image_size:
        raise MarbleError(f"this ControlNet reads {factor * unet.config.sample_size}-pixel conditions; "
                          f"the model makes {image_size}-pixel images")


def _plain(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def control_residuals(controlnet: torch.nn.Module, sample: torch.Tensor, timestep: torch.Tensor,
                      context: torch.Tensor, condition: torch.Tensor, scale: float = 1.0) -> dict:
    """The ControlNet's additions to the U-Net's skip connections and middle block (Zhang et al. 2023, eq. 2),
    as keyword arguments of UNet2DConditionModel.forward. condition: (B, 3, H, W) in [0, 1]."""
    down, middle = controlnet(sample, timestep, encoder_hidden_states=context, controlnet_cond=condition,
                              conditioning_scale=scale, return_dict=False)
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": middle}


class ControlledUNet(torch.nn.Module):
    """A frozen U-Net steered by a ControlNet and fixed conditions: a drop-in for MarblePipeline's U-Net."""

    def __init__(self, unet: UNet2DConditionModel, controlnet: ControlNetModel, conditions: torch.Tensor,
                 scale: float = 1.0):
        super().__init__()
        self.unet, self.controlnet = unet, controlnet
        self.conditions = conditions  # (k, 3, H, W) in [0, 1]: one for every image, or k for k prompts
        self.scale = scale

    @property
    def config(self):
        return self.unet.config

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor):
        if sample.shape[0] % len(self.conditions):
            raise MarbleError(f"{len(self.conditions)} control images do not divide a batch of {sample.shape[0]}")
        # Under guidance the batch is [negative x n, prompt x n] (diffusers' order); repeating the conditions
        # gives both halves the same ones, so the residuals steer both and guidance contrasts only the text.
        condition = self.conditions.repeat(sample.shape[0] // len(self.conditions), 1, 1, 1)
        residuals = control_residuals(self.controlnet, sample, timestep, encoder_hidden_states, condition, self.scale)
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, **residuals)
