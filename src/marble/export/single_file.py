"""Export a run as one safetensors file in the original Stable Diffusion checkpoint layout.

    OUT.safetensors   model.diffusion_model.*            the U-Net (EMA weights)
                      first_stage_model.*                the autoencoder
                      cond_stage_model.transformer.*     the CLIP text encoder
    OUT-config/       the diffusers configs (no weights): Marble's models are not SD-sized, so a
                      loader must be told their shapes

Load offline with diffusers:
    StableDiffusionPipeline.from_single_file("OUT.safetensors", config="OUT-config", local_files_only=True)

Every export is converted back with diffusers' own single-file converters before it is written;
a config they cannot express is refused with a MarbleError instead of writing a file that loads
wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    LDM_UNET_KEY,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from safetensors.torch import save_file
from transformers import CLIPTextModel

from marble.errors import MarbleError
from marble.export.diffusers_folder import as_diffusers_pipeline
from marble.export.ldm_keys import unet_to_ldm, vae_to_ldm
from marble.pipeline import MarblePipeline
from marble.training.artifacts import save_atomically

LDM_VAE_KEY = "first_stage_model."
LDM_TEXT_KEY = "cond_stage_model.transformer."
SUFFIX = ".safetensors"


def config_folder_for(out_file: Path) -> Path:
    return out_file.with_name(out_file.name.removesuffix(SUFFIX) + "-config")


def check_round_trip(ours: dict[str, torch.Tensor], converted: dict[str, torch.Tensor], what: str) -> None:
    """diffusers' converter must give back exactly the weights we started from."""
    if ours.keys() != converted.keys() or any(not torch.equal(ours[k], converted[k].reshape(ours[k].shape))
                                              for k in ours):
        lost = sorted(ours.keys() ^ converted.keys())[:3]
        raise MarbleError(f"this {what} configuration does not survive diffusers' single-file conversion "
                          f"(e.g. {', '.join(lost) or 'values differ'}); export it with --format diffusers")


def ldm_unet(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    state = unet.state_dict()
    renamed = {LDM_UNET_KEY + key: value for key, value in unet_to_ldm(state, unet.config).items()}
    check_round_trip(state, convert_ldm_unet_checkpoint(renamed, unet.config), "U-Net")
    return renamed


def ldm_vae(vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    state = vae.state_dict()
    renamed = {LDM_VAE_KEY + key: value for key, value in vae_to_ldm(state, vae.config).items()}
    check_round_trip(state, convert_ldm_vae_checkpoint(renamed, vae.config), "autoencoder")
    return renamed


def ldm_text_encoder(text_encoder) -> dict[str, torch.Tensor]:
    """SD v1 names its CLIPTextModel's keys text_model.*; transformers >= 5.6 dropped that wrapper."""
    if not isinstance(text_encoder, CLIPTextModel):
        raise MarbleError("the Stable Diffusion single-file layout holds a CLIP text encoder; this run uses "
                          f"{type(text_encoder).__name__}: export it with --format diffusers")
    return {LDM_TEXT_KEY + (key if key.startswith("text_model.") else "text_model." + key): value
            for key, value in text_encoder.state_dict().items()}


def single_file_state_dict(pipeline: StableDiffusionPipeline) -> dict[str, torch.Tensor]:
    tensors = {**ldm_text_encoder(pipeline.text_encoder), **ldm_unet(pipeline.unet), **ldm_vae(pipeline.vae)}
    # safetensors refuses tensors that share storage: store independent contiguous copies.
    return {key: value.detach().contiguous().clone() for key, value in tensors.items()}


def write_configs(pipeline: StableDiffusionPipeline, directory: Path) -> None:
    """What `save_pretrained` writes, minus the weights: model_index.json and each part's config."""
    pipeline.save_config(directory)
    pipeline.unet.save_config(directory / "unet")
    pipeline.vae.save_config(directory / "vae")
    pipeline.text_encoder.config.save_pretrained(directory / "text_encoder")
    pipeline.tokenizer.save_pretrained(directory / "tokenizer")
    pipeline.scheduler.save_pretrained(directory / "scheduler")


def save_file_atomically(tensors: dict[str, torch.Tensor], target: Path) -> None:
    """Written under a hidden name, then renamed: `target` is either whole or absent."""
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(staging), metadata={"format": "pt"})
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def export_single_file(run_dir: Path, out_file: Path) -> tuple[Path, Path]:
    """Write OUT.safetensors (SD checkpoint layout) and OUT-config/; return both paths."""
    out_file = Path(out_file)
    if out_file.suffix != SUFFIX:
        raise MarbleError(f"the single-file export is a {SUFFIX} file; got {out_file}")
    pipeline = as_diffusers_pipeline(MarblePipeline.load(run_dir))
    tensors = single_file_state_dict(pipeline)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file_atomically(tensors, out_file)
    save_atomically(lambda staging: write_configs(pipeline, staging), config_folder_for(out_file))
    return out_file, config_folder_for(out_file)
