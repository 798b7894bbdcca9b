import pytest
import torch

from marble.autoencoder.latent_scale import measure_latent_scale
from marble.autoencoder.model import build_autoencoder, images_to_model
from marble.config import preset
from marble.errors import MarbleError


def random_images(count=5, size=16):
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_scaled_posterior_means_have_unit_std():
    torch.manual_seed(0)
    autoencoder = build_autoencoder(preset("tiny").autoencoder, image_size=16)
    images = random_images()
    scale = measure_latent_scale(autoencoder, images, batch_size=2)  # batches of 2, 2, 1
    with torch.no_grad():
        means = autoencoder.encode(images_to_model(images)).latent_dist.mean
    assert (means * scale).std().item() == pytest.approx(1.0, abs=1e-4)
    assert autoencoder.training  # mode restored


def test_empty_data_is_a_marble_error():
    autoencoder = build_autoencoder(preset("tiny").autoencoder, image_size=16)
    with pytest.raises(MarbleError, match="at least one image"):
        measure_latent_scale(autoencoder, random_images(count=0))
