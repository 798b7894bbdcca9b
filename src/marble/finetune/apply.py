"""Attaching saved LoRA adapters to a loaded model, each at its own scale, all active together."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import UNet2DConditionModel

from marble.errors import MarbleError
from marble.finetune.adapter import LoraAdapter
from marble.finetune.lora import add_lora, has_lora, load_lora_weights, set_lora_scales, weights_fingerprint
from marble.text.encoders import ClipTextEncoder, TextEncoder


def adaptable_parts(unet: UNet2DConditionModel, text_encoder: TextEncoder | None) -> dict[str, torch.nn.Module]:
    """part name -> the module its adapters go into (MiniLM's text tower is not adaptable)."""
    parts: dict[str, torch.nn.Module] = {"unet": unet}
    if isinstance(text_encoder, ClipTextEncoder):
        parts["text_encoder"] = text_encoder.text_model
    return parts


def check_base(adapter: LoraAdapter, fingerprints: dict[str, str]) -> None:
    """Raise MarbleError unless every part the adapter adapts is the very model it was trained on."""
    for part, expected in adapter.record.base_fingerprints.items():
        if part not in fingerprints:
            raise MarbleError(f"{adapter.path} adapts a CLIP {part.replace('_', ' ')}, which this model does not have")
        if fingerprints[part] != expected:
            raise MarbleError(
                f"{adapter.path} was trained on another base model ({adapter.record.base}; its {part} fingerprint is "
                f"{expected}, this model's is {fingerprints[part]}): apply it to the model it was trained on "
                "(a --half export or a merged run counts as another model)")


def apply_adapters(unet: UNet2DConditionModel, text_encoder: TextEncoder | None,
                   adapters: Sequence[tuple[LoraAdapter, float]]) -> None:
    """Attach `adapters` as peft adapters lora0, lora1, … at their scales; their updates add up."""
    parts = adaptable_parts(unet, text_encoder)
    if any(has_lora(module) for module in parts.values()):
        raise MarbleError("this model already has LoRA adapters attached: apply all adapters in one call")
    needed = {part for adapter, _ in adapters for part in adapter.weights}
    fingerprints = {part: weights_fingerprint(module) for part, module in parts.items() if part in needed}
    for adapter, _ in adapters:
        check_base(adapter, fingerprints)
    for k, (adapter, _) in enumerate(adapters):
        record = adapter.record
        for part, weights in adapter.weights.items():
            add_lora(parts[part], f"lora{k}", record.rank, record.alpha, tuple(record.targets[part]))
            load_lora_weights(parts[part], f"lora{k}", weights, str(adapter.path))
    for module in parts.values():
        module.requires_grad_(False)  # inference only: injection marked the adapters trainable
    rescale_adapters(unet, text_encoder, [scale for _, scale in adapters])


def rescale_adapters(unet: UNet2DConditionModel, text_encoder: TextEncoder | None, scales: Sequence[float]) -> None:
    """Set adapter k (as attached by apply_adapters) to scales[k], in every part it adapts."""
    for module in adaptable_parts(unet, text_encoder).values():
        attached = getattr(module, "peft_config", {})
        chosen = {f"lora{k}": scale for k, scale in enumerate(scales) if f"lora{k}" in attached}
        if chosen:
            set_lora_scales(module, chosen)


__all__ = ["apply_adapters", "rescale_adapters", "adaptable_parts", "check_base"]
