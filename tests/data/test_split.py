import pytest
import torch

from marble.data.folder import ImageCaptionSet
from marble.data.split import holdout_mask, holdout_score, split_holdout
from marble.errors import MarbleError

NAMES = [
    "images/1f34e.png", "images/2764.png", "images/1f44b-1f3fb.png",
    "a.png", "b.png", "c.png", "d.png", "e.png",
]


def make_set(names: list[str]) -> ImageCaptionSet:
    images = torch.arange(len(names), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).clone()
    return ImageCaptionSet(images, [{"text": f"caption {n}"} for n in names], list(names))


def test_score_is_first_eight_hex_digits_of_sha1():
    # sha1(b"a.png") starts 69aba0d0
    assert holdout_score("a.png") == 0x69ABA0D0 / 2**32


def test_mask_is_golden():
    # Scores: .333 .659 .272 .413 .348 .263 .460 .467; hard-coded so any change of hash shows.
    assert holdout_mask(NAMES, 0.3) == [False, False, True, False, False, True, False, False]
    assert holdout_mask(NAMES, 0.35) == [True, False, True, False, True, True, False, False]
    assert holdout_mask(NAMES, 0.0) == [False] * 8


def test_fraction_is_respected_on_many_names():
    names = [f"images/{i:05d}.png" for i in range(1000)]
    for fraction in (0.05, 0.25, 0.5):
        held = sum(holdout_mask(names, fraction))
        assert abs(held / 1000 - fraction) <= 0.03


def test_split_is_disjoint_and_covering():
    data = make_set([f"{i}.png" for i in range(40)])
    train, holdout = split_holdout(data, 0.25)
    assert set(train.file_names).isdisjoint(holdout.file_names)
    assert sorted(train.file_names + holdout.file_names) == sorted(data.file_names)
    assert len(holdout) > 0 and len(train) > 0
    for part in (train, holdout):  # images and captions moved with their file names
        for image, caption, name in zip(part.images, part.captions, part.file_names):
            assert image[0, 0, 0].item() == data.file_names.index(name)
            assert caption == {"text": f"caption {name}"}


def test_tiny_set_still_holds_out_its_lowest_scoring_item():
    assert holdout_mask(["a.png", "b.png"], 0.01) == [False, True]  # b scores .348 < a's .413
    train, holdout = split_holdout(make_set(["a.png", "b.png"]), 0.01)
    assert train.file_names == ["a.png"] and holdout.file_names == ["b.png"]
    assert holdout_mask(["a.png"], 0.01) == [False]  # one item: keep it for training


def test_zero_fraction_holds_out_nothing():
    train, holdout = split_holdout(make_set(NAMES), 0.0)
    assert train.file_names == NAMES and len(holdout) == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_fraction_outside_unit_interval_is_an_error(fraction):
    with pytest.raises(MarbleError, match=r"\[0, 1\)"):
        holdout_mask(NAMES, fraction)


def test_split_leaving_no_training_data_is_an_error():
    with pytest.raises(MarbleError, match="no training images"):
        split_holdout(make_set(["images/1f34e.png"]), 0.9)
