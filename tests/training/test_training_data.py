import dataclasses

import pytest

from marble.config import DataConfig, preset
from marble.errors import MarbleError
from marble.training.data import keep_languages, load_training_data
from marble.training.unet_stage import sampling_groups


def test_languages_are_filtered_but_the_primary_caption_stays(synthetic_dataset):
    data = load_training_data(synthetic_dataset, DataConfig(image_size=16, holdout_fraction=0.25, langs=("en",)),
                              progress=False)
    assert all(set(c) == {"text", "en"} for c in data.train.captions)
    everything = load_training_data(synthetic_dataset, DataConfig(image_size=16, langs=()), progress=False)
    assert all("zh" in c for c in everything.train.captions)
    assert keep_languages(everything.train, ()) is everything.train


def test_split_and_report(synthetic_dataset):
    data = load_training_data(synthetic_dataset, DataConfig(image_size=16, holdout_fraction=0.25), progress=False)
    assert len(data.train) + len(data.holdout) == 32 and len(data.holdout) > 0
    assert not set(data.train.file_names) & set(data.holdout.file_names)
    assert "no files skipped" in data.describe()


def test_balance_by_gathers_images_by_a_metadata_field_and_is_off_by_default(synthetic_dataset, shards):
    config = preset("tiny")
    data = load_training_data(synthetic_dataset, config.data, progress=False)
    assert sampling_groups(config, data) is None
    by_shape = dataclasses.replace(config, unet=dataclasses.replace(config.unet, balance_by="shape"))
    groups = sampling_groups(by_shape, data)
    shapes = data.train.field_values("shape")
    assert len(groups.members) == len(set(shapes)) and sorted(i for g in groups.members for i in g) == list(range(len(shapes)))
    assert all(len({shapes[i] for i in members}) == 1 for members in groups.members)
    missing = dataclasses.replace(config, unet=dataclasses.replace(config.unet, balance_by="colour"))
    with pytest.raises(MarbleError, match="no metadata field 'colour'"):
        sampling_groups(missing, data)
    with pytest.raises(MarbleError, match="needs an image folder"):
        sampling_groups(by_shape, load_training_data(shards, config.data, progress=False))
