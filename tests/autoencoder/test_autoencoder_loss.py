import pytest
import torch

from marble.autoencoder.loss import (
    PatchDiscriminator,
    chroma_l1,
    generator_adversarial_loss,
    corner_weighted_l1,
    hinge_discriminator_loss,
    reconstruction_loss,
)
from marble.autoencoder.model import build_autoencoder
from marble.config import preset


def tiny_images(count=4, size=16):
    """Smooth colour gradients in [−1, 1], (count, 3, size, size)."""
    ramp = torch.linspace(-1, 1, size)
    images = torch.stack([ramp.view(1, -1).expand(size, size), ramp.view(-1, 1).expand(size, size),
                          torch.zeros(size, size)])
    return torch.stack([images.roll(k, dims=0) * (0.5 + 0.1 * k) for k in range(count)])


def evaluate(autoencoder, images, kl_weight):
    noise = torch.randn(len(images), 2, 8, 8, generator=torch.Generator().manual_seed(0))  # tiny latents: 2×8×8
    loss, logs, reconstruction = reconstruction_loss(autoencoder, images, noise, kl_weight)
    return loss, logs, reconstruction


def test_latents_are_mean_plus_std_times_the_given_noise():
    torch.manual_seed(0)
    autoencoder = build_autoencoder(preset("tiny").autoencoder, image_size=16)
    images = tiny_images()
    posterior = autoencoder.encode(images).latent_dist
    noise = torch.randn(4, 2, 8, 8)
    _, _, reconstruction = reconstruction_loss(autoencoder, images, noise, 0.0)
    expected = autoencoder.decode(posterior.mean + posterior.std * noise).sample
    assert torch.allclose(reconstruction, expected, atol=1e-6)


def test_loss_is_l1_plus_per_element_kl():
    torch.manual_seed(0)
    autoencoder = build_autoencoder(preset("tiny").autoencoder, image_size=16)
    images = tiny_images()
    loss, logs, reconstruction = evaluate(autoencoder, images, kl_weight=0.5)
    assert reconstruction.shape == images.shape and torch.isfinite(loss)
    assert logs["l1"] == pytest.approx((reconstruction - images).abs().mean().item(), rel=1e-5)
    posterior = autoencoder.encode(images).latent_dist
    assert logs["kl"] == pytest.approx(posterior.kl().mean().item() / (3 * 16 * 16), rel=1e-4)
    assert logs["loss"] == pytest.approx(logs["l1"] + 0.5 * logs["kl"], rel=1e-5)


def test_corner_weighted_l1_golden_values():
    error = torch.zeros(1, 1, 4, 4)
    error[0, 0, 0, 0] = 2.0  # a corner: weight 3 of a total 12 + 4 * 3 = 24
    error[0, 0, 1, 2] = 4.0  # an inner pixel: weight 1
    assert corner_weighted_l1(error, 3.0).item() == pytest.approx((3 * 2.0 + 4.0) / 24)
    assert corner_weighted_l1(error, 1.0).item() == pytest.approx(error.mean().item())


def plain_and_weighted(**weights):
    """The loss of one tiny autoencoder on one batch without extra weights and with `weights`:
    (plain loss, plain logs, reconstruction, weighted loss, weighted logs, images)."""
    torch.manual_seed(0)
    autoencoder = build_autoencoder(preset("tiny").autoencoder, image_size=16)
    images = tiny_images()
    noise = torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    plain_loss, plain_logs, reconstruction = reconstruction_loss(autoencoder, images, noise, 0.0)
    weighted_loss, weighted_logs, _ = reconstruction_loss(autoencoder, images, noise, 0.0, **weights)
    return plain_loss, plain_logs, reconstruction, weighted_loss, weighted_logs, images


def test_corner_weight_changes_the_loss_not_the_logged_l1():
    plain_loss, plain_logs, reconstruction, weighted_loss, weighted_logs, images = plain_and_weighted(corner_weight=50.0)
    error = (reconstruction - images).abs()
    assert weighted_logs["l1"] == pytest.approx(plain_logs["l1"])
    assert weighted_loss.item() == pytest.approx(corner_weighted_l1(error, 50.0).item(), rel=1e-5)
    assert weighted_loss.item() != pytest.approx(plain_loss.item(), rel=1e-3)


def test_chroma_l1_golden_values():
    difference = torch.zeros(1, 3, 1, 2)
    difference[0, :, 0, 0] = 0.3  # grey: brighter in every channel alike, no colour error
    difference[0, :, 0, 1] = torch.tensor([0.6, 0.0, 0.0])  # redder: deviations 0.4, −0.2, −0.2
    assert chroma_l1(difference).item() == pytest.approx((0.4 + 0.2 + 0.2) / 6)


def test_chroma_weight_adds_its_term_and_zero_leaves_the_loss_alone():
    plain_loss, plain_logs, reconstruction, weighted_loss, _, images = plain_and_weighted(chroma_weight=2.0)
    chroma = chroma_l1(reconstruction - images).item()
    assert plain_logs["chroma"] == pytest.approx(chroma, rel=1e-5) and plain_loss.item() == pytest.approx(plain_logs["l1"])
    assert weighted_loss.item() == pytest.approx(plain_loss.item() + 2.0 * chroma, rel=1e-5)


def test_loss_decreases_with_a_few_adamw_steps():
    torch.manual_seed(0)
    autoencoder = build_autoencoder(preset("tiny").autoencoder, image_size=16)
    images = tiny_images()
    optimizer = torch.optim.AdamW(autoencoder.parameters(), lr=3e-3)
    before = evaluate(autoencoder, images, 1e-6)[0].item()
    for _ in range(8):
        loss = evaluate(autoencoder, images, 1e-6)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = evaluate(autoencoder, images, 1e-6)[0].item()
    assert after < 0.8 * before


def test_patch_discriminator_output_shape():
    discriminator = PatchDiscriminator(base_channels=8)
    assert discriminator(torch.zeros(2, 3, 16, 16)).shape == (2, 1, 2, 2)
    assert PatchDiscriminator(base_channels=8, num_downsamples=3)(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 2, 2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in discriminator.modules())


def test_hinge_losses_golden_values():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 − D): 0, 0.5, 2 → mean 5/6
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + D): 0, 1, 2 → mean 1
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 1))
    assert hinge_discriminator_loss(torch.ones(4) * 3, -torch.ones(4) * 3).item() == 0.0
    assert generator_adversarial_loss(fake).item() == pytest.approx(1 / 3)
