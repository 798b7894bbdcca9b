"""Export a run as a diffusers StableDiffusionPipeline folder (loads offline with from_pretrained)."""

from __future__ import annotations

from pathlib import Path

from diffusers import StableDiffusionPipeline

from marble.diffusion.samplers import make_scheduler
from marble.errors import MarbleError
from marble.pipeline import MarblePipeline
from marble.text.encoders import ClipTextEncoder
from marble.text.minilm import MiniLMTextEncoder
from marble.training.artifacts import save_atomically


def text_components(encoder) -> tuple:
    """(text_encoder, tokenizer) that StableDiffusionPipeline's encode_prompt uses like Marble does."""
    if isinstance(encoder, ClipTextEncoder):
        return encoder.text_model, encoder.tokenizer
    if isinstance(encoder, MiniLMTextEncoder):
        # diffusers passes the attention mask only when the config asks for it; BERT needs it, and
        # pads to tokenizer.model_max_length, which must be Marble's context length.
        encoder.bert.config.use_attention_mask = True
        encoder.tokenizer.model_max_length = encoder.max_length
        return encoder.bert, encoder.tokenizer
    raise MarbleError(f"cannot export a {type(encoder).__name__} text encoder to diffusers")


def as_diffusers_pipeline(marble: MarblePipeline) -> StableDiffusionPipeline:
    text_encoder, tokenizer = text_components(marble.text_encoder)
    scheduler = make_scheduler("ddpm", marble.scheduler_config)
    return StableDiffusionPipeline(
        vae=marble.vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=marble.unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def export_diffusers(run_dir: Path, out_dir: Path) -> Path:
    """Write `out_dir` atomically: model_index.json + unet/ vae/ text_encoder/ tokenizer/ scheduler/."""
    pipeline = as_diffusers_pipeline(MarblePipeline.load(run_dir))
    save_atomically(lambda staging: pipeline.save_pretrained(staging, safe_serialization=True), Path(out_dir))
    return Path(out_dir)
