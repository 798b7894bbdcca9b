"""The ONNX export: content-addressed cache file, exported once, writable fallback, clear error without ORT."""

import os
import shutil
import sys

from pathlib import Path

import pytest
import torch

from marble.errors import MarbleError
from marble.finetune.lora import weights_fingerprint
from marble.inference.exported_graph import writable_or_default
from marble.inference.onnx_unet import OnnxUNetForward
from marble.inference.options import InferenceOptions
from marble.pipeline import GenerationRequest, MarblePipeline

ONNX = InferenceOptions(backend="onnx")


def test_fingerprint_follows_the_weights(tiny_run):
    unet = MarblePipeline.load(tiny_run).unet
    before = weights_fingerprint(unet)
    assert weights_fingerprint(unet) == before
    with torch.no_grad():
        next(unet.parameters())[0].flatten()[0] += 1e-3
    assert weights_fingerprint(unet) != before


def test_run_exports_once_into_its_cache(tiny_run, tmp_path):
    pytest.importorskip("onnxruntime")
    run = shutil.copytree(tiny_run, tmp_path / "run")  # the shared run stays as training left it
    pipeline = MarblePipeline.load(run, ONNX)
    request = GenerationRequest("red circle", steps=2, guidance=3.0, num_images=3)
    pipeline.generate(request)
    exported = list((run / "cache").glob("unet-*.onnx"))
    assert len(exported) == 1
    written = exported[0].stat().st_mtime_ns
    again = MarblePipeline.load(run, ONNX)
    again.generate(request)
    assert exported[0].stat().st_mtime_ns == written  # reused, not exported again
    assert again.unet_forward().onnx_path() == exported[0]


def test_onnx_output_equals_eager_at_any_batch(tiny_run, tmp_path):
    pytest.importorskip("onnxruntime")
    unet = MarblePipeline.load(tiny_run).unet
    forward = OnnxUNetForward(unet, tmp_path)
    for sample, t, context, expected in eager_cases(unet):
        torch.testing.assert_close(forward(sample, t, context), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_the_pooled_text_path_exports_as_eager_runs_it(tiny_pooled_run, tmp_path, engine):
    from marble.inference.openvino_engine import OpenVinoEngine

    pytest.importorskip(engine)
    unet = MarblePipeline.load(tiny_pooled_run).unet
    forward = OnnxUNetForward(unet, tmp_path, OpenVinoEngine("fp32") if engine == "openvino" else None)
    for sample, t, context, expected in eager_cases(unet):
        torch.testing.assert_close(forward(sample, t, context), expected, rtol=1e-4, atol=1e-5)


def eager_cases(unet):
    """(sample, t, context, eager output) at batch 1 and 5: the graph is traced at batch 2, so the batch
    axis must be dynamic."""
    config = unet.config
    draw = torch.Generator().manual_seed(11)  # fixed inputs: the bf16 bound is checked on these
    for batch in (1, 5):
        sample = torch.randn(batch, config.in_channels, config.sample_size, config.sample_size, generator=draw)
        context = torch.randn(batch, 7, config.cross_attention_dim, generator=draw)
        t = torch.tensor(321)
        with torch.no_grad():
            yield sample, t, context, unet(sample, t, encoder_hidden_states=context).sample


def test_read_only_run_folder_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    locked = tmp_path / "run" / "cache"
    locked.mkdir(parents=True)
    # As on a read-only mount, where even root may not write (chmod alone does not stop root).
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == locked else real_access(path, mode))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    assert writable_or_default(locked) == tmp_path / "user" / "marble" / "onnx"


def test_unwritable_cache_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    assert writable_or_default(blocker / "cache") == tmp_path / "user" / "marble" / "onnx"
    assert writable_or_default(None) == tmp_path / "user" / "marble" / "onnx"
    assert writable_or_default(tmp_path / "ok") == tmp_path / "ok"


