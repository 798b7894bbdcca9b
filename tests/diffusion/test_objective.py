import pytest
import torch

from marble.diffusion.objective import diffusion_loss, min_snr_weights, training_target
from marble.diffusion.schedule import NoiseSchedule
from marble.errors import MarbleError

# ᾱ = (0.9, 0.45) ⇒ SNR = (9, 0.818…)
TWO_STEP = NoiseSchedule(num_train_timesteps=2, beta_schedule="linear", beta_start=0.1, beta_end=0.5)
T = torch.tensor([0, 1])


def test_epsilon_target_is_the_noise_and_v_target_the_velocity():
    x0, noise = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    assert torch.equal(training_target("epsilon", x0, noise, T, TWO_STEP), noise)
    assert torch.equal(training_target("v_prediction", x0, noise, T, TWO_STEP), TWO_STEP.velocity(x0, noise, T))


def test_min_snr_weights_golden_values():
    snr_low = 0.45 / 0.55
    eps = min_snr_weights(T, TWO_STEP, gamma=5.0, prediction_type="epsilon")
    v = min_snr_weights(T, TWO_STEP, gamma=5.0, prediction_type="v_prediction")
    assert eps.tolist() == pytest.approx([5 / 9, 1.0], rel=1e-5)
    assert v.tolist() == pytest.approx([5 / 10, snr_low / (snr_low + 1)], rel=1e-5)


def test_min_snr_disabled_gives_ones():
    assert min_snr_weights(T, TWO_STEP, gamma=0.0, prediction_type="epsilon").tolist() == [1.0, 1.0]


def test_diffusion_loss_golden_value():
    output = torch.tensor([[1.0, 3.0], [2.0, 0.0]])
    target = torch.zeros(2, 2)
    # per-sample MSE (5, 2), weighted (5, 1), batch mean 3
    assert diffusion_loss(output, target, torch.tensor([1.0, 0.5])).item() == pytest.approx(3.0)
    assert diffusion_loss(output, target).item() == pytest.approx(3.5)


def test_diffusion_loss_is_float32_under_bf16():
    loss = diffusion_loss(torch.ones(2, 4, dtype=torch.bfloat16), torch.zeros(2, 4, dtype=torch.bfloat16))
    assert loss.dtype == torch.float32


def test_bad_inputs_are_marble_errors():
    x0 = torch.zeros(2, 1)
    with pytest.raises(MarbleError, match="epsilon"):
        training_target("sample", x0, x0, T, TWO_STEP)
    with pytest.raises(MarbleError, match="v_prediction"):
        min_snr_weights(T, TWO_STEP, 5.0, "x0")
    with pytest.raises(MarbleError, match="differ"):
        diffusion_loss(torch.zeros(2, 3), torch.zeros(2, 4))
