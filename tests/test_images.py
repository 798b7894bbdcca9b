"""Image files: grid layout, nearest-neighbour upscale, PNG text chunks, GIF frames."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from marble.images import grid, save_gif, save_png, to_pil, upscale


def solid_images(n: int, h: int = 4, w: int = 3) -> torch.Tensor:
    """(n, 3, h, w) uint8, image k filled with the colour (10k, 10k+1, 10k+2): never white."""
    colours = torch.tensor([[10 * k + c for c in range(3)] for k in range(n)], dtype=torch.uint8).reshape(n, 3, 1, 1)
    return colours.expand(n, 3, h, w).contiguous()


def test_grid_places_tiles_row_by_row_on_white():
    images = solid_images(5)  # 3 columns (ceil sqrt 5), 2 rows, one empty cell
    canvas = grid(images, padding=2)
    assert canvas.shape == (3, 2 * (4 + 2) + 2, 3 * (3 + 2) + 2) and canvas.dtype == torch.uint8
    covered = torch.zeros(canvas.shape[1:], dtype=torch.bool)
    for k in range(5):
        top, left = 2 + (k // 3) * 6, 2 + (k % 3) * 5
        assert torch.equal(canvas[:, top:top + 4, left:left + 3], images[k])
        covered[top:top + 4, left:left + 3] = True
    assert (canvas[:, ~covered] == 255).all()  # padding and the empty sixth cell stay white


def test_grid_with_explicit_columns_and_no_padding_is_concatenation():
    images = solid_images(4)
    assert torch.equal(grid(images, columns=4, padding=0), torch.cat(list(images), dim=2))
    assert torch.equal(grid(images, columns=1, padding=0), torch.cat(list(images), dim=1))


def test_grid_of_one_image_is_that_image_framed():
    image = solid_images(1)
    canvas = grid(image, padding=1)
    assert canvas.shape == (3, 6, 5)
    assert torch.equal(canvas[:, 1:5, 1:4], image[0])


def test_upscale_repeats_each_pixel_in_a_square_block():
    images = torch.randint(0, 256, (2, 3, 2, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    big = upscale(images, 3)
    assert big.shape == (2, 3, 6, 9)
    expected = torch.nn.functional.interpolate(images.float(), scale_factor=3, mode="nearest").to(torch.uint8)
    assert torch.equal(big, expected)
    assert torch.equal(big[1, :, 3:6, 6:9], images[1, :, 1:2, 2:3].expand(3, 3, 3))
    assert upscale(images, 1) is images


def test_png_keeps_pixels_and_unicode_metadata(tmp_path):
    image = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    settings = {"marble": json.dumps({"prompt": "红色 circle", "seed": 5}, ensure_ascii=False), "note": "plain"}
    path = save_png(image, tmp_path / "deep" / "folder" / "x.png", settings)
    assert path == tmp_path / "deep" / "folder" / "x.png"
    with Image.open(path) as loaded:
        assert loaded.size == (7, 5) and loaded.mode == "RGB"
        assert loaded.text == settings
        assert json.loads(loaded.text["marble"])["prompt"] == "红色 circle"
        assert np.array_equal(np.array(loaded), image.permute(1, 2, 0).numpy())


def test_png_without_metadata_has_no_text(tmp_path):
    with Image.open(save_png(solid_images(1)[0], tmp_path / "x.png")) as loaded:
        assert loaded.text == {}


def test_to_pil_puts_channels_last():
    image = solid_images(1, h=2, w=5)[0]
    picture = to_pil(image)
    assert picture.size == (5, 2)
    assert picture.getpixel((4, 1)) == tuple(image[:, 1, 4].tolist())


@pytest.mark.parametrize("count", [1, 3])
def test_gif_has_one_frame_per_preview_and_holds_the_last(tmp_path, count):
    frames = list(upscale(solid_images(count, h=4, w=4), 2))
    path = save_gif(frames, tmp_path / "preview.gif", frame_ms=100)
    with Image.open(path) as gif:
        assert gif.n_frames == count
        assert gif.info.get("loop") == 0
        durations = []
        for k in range(count):
            gif.seek(k)
            durations.append(gif.info["duration"])
            assert gif.convert("RGB").getpixel((0, 0)) == tuple(frames[k][:, 0, 0].tolist())
    assert durations == [100] * (count - 1) + [800]


def test_gif_creates_its_folder(tmp_path):
    path = save_gif(list(solid_images(2)), tmp_path / "new" / "preview.gif")
    assert path.is_file()
