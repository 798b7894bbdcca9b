"""The decoder's exported graph: equal to eager decode, cached by the autoencoder's weights, eager under backend torch."""

import pytest
import torch

from marble.inference.exported_graph import OnnxRuntimeEngine
from marble.inference.onnx_decoder import OnnxDecoder, make_decoder
from marble.inference.options import EXACT, FASTEST, InferenceOptions
from marble.pipeline import MarblePipeline


def latents_and_eager(vae):
    """(latents, eager decode) at batch 1 and 3: the graph is traced at batch 2."""
    draw = torch.Generator().manual_seed(5)
    size = vae.config.sample_size // 2 ** (len(vae.config.block_out_channels) - 1)
    for batch in (1, 3):
        latents = torch.randn(batch, vae.config.latent_channels, size, size, generator=draw)
        with torch.no_grad():
            yield latents, vae.decode(latents).sample


def test_onnxruntime_decoder_equals_eager(tiny_run, tmp_path):
    pytest.importorskip("onnxruntime")
    vae = MarblePipeline.load(tiny_run).vae
    decoder = OnnxDecoder(vae, tmp_path, OnnxRuntimeEngine())
    for latents, expected in latents_and_eager(vae):
        torch.testing.assert_close(decoder(latents), expected, rtol=1e-4, atol=1e-5)
    assert [p.name.split("-")[0] for p in tmp_path.glob("*.onnx")] == ["decoder"]


def test_openvino_decoder_fp32_equals_eager_and_bf16_stays_close(tiny_run, tmp_path):
    pytest.importorskip("openvino")
    vae = MarblePipeline.load(tiny_run).vae
    full = make_decoder(vae, InferenceOptions(backend="openvino", precision="fp32"), tmp_path)
    half = make_decoder(vae, FASTEST, tmp_path)
    for latents, expected in latents_and_eager(vae):
        torch.testing.assert_close(full(latents), expected, rtol=1e-4, atol=1e-5)
        # Images in [-1, 1]: bf16's 8-bit mantissa keeps them within a few uint8 levels (1 level = 2/255).
        assert (half(latents) - expected).abs().max() < 6 * 2 / 255
    assert len(list(tmp_path.glob("decoder-*.onnx"))) == 1  # both precisions read the one exported graph


def test_int8_decodes_in_bf16(tiny_run, tmp_path):
    pytest.importorskip("openvino")
    decoder = make_decoder(MarblePipeline.load(tiny_run).vae, InferenceOptions(backend="openvino", precision="int8"), tmp_path)
    assert decoder.graph.engine.precision == "auto"  # only the U-Net is quantized


def test_backend_torch_decodes_eagerly_and_exports_nothing(tiny_run, tmp_path):
    vae = MarblePipeline.load(tiny_run).vae
    decoder = make_decoder(vae, EXACT, tmp_path)
    for latents, expected in latents_and_eager(vae):
        assert torch.equal(decoder(latents), expected)
    assert not list(tmp_path.iterdir())


def test_changed_decoder_weights_export_again(tiny_run, tmp_path):
    pytest.importorskip("onnxruntime")
    vae = MarblePipeline.load(tiny_run).vae
    decoder = OnnxDecoder(vae, tmp_path, OnnxRuntimeEngine())
    latents, _ = next(latents_and_eager(vae))
    before = decoder(latents)
    with torch.no_grad():
        vae.decoder.conv_out.bias += 0.25  # e.g. the decoder fine-tuned in this process
    torch.testing.assert_close(decoder(latents) - before, torch.full_like(before, 0.25), rtol=0, atol=1e-4)
    assert len(list(tmp_path.glob("decoder-*.onnx"))) == 2


def test_replacing_the_autoencoder_rebuilds_the_decoder(tiny_run):
    pipeline = MarblePipeline.load(tiny_run, FASTEST)
    first = pipeline.decoder()
    assert pipeline.decoder() is first
    pipeline.vae = MarblePipeline.load(tiny_run).vae
    assert pipeline.decoder() is not first and pipeline.decoder().vae is pipeline.vae
