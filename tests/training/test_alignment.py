"""Representation alignment (REPA) in the U-Net stage: the block it reads, the projector, the loss, the targets."""

import copy
import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from transformers import CLIPModel

from marble.cli import main
from marble.config import preset
from marble.errors import MarbleError
from marble.generators.unet import build_unet
from marble.layout import RunLayout
from marble.text.clip import patch_features
from marble.training.alignment import AlignedUNet, aligned_block, alignment_loss, alignment_targets, wants_alignment


def tiny_unet():
    torch.manual_seed(0)
    return build_unet(preset("tiny").unet, latent_channels=2, latent_size=8, context_width=16)


def test_the_aligned_block_is_the_attention_of_a_cross_attention_block_else_its_last_resnet():
    unet = tiny_unet()  # tiny: block 0 cross-attends, block 1 does not
    assert aligned_block(unet, 0) is unet.down_blocks[0].attentions[-1]
    assert aligned_block(unet, 1) is unet.down_blocks[1].resnets[-1]
    with pytest.raises(MarbleError, match="align_block must be a down block index, 0 to 1; got 2"):
        aligned_block(unet, 2)


@pytest.mark.parametrize("block", [0, 1])
def test_the_aligned_unet_predicts_as_the_unet_does_and_projects_onto_the_patch_grid(block):
    unet = tiny_unet()
    model = AlignedUNet(unet, block, target_width=6)
    x, t, context = torch.randn(3, 2, 8, 8), torch.tensor([1, 500, 999]), torch.randn(3, 4, 16)
    prediction, projected = model(x, t, context, patches=4)
    assert torch.equal(prediction, unet(x, t, encoder_hidden_states=context).sample)
    assert projected.shape == (3, 4, 6)  # the block's 8x8 or 4x4 grid averaged onto the tower's 2x2 patches
    copy.deepcopy(model)  # holds no tensor of the graph: the loop copies it to the CPU for sample grids


def test_the_alignment_loss_is_minus_the_mean_cosine():
    a = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (1 image, 2 patches, 2)
    assert alignment_loss(a, a * 3).item() == pytest.approx(-1.0)
    assert alignment_loss(a, -a).item() == pytest.approx(1.0)
    assert alignment_loss(a, torch.tensor([[[0.0, 1.0], [5.0, 0.0]]])).item() == pytest.approx(0.0)
    assert alignment_loss(a, torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])).item() == pytest.approx(-(0.5 ** 0.5 + 1) / 2)


def test_patch_features_are_the_towers_last_layer_without_the_class_token(tiny_run):
    clip = CLIPModel.from_pretrained(RunLayout(tiny_run).clip)
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    features = patch_features(clip, [([3, 4], images[3:]), ([0, 1, 2], images[:3])], count=5)
    with torch.no_grad():
        hidden = clip.vision_model(pixel_values=images.float() / 127.5 - 1).last_hidden_state[:, 1:]
    assert features.shape == (5, 4, clip.config.vision_config.hidden_size)  # 16 px in 8 px patches
    torch.testing.assert_close(features, F.normalize(hidden, dim=-1), atol=1e-5, rtol=0)
    with pytest.raises(MarbleError, match="missing 1 of 3"):
        patch_features(clip, [([0, 2], images[[0, 2]])], count=3)


def test_alignment_needs_the_runs_own_image_tower(tmp_path):
    with pytest.raises(MarbleError, match="needs the run's own CLIP image tower"):
        alignment_targets(RunLayout(tmp_path), [], 0)


def test_an_aligned_unet_trains_from_the_cli_and_saves_a_plain_unet(tiny_run, synthetic_dataset, tmp_path):
    run = tmp_path / "run"
    for stage in ("text", "autoencoder"):
        shutil.copytree(tiny_run / stage, run / stage)
    assert main(["train", "unet", "--preset", "tiny", "--data", str(synthetic_dataset), "--run", str(run),
                 "--steps", "3", "--set", "unet.align_weight=0.5", "--set", "unet.train.sample_every=2",
                 "--no-progress"]) == 0
    logged = [json.loads(line) for line in (run / "unet" / "train_log.jsonl").read_text().splitlines()]
    assert all(-1.0 <= record["unet/align"] <= 1.0 for record in logged)
    saved = UNet2DConditionModel.from_pretrained(run / "unet" / "model")  # no projector weights in it
    plain = UNet2DConditionModel.from_pretrained(tiny_run / "unet" / "model")
    assert saved.state_dict().keys() == plain.state_dict().keys()
    assert (run / "unet" / "samples" / "step-00000002.png").is_file()  # the grid sampled the U-Net inside


def test_alignment_lowers_its_own_loss_in_a_few_steps():
    """The projector and block learn the targets: a fixed batch, 30 steps of Adam."""
    unet = tiny_unet()
    model = AlignedUNet(unet, 0, target_width=6)
    x, t, context = torch.randn(4, 2, 8, 8), torch.tensor([10, 200, 400, 800]), torch.randn(4, 4, 16)
    targets = F.normalize(torch.randn(4, 4, 6), dim=-1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = alignment_loss(model(x, t, context, patches=4)[1], targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3



def test_the_alignment_weight_is_off_at_zero_and_refused_below_it():
    assert not wants_alignment(0.0) and wants_alignment(0.5)
    for bad in (-0.1, float("nan")):
        with pytest.raises(MarbleError, match="align_weight must be 0"):
            wants_alignment(bad)
