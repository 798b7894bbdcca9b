"""The edit inputs: reading source images and masks (formats, transparency, bombs), checks, resize, paste."""

import base64
import io
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from marble.editing import ImageEdit, decode_base64, make_edit, read_image
from marble.errors import MarbleError


def png_bytes(picture: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=format)
    return buffer.getvalue()


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height but carries no pixels: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def source_picture(size: int = 8) -> Image.Image:
    """RGBA: an opaque red left half, a transparent right half."""
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[:, : size // 2] = (200, 10, 10, 255)
    return Image.fromarray(rgba, "RGBA")


def mask_picture(size: int = 8) -> Image.Image:
    """Rows 0-1 white, row 2 grey 127, row 3 grey 128, the rest black; column 7 white but fully transparent."""
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:2, :, :3] = 255
    rgba[2, :, :3] = 127
    rgba[3, :, :3] = 128
    rgba[:, 7] = (255, 255, 255, 0)
    return Image.fromarray(rgba, "RGBA")


def a_source(size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def a_mask(size: int = 8) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[2:5, 3:6] = True
    return mask


def test_source_is_flattened_on_white_like_the_training_images(tmp_path):
    (tmp_path / "src.png").write_bytes(png_bytes(source_picture()))
    edit = make_edit(tmp_path / "src.png")
    assert edit.image.shape == (3, 8, 8) and edit.image.dtype == torch.uint8
    assert edit.image[:, 0, 0].tolist() == [200, 10, 10] and edit.image[:, 0, 7].tolist() == [255, 255, 255]
    assert edit.strength == 0.8 and edit.mask is None


def test_mask_is_white_from_grey_128_and_transparency_keeps(tmp_path):
    edit = make_edit(png_bytes(source_picture()), mask=png_bytes(mask_picture()))
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[[0, 1, 3], :7] = True
    assert torch.equal(edit.mask, expected)
    assert edit.strength == 1.0  # inpainting starts the masked region from pure noise by default


def test_given_strength_wins_over_the_defaults():
    assert make_edit(png_bytes(source_picture()), 0.25, png_bytes(mask_picture())).strength == 0.25
    assert make_edit(png_bytes(source_picture()), 0).strength == 0


def test_jpeg_is_read_and_other_formats_are_refused(tmp_path):
    jpeg = png_bytes(source_picture().convert("RGB"), "JPEG")
    assert make_edit(jpeg).image.shape == (3, 8, 8)
    with pytest.raises(MarbleError, match=r"^init_image: not an image \(PNG or JPEG expected\)"):
        make_edit(png_bytes(source_picture(), "GIF"))
    with pytest.raises(MarbleError, match=r"^init_image: not an image \(PNG expected\)"):
        read_image(jpeg, "init_image", formats=("PNG",))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MarbleError, match="^mask: .*notes.txt: not an image"):
        make_edit(png_bytes(source_picture()), mask=tmp_path / "notes.txt")


def test_missing_files_are_named(tmp_path):
    with pytest.raises(MarbleError, match="^init_image: no such file: .*nowhere.png"):
        make_edit(tmp_path / "nowhere.png")
    (tmp_path / "src.png").write_bytes(png_bytes(source_picture()))
    with pytest.raises(MarbleError, match="^mask: no such file: .*no-mask.png"):
        make_edit(tmp_path / "src.png", mask=tmp_path / "no-mask.png")


def test_a_header_claiming_too_many_pixels_is_refused_before_decoding():
    # 8000 × 8000 = 64 M pixels: over Marble's 50 M, under Pillow's own bomb warning (89 M).
    with pytest.raises(MarbleError, match="^init_image: oversized"):
        make_edit(header_only_png(8000, 8000))
    with pytest.raises(MarbleError, match="^init_image: oversized"):
        make_edit(header_only_png(100_000, 100_000))  # Pillow's DecompressionBombError, reported the same way
    with pytest.raises(MarbleError, match="^mask: oversized"):
        make_edit(png_bytes(source_picture(8)), mask=png_bytes(mask_picture(16)), max_pixels=64)


