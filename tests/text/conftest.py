"""Shared tiny fixtures: one trained tokenizer and one tiny CLIP per test session."""

import pytest
import torch

from marble.config import preset
from marble.text.clip import build_clip
from marble.text.tokenizer import train_tokenizer

CAPTIONS = [
    "a red apple", "a blue car", "grinning face", "grinning face with big eyes", "red heart",
    "咧嘴笑的脸", "红苹果", "にっこり笑う", "赤いりんご", "露齒笑臉", "紅蘋果",
]


@pytest.fixture(scope="session")
def text_config():
    return preset("tiny").text


@pytest.fixture(scope="session")
def captions():
    return CAPTIONS * 3


@pytest.fixture(scope="session")
def tokenizer(text_config, captions):
    return train_tokenizer(captions, text_config.vocab_size, text_config.max_length)


@pytest.fixture()
def tiny_clip(text_config, tokenizer):
    torch.manual_seed(0)
    return build_clip(text_config, image_size=16, tokenizer=tokenizer)
