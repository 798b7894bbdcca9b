import json
import unicodedata

import pytest
import transformers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from marble.errors import MarbleError
from marble.text.tokenizer import tokenize_prompts, train_tokenizer

BOS, EOS, PAD = 0, 1, 2
MIXED_PROMPTS = [
    "A Red Apple",
    "咧嘴笑的脸",  # Simplified Chinese, seen in training
    "露齒笑臉",  # Traditional Chinese
    "にっこり笑う",  # Japanese
    "ＦＵＬＬ－ｗｉｄｔｈ ＡＢＣ",  # full-width forms, folded by NFKC
    "🍎 사과 émoji",  # never seen: falls back to bytes
]


def expected_text(prompt: str) -> str:
    return unicodedata.normalize("NFKC", prompt).lower().strip()


def test_special_token_ids_are_fixed(tokenizer):
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (BOS, EOS, PAD)
    assert tokenizer.convert_ids_to_tokens([BOS, EOS, PAD]) == ["<|startoftext|>", "<|endoftext|>", "<|pad|>"]


def test_vocab_has_bytes_and_merges(tokenizer, text_config):
    assert 259 < len(tokenizer) <= text_config.vocab_size
    assert tokenizer.model_max_length == text_config.max_length
    assert tokenizer.padding_side == "right"


@pytest.mark.parametrize("prompt", MIXED_PROMPTS)
def test_round_trip_any_language(tokenizer, prompt):
    ids = tokenizer(prompt).input_ids
    assert ids[0] == BOS and ids[-1] == EOS
    assert tokenizer.unk_token_id is None
    assert tokenizer.decode(ids, skip_special_tokens=True).strip() == expected_text(prompt)


def test_normalization_folds_case_width_and_outer_spaces(tokenizer):
    assert tokenizer("RED Apple").input_ids == tokenizer("red apple").input_ids
    assert tokenizer("ＲＥＤ apple  ").input_ids == tokenizer("red apple").input_ids


def test_training_merges_frequent_words(tokenizer):
    # "grinning" appears 6 times per corpus copy: it must need fewer tokens than its 9 bytes.
    assert len(tokenizer(" grinning", add_special_tokens=False).input_ids) < len(" grinning")


def test_padded_batch_shape_and_mask(tokenizer, text_config):
    tokens = tokenize_prompts(tokenizer, ["a red apple", "红苹果", ""])
    length = text_config.max_length
    assert tokens.input_ids.shape == (3, length)
    for row, mask in zip(tokens.input_ids.tolist(), tokens.attention_mask.tolist()):
        real = sum(mask)
        assert mask == [1] * real + [0] * (length - real)
        assert row[0] == BOS and row[real - 1] == EOS
        assert row[real:] == [PAD] * (length - real)


def test_empty_prompt_is_bos_eos_then_padding(tokenizer, text_config):
    ids = tokenize_prompts(tokenizer, [""]).input_ids[0].tolist()
    assert ids == [BOS, EOS] + [PAD] * (text_config.max_length - 2)


def test_truncation_keeps_eos(tokenizer, text_config):
    long_prompt = " ".join(["grinning face with big eyes and a red apple"] * 10)
    tokens = tokenize_prompts(tokenizer, [long_prompt])
    ids = tokens.input_ids[0].tolist()
    assert len(ids) == text_config.max_length
    assert ids[0] == BOS and ids[-1] == EOS and PAD not in ids
    assert EOS not in ids[:-1]
    assert tokens.attention_mask.all()


def test_save_and_load_give_the_same_ids(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    by_class = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    by_auto = AutoTokenizer.from_pretrained(tmp_path)
    expected = tokenize_prompts(tokenizer, MIXED_PROMPTS + [""]).input_ids
    for loaded in (by_class, by_auto):
        assert loaded.model_max_length == tokenizer.model_max_length
        assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (BOS, EOS, PAD)
        assert loaded.get_vocab() == tokenizer.get_vocab()
        assert tokenize_prompts(loaded, MIXED_PROMPTS + [""]).input_ids.equal(expected)


def test_saved_class_name_resolves_in_transformers(tokenizer, tmp_path):
    # diffusers' model_index.json loads the tokenizer by this class name from transformers.
    tokenizer.save_pretrained(tmp_path)
    class_name = json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"]
    loaded = getattr(transformers, class_name).from_pretrained(tmp_path)
    assert loaded("a red apple").input_ids == tokenizer("a red apple").input_ids


def test_training_is_deterministic(tokenizer, text_config, captions):
    again = train_tokenizer(captions, text_config.vocab_size, text_config.max_length)
    assert again.get_vocab() == tokenizer.get_vocab()


def test_rejects_vocab_smaller_than_byte_alphabet():
    with pytest.raises(MarbleError, match="vocab_size"):
        train_tokenizer(["a"], vocab_size=200, max_length=8)


def test_rejects_max_length_without_room_for_special_tokens():
    with pytest.raises(MarbleError, match="max_length"):
        train_tokenizer(["a"], vocab_size=300, max_length=1)