def test_a_truncated_file_is_a_clear_error():
    whole = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    with pytest.raises(MarbleError, match="^init_image: (truncated|unreadable)"):
        make_edit(whole[: len(whole) // 2])


@pytest.mark.parametrize("inputs, field", [
    (dict(mask=b"png"), "mask"),
    (dict(strength=0.5), "strength"),
    (dict(strength=0), "strength"),
    (dict(paste_unmasked=True), "paste_unmasked"),
])
def test_edit_options_without_a_source_image_are_errors(inputs, field):
    with pytest.raises(MarbleError, match=f"^{field}: needs init_image"):
        make_edit(None, **inputs)
    assert make_edit(None) is None


@pytest.mark.parametrize("changes, field", [
    (dict(strength=-0.1), "strength"),
    (dict(strength=1.5), "strength"),
    (dict(strength=float("nan")), "strength"),
    (dict(strength=True), "strength"),
    (dict(strength="0.5"), "strength"),
    (dict(image=a_source().float()), "init_image"),
    (dict(image=a_source()[:2]), "init_image"),
    (dict(mask=a_mask().int()), "mask"),
    (dict(mask=a_mask(4)), "mask"),
    (dict(mask=torch.zeros(8, 8, dtype=torch.bool)), "mask"),
    (dict(mask=None, paste_unmasked=True), "paste_unmasked"),
])
def test_bad_edits_name_the_field(changes, field):
    settings = dict(image=a_source(), strength=0.5, mask=a_mask())
    settings.update(changes)
    with pytest.raises(MarbleError, match=f"^{field}:"):
        ImageEdit(**settings).validate()


def test_size_messages_say_what_was_expected_and_what_came():
    ImageEdit(a_source(16)).check_size(16)
    with pytest.raises(MarbleError, match="^init_image: the model draws 16×16 images, this one is 8×8; .*--resize"):
        ImageEdit(a_source(8)).check_size(16)
    with pytest.raises(MarbleError, match="^mask: is 4×4 but init_image is 8×8"):
        ImageEdit(a_source(8), mask=a_mask(4)).validate()


def test_resize_pads_like_the_dataset_loader_and_keeps_the_padding():
    wide = torch.zeros(3, 4, 8, dtype=torch.uint8)  # black, 8 wide and 4 high
    mask = torch.ones(4, 8, dtype=torch.bool)
    edit = ImageEdit(wide, 0.5, mask).resized(16)
    assert edit.image.shape == (3, 16, 16) and edit.mask.shape == (16, 16) and edit.strength == 0.5
    assert (edit.image[:, 0] == 255).all() and (edit.image[:, 8] == 0).all()  # white bands above and below
    assert not edit.mask[:4].any() and edit.mask[4:12].all() and not edit.mask[12:].any()
    assert ImageEdit(wide).resized(16).mask is None


def test_paste_unmasked_copies_exactly_the_source_outside_the_mask():
    source, mask = a_source(), a_mask()
    results = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    pasted = ImageEdit(source, 1.0, mask, paste_unmasked=True).composite(results)
    assert torch.equal(pasted[:, :, ~mask], source[:, ~mask].expand(2, -1, -1))
    assert (pasted[:, :, mask] == 0).all()
    assert ImageEdit(source, 1.0, mask).composite(results) is results


def test_settings_are_json_without_the_pixels():
    settings = ImageEdit(a_source(), 0.6, a_mask()).settings()
    assert json.loads(json.dumps(settings)) == {"strength": 0.6, "mask": True, "paste_unmasked": False, "size": [8, 8]}


def test_base64_accepts_data_urls_and_refuses_garbage():
    raw = png_bytes(source_picture())
    encoded = base64.b64encode(raw).decode()
    assert decode_base64(encoded, "init_image") == raw
    assert decode_base64(f"data:image/png;base64,{encoded}", "init_image") == raw
    for bad in ("not base64!", "abc", "data:image/png;base64,%%%"):
        with pytest.raises(MarbleError, match="^mask: not valid base64"):
            decode_base64(bad, "mask")
