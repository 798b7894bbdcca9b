"""OpenVINO's runner: an even batch is split over two streams, and the halves join back in order."""

import pytest
import torch

from marble.inference.onnx_unet import OnnxUNetForward
from marble.inference.openvino_engine import OpenVinoEngine, split_count
from marble.pipeline import MarblePipeline


@pytest.mark.parametrize("batch, threads, parts", [(32, 2, 2), (2, 2, 2), (2, 16, 2), (5, 2, 1), (1, 2, 1), (32, 1, 1)])
def test_split_count(batch, threads, parts):
    assert split_count(batch, threads) == parts


def test_split_batch_equals_eager_in_order(tiny_run, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # two streams even where the CPU has one core
    unet = MarblePipeline.load(tiny_run).unet
    forward = OnnxUNetForward(unet, tmp_path, OpenVinoEngine("fp32"))
    config = unet.config
    draw = torch.Generator().manual_seed(3)
    sample = torch.randn(4, config.in_channels, config.sample_size, config.sample_size, generator=draw)
    context = torch.randn(4, 5, config.cross_attention_dim, generator=draw)
    t = torch.tensor([10, 200, 400, 900])  # a different step per row shows that rows stay in order
    with torch.no_grad():
        expected = unet(sample, t, encoder_hidden_states=context).sample
    first = forward(sample, t, context)
    torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-5)
    forward(sample + 1, t, context)  # the streams reuse their output buffers: the first result must not change
    torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-5)
    (shapes, parts), requests = next(iter(forward.runner().requests.items()))
    assert parts == 2 and len(requests) == 2 and dict(shapes)["sample"][0] == 2  # two halves of 2
