"""Every inference option gives the fp32 eager path's images, within the rounding its arithmetic allows."""

import pytest
import torch

from marble.errors import MarbleError
from marble.inference.options import BF16_MIN_BATCH, EXACT, FASTEST, InferenceOptions
from marble.pipeline import GenerationRequest, MarblePipeline

# Sampling batch 8 → U-Net batch 16 with guidance: "auto" runs bf16 there.
REQUEST = GenerationRequest("red circle", negative_prompt="blue", steps=4, guidance=3.0, seed=3, num_images=8)


@pytest.fixture(scope="module")
def exact_images(tiny_run) -> torch.Tensor:
    return MarblePipeline.load(tiny_run, EXACT).generate(REQUEST).images


def level_differences(options: InferenceOptions, run, reference: torch.Tensor) -> torch.Tensor:
    images = MarblePipeline.load(run, options).generate(REQUEST).images
    assert images.shape == reference.shape and images.dtype == torch.uint8
    return (images.int() - reference.int()).abs().float()


@pytest.mark.parametrize("options", [InferenceOptions(channels_last=True), InferenceOptions(backend="onnx"),
                                     InferenceOptions(backend="openvino", precision="fp32")],
                         ids=["channels_last", "onnx", "openvino-fp32"])
def test_fp32_paths_match_to_one_level(tiny_run, exact_images, options, tmp_path, monkeypatch):
    # onnx and openvino run the decoder's exported graph too, and openvino splits the guided U-Net batch
    # of 16 into two streams of 8.
    pytest.importorskip({"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}[options.backend])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # Same fp32 arithmetic in another summation order: ~1e-6 relative, which can flip a pixel's
    # rounding to uint8 by one level and never more.
    assert level_differences(options, tiny_run, exact_images).max() <= 1


@pytest.mark.parametrize("options", [InferenceOptions(precision="bf16"), InferenceOptions(precision="auto"), FASTEST],
                         ids=["bf16", "auto", "default-openvino"])
def test_bf16_paths_stay_within_a_few_levels(tiny_run, exact_images, options, tmp_path, monkeypatch):
    # bf16 keeps 8 significant bits (relative error 2^-9 per rounding), and guidance 3 amplifies the
    # ε difference 3×. Measured on this tiny model over seeds 0-2: at most 2 levels, mean 0.17; the
    # bounds allow 3× that for other CPUs' bf16 kernels. A fp32 mistake (wrong weights, no guidance)
    # moves pixels by tens of levels. (The reference model moves up to ~15 levels: docs/performance.md.)
    if options.backend == "openvino":
        pytest.importorskip("openvino")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    differences = level_differences(options, tiny_run, exact_images)
    assert differences.max() <= 6
    assert differences.mean() <= 0.5
    assert differences.max() > 0  # it really ran in bf16: the same pixels would mean autocast was off


def test_auto_precision_is_fp32_below_the_threshold_and_bf16_from_it():
    auto = InferenceOptions(precision="auto")
    assert not auto.bf16_at(BF16_MIN_BATCH - 1) and auto.bf16_at(BF16_MIN_BATCH)
    assert InferenceOptions(precision="bf16").bf16_at(1) and not EXACT.bf16_at(1000)
    assert not InferenceOptions(backend="onnx").bf16_at(1000)


def test_compile_matches_eager(tiny_run, exact_images, monkeypatch):
    # Inductor's C++ build takes minutes here; aot_eager runs the same traced graph without it, which is
    # what --compile changes about the arithmetic (tests/inference/... slow variant builds the real thing).
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module: real_compile(module, backend="aot_eager"))
    pipeline = MarblePipeline.load(tiny_run, InferenceOptions(compile=True))
    images = pipeline.generate(REQUEST).images
    assert (images.int() - exact_images.int()).abs().max() <= 1
    assert pipeline.unet_forward().compile_seconds > 0


@pytest.mark.slow
def test_inductor_compile_matches_eager(tiny_run, exact_images):
    images = MarblePipeline.load(tiny_run, InferenceOptions(compile=True)).generate(REQUEST).images
    assert (images.int() - exact_images.int()).abs().max() <= 1


@pytest.mark.parametrize("options, words", [
    (InferenceOptions(precision="fp16"), "precision: unknown 'fp16'"),
    (InferenceOptions(backend="tensorrt"), "backend: unknown 'tensorrt'"),
    (InferenceOptions(precision="bf16", backend="onnx"), "backend onnx runs the exported fp32 graph"),
    (InferenceOptions(compile=True, backend="onnx"), "backend onnx"),
    (InferenceOptions(channels_last=True, backend="openvino"), "backend openvino compiles the exported graph"),
])
def test_bad_options_are_clear_errors(options, words):
    with pytest.raises(MarbleError, match=words):
        options.validate()


def test_default_is_valid_and_auto_means_no_autocast_outside_torch():
    FASTEST.validate()
    InferenceOptions(precision="auto", backend="onnx").validate()
    assert not InferenceOptions(precision="auto", backend="onnx").bf16_at(64)
    assert not InferenceOptions(precision="bf16", backend="openvino").bf16_at(64)  # OpenVINO casts, not autocast


def test_replacing_the_unet_rebuilds_the_forward(tiny_run):
    pipeline = MarblePipeline.load(tiny_run, InferenceOptions(precision="auto"))
    first = pipeline.unet_forward()
    assert pipeline.unet_forward() is first
    pipeline.unet = MarblePipeline.load(tiny_run).unet
    assert pipeline.unet_forward() is not first and pipeline.unet_forward().unet is pipeline.unet
