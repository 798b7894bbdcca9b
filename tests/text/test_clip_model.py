import dataclasses
import math

import pytest
import torch

from marble.errors import MarbleError
from marble.text.clip import (
    LockedImageText,
    bank_cross_entropy,
    build_clip,
    contrastive_loss,
    image_bank,
    images_to_clip_pixels,
)
from marble.text.tokenizer import tokenize_prompts

PROMPTS = ["a red apple", "a blue car", "grinning face", "咧嘴笑的脸"]


def random_pixels(batch: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, 16, 16), dtype=torch.uint8, generator=generator)
    return images_to_clip_pixels(images)


def test_build_matches_config_and_tokenizer(tiny_clip, text_config, tokenizer):
    text, vision = tiny_clip.config.text_config, tiny_clip.config.vision_config
    assert text.vocab_size == len(tokenizer)
    assert (text.hidden_size, text.intermediate_size) == (text_config.width, 4 * text_config.width)
    assert (text.num_hidden_layers, text.num_attention_heads) == (text_config.layers, text_config.heads)
    assert text.max_position_embeddings == text_config.max_length
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id) == (0, 1, 2)
    assert (vision.image_size, vision.patch_size, vision.num_channels) == (16, text_config.patch_size, 3)
    assert (vision.hidden_size, vision.num_hidden_layers) == (text_config.vision_width, text_config.vision_layers)
    assert tiny_clip.text_projection.out_features == text_config.projection_dim
    assert tiny_clip.visual_projection.out_features == text_config.projection_dim
    assert sum(p.numel() for p in tiny_clip.parameters()) < 20_000


def test_pixels_span_minus_one_to_one():
    images = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1)
    pixels = images_to_clip_pixels(images)
    assert pixels.dtype == torch.float32
    assert pixels.flatten().tolist() == pytest.approx([-1.0, 1.0, 51 / 127.5 - 1.0])


def test_pixels_reject_float_images():
    with pytest.raises(MarbleError, match="uint8"):
        images_to_clip_pixels(torch.zeros(1, 3, 4, 4))


def test_loss_matches_transformers_reference(tiny_clip, tokenizer):
    pixels, ids = random_pixels(4), tokenize_prompts(tokenizer, PROMPTS).input_ids
    loss, logs = contrastive_loss(tiny_clip, pixels, ids)
    reference = tiny_clip(input_ids=ids, pixel_values=pixels, return_loss=True).loss
    assert loss.item() == pytest.approx(reference.item(), abs=1e-6)
    assert logs["loss"] == pytest.approx(loss.item())
    assert 0.0 <= logs["accuracy"] <= 1.0


@pytest.mark.parametrize("batch", [2, 4, 8])
def test_loss_is_log_batch_when_logits_are_flat(tiny_clip, tokenizer, batch):
    # exp(logit_scale) -> 0 makes every softmax uniform: cross-entropy = log(B) exactly.
    with torch.no_grad():
        tiny_clip.logit_scale.fill_(-30.0)
    prompts = (PROMPTS * 2)[:batch]
    loss, _ = contrastive_loss(tiny_clip, random_pixels(batch), tokenize_prompts(tokenizer, prompts).input_ids)
    assert loss.item() == pytest.approx(math.log(batch), abs=1e-5)


def test_loss_at_init_is_near_log_batch(tiny_clip, tokenizer):
    # Random 8-d embeddings have cosines of about +-0.35, scaled by 1/0.07: a loose band around log(4).
    loss, _ = contrastive_loss(tiny_clip, random_pixels(4), tokenize_prompts(tokenizer, PROMPTS).input_ids)
    assert math.log(4) / 2 < loss.item() < 4 * math.log(4)


