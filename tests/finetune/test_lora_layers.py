"""peft LoRA layers against the closed form h = W·x + Σ s·(α/r)·B·A·x (Hu et al. 2021, eq. 3)."""

import torch

from marble.config import preset
from marble.finetune.lora import (
    UNET_TARGETS, add_lora, has_lora, lora_weights, merge_lora, parameter_count, set_lora_scales, weights_fingerprint,
)
from marble.generators.unet import build_unet


class Attention(torch.nn.Module):
    """The smallest module with a layer named like a U-Net projection."""

    def __init__(self):
        super().__init__()
        self.to_q = torch.nn.Linear(3, 2)


def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_unet(preset("tiny").unet, latent_channels=2, latent_size=4, context_width=8)


def unet_output(unet):
    torch.manual_seed(1)
    x, context = torch.randn(2, 2, 4, 4), torch.randn(2, 3, 8)
    with torch.no_grad():
        return unet(x, torch.tensor([10, 700]), encoder_hidden_states=context).sample


def randomise_adapters(model, seed: int) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn_like(parameter) * 0.3)


def test_two_adapters_at_their_scales_give_the_closed_form():
    layer = Attention()
    W, b = layer.to_q.weight.detach().clone(), layer.to_q.bias.detach().clone()
    add_lora(layer, "one", rank=2, alpha=4.0, targets=("to_q",))
    add_lora(layer, "two", rank=1, alpha=3.0, targets=("to_q",))
    randomise_adapters(layer, 0)
    set_lora_scales(layer, {"one": 0.5, "two": -2.0})
    q = layer.to_q
    A1, B1 = q.lora_A["one"].weight, q.lora_B["one"].weight
    A2, B2 = q.lora_A["two"].weight, q.lora_B["two"].weight
    x = torch.randn(5, 3)
    expected = x @ W.T + b + 0.5 * (4.0 / 2) * x @ A1.T @ B1.T - 2.0 * (3.0 / 1) * x @ A2.T @ B2.T
    torch.testing.assert_close(layer.to_q(x), expected, rtol=0, atol=1e-6)


def test_a_fresh_adapter_leaves_the_unet_unchanged_and_only_it_trains():
    unet = tiny_unet()
    before = unet_output(unet)
    add_lora(unet, "default", rank=2, alpha=2.0, targets=UNET_TARGETS)
    assert torch.equal(unet_output(unet), before)  # B starts at zero
    trainable = [name for name, p in unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_saved_weights_are_only_the_low_rank_matrices_with_the_closed_form_count():
    unet = tiny_unet()
    targets = {name: module for name, module in unet.named_modules() if name.endswith(UNET_TARGETS)}
    add_lora(unet, "default", rank=3, alpha=3.0, targets=UNET_TARGETS)
    weights = lora_weights(unet, "default")
    assert all(".lora_A." in key or ".lora_B." in key for key in weights)
    assert len(weights) == 2 * len(targets)
    assert parameter_count(weights) == sum(3 * (m.in_features + m.out_features) for m in targets.values())


def test_merging_equals_the_unmerged_model_and_leaves_a_plain_unet():
    unet = tiny_unet()
    base_keys = set(unet.state_dict())
    add_lora(unet, "a", rank=2, alpha=4.0, targets=UNET_TARGETS)
    add_lora(unet, "b", rank=2, alpha=2.0, targets=("to_q", "to_v"))
    randomise_adapters(unet, 3)
    set_lora_scales(unet, {"a": 0.7, "b": 1.5})
    unmerged = unet_output(unet)
    merge_lora(unet)
    assert not has_lora(unet) and not hasattr(unet, "peft_config")
    assert set(unet.state_dict()) == base_keys
    torch.testing.assert_close(unet_output(unet), unmerged, rtol=0, atol=1e-4)


def test_the_fingerprint_ignores_adapters_but_not_a_changed_weight():
    unet = tiny_unet()
    plain = weights_fingerprint(unet)
    add_lora(unet, "default", rank=2, alpha=2.0, targets=UNET_TARGETS)
    randomise_adapters(unet, 0)
    assert weights_fingerprint(unet) == plain
    with torch.no_grad():
        unet.conv_in.weight[0, 0, 0, 0] += 1e-3
    assert weights_fingerprint(unet) != plain
