import json

import pytest
import torch
from transformers import CLIPTextModel

from marble.errors import MarbleError
from marble.text.encoders import ClipTextEncoder, TextEncoder, load_text_encoder
from marble.text.tokenizer import tokenize_prompts

PROMPTS = ["a red apple", "咧嘴笑的脸", "にっこり笑う", ""]


@pytest.fixture()
def encoder(tiny_clip, tokenizer):
    return ClipTextEncoder.from_clip(tiny_clip, tokenizer)


def test_follows_the_text_encoder_protocol(encoder, text_config):
    assert isinstance(encoder, TextEncoder)
    assert (encoder.kind, encoder.max_length, encoder.width) == ("clip", text_config.max_length, text_config.width)


def test_encoding_shapes_and_types(encoder, text_config):
    encoding = encoder.encode(PROMPTS)
    batch, length, width = len(PROMPTS), text_config.max_length, text_config.width
    assert encoding.context.shape == (batch, length, width) and encoding.context.dtype == torch.float32
    assert encoding.mask.shape == (batch, length) and encoding.mask.dtype == torch.bool
    assert encoding.pooled.shape == (batch, width) and encoding.pooled.dtype == torch.float32
    assert not encoding.context.requires_grad


def test_from_clip_copies_the_text_tower(encoder, tiny_clip):
    copied, original = encoder.text_model.state_dict(), tiny_clip.text_model.state_dict()
    assert copied.keys() == original.keys()
    assert all(copied[name].equal(original[name]) for name in original)
    with torch.no_grad():
        tiny_clip.text_model.final_layer_norm.weight.add_(1.0)
    assert not encoder.text_model.final_layer_norm.weight.equal(tiny_clip.text_model.final_layer_norm.weight)


def test_context_is_the_stable_diffusion_prompt_path(encoder, tiny_clip, tokenizer):
    # StableDiffusionPipeline.encode_prompt: max_length padding, truncation, text_encoder(ids)[0].
    input_ids = tokenizer(
        PROMPTS, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        expected = tiny_clip.text_model(input_ids)[0]
    assert encoder.encode(PROMPTS).context.equal(expected)


def test_matches_diffusers_encode_prompt_with_guidance(encoder, tokenizer, text_config):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(8,), layers_per_block=1, norm_num_groups=4, attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
        cross_attention_dim=text_config.width,
    )
    vae = AutoencoderKL(
        block_out_channels=(4,), norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=encoder.text_model, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    prompts = ["a red apple", "红苹果"]
    conditional, unconditional = pipe.encode_prompt(
        prompts, device=torch.device("cpu"), num_images_per_prompt=1, do_classifier_free_guidance=True
    )
    assert conditional.equal(encoder.encode(prompts).context)
    assert unconditional.equal(encoder.encode(["", ""]).context)


def test_padding_does_not_change_real_tokens(encoder, tokenizer):
    # Causal attention: states of bos..eos are the same with or without the padding after them.
    unpadded = tokenizer(["a red apple"], return_tensors="pt").input_ids  # (1, n)
    with torch.no_grad():
        alone = encoder.text_model(unpadded)[0]
    padded = encoder.encode(["a red apple"]).context[:, : unpadded.shape[1]]
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-6)


def test_mask_marks_start_to_end_tokens(encoder, tokenizer):
    encoding = encoder.encode(PROMPTS)
    ids = tokenize_prompts(tokenizer, PROMPTS).input_ids
    assert encoding.mask.equal(ids != tokenizer.pad_token_id)
    for row, prompt in zip(encoding.mask, PROMPTS):
        real = min(len(tokenizer(prompt).input_ids), len(row))  # bos + tokens + eos, truncated
        assert row.tolist() == [True] * real + [False] * (len(row) - real)
    assert encoding.mask[-1].sum() == 2  # "" is just bos, eos


def test_pooled_is_the_end_token_state(encoder):
    encoding = encoder.encode(PROMPTS)
    end_positions = encoding.mask.sum(dim=1) - 1  # last real token is eos
    expected = encoding.context[torch.arange(len(PROMPTS)), end_positions]
    assert encoding.pooled.equal(expected)


def test_different_prompts_give_different_context(encoder):
    encoding = encoder.encode(["a red apple", "a blue car"])
    assert not torch.allclose(encoding.pooled[0], encoding.pooled[1])


def test_frozen_and_kept_in_eval_mode(encoder):
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    encoder.train()
    assert not encoder.training and not encoder.text_model.training


def test_save_then_load_gives_identical_encodings(encoder, tmp_path, text_config):
    encoder.save(tmp_path)
    assert (tmp_path / "text_encoder" / "model.safetensors").is_file()
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    description = json.loads((tmp_path / "encoder.json").read_text())
    assert description == {"kind": "clip", "max_length": text_config.max_length, "width": text_config.width}
    loaded = load_text_encoder(tmp_path)
    assert isinstance(loaded, ClipTextEncoder)
    before, after = encoder.encode(PROMPTS), loaded.encode(PROMPTS)
    assert (before.context - after.context).abs().max() == 0
    assert before.pooled.equal(after.pooled) and before.mask.equal(after.mask)


def test_saved_text_encoder_loads_as_plain_transformers_model(encoder, tmp_path):
    encoder.save(tmp_path)
    plain = CLIPTextModel.from_pretrained(tmp_path / "text_encoder")
    ids = tokenize_prompts(encoder.tokenizer, PROMPTS).input_ids
    with torch.no_grad():
        assert plain(ids)[0].equal(encoder.encode(PROMPTS).context)


@pytest.mark.parametrize("bad_prompts", [[], "a red apple", ["ok", 3]])
def test_encode_rejects_bad_prompt_lists(encoder, bad_prompts):
    with pytest.raises(MarbleError):
        encoder.encode(bad_prompts)


def test_load_without_encoder_json_is_an_error(tmp_path):
    with pytest.raises(MarbleError, match="encoder.json"):
        load_text_encoder(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [('{"kind": "t5"}', "unknown text encoder kind"), ("not json", "not valid JSON"), ("[1]", "kind")],
)
def test_load_rejects_bad_encoder_json(tmp_path, content, message):
    (tmp_path / "encoder.json").write_text(content)
    with pytest.raises(MarbleError, match=message):
        load_text_encoder(tmp_path)


def test_load_clip_without_weights_is_an_error(tmp_path):
    (tmp_path / "encoder.json").write_text('{"kind": "clip", "max_length": 12, "width": 16}')
    with pytest.raises(MarbleError, match="missing"):
        load_text_encoder(tmp_path)
