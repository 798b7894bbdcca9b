"""Precision int8: NNCF quantizes the exported U-Net once, calibrated by sampling the run's prompts."""

import shutil
import sys

import pytest
import torch

from marble.errors import MarbleError
from marble.inference.options import InferenceOptions
from marble.layout import RunLayout
from marble.pipeline import GenerationRequest, MarblePipeline

INT8 = InferenceOptions(precision="int8", backend="openvino")
REQUEST = GenerationRequest("red circle", steps=3, guidance=3.0, num_images=2, seed=7)


@pytest.fixture
def run(tiny_run, tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    return shutil.copytree(tiny_run, tmp_path / "run")  # the shared run stays as training left it


def test_int8_is_quantized_once_and_stays_close_to_fp32(run):
    int8 = MarblePipeline.load(run, INT8)
    first = int8.generate(REQUEST).images
    graphs = list(RunLayout(run).inference_cache.glob("unet-*-int8-*/unet.xml"))
    assert len(graphs) == 1
    built = graphs[0].stat().st_mtime_ns
    again = MarblePipeline.load(run, INT8).generate(REQUEST).images
    assert graphs[0].stat().st_mtime_ns == built  # reused, not quantized again
    assert torch.equal(first, again)  # same graph, seed and settings: the same pixels
    exact = MarblePipeline.load(run).generate(REQUEST).images
    # int8 rounds activations to 256 levels: images move, but stay near the fp32 ones on average.
    assert (first.float() - exact.float()).abs().mean() < 12


def test_calibration_samples_every_prompt_on_the_float_graph(run):
    pipeline = MarblePipeline.load(run, INT8)
    feeds = pipeline.calibration_feeds()
    steps_per_prompt = 10
    assert len(feeds) == steps_per_prompt * len(pipeline.calibration_prompts)
    assert {name: value.shape[0] for name, value in feeds[0].items()} == {"sample": 4, "timestep": 4, "context": 4}


def test_new_calibration_prompts_build_a_new_graph(run):
    layout = RunLayout(run)
    MarblePipeline.load(run, INT8).generate(REQUEST)
    layout.calibration_prompts.write_text('["blue square"]')
    MarblePipeline.load(run, INT8).generate(REQUEST)
    assert len(list(layout.inference_cache.glob("unet-*-int8-*"))) == 2


def test_a_run_without_calibration_prompts_is_a_clear_error(run):
    RunLayout(run).calibration_prompts.unlink()
    with pytest.raises(MarbleError, match="calibration_prompts.json"):
        MarblePipeline.load(run, INT8).generate(REQUEST)


def test_missing_nncf_is_a_clear_error(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # import now raises ImportError
    with pytest.raises(MarbleError, match="precision int8 needs NNCF"):
        MarblePipeline.load(run, INT8).generate(REQUEST)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_int8_needs_openvino(backend):
    with pytest.raises(MarbleError, match="precision int8 .* --backend openvino"):
        InferenceOptions(precision="int8", backend=backend).validate()
