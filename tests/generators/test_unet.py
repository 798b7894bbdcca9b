"""The U-Net builder: matmul attention on the CPU, and the pooled-text path that starts silent."""

import dataclasses

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from marble.config import preset
from marble.errors import MarbleError
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


def test_the_pooled_text_path_starts_silent_and_then_reads_the_text():
    plain, pooled = tiny_unet(seed=0).eval(), tiny_unet(seed=0, pooled_text_heads=2).eval()
    assert not hasattr(plain, "add_embedding") and pooled.config.addition_embed_type == "text"
    pooled.load_state_dict(plain.state_dict(), strict=False)  # all but the new path
    x, t = torch.randn(2, 2, 8, 8), torch.tensor([10, 700])
    context, other_context = torch.randn(2, 12, 16), torch.randn(2, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(pooled(x, t, context).sample, plain(x, t, context).sample, atol=0, rtol=0)
        pooled.add_embedding.norm2.weight.fill_(1.0)  # as training would open it
        opened = pooled(x, t, context).sample
        # Now the text reaches the output through the time embedding too, not only cross-attention.
        assert (opened - plain(x, t, context).sample).abs().max() > 1e-3
        changed_text = pooled(x, t, other_context).sample - plain(x, t, other_context).sample
        assert not torch.allclose(changed_text, opened - plain(x, t, context).sample, atol=1e-4)


@pytest.mark.parametrize("heads", [-1, 3])
def test_pooled_text_heads_must_divide_the_text_width(heads):
    with pytest.raises(MarbleError, match="pooled_text_heads must be 0 .off. or divide the text width 16"):
        tiny_unet(seed=0, pooled_text_heads=heads)
