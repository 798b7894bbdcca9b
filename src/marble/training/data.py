"""Loading a stage's training data: the image folder, its skip report, the fixed held-out split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from marble.config import DataConfig
from marble.data.folder import ImageCaptionSet, SkipReport, load_image_folder
from marble.data.split import split_holdout


@dataclass
class TrainingData:
    train: ImageCaptionSet
    holdout: ImageCaptionSet
    skipped: SkipReport

    def describe(self) -> str:
        return f"{len(self.train)} training images, {len(self.holdout)} held out; {self.skipped.summary()}"


def keep_languages(data: ImageCaptionSet, langs: tuple[str, ...]) -> ImageCaptionSet:
    """Drop captions in languages not asked for; the primary caption ("text") always stays."""
    if not langs:
        return data
    kept = [{k: v for k, v in captions.items() if k == "text" or k in langs} for captions in data.captions]
    return ImageCaptionSet(data.images, kept, data.file_names)


def load_training_data(data_dir: Path, config: DataConfig, progress: bool = True) -> TrainingData:
    data, skipped = load_image_folder(Path(data_dir), config.image_size, config.max_image_bytes, progress=progress)
    train, holdout = split_holdout(keep_languages(data, config.langs), config.holdout_fraction)
    return TrainingData(train, holdout, skipped)
