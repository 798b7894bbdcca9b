"""The U-Net builder: matmul attention on the CPU."""

import dataclasses

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from marble.config import preset
from marble.generators.unet import build_unet, use_matmul_attention_on_cpu


def tiny_unet(seed: int, **changes):
    torch.manual_seed(seed)
    config = preset("tiny").unet
    return build_unet(dataclasses.replace(config, **changes), 2, 8, 16)


def test_matmul_attention_on_the_cpu_gives_the_fused_kernels_output():
    unet = tiny_unet(seed=0).eval()
    x, t, context = torch.randn(3, 2, 8, 8), torch.tensor([10, 500, 999]), torch.randn(3, 12, 16)
    with torch.no_grad():
        fused = unet(x, t, encoder_hidden_states=context).sample
        use_matmul_attention_on_cpu(unet, torch.device("cpu"))
        matmul = unet(x, t, encoder_hidden_states=context).sample
    assert all(isinstance(p, AttnProcessor) for p in unet.attn_processors.values())
    torch.testing.assert_close(matmul, fused, atol=1e-5, rtol=1e-5)


def test_a_gpu_keeps_the_fused_kernel():
    unet = tiny_unet(seed=0)
    use_matmul_attention_on_cpu(unet, torch.device("cuda"))  # only the device type is read
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())