def test_adamw_fits_a_fixed_batch_and_learns_logit_scale(tiny_clip, tokenizer):
    pixels, ids = random_pixels(4), tokenize_prompts(tokenizer, PROMPTS).input_ids
    optimizer = torch.optim.AdamW(tiny_clip.parameters(), lr=1e-3)
    start_scale = tiny_clip.logit_scale.item()
    assert start_scale == pytest.approx(math.log(1 / 0.07), abs=1e-4)
    losses = []
    for _ in range(10):
        loss, logs = contrastive_loss(tiny_clip, pixels, ids)
        optimizer.zero_grad()
        loss.backward()
        assert tiny_clip.logit_scale.grad is not None and tiny_clip.logit_scale.grad.abs() > 0
        optimizer.step()
        losses.append(logs["loss"])
    assert losses[-1] < 0.25 * losses[0]
    assert logs["accuracy"] == 1.0
    assert tiny_clip.logit_scale.item() != start_scale


@pytest.mark.parametrize(
    ("changes", "image_size", "message"),
    [({"heads": 3}, 16, "head"), ({}, 12, "patch size"), ({"max_length": 20}, 16, "tokenizer pads")],
)
def test_build_rejects_inconsistent_shapes(text_config, tokenizer, changes, image_size, message):
    with pytest.raises(MarbleError, match=message):
        build_clip(dataclasses.replace(text_config, **changes), image_size, tokenizer)


def random_images(batch: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, 16, 16), dtype=torch.uint8, generator=generator)


def test_image_bank_and_locked_text_match_transformers_embeddings(tiny_clip, tokenizer):
    images, ids = random_images(5), tokenize_prompts(tokenizer, PROMPTS + ["red heart"]).input_ids
    reference = tiny_clip(input_ids=ids, pixel_values=images_to_clip_pixels(images))
    chunks = [([4, 0], images[[4, 0]]), ([2], images[[2]]), ([3, 1], images[[3, 1]])]  # any order, by id
    bank = image_bank(tiny_clip, chunks, count=5)
    torch.testing.assert_close(bank, reference.image_embeds, atol=1e-6, rtol=0)
    text, same_bank, scale = LockedImageText(tiny_clip, bank)(ids)
    torch.testing.assert_close(text, reference.text_embeds, atol=1e-6, rtol=0)
    assert same_bank is bank and scale.item() == pytest.approx(tiny_clip.logit_scale.exp().item())


def test_image_bank_refuses_chunks_that_miss_an_image(tiny_clip):
    images = random_images(3)
    with pytest.raises(MarbleError, match="missing 1 of 3 images"):
        image_bank(tiny_clip, [([0, 2], images[[0, 2]])], count=3)


def test_bank_cross_entropy_is_log_n_when_flat_and_zero_when_exact():
    bank = torch.eye(6)
    targets = torch.tensor([4, 1, 3])
    flat, _ = bank_cross_entropy(torch.zeros(3, 6), bank, torch.tensor(1.0), targets)
    assert flat.item() == pytest.approx(math.log(6), abs=1e-6)
    exact, logs = bank_cross_entropy(bank[targets], bank, torch.tensor(100.0), targets)
    assert exact.item() < 1e-6 and logs["accuracy"] == 1.0
    wrong, logs = bank_cross_entropy(bank[[0, 0, 0]], bank, torch.tensor(100.0), targets)
    assert wrong.item() > 50 and logs["accuracy"] == 0.0


def test_locked_image_training_moves_the_text_tower_only(tiny_clip, tokenizer):
    images, ids = random_images(5), tokenize_prompts(tokenizer, PROMPTS + ["red heart"]).input_ids
    vision_before = {k: v.clone() for k, v in tiny_clip.vision_model.state_dict().items()}
    projection_before = tiny_clip.visual_projection.weight.clone()
    text_before = tiny_clip.text_projection.weight.clone()
    model = LockedImageText(tiny_clip, image_bank(tiny_clip, [(list(range(5)), images)], count=5))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    targets = torch.arange(5)
    losses = []
    for _ in range(30):
        loss, logs = bank_cross_entropy(*model(ids), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(logs["loss"])
    assert losses[-1] < 0.25 * losses[0] and logs["accuracy"] == 1.0
    for name, value in tiny_clip.vision_model.state_dict().items():
        assert torch.equal(value, vision_before[name]), name
    assert torch.equal(tiny_clip.visual_projection.weight, projection_before)
    assert not torch.equal(tiny_clip.text_projection.weight, text_before)
