"""`marble generate --init-image/--mask`: files in, the pipeline's pixels out, one-line errors for bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from marble.cli import main
from marble.editing import ImageEdit
from marble.inference.options import FASTEST
from marble.pipeline import GenerationRequest, MarblePipeline


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 16 px source (the tiny model's size), an 8 px one, and a 16 px mask repainting the top half."""
    root = tmp_path_factory.mktemp("edit-files")
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "source.png")
    Image.fromarray(pixels[::2, ::2]).save(root / "small.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[:8] = 255
    Image.fromarray(mask).save(root / "mask.png")
    return root


def edit_args(run, out, *extra) -> list[str]:
    return ["generate", "red circle", "--model", str(run), "--steps", "4", "--num-images", "2", "--seed", "5",
            "--out", str(out), *extra]


def one_line_error(capsys, code: int) -> str:
    """The error line; a size error comes after loading the model, whose progress bars may precede it."""
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("marble: error:") and "Traceback" not in err, err
    return last


def test_inpainting_from_files_writes_the_pipelines_pixels(tiny_run, files, tmp_path):
    argv = edit_args(tiny_run, tmp_path, "--init-image", str(files / "source.png"), "--mask", str(files / "mask.png"),
                     "--paste-unmasked")
    assert main(argv) == 0
    source = torch.from_numpy(np.array(Image.open(files / "source.png"))).permute(2, 0, 1)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[:8] = True
    request = GenerationRequest("red circle", steps=4, seed=5, num_images=2,
                                edit=ImageEdit(source, 1.0, mask, paste_unmasked=True))
    expected = MarblePipeline.load(tiny_run, FASTEST).generate(request).images  # the CLI's default path
    for k in (0, 1):
        with Image.open(tmp_path / f"red-circle-seed5-{k}.png") as written:
            assert torch.equal(torch.from_numpy(np.array(written)).permute(2, 0, 1), expected[k])
            settings = json.loads(written.text["marble"])
    assert settings["edit"] == {"strength": 1.0, "mask": True, "paste_unmasked": True, "size": [16, 16]}


def test_a_wrong_size_is_an_error_unless_resize_is_asked(tiny_run, files, tmp_path, capsys):
    small = ["--init-image", str(files / "small.png"), "--strength", "0.5"]
    err = one_line_error(capsys, main(edit_args(tiny_run, tmp_path / "refused", *small)))
    assert "init_image: the model draws 16×16 images, this one is 8×8" in err and "--resize" in err
    assert not (tmp_path / "refused").exists()
    assert main(edit_args(tiny_run, tmp_path / "resized", *small, "--resize")) == 0
    with Image.open(tmp_path / "resized" / "red-circle-seed5-0.png") as written:
        assert written.size == (16, 16)


@pytest.mark.parametrize("extra, fragment", [
    (["--init-image", "{files}/nowhere.png"], "init_image: no such file"),
    (["--init-image", "{files}/source.png", "--mask", "{files}/no-mask.png"], "mask: no such file"),
    (["--init-image", "{files}/source.png", "--mask", "{files}/small.png"], "mask: is 8×8 but init_image is 16×16"),
    (["--mask", "{files}/mask.png"], "mask: needs init_image"),
    (["--strength", "0.5"], "strength: needs init_image"),
    (["--init-image", "{files}/source.png", "--strength", "1.5"], "strength: must be between 0 and 1"),
    (["--init-image", "{files}/source.png", "--paste-unmasked"], "paste_unmasked: needs a mask"),
    (["--resize"], "--resize applies to --init-image"),
])
def test_bad_edit_arguments_are_one_line_errors(tiny_run, files, tmp_path, capsys, extra, fragment):
    argv = edit_args(tiny_run, tmp_path / "out", *(item.format(files=files) for item in extra))
    assert fragment in one_line_error(capsys, main(argv))
    assert not (tmp_path / "out").exists()