def test_missing_onnxruntime_is_a_clear_error(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    forward = OnnxUNetForward(MarblePipeline.load(tiny_run).unet, tmp_path)
    with pytest.raises(MarbleError, match="pip install onnxruntime onnx, or choose --backend torch"):
        forward(torch.zeros(1, 4, 4, 4), torch.tensor(1), torch.zeros(1, 2, 8))


def test_weights_changed_in_place_are_exported_again(tiny_run, tmp_path):
    pytest.importorskip("onnxruntime")
    unet = MarblePipeline.load(tiny_run).unet
    forward = OnnxUNetForward(unet, tmp_path)
    config = unet.config
    sample = torch.randn(2, config.in_channels, config.sample_size, config.sample_size)
    context = torch.randn(2, 4, config.cross_attention_dim)
    before = forward(sample, torch.tensor(10), context)
    with torch.no_grad():
        unet.conv_out.bias += 0.5  # e.g. a LoRA merged into the live model
        expected = unet(sample, torch.tensor(10), encoder_hidden_states=context).sample
    after = forward(sample, torch.tensor(10), context)
    assert len(list(tmp_path.glob("unet-*.onnx"))) == 2
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after - before, torch.full_like(after, 0.5), rtol=0, atol=1e-4)


def test_openvino_fp32_equals_eager_and_bf16_stays_close(tiny_run, tmp_path):
    pytest.importorskip("openvino")
    from marble.inference.openvino_engine import OpenVinoEngine

    unet = MarblePipeline.load(tiny_run).unet
    full, half = OnnxUNetForward(unet, tmp_path, OpenVinoEngine("fp32")), OnnxUNetForward(unet, tmp_path, OpenVinoEngine("bf16"))
    for sample, t, context, expected in eager_cases(unet):
        first = full(sample, t, context)
        torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-5)
        full(sample + 1, t, context)  # the engine reuses its output buffer: the first result must not change
        torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-5)
        # bf16 keeps 8 bits of mantissa: relative error ~1e-2 of the output's scale, where CPUs have bf16 units.
        assert (half(sample, t, context) - expected).abs().max() < 0.05 * expected.abs().max()
    assert len(list(tmp_path.glob("unet-*.onnx"))) == 1  # both engines read the one exported graph


def test_openvino_compiles_each_shape_once_and_keeps_only_the_recent_ones(tiny_run, tmp_path):
    pytest.importorskip("openvino")
    from marble.inference.openvino_engine import OpenVinoEngine

    unet = MarblePipeline.load(tiny_run).unet
    forward = OnnxUNetForward(unet, tmp_path, OpenVinoEngine("fp32"))
    cases = list(eager_cases(unet))
    forward(*cases[0][:3])
    runner = forward.runner()
    runner.capacity = 1
    first_request = next(iter(runner.requests.values()))
    for sample, t, context, expected in cases * 2:  # batch 1, 5, 1, 5: a shape may come back after eviction
        torch.testing.assert_close(forward(sample, t, context), expected, rtol=1e-4, atol=1e-5)
        assert len(runner.requests) == 1
    sample, t, context, _ = cases[1]
    held = next(iter(runner.requests.values()))
    forward(sample, t, context)
    assert next(iter(runner.requests.values())) is held  # the same shape reuses its compiled graph
    assert held is not first_request  # batch 1's graph was dropped when batch 5 came


def test_missing_openvino_is_a_clear_error(tiny_run, tmp_path, monkeypatch):
    from marble.inference.openvino_engine import OpenVinoEngine

    monkeypatch.setitem(sys.modules, "openvino", None)  # import now raises ImportError
    forward = OnnxUNetForward(MarblePipeline.load(tiny_run).unet, tmp_path, OpenVinoEngine())
    config = forward.unet.config
    sample = torch.randn(1, config.in_channels, config.sample_size, config.sample_size)
    with pytest.raises(MarbleError, match="backend openvino needs OpenVINO"):
        forward(sample, torch.tensor(1), torch.randn(1, 3, config.cross_attention_dim))
