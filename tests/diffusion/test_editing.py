"""SDEdit and latent inpainting over denoiser callables: which steps run, where they start, what is kept."""

import pytest
import torch

from marble.diffusion.editing import edit_latents, keep_unmasked, latent_mask, noised_source, strength_timesteps
from marble.diffusion.samplers import make_scheduler
from marble.diffusion.schedule import NoiseSchedule
from marble.errors import MarbleError

SCHEDULE = NoiseSchedule()
ALPHAS_CUMPROD = SCHEDULE.alphas_cumprod
TARGET = torch.tensor([0.7, -1.2]).reshape(1, 2, 1, 1).expand(1, 2, 4, 4)  # the one data point c


def scheduler(name: str, steps: int):
    made = make_scheduler(name, SCHEDULE.scheduler_config("epsilon"))
    made.set_timesteps(steps)
    return made


def optimal_epsilon(x_in, t):
    """For data that is always c, E[ε | x_t] = (x_t − sqrt(ᾱ)c) / sqrt(1 − ᾱ), pixel by pixel."""
    alpha_bar = ALPHAS_CUMPROD[int(t)]
    return (x_in - alpha_bar.sqrt() * TARGET) / (1 - alpha_bar).sqrt()


def randn(seed: int) -> torch.Tensor:
    return torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("strength, expected", [
    (1.0, [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]),
    (0.5, [401, 301, 201, 101, 1]),
    (0.3, [201, 101, 1]),  # 10 · 0.3 = 3.0000000000000004 → 3
    (0.29, [101, 1]),  # 2.9 → 2: diffusers' int(), not round()
    (0.09, []),  # below 1/steps: no step, the source comes back
    (0.0, []),
])
def test_strength_keeps_the_last_floor_steps_times_strength_timesteps(strength, expected):
    assert strength_timesteps(scheduler("ddim", 10), 10, strength).tolist() == expected


def test_second_order_and_plms_tails_follow_diffusers():
    heun = strength_timesteps(scheduler("heun", 4), 4, 0.5)  # 7 timesteps for 4 steps; 2 steps kept
    assert len(heun) == 2 * 2 - 1
    pndm = scheduler("pndm", 10)
    assert len(pndm.timesteps) == 11  # PLMS repeats its first timestep
    assert len(strength_timesteps(pndm, 10, 0.5)) == 6
    assert len(strength_timesteps(scheduler("pndm", 10), 10, 0.0)) == 0


def test_sigma_schedulers_index_from_the_kept_tail():
    euler = scheduler("euler", 10)
    strength_timesteps(euler, 10, 0.5)
    assert euler.begin_index == 5


def test_intermediate_strength_starts_at_the_forward_process_sample():
    source, noise = randn(0), randn(1)
    ddim = scheduler("ddim", 10)
    timesteps = strength_timesteps(ddim, 10, 0.5)
    start = noised_source(ddim, source, noise, timesteps, 0.5)
    # x_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε at t = 401 (Ho et al. 2020, eq. 4).
    assert torch.allclose(start, SCHEDULE.q_sample(source, torch.tensor([401]), noise), atol=1e-6)

    euler = scheduler("euler", 10)
    start = noised_source(euler, source, noise, strength_timesteps(euler, 10, 0.5), 0.5)
    sigma = ((1 - ALPHAS_CUMPROD[401]) / ALPHAS_CUMPROD[401]).sqrt()  # Karras σ of the same x_t, unscaled
    assert torch.allclose(start, source + sigma * noise, atol=1e-5)


def test_strength_one_is_pure_noise_and_zero_is_the_source():
    source, noise = randn(0), randn(1)
    euler = scheduler("euler", 10)
    full = strength_timesteps(euler, 10, 1.0)
    assert torch.equal(noised_source(euler, source, noise, full, 1.0), noise * euler.init_noise_sigma)
    ddim = scheduler("ddim", 10)
    assert torch.equal(noised_source(ddim, source, noise, strength_timesteps(ddim, 10, 0.0), 0.0), source)


def test_mask_is_max_pooled_onto_the_latent_grid():
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[5, 9] = True  # one pixel: its 2×2 block is latent cell (2, 4)
    cells = latent_mask(mask, 8)
    assert cells.shape == (1, 1, 8, 8)
    assert cells.sum() == 1 and cells[0, 0, 2, 4] == 1
    assert latent_mask(torch.ones(16, 16, dtype=torch.bool), 4).eq(1).all()


@pytest.mark.parametrize("shape", [(16, 12), (15, 15)])
def test_a_mask_that_does_not_tile_the_latent_grid_is_an_error(shape):
    with pytest.raises(MarbleError, match="^mask:"):
        latent_mask(torch.ones(shape, dtype=torch.bool), 8)


def test_the_kept_region_follows_the_noised_source_and_ends_clean():
    source, noise = randn(0), randn(1)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    ddim = scheduler("ddim", 10)
    timesteps = strength_timesteps(ddim, 10, 1.0)
    blend = keep_unmasked(ddim, source, noise, mask, timesteps)
    latents = torch.full_like(source, 9.0)
    after_first = blend(0, latents)
    assert torch.equal(after_first[..., :2, :], latents[..., :2, :])
    expected = SCHEDULE.q_sample(source, torch.tensor([801]), noise)  # the next step's noise level
    assert torch.allclose(after_first[..., 2:, :], expected[..., 2:, :], atol=1e-6)
    assert torch.equal(blend(len(timesteps) - 1, latents)[..., 2:, :], source[..., 2:, :])


@pytest.mark.parametrize("name", ["ddim", "dpm++", "euler", "euler-a", "heun"])
def test_inpainting_with_the_optimal_denoiser_keeps_the_source_and_fills_in_the_data(name):
    source, noise = randn(0), randn(1)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 1:3, 1:3] = 1
    out = edit_latents(optimal_epsilon, make_scheduler(name, SCHEDULE.scheduler_config("epsilon")), source, noise,
                       20, 1.0, torch.Generator().manual_seed(2), mask=mask)
    keep = mask.expand_as(out) == 0
    assert torch.equal(out[keep], source[keep])  # exactly: the last blend puts the clean source back
    # The masked cells are denoised towards the only data point (DDIM stops at ᾱ_0 < 1: ≈0.03 noise).
    assert torch.allclose(out[~keep], TARGET.expand_as(out)[~keep], atol=0.1)


def test_edit_calls_the_denoiser_once_per_kept_step():
    calls = []

    def counting(x_in, t):
        calls.append(int(t))
        return optimal_epsilon(x_in, t)

    mask = torch.ones(1, 1, 4, 4)
    edit_latents(counting, make_scheduler("ddim", SCHEDULE.scheduler_config("epsilon")), randn(0), randn(1), 10, 0.5,
                 None, mask=mask)
    assert calls == [401, 301, 201, 101, 1]
    calls.clear()
    out = edit_latents(counting, make_scheduler("ddim", SCHEDULE.scheduler_config("epsilon")), randn(0), randn(1), 10,
                       0.0, None)
    assert calls == [] and torch.equal(out, randn(0))


def test_step_count_is_checked_as_for_sampling():
    with pytest.raises(MarbleError, match=">= 1"):
        edit_latents(optimal_epsilon, make_scheduler("ddim", SCHEDULE.scheduler_config("epsilon")), randn(0),
                     randn(1), 0, 0.5, None)
