import dataclasses

import pytest

from marble.config import load_json, preset, replace_train, RunConfig
from marble.errors import MarbleError
from marble.training.run import only_trains_longer, open_run


def longer(config, stage, steps):
    return dataclasses.replace(config, **{stage: replace_train(getattr(config, stage), steps=steps)})


def test_more_steps_continue_a_run_but_other_changes_are_refused(tmp_path):
    config = preset("tiny")
    open_run(tmp_path / "run", config)
    extended = longer(config, "unet", 40)
    assert only_trains_longer(config, extended)
    open_run(tmp_path / "run", extended)
    assert load_json(RunConfig, tmp_path / "run" / "run.json").unet.train.steps == 40

    with pytest.raises(MarbleError, match="different configuration"):
        open_run(tmp_path / "run", longer(extended, "unet", 10))  # fewer steps
    changed = dataclasses.replace(extended, unet=dataclasses.replace(extended.unet, prediction_type="v_prediction"))
    # The message names the setting, so a preset that changed since the run started is easy to match.
    with pytest.raises(MarbleError, match="different configuration .*unet.prediction_type: run epsilon, now v_prediction"):
        open_run(tmp_path / "run", changed)


def test_the_locked_image_phase_steps_count_as_training_longer():
    config = preset("tiny")
    text = config.text

    def locked(steps):
        return dataclasses.replace(config, text=dataclasses.replace(
            text, locked_image=dataclasses.replace(text.locked_image, steps=steps)))

    assert only_trains_longer(config, locked(50))
    assert not only_trains_longer(locked(50), locked(10))
    other_batch = dataclasses.replace(text.locked_image, steps=50, batch_size=7)
    assert not only_trains_longer(config, dataclasses.replace(config, text=dataclasses.replace(text, locked_image=other_batch)))
