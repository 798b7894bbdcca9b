"""LoRA adapters on the U-Net's attention and the CLIP text tower, through peft.

LoRA (Hu et al. 2021, eq. 3) keeps a linear layer's W frozen and learns a low-rank update beside
it: h = W·x + s·(α/r)·B·A·x, with A (r × in), B (out × r) and B initialised to zero, so a fresh
adapter leaves the model unchanged. `s` is the scale chosen when the adapter is applied.
"""

from __future__ import annotations

import hashlib
import warnings

import torch
from diffusers.utils.peft_utils import recurse_remove_peft_layers, set_weights_and_activate_adapters
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer

from marble.errors import MarbleError

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # every attention processor's projections
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")  # CLIP's self-attention projections


def add_lora(model: torch.nn.Module, name: str, rank: int, alpha: float, targets: tuple[str, ...]) -> None:
    """Inject a fresh adapter `name` into the `targets` layers of `model`; afterwards only adapters train."""
    config = PeftLoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0)
    with warnings.catch_warnings():
        # peft warns whenever a model gets a second adapter: exactly what applying several means.
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, model, adapter_name=name)


def has_lora(model: torch.nn.Module) -> bool:
    return any(isinstance(module, BaseTunerLayer) for module in model.modules())


def lora_weights(model: torch.nn.Module, name: str) -> dict[str, torch.Tensor]:
    """Adapter `name`'s A and B matrices only, keyed as peft saves them (no base weights)."""
    return {key: value.detach().contiguous() for key, value in get_peft_model_state_dict(model, adapter_name=name).items()}


def load_lora_weights(model: torch.nn.Module, name: str, weights: dict[str, torch.Tensor], where: str) -> None:
    """Fill adapter `name` (already injected) with `weights`; every injected matrix must be given."""
    expected = set(lora_weights(model, name))
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise MarbleError(f"{where} does not fit this model: {len(missing)} LoRA weights missing "
                          f"(e.g. {missing[:2]}), {len(extra)} unexpected (e.g. {extra[:2]})")
    try:
        set_peft_model_state_dict(model, weights, adapter_name=name)
    except RuntimeError as error:  # shape mismatch: same layer names, different widths or rank
        raise MarbleError(f"{where} does not fit this model: {error}") from None


def set_lora_scales(model: torch.nn.Module, scales: dict[str, float]) -> None:
    """Activate exactly the named adapters, each at its own scale s (all of them add up)."""
    set_weights_and_activate_adapters(model, list(scales), list(scales.values()))


@torch.no_grad()
def merge_lora(model: torch.nn.Module) -> None:
    """Fold the active adapters into the base weights, W ← W + s·(α/r)·B·A, and remove the LoRA layers."""
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.merge()
    recurse_remove_peft_layers(model)
    if hasattr(model, "peft_config"):  # left by peft's injection; the model is plain again
        del model.peft_config


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of a model's base weights (names, shapes, float32 values), ignoring any injected adapter.

    An adapter records its base's fingerprint, so applying it to another model is caught.
    """
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        if "lora_" in key:
            continue
        digest.update(key.replace(".base_layer.", ".").encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def parameter_count(weights: dict[str, torch.Tensor]) -> int:
    return sum(value.numel() for value in weights.values())


__all__ = ["UNET_TARGETS", "TEXT_TARGETS", "add_lora", "has_lora", "lora_weights", "load_lora_weights",
           "set_lora_scales", "merge_lora", "weights_fingerprint", "parameter_count"]
