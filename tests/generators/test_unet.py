"""The U-Net builder's helpers: weights from another model folder, matmul attention on the CPU."""

import dataclasses

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from marble.config import preset
from marble.errors import MarbleError
from marble.generators.unet import build_unet, load_unet_weights, use_matmul_attention_on_cpu


def tiny_unet(seed: int, **changes):
    torch.manual_seed(seed)
    config = preset("tiny").unet
    return build_unet(dataclasses.replace(config, **changes), 2, 8, 16)


def test_loaded_weights_equal_the_saved_ones_and_differ_from_a_fresh_init(tmp_path):
    source = tiny_unet(seed=1)
    source.save_pretrained(tmp_path / "unet")
    target = tiny_unet(seed=2)
    key = "conv_in.weight"
    assert not torch.equal(target.state_dict()[key], source.state_dict()[key])
    load_unet_weights(target, tmp_path / "unet")
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name


def test_half_precision_weights_load_into_a_float32_unet(tmp_path):
    source = tiny_unet(seed=1)
    source.half().save_pretrained(tmp_path / "unet")
    target = tiny_unet(seed=2)
    load_unet_weights(target, tmp_path / "unet")
    assert target.conv_in.weight.dtype == torch.float32
    assert torch.equal(target.conv_in.weight, source.conv_in.weight.float())


def test_another_architecture_or_a_missing_model_is_a_clear_error(tmp_path):
    tiny_unet(seed=1, block_out_channels=(8, 8), norm_num_groups=4).save_pretrained(tmp_path / "narrow")
    with pytest.raises(MarbleError, match="does not match this run's U-Net config"):
        load_unet_weights(tiny_unet(seed=2), tmp_path / "narrow")
    with pytest.raises(MarbleError, match="config.json missing"):
        load_unet_weights(tiny_unet(seed=2), tmp_path / "nowhere")


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
