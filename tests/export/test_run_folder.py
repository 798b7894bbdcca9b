import pytest
from safetensors.torch import load_file

from marble.errors import MarbleError
from marble.export.run_folder import export_run_folder
from marble.pipeline import GenerationRequest, MarblePipeline


def test_half_export_is_smaller_and_generates_nearly_the_same_pixels(tiny_run, tmp_path):
    out = export_run_folder(tiny_run, tmp_path / "ref", half=True)
    assert not list(out.rglob("checkpoints")) and not list(out.rglob("tensorboard"))
    assert (out / "unet" / "calibration_prompts.json").read_text() == (tiny_run / "unet" / "calibration_prompts.json").read_text()
    weights = load_file(str(out / "unet" / "model" / "diffusion_pytorch_model.safetensors"))
    assert {str(t.dtype) for t in weights.values()} == {"torch.float16"}
    request = GenerationRequest("red circle", steps=4, seed=3)
    full = MarblePipeline.load(tiny_run).generate(request).images.int()
    half = MarblePipeline.load(out).generate(request).images.int()
    assert (full - half).abs().max() <= 3  # float16 weights: a few uint8 levels at most


def test_unfinished_run_is_refused(tmp_path):
    (tmp_path / "run" / "text").mkdir(parents=True)
    with pytest.raises(MarbleError, match="not a finished run"):
        export_run_folder(tmp_path / "run", tmp_path / "out")
