import math

import pytest
import torch
from diffusers import DDPMScheduler

from marble.config import preset
from marble.diffusion.schedule import NoiseSchedule
from marble.errors import MarbleError

# β = (0.1, 0.5) ⇒ ᾱ = (0.9, 0.45): small enough to check by hand.
TWO_STEP = NoiseSchedule(num_train_timesteps=2, beta_schedule="linear", beta_start=0.1, beta_end=0.5)


@pytest.mark.parametrize(
    "schedule",
    [
        NoiseSchedule(),
        NoiseSchedule(beta_schedule="linear", beta_start=0.0001, beta_end=0.02),
        NoiseSchedule(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2"),
    ],
    ids=["scaled_linear", "linear", "cosine"],
)
def test_alphas_cumprod_equal_diffusers(schedule):
    reference = DDPMScheduler.from_config(schedule.scheduler_config("epsilon"))
    assert schedule.alphas_cumprod.dtype == torch.float32
    assert torch.equal(schedule.alphas_cumprod, reference.alphas_cumprod)


def test_alphas_cumprod_hand_values():
    assert TWO_STEP.alphas_cumprod.tolist() == pytest.approx([0.9, 0.45], rel=1e-6)
    assert NoiseSchedule().alphas_cumprod[0].item() == pytest.approx(1 - 0.00085, rel=1e-6)


def test_q_sample_golden_values():
    x0 = torch.full((2, 1, 1, 1), 2.0)
    noise = torch.full((2, 1, 1, 1), -1.0)
    noisy = TWO_STEP.q_sample(x0, torch.tensor([0, 1]), noise).flatten()
    # sqrt(0.9)·2 − sqrt(0.1) and sqrt(0.45)·2 − sqrt(0.55)
    assert noisy.tolist() == pytest.approx([1.5811388301, 0.6000209378], rel=1e-6)


def test_velocity_and_snr_golden_values():
    x0 = torch.full((1, 1, 1, 1), 2.0)
    noise = torch.full((1, 1, 1, 1), -1.0)
    v = TWO_STEP.velocity(x0, noise, torch.tensor([1]))
    assert v.item() == pytest.approx(-math.sqrt(0.45) - 2 * math.sqrt(0.55), rel=1e-6)
    assert TWO_STEP.snr(torch.tensor([0, 1])).tolist() == pytest.approx([9.0, 0.45 / 0.55], rel=1e-5)


def test_q_sample_and_velocity_equal_diffusers():
    schedule = NoiseSchedule()
    reference = DDPMScheduler.from_config(schedule.scheduler_config("v_prediction"))
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 2, 3, 3, generator=generator)
    noise = torch.randn(4, 2, 3, 3, generator=generator)
    t = torch.tensor([0, 17, 500, 999])
    assert torch.equal(schedule.q_sample(x0, t, noise), reference.add_noise(x0, noise, t))
    assert torch.equal(schedule.velocity(x0, noise, t), reference.get_velocity(x0, noise, t))


def test_q_sample_moments_match_forward_process():
    schedule = NoiseSchedule()
    t, draws = 400, 20_000
    alpha_bar = schedule.alphas_cumprod[t].item()
    x0 = torch.tensor([1.5, -0.5]).repeat(draws, 1)  # (draws, 2)
    noise = torch.randn(draws, 2, generator=torch.Generator().manual_seed(1))
    noisy = schedule.q_sample(x0, torch.full((draws,), t), noise)
    standard_error = math.sqrt((1 - alpha_bar) / draws)
    expected_mean = torch.tensor([1.5, -0.5]) * math.sqrt(alpha_bar)
    assert torch.allclose(noisy.mean(0), expected_mean, atol=5 * standard_error)
    assert torch.allclose(noisy.var(0), torch.full((2,), 1 - alpha_bar), rtol=0.05)


def test_from_unet_config_and_scheduler_config():
    unet = preset("tiny").unet
    schedule = NoiseSchedule.from_unet_config(unet)
    assert schedule == NoiseSchedule(unet.num_train_timesteps, unet.beta_schedule, unet.beta_start, unet.beta_end)
    config = schedule.scheduler_config("v_prediction")
    assert config["prediction_type"] == "v_prediction"
    assert (config["steps_offset"], config["timestep_spacing"], config["set_alpha_to_one"]) == (1, "leading", False)


def test_unknown_beta_schedule_is_a_marble_error():
    with pytest.raises(MarbleError, match="scaled_linear"):
        NoiseSchedule(beta_schedule="sigmoidal")
