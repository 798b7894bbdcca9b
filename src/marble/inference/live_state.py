"""A cheap identity of a module's live weights, for caches that must not outlive a change to them."""

from __future__ import annotations

import torch
from peft.tuners.tuners_utils import BaseTunerLayer


def _adapter_layers(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """peft's LoRA layers inside `module` (Marble's LoRA is peft's)."""
    return [(name, layer) for name, layer in module.named_modules() if isinstance(layer, BaseTunerLayer)]


def live_state(module: object) -> tuple:
    """Changes when a weight is replaced or written in place, or when a LoRA adapter is attached,
    rescaled, merged or switched; () for objects that are not torch modules (test doubles)."""
    if not isinstance(module, torch.nn.Module):
        return ()
    # Tensor._version counts in-place writes (optimizer steps, merges), so no bytes need hashing.
    weights = tuple((name, t.data_ptr(), t._version) for name, t in module.state_dict(keep_vars=True).items())
    # A LoRA scale is a Python float inside peft's layers, invisible in the state dict.
    adapters = tuple((name, repr(sorted(layer.scaling.items())), layer.merged, repr(layer.active_adapters))
                     for name, layer in _adapter_layers(module))
    return weights + adapters


def has_adapters(module: torch.nn.Module) -> bool:
    return bool(_adapter_layers(module))
