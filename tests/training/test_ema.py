"""EMA of the weights: the closed form after each update, its warm-up, and integer buffers copied as they are."""

import pytest
import torch

from marble.training.ema import EMA


class WithCounter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.register_buffer("count", torch.tensor(0))


def test_update_is_the_closed_form_with_warm_up():
    module = WithCounter()
    start = {k: v.clone() for k, v in module.state_dict().items()}
    ema = EMA(module, decay=0.99)
    with torch.no_grad():
        module.linear.weight.add_(1.0)
        module.count.fill_(7)
    ema.update(module, step=0)  # warm-up: d = min(0.99, 1/10)
    expected = 0.1 * start["linear.weight"] + 0.9 * module.linear.weight
    torch.testing.assert_close(ema.shadow["linear.weight"], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(ema.shadow["linear.bias"], start["linear.bias"], rtol=0, atol=1e-6)  # unchanged θ
    assert ema.shadow["count"].item() == 7
    before = ema.shadow["linear.weight"].clone()
    ema.update(module, step=10_000)  # past warm-up: d = 0.99
    torch.testing.assert_close(ema.shadow["linear.weight"], 0.99 * before + 0.01 * module.linear.weight,
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("step, decay", [(0, 0.1), (8, 0.5), (10**6, 0.999)])
def test_decay_warms_up_to_its_ceiling(step, decay):
    assert EMA(torch.nn.Linear(1, 1), 0.999).decay_at(step) == pytest.approx(decay, abs=1e-6)


def test_copy_to_writes_the_average_in_the_module_dtype():
    module = torch.nn.Linear(2, 2).to(torch.bfloat16)
    ema = EMA(module, decay=0.9)
    ema.shadow["weight"].fill_(0.25)
    ema.copy_to(module)
    assert module.weight.dtype == torch.bfloat16 and torch.all(module.weight == 0.25)
