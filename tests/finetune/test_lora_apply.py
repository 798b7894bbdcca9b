"""Applying saved adapters to a run: scale 0 is the base, two combine, merging changes nothing, bad input is refused."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from marble.errors import MarbleError
from marble.export.merged_run import MERGE_RECORD, merge_adapter_into_run
from marble.export.run_folder import export_run_folder
from marble.finetune.adapter import load_adapter, parse_lora_option
from marble.finetune.apply import apply_adapters, rescale_adapters
from marble.finetune.lora import has_lora
from marble.inference.options import InferenceOptions
from marble.pipeline import GenerationRequest, MarblePipeline

REQUEST = GenerationRequest("red circle", steps=4, guidance=3.0, num_images=2, seed=7)
PROMPTS = ["red circle", "blue ring", ""]


def adapted(run, *adapters) -> MarblePipeline:
    pipeline = MarblePipeline.load(run)
    apply_adapters(pipeline.unet, pipeline.text_encoder, [(load_adapter(path), scale) for path, scale in adapters])
    return pipeline


def generate(run, *adapters) -> torch.Tensor:
    return adapted(run, *adapters).generate(REQUEST).images


@pytest.fixture(scope="module")
def base_images(tiny_run):
    return generate(tiny_run)


def test_scale_zero_gives_exactly_the_base_models_images(tiny_run, unet_adapter, text_adapter, base_images):
    assert torch.equal(generate(tiny_run, (unet_adapter, 0.0)), base_images)
    assert torch.equal(generate(tiny_run, (unet_adapter, 0.0), (text_adapter, 0.0)), base_images)


def test_each_adapter_changes_the_images_and_two_combine(tiny_run, unet_adapter, text_adapter, base_images):
    unet_only = generate(tiny_run, (unet_adapter, 1.0))
    text_only = generate(tiny_run, (unet_adapter, 0.0), (text_adapter, 1.0))
    both = generate(tiny_run, (unet_adapter, 1.0), (text_adapter, 1.0))
    assert torch.equal(generate(tiny_run, (unet_adapter, 1.0), (text_adapter, 0.0)), unet_only)
    for images in (unet_only, text_only, both):
        assert (images.int() - base_images.int()).abs().max() > 2
    assert not torch.equal(both, unet_only) and not torch.equal(both, text_only)


def test_rescaling_to_zero_gives_the_base_and_back_gives_the_adapter(tiny_run, unet_adapter, text_adapter, base_images):
    pipeline = adapted(tiny_run, (unet_adapter, 1.0), (text_adapter, 1.0))
    both = pipeline.generate(REQUEST).images
    rescale_adapters(pipeline.unet, pipeline.text_encoder, [0.0, 0.0])
    assert torch.equal(pipeline.generate(REQUEST).images, base_images)
    rescale_adapters(pipeline.unet, pipeline.text_encoder, [1.0, 1.0])
    assert torch.equal(pipeline.generate(REQUEST).images, both)


def test_the_exported_graph_path_follows_adapters_and_their_rescaling(tiny_run, unet_adapter, text_adapter, base_images,
                                                                        tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # ONNX Runtime, fp32: the graph the default (OpenVINO) backend compiles too, compared here to the level.
    pipeline = MarblePipeline.load(tiny_run, InferenceOptions(precision="auto", backend="onnx"))
    assert (pipeline.generate(REQUEST).images.int() - base_images.int()).abs().max() <= 1  # ran in ONNX Runtime
    apply_adapters(pipeline.unet, pipeline.text_encoder, [(load_adapter(unet_adapter), 1.0), (load_adapter(text_adapter), 1.0)])
    # Neither the exported graph nor the cached contexts may outlive the adapters or a new scale.
    assert torch.equal(pipeline.generate(REQUEST).images, generate(tiny_run, (unet_adapter, 1.0), (text_adapter, 1.0)))
    rescale_adapters(pipeline.unet, pipeline.text_encoder, [0.0, 0.0])
    assert torch.equal(pipeline.generate(REQUEST).images, base_images)


def test_a_merged_run_equals_the_base_with_the_adapter_at_that_scale(tiny_run, text_adapter, tmp_path):
    merged = MarblePipeline.load(merge_adapter_into_run(tiny_run, load_adapter(text_adapter), 0.6, tmp_path / "m"))
    reference = adapted(tiny_run, (text_adapter, 0.6))
    assert not has_lora(merged.unet) and not has_lora(merged.text_encoder.text_model)
    merged_context = merged.text_encoder.encode(PROMPTS).context
    torch.testing.assert_close(merged_context, reference.text_encoder.encode(PROMPTS).context, rtol=0, atol=1e-4)
    config = merged.unet.config
    x = torch.randn(3, config.in_channels, config.sample_size, config.sample_size,
                    generator=torch.Generator().manual_seed(0))
    t = torch.tensor([5, 300, 900])
    with torch.no_grad():
        merged_eps = merged.unet(x, t, encoder_hidden_states=merged_context).sample
        reference_eps = reference.unet(x, t, encoder_hidden_states=merged_context).sample
    torch.testing.assert_close(merged_eps, reference_eps, rtol=0, atol=1e-4)
    assert (merged.generate(REQUEST).images.int() - reference.generate(REQUEST).images.int()).abs().max() <= 1
    record = json.loads((tmp_path / "m" / MERGE_RECORD).read_text())
    assert record["scale"] == 0.6 and record["lora"]["rank"] == 2


def test_an_adapter_for_another_base_is_refused(tiny_run, unet_adapter, tmp_path):
    other = export_run_folder(tiny_run, tmp_path / "half", half=True)  # float16: other weights
    with pytest.raises(MarbleError, match="trained on another base model"):
        adapted(other, (unet_adapter, 1.0))


def test_adapters_are_applied_once(tiny_run, unet_adapter):
    pipeline = adapted(tiny_run, (unet_adapter, 1.0))
    with pytest.raises(MarbleError, match="already has LoRA adapters"):
        apply_adapters(pipeline.unet, pipeline.text_encoder, [(load_adapter(unet_adapter), 1.0)])


def test_an_adapter_whose_record_does_not_match_its_weights_is_refused(tiny_run, unet_adapter, tmp_path):
    broken = shutil.copytree(unet_adapter, tmp_path / "broken")
    record = json.loads((broken / "lora.json").read_text())
    (broken / "lora.json").write_text(json.dumps({**record, "rank": 3}))
    with pytest.raises(MarbleError, match="does not fit this model"):
        adapted(tiny_run, (broken, 1.0))


@pytest.mark.parametrize("text, path, scale", [
    ("adapters/noto", "adapters/noto", 1.0), ("adapters/noto:0.5", "adapters/noto", 0.5),
    ("a:b:-2", "a:b", -2.0), ("x:1e-1", "x", 0.1),
])
def test_lora_options_name_a_path_and_a_scale(text, path, scale):
    assert parse_lora_option(text) == (Path(path), scale)


@pytest.mark.parametrize("text, message", [
    ("adapters/noto:abc", "must be a number"), ("adapters/noto:", "must be a number"),
    ("adapters/noto:nan", "finite"), ("adapters/noto:inf", "finite"), (":0.5", "give the adapter folder"),
])
def test_bad_lora_options_are_clear_errors(text, message):
    with pytest.raises(MarbleError, match=message):
        parse_lora_option(text)


def test_missing_or_broken_adapter_files_are_clear_errors(unet_adapter, tmp_path):
    with pytest.raises(MarbleError, match="does not exist"):
        load_adapter(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MarbleError, match="lora.json is missing"):
        load_adapter(empty)
    garbled = shutil.copytree(unet_adapter, tmp_path / "garbled")
    (garbled / "lora.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(MarbleError, match="not a readable safetensors"):
        load_adapter(garbled)
    (garbled / "lora.json").write_text("{")
    with pytest.raises(MarbleError, match="not a LoRA adapter record"):
        load_adapter(garbled)


def test_a_file_with_base_weights_is_not_an_adapter(unet_adapter, tmp_path):
    smuggled = shutil.copytree(unet_adapter, tmp_path / "smuggled")
    tensors = load_file(str(smuggled / "lora.safetensors"))
    save_file({**tensors, "unet.conv_in.weight": torch.zeros(2, 2)}, str(smuggled / "lora.safetensors"))
    with pytest.raises(MarbleError, match="not a LoRA weight"):
        load_adapter(smuggled)
    assert load_adapter(unet_adapter / "lora.safetensors").path == unet_adapter  # a file names its folder
