import pytest
import torch

from marble.config import preset
from marble.errors import MarbleError
from marble.evaluation.clip_score import clip_score, load_clip_with_tokenizer
from marble.text.clip import build_clip, contrastive_loss, images_to_clip_pixels
from marble.text.tokenizer import tokenize_prompts, train_tokenizer

PROMPTS = ["red square", "green square", "blue square", "yellow square"]
COLOURS = [(220, 30, 30), (30, 180, 60), (40, 60, 220), (240, 210, 30)]


def coloured_images(size: int = 16) -> torch.Tensor:
    images = torch.full((4, 3, size, size), 255, dtype=torch.uint8)
    for k, colour in enumerate(COLOURS):
        inner = slice(size // 4, -size // 4)
        images[k, :, inner, inner] = torch.tensor(colour, dtype=torch.uint8)[:, None, None]
    return images  # (4, 3, size, size)


@pytest.fixture(scope="module")
def tokenizer():
    text = preset("tiny").text
    return train_tokenizer(PROMPTS * 3, text.vocab_size, text.max_length)


@pytest.fixture(scope="module")
def trained_clip(tokenizer):
    """A tiny CLIP after a few contrastive steps on the four image-caption pairs."""
    torch.manual_seed(0)
    clip = build_clip(preset("tiny").text, 16, tokenizer)
    pixels, ids = images_to_clip_pixels(coloured_images()), tokenize_prompts(tokenizer, PROMPTS).input_ids
    optimizer = torch.optim.Adam(clip.parameters(), lr=1e-3)  # 1e-2 sometimes collapses to uniform logits
    for _ in range(100):
        loss, _ = contrastive_loss(clip, pixels, ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return clip.eval()


def test_matching_pairs_score_higher_than_mismatched_pairs(trained_clip, tokenizer):
    images = coloured_images()
    matching = clip_score(trained_clip, tokenizer, images, PROMPTS)
    mismatched = clip_score(trained_clip, tokenizer, images, PROMPTS[1:] + PROMPTS[:1])
    assert matching.shape == (4,) and matching.dtype == torch.float64
    assert (matching > mismatched).all() and matching.mean() > mismatched.mean() + 20
    assert ((matching >= 0) & (matching <= 100)).all() and ((mismatched >= 0) & (mismatched <= 100)).all()


def test_score_is_100_times_clipped_cosine_of_the_models_own_logits(trained_clip, tokenizer):
    images = coloured_images()
    with torch.no_grad():
        outputs = trained_clip(input_ids=tokenize_prompts(tokenizer, PROMPTS).input_ids,
                               pixel_values=images_to_clip_pixels(images))
    cosine = outputs.logits_per_image / trained_clip.logit_scale.exp()  # (4 images, 4 texts)
    for shift in range(4):
        prompts = PROMPTS[shift:] + PROMPTS[:shift]
        expected = 100 * torch.stack([cosine[k, (k + shift) % 4] for k in range(4)]).clamp(min=0)
        torch.testing.assert_close(clip_score(trained_clip, tokenizer, images, prompts), expected.double(),
                                   rtol=1e-4, atol=1e-4)


def test_batches_and_image_size_do_not_change_scores(trained_clip, tokenizer):
    images = coloured_images()
    whole = clip_score(trained_clip, tokenizer, images, PROMPTS)
    torch.testing.assert_close(clip_score(trained_clip, tokenizer, images, PROMPTS, batch_size=3), whole)
    upscaled = torch.repeat_interleave(torch.repeat_interleave(images, 2, dim=2), 2, dim=3)  # 32 px, resized back
    assert clip_score(trained_clip, tokenizer, upscaled, PROMPTS).shape == (4,)


def test_training_mode_is_restored(trained_clip, tokenizer):
    trained_clip.train()
    clip_score(trained_clip, tokenizer, coloured_images()[:1], PROMPTS[:1])
    assert trained_clip.training
    trained_clip.eval()


def test_length_mismatch_and_empty_input_are_marble_errors(trained_clip, tokenizer):
    with pytest.raises(MarbleError, match="one prompt per image"):
        clip_score(trained_clip, tokenizer, coloured_images(), PROMPTS[:3])
    with pytest.raises(MarbleError, match="at least one"):
        clip_score(trained_clip, tokenizer, coloured_images()[:0], [])


def test_load_clip_with_tokenizer_round_trip(trained_clip, tokenizer, tmp_path):
    trained_clip.save_pretrained(tmp_path / "clip")
    with pytest.raises(MarbleError, match="tokenizer"):
        load_clip_with_tokenizer(tmp_path / "clip")
    tokenizer.save_pretrained(tmp_path / "clip")
    clip, loaded_tokenizer = load_clip_with_tokenizer(tmp_path / "clip")
    images = coloured_images()
    torch.testing.assert_close(clip_score(clip, loaded_tokenizer, images, PROMPTS),
                               clip_score(trained_clip, tokenizer, images, PROMPTS))
