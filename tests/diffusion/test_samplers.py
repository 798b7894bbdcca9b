import pytest
from diffusers import DPMSolverMultistepScheduler, PNDMScheduler

from marble.diffusion.samplers import SAMPLERS, make_scheduler
from marble.diffusion.schedule import NoiseSchedule
from marble.errors import MarbleError

CONFIG = NoiseSchedule().scheduler_config("epsilon")


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_constructs_and_sets_timesteps(name):
    scheduler = make_scheduler(name, CONFIG)
    assert isinstance(scheduler, SAMPLERS[name].scheduler_class)
    assert scheduler.config.prediction_type == "epsilon"
    scheduler.set_timesteps(10)
    assert len(scheduler.timesteps) >= 10
    assert scheduler.timesteps.min() >= 0 and scheduler.timesteps.max() < CONFIG["num_train_timesteps"]
    assert SAMPLERS[name].description


def test_sampler_options_override_the_config():
    dpm = make_scheduler("dpm++", CONFIG)
    sde = make_scheduler("dpm++-sde", CONFIG)
    pndm = make_scheduler("pndm", CONFIG)
    assert isinstance(dpm, DPMSolverMultistepScheduler) and isinstance(pndm, PNDMScheduler)
    assert (dpm.config.algorithm_type, dpm.config.solver_order) == ("dpmsolver++", 2)
    assert sde.config.algorithm_type == "sde-dpmsolver++"
    assert pndm.config.skip_prk_steps is True


def test_config_keys_a_scheduler_lacks_are_dropped():
    euler = make_scheduler("euler", {**CONFIG, "_class_name": "PNDMScheduler"})
    assert "clip_sample" not in euler.config and "set_alpha_to_one" not in euler.config
    assert euler.config.steps_offset == 1 and euler.config.timestep_spacing == "leading"


def test_unknown_sampler_lists_valid_names():
    with pytest.raises(MarbleError, match="ddim.*euler-a"):
        make_scheduler("lms", CONFIG)
