import math

import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor

from marble.diffusion.samplers import SAMPLERS, make_scheduler
from marble.diffusion.sampling import classifier_free_guidance, predict_x0, sample
from marble.diffusion.schedule import NoiseSchedule
from marble.errors import MarbleError

SCHEDULE = NoiseSchedule()
ALPHAS_CUMPROD = SCHEDULE.alphas_cumprod
TARGET = torch.tensor([0.7, -1.2]).reshape(1, 2, 1, 1).expand(1, 2, 4, 4)  # the one data point c


def config(prediction_type="epsilon"):
    return SCHEDULE.scheduler_config(prediction_type)


def optimal_epsilon(x_in, t):
    """For data that is always c, E[ε | x_t] = (x_t − sqrt(ᾱ)c) / sqrt(1 − ᾱ)."""
    alpha_bar = ALPHAS_CUMPROD[int(t)]
    return (x_in - alpha_bar.sqrt() * TARGET) / (1 - alpha_bar).sqrt()


def optimal_velocity(x_in, t):
    alpha_bar = ALPHAS_CUMPROD[int(t)]
    epsilon = optimal_epsilon(x_in, t)
    return alpha_bar.sqrt() * epsilon - (1 - alpha_bar).sqrt() * TARGET


def noise(seed=0):
    return torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,steps", [("ddim", 20), ("ddpm", 50), ("euler", 20), ("dpm++", 20), ("unipc", 20)])
def test_optimal_denoiser_recovers_the_data_point(name, steps):
    out = sample(optimal_epsilon, make_scheduler(name, config()), noise(), steps, torch.Generator().manual_seed(1))
    # DDIM stops at ᾱ_0 < 1 (set_alpha_to_one=False), leaving noise of std sqrt(0.00085) ≈ 0.03.
    assert torch.allclose(out, TARGET, atol=0.1)


def test_v_prediction_recovers_the_data_point():
    out = sample(optimal_velocity, make_scheduler("ddim", config("v_prediction")), noise(), 20, None)
    assert torch.allclose(out, TARGET, atol=0.1)


@pytest.mark.parametrize("name", ["ddpm", "euler-a"])
def test_stochastic_samplers_are_deterministic_per_seed(name):
    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return sample(lambda x, t: torch.zeros_like(x), make_scheduler(name, config()), noise(), 5, generator)

    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))


def test_on_step_sees_every_model_call():
    seen = []
    sample(optimal_epsilon, make_scheduler("ddim", config()), noise(), 7, None, on_step=seen.append)
    assert [info.index for info in seen] == list(range(7)) and {info.total for info in seen} == {7}
    assert seen[0].t.item() == 6 * (1000 // 7) + 1 and seen[-1].t.item() == 1  # leading spacing, offset 1
    assert torch.equal(seen[-1].x_in, seen[-2].latents_after)

    heun_calls = []
    sample(optimal_epsilon, make_scheduler("heun", config()), noise(), 4, None, on_step=heun_calls.append)
    assert len(heun_calls) == 2 * 4 - 1 == heun_calls[0].total


def test_step_count_is_checked():
    scheduler = make_scheduler("ddim", config())
    with pytest.raises(MarbleError, match=">= 1"):
        sample(optimal_epsilon, scheduler, noise(), 0, None)
    with pytest.raises(MarbleError, match="1000"):
        sample(optimal_epsilon, scheduler, noise(), 1001, None)


@pytest.mark.parametrize("name", ["ddim", "euler-a", "heun", "dpm++-sde", "pndm"])
def test_loop_equals_stable_diffusion_pipeline(name):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=2, out_channels=2, block_out_channels=(4, 4), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=4, attention_head_dim=2, norm_num_groups=2,
    ).eval()
    vae = AutoencoderKL(block_out_channels=(4,), norm_num_groups=2, latent_channels=2)  # factor 1: latents 8×8
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=make_scheduler(name, config()),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    cond, uncond = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    expected = pipe(
        prompt_embeds=cond, negative_prompt_embeds=uncond, guidance_scale=3.0, num_inference_steps=4,
        height=8, width=8, generator=torch.Generator().manual_seed(7), output_type="latent",
    ).images

    generator = torch.Generator().manual_seed(7)
    latents = randn_tensor((1, 2, 8, 8), generator=generator, dtype=torch.float32)
    context = torch.cat([uncond, cond])

    @torch.no_grad()
    def denoise(x, t):
        uncond_out, cond_out = unet(torch.cat([x, x]), t, encoder_hidden_states=context).sample.chunk(2)
        return classifier_free_guidance(uncond_out, cond_out, 3.0)

    assert torch.equal(sample(denoise, make_scheduler(name, config()), latents, 4, generator), expected)


def test_predict_x0_golden_values():
    alphas_cumprod = torch.tensor([0.9, 0.36])
    x_in, output = torch.tensor([2.0]), torch.tensor([1.0])
    # ᾱ = 0.36: eps → (2 − 0.8·1) / 0.6 = 2; v → 0.6·2 − 0.8·1 = 0.4
    assert predict_x0(x_in, output, torch.tensor(1), alphas_cumprod, "epsilon").item() == pytest.approx(2.0)
    assert predict_x0(x_in, output, torch.tensor(1), alphas_cumprod, "v_prediction").item() == pytest.approx(0.4)
    # a fractional sigma-schedule timestep interpolates ᾱ: t = 0.5 → ᾱ = 0.63
    halfway = predict_x0(x_in, output, torch.tensor(0.5), alphas_cumprod, "epsilon").item()
    assert halfway == pytest.approx((2 - math.sqrt(0.37)) / math.sqrt(0.63))
    with pytest.raises(MarbleError):
        predict_x0(x_in, output, torch.tensor(1), alphas_cumprod, "sample")


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_predict_x0_from_any_scheduler_input_finds_the_data_point(name):
    seen = []
    sample(optimal_epsilon, make_scheduler(name, config()), noise(), 5, torch.Generator().manual_seed(0), seen.append)
    for info in seen:
        estimate = predict_x0(info.x_in, info.model_output, info.t, ALPHAS_CUMPROD, "epsilon")
        assert torch.allclose(estimate, TARGET, atol=1e-3)


def test_classifier_free_guidance_golden_value():
    uncond, cond = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 1.0])
    assert classifier_free_guidance(uncond, cond, 7.5).tolist() == [16.0, -5.5]
    assert torch.equal(classifier_free_guidance(uncond, cond, 1.0), cond)
