import dataclasses

import numpy as np
import pytest
import torch
from diffusers.image_processor import VaeImageProcessor
from PIL import Image

from marble.autoencoder.model import build_autoencoder, images_to_model, latent_shape, model_to_images
from marble.config import preset
from marble.errors import MarbleError

TINY = preset("tiny").autoencoder  # block_out_channels (8, 8), 2 latent channels


def test_build_autoencoder_matches_config():
    autoencoder = build_autoencoder(TINY, image_size=16)
    config = autoencoder.config
    assert tuple(config.block_out_channels) == TINY.block_out_channels
    assert list(config.down_block_types) == ["DownEncoderBlock2D"] * 2
    assert list(config.up_block_types) == ["UpDecoderBlock2D"] * 2
    assert (config.latent_channels, config.sample_size, config.scaling_factor) == (2, 16, 1.0)
    assert sum(p.numel() for p in autoencoder.parameters()) < 50_000


def test_latent_shape_matches_the_encoder_output():
    autoencoder = build_autoencoder(TINY, image_size=16)
    with torch.no_grad():
        posterior = autoencoder.encode(torch.zeros(1, 3, 16, 16)).latent_dist
    assert latent_shape(TINY, 16) == (2, 8, 8) == tuple(posterior.mean.shape[1:])
    three_blocks = dataclasses.replace(TINY, block_out_channels=(8, 8, 8))
    assert latent_shape(three_blocks, 64) == (2, 16, 16)


def test_bad_sizes_are_marble_errors():
    with pytest.raises(MarbleError, match="multiple"):
        build_autoencoder(TINY, image_size=15)
    with pytest.raises(MarbleError, match="norm_num_groups"):
        build_autoencoder(dataclasses.replace(TINY, block_out_channels=(6, 8)), image_size=16)


def test_images_to_model_matches_diffusers_preprocess():
    images = torch.arange(0, 256, dtype=torch.uint8)[torch.randperm(256)][:48].reshape(1, 3, 4, 4)
    pil = Image.fromarray(images[0].permute(1, 2, 0).numpy())
    expected = VaeImageProcessor(do_resize=False).preprocess(pil)
    assert torch.equal(images_to_model(images), expected)
    assert images_to_model(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]
    with pytest.raises(MarbleError, match="uint8"):
        images_to_model(images.float())


def test_model_to_images_matches_diffusers_postprocess():
    decoded = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 1.2  # some out of range
    processor = VaeImageProcessor()
    pil_images = processor.numpy_to_pil(processor.postprocess(decoded, output_type="np"))
    expected = torch.from_numpy(np.stack([np.array(image) for image in pil_images])).permute(0, 3, 1, 2)
    assert torch.equal(model_to_images(decoded), expected)
    # rounding to nearest: 0.5/255 above zero is 1 after the map
    assert model_to_images(torch.tensor([-1.0, 1.0, 2 * (1.6 / 255) - 1])).tolist() == [0, 255, 2]


def test_uint8_round_trip_is_exact():
    images = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    assert torch.equal(model_to_images(images_to_model(images)), images)
