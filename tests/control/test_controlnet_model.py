"""The ControlNet built from a U-Net: zero-initialised (changes nothing), steers both guidance halves, fits checks."""

import dataclasses

import pytest
import torch

from marble.config import preset
from marble.control.config import tiny_controlnet
from marble.control.generation import controlled_pipeline
from marble.control.model import ControlledUNet, build_controlnet, control_residuals
from marble.errors import MarbleError
from marble.generators.unet import build_unet
from marble.pipeline import GenerationRequest, MarblePipeline


@pytest.fixture(scope="module")
def pipeline(tiny_run) -> MarblePipeline:
    return MarblePipeline.load(tiny_run)


def fresh_controlnet(unet, seed: int = 0):
    torch.manual_seed(seed)
    return build_controlnet(unet, tiny_controlnet(), downsampling=2)  # tiny autoencoder: 16 px ↔ 8 latent


def trained_like(unet):
    """A ControlNet whose zero convolutions are no longer zero, as after training."""
    controlnet = fresh_controlnet(unet)
    torch.manual_seed(1)
    for zero_conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                      controlnet.controlnet_cond_embedding.conv_out]:
        torch.nn.init.normal_(zero_conv.weight, std=0.3)
    return controlnet.eval()


def edge_image(count: int = 1) -> torch.Tensor:
    """(count, 3, 16, 16) uint8 condition: a white square outline on black, shifted per image."""
    images = torch.zeros(count, 3, 16, 16, dtype=torch.uint8)
    for k in range(count):
        images[k, :, 3 + k:12 + k, 3] = images[k, :, 3 + k:12 + k, 11] = 255
        images[k, :, 3 + k, 3:12] = images[k, :, 11 + k, 3:12] = 255
    return images


def request(**changes) -> GenerationRequest:
    return GenerationRequest(**{**dict(prompt="red circle", steps=4, guidance=3.0, seed=11, num_images=2), **changes})


def test_the_copy_starts_from_the_unets_encoder_weights(pipeline):
    controlnet = fresh_controlnet(pipeline.unet)
    for name, value in pipeline.unet.down_blocks.state_dict().items():
        assert torch.equal(controlnet.down_blocks.state_dict()[name], value)
    assert torch.equal(controlnet.conv_in.weight, pipeline.unet.conv_in.weight)


def test_a_fresh_controlnet_adds_exactly_zero(pipeline):
    controlnet = fresh_controlnet(pipeline.unet)
    x, t, context = torch.randn(2, 2, 8, 8), torch.tensor(500), torch.randn(2, 12, 16)
    residuals = control_residuals(controlnet, x, t, context, torch.rand(2, 3, 16, 16))
    assert all(not r.any() for r in residuals["down_block_additional_residuals"])
    assert not residuals["mid_block_additional_residual"].any()


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_a_fresh_controlnet_leaves_the_images_bit_identical(pipeline, guidance):
    plain = pipeline.generate(request(guidance=guidance)).images
    controlled = controlled_pipeline(pipeline, fresh_controlnet(pipeline.unet), edge_image())
    assert torch.equal(controlled.generate(request(guidance=guidance)).images, plain)


def test_a_trained_controlnet_changes_the_images_and_scale_zero_undoes_it(pipeline):
    plain = pipeline.generate(request()).images
    controlnet = trained_like(pipeline.unet)
    assert not torch.equal(controlled_pipeline(pipeline, controlnet, edge_image()).generate(request()).images, plain)
    assert torch.equal(controlled_pipeline(pipeline, controlnet, edge_image(), 0.0).generate(request()).images, plain)


def test_both_halves_of_the_guidance_batch_are_steered(pipeline):
    controlnet = trained_like(pipeline.unet)
    steered = ControlledUNet(pipeline.unet, controlnet, edge_image().float() / 255)
    x, t, context = torch.randn(1, 2, 8, 8), torch.tensor(300), torch.randn(2, 12, 16)
    with torch.no_grad():
        out = steered(torch.cat([x, x]), t, encoder_hidden_states=context).sample  # [unconditional, conditional]
        for half in (0, 1):
            alone = steered(x, t, encoder_hidden_states=context[half:half + 1]).sample
            plain = pipeline.unet(x, t, encoder_hidden_states=context[half:half + 1]).sample
            assert torch.allclose(out[half:half + 1], alone, atol=1e-5)
            assert (out[half:half + 1] - plain).abs().max() > 1e-3


def test_one_condition_per_prompt_in_a_batch(pipeline):
    controlnet = trained_like(pipeline.unet)
    conditions = edge_image(2)
    batch = controlled_pipeline(pipeline, controlnet, conditions).generate_batch(["red circle"] * 2, [5, 5], steps=3)
    for k in range(2):
        steered = controlled_pipeline(pipeline, controlnet, conditions[k:k + 1])
        alone = steered.generate_batch(["red circle"], [5], steps=3)
        assert (batch[k].int() - alone[0].int()).abs().max() <= 1
    assert not torch.equal(batch[0], batch[1])  # same prompt and seed: only the condition differs


def test_control_images_of_the_wrong_size_are_refused(pipeline):
    with pytest.raises(MarbleError, match="\\(k, 3, 16, 16\\) uint8"):
        controlled_pipeline(pipeline, fresh_controlnet(pipeline.unet), torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_a_controlnet_for_another_unet_is_refused(pipeline):
    narrower = dataclasses.replace(preset("tiny").unet, block_out_channels=(8, 8))
    other = build_controlnet(build_unet(narrower, 2, 8, 16), tiny_controlnet(), downsampling=2)
    with pytest.raises(MarbleError, match="trained for another base model \\(block_out_channels differ\\)"):
        controlled_pipeline(pipeline, other, edge_image())


def test_a_condition_encoder_for_another_image_size_is_refused(pipeline):
    controlnet = build_controlnet(pipeline.unet, tiny_controlnet(), downsampling=4)  # reads 32-pixel conditions
    with pytest.raises(MarbleError, match="reads 32-pixel conditions; the model makes 16-pixel images"):
        controlled_pipeline(pipeline, controlnet, edge_image())


@pytest.mark.parametrize("scale", [-0.5, float("nan"), 11.0])
def test_bad_control_scales_are_refused(pipeline, scale):
    with pytest.raises(MarbleError, match="control scale"):
        controlled_pipeline(pipeline, fresh_controlnet(pipeline.unet), edge_image(), scale)
