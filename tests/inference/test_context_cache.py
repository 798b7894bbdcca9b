"""The prompt → context LRU: same contexts as the encoder, each prompt encoded once, oldest evicted."""

import pytest
import torch

from marble.errors import MarbleError
from marble.inference.context_cache import ContextCache
from marble.text.encoders import TextEncoding


class CountingEncoder:
    """Context of prompt p is filled with len(p); records every batch it was asked to encode."""

    def __init__(self):
        self.batches: list[list[str]] = []

    def encode(self, prompts):
        self.batches.append(list(prompts))
        context = torch.stack([torch.full((3, 2), float(len(p))) for p in prompts])  # (n, L=3, D=2)
        return TextEncoding(context, torch.ones(len(prompts), 3, dtype=torch.bool), context[:, 0])


def test_contexts_equal_the_encoders_and_repeats_are_not_encoded_again():
    encoder = CountingEncoder()
    cache = ContextCache(encoder)
    first = cache.encode(["", "cat", "cat", "a dog"])
    assert first.shape == (4, 3, 2)
    assert first[:, 0, 0].tolist() == [0.0, 3.0, 3.0, 5.0]
    again = cache.encode(["a dog", ""])
    assert torch.equal(again, first[[3, 0]])
    assert encoder.batches == [["", "cat", "a dog"]]  # one batch, each distinct prompt once
    assert (cache.hits, cache.misses) == (3, 3)


def test_least_recently_used_prompt_is_evicted_first():
    encoder = CountingEncoder()
    cache = ContextCache(encoder, capacity=2)
    cache.encode(["a"])
    cache.encode(["bb"])
    cache.encode(["a"])  # "bb" is now the oldest
    cache.encode(["ccc"])
    assert len(cache) == 2
    cache.encode(["a", "ccc"])
    cache.encode(["bb"])
    assert encoder.batches == [["a"], ["bb"], ["ccc"], ["bb"]]


def test_clear_forgets_everything():
    encoder = CountingEncoder()
    cache = ContextCache(encoder)
    cache.encode(["x"])
    cache.clear()
    cache.encode(["x"])
    assert encoder.batches == [["x"], ["x"]]


@pytest.mark.parametrize("bad", ["a prompt", [], [3]])
def test_bad_prompts_are_clear_errors(bad):
    with pytest.raises(MarbleError):
        ContextCache(CountingEncoder()).encode(bad)


def test_pipeline_encodes_a_repeated_prompt_once(tiny_run):
    from marble.pipeline import GenerationRequest, MarblePipeline

    pipeline = MarblePipeline.load(tiny_run)
    request = GenerationRequest("green ring", steps=2, guidance=3.0)
    first = pipeline.generate(request).images
    misses = pipeline.context_cache.misses
    assert torch.equal(pipeline.generate(request).images, first)
    assert pipeline.context_cache.misses == misses == 2  # "" and "green ring", once each


class LinearEncoder(torch.nn.Module):
    """A real module: its contexts depend on a weight that can be changed in place."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def encode(self, prompts):
        context = torch.stack([torch.full((3, 2), float(len(p))) for p in prompts]) * self.scale.detach()
        return TextEncoding(context, torch.ones(len(prompts), 3, dtype=torch.bool), context[:, 0])


def test_contexts_are_forgotten_when_the_encoders_weights_change():
    encoder = LinearEncoder()
    cache = ContextCache(encoder)
    assert cache.encode(["cat"])[0, 0, 0] == 3.0
    with torch.no_grad():
        encoder.scale.mul_(2)  # in place, as a LoRA merge or an optimizer step writes
    assert cache.encode(["cat"])[0, 0, 0] == 6.0
    assert cache.misses == 2
