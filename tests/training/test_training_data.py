from marble.config import DataConfig
from marble.training.data import keep_languages, load_training_data


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
