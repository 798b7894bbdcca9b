"""`marble generate` inference flags: the default exports the U-Net once into RUN/cache; bad mixes are one line."""

import shutil

import numpy as np
import pytest
from PIL import Image

from marble.cli import main


@pytest.fixture()
def run(tiny_run, tmp_path):
    return shutil.copytree(tiny_run, tmp_path / "run")  # generate writes RUN/cache: keep the shared run clean


def generate(run, out, *extra) -> int:
    return main(["generate", "red circle", "--model", str(run), "--steps", "3", "--num-images", "2", "--seed", "5",
                 "--out", str(out), *extra])


def pixels(folder) -> np.ndarray:
    return np.stack([np.array(Image.open(folder / f"red-circle-seed5-{k}.png")).astype(int) for k in (0, 1)])


def test_default_runs_openvino_from_the_run_cache_and_onnx_matches_fp32_torch(run, tmp_path):
    pytest.importorskip("openvino")
    assert generate(run, tmp_path / "default") == 0
    assert len(list((run / "cache").glob("unet-*.onnx"))) == 1
    assert generate(run, tmp_path / "onnx", "--backend", "onnx") == 0
    assert len(list((run / "cache").glob("unet-*.onnx"))) == 1  # both backends read the one exported graph
    assert generate(run, tmp_path / "torch", "--backend", "torch", "--precision", "fp32") == 0
    assert np.abs(pixels(tmp_path / "onnx") - pixels(tmp_path / "torch")).max() <= 1
    # The default runs bf16 where the CPU has bf16 units: close to fp32, not equal (docs/performance.md).
    drift = np.abs(pixels(tmp_path / "default") - pixels(tmp_path / "torch"))
    assert drift.mean() <= 2.0


@pytest.mark.parametrize("flags, words", [
    (["--backend", "onnx", "--precision", "bf16"], "backend onnx runs the exported fp32 graph"),
    (["--backend", "onnx", "--compile"], "backend onnx"),
])
def test_bad_mixes_are_one_line_errors(run, tmp_path, capsys, flags, words):
    assert generate(run, tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marble: error:") and words in err[0]
    assert not (tmp_path / "out").exists()


def test_unknown_precision_is_rejected_by_the_parser(run, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        generate(run, tmp_path / "out", "--precision", "fp8")
    assert exit_.value.code == 2
