import pytest
import torch
import torch.nn.functional as F

from marble.autoencoder.preview import fit_latent_rgb, latent_to_rgb
from marble.errors import MarbleError

# RGB (0–255) = latents (C=2) @ WEIGHTS + BIAS, integer so every image is exactly representable.
WEIGHTS = torch.tensor([[10.0, -5.0, 0.0], [3.0, 7.0, -6.0]])
BIAS = torch.tensor([100.0, 90.0, 120.0])


def linear_data(count=3, side=4, patch=4):
    latents = torch.randint(-4, 5, (count, 2, side, side), generator=torch.Generator().manual_seed(0)).float()
    rgb = torch.einsum("nchw,cd->ndhw", latents, WEIGHTS) + BIAS.view(1, 3, 1, 1)  # (N, 3, h, w)
    images = F.interpolate(rgb, scale_factor=patch, mode="nearest").to(torch.uint8)
    return latents, images


def test_fit_recovers_a_linear_map_exactly():
    latents, images = linear_data()
    matrix = fit_latent_rgb(latents, images)
    assert matrix.shape == (3, 3)
    expected = torch.cat([WEIGHTS, BIAS.view(1, 3)]) / 255.0
    assert torch.allclose(matrix, expected, atol=1e-6)
    assert torch.equal(latent_to_rgb(latents, matrix, image_size=16), images)


def test_preview_clamps_to_the_uint8_range():
    matrix = torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 0.5]])  # one channel + bias
    preview = latent_to_rgb(torch.full((1, 1, 2, 2), 3.0), matrix, image_size=4)
    assert preview.dtype == torch.uint8 and preview.shape == (1, 3, 4, 4)
    assert preview[0, :, 0, 0].tolist() == [255, 0, 128]


def test_mismatched_shapes_are_marble_errors():
    latents, images = linear_data()
    with pytest.raises(MarbleError, match="multiple"):
        fit_latent_rgb(latents, images[..., :15, :15])
    with pytest.raises(MarbleError, match="channels"):
        latent_to_rgb(latents, torch.zeros(5, 3), image_size=16)
