"""Where a run keeps each stage's artefacts; shared by training, the pipeline and export.

    RUN/run.json                    RunConfig the run was made with
    RUN/text/encoder/               frozen text encoder used by the generator (encoder.json + weights)
    RUN/text/clip/                  the whole contrastive CLIP (image tower too), when trained here
    RUN/autoencoder/model/          diffusers AutoencoderKL, scaling_factor measured from data
    RUN/autoencoder/preview.json    linear latent -> RGB map for cheap live previews
    RUN/unet/model/                 diffusers UNet2DConditionModel (EMA weights)
    RUN/unet/scheduler/             diffusers scheduler config: noise schedule + prediction type
    RUN/<stage>/checkpoints/        resumable training state (not needed to generate)
    RUN/<stage>/summary.json        what the stage measured: time, losses, PSNR...
    RUN/cache/                      made at inference (the U-Net as ONNX); safe to delete
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def run_config(self) -> Path:
        return self.root / "run.json"

    def stage(self, name: str) -> Path:
        return self.root / name

    @property
    def text_encoder(self) -> Path:
        return self.root / "text" / "encoder"

    @property
    def clip(self) -> Path:
        return self.root / "text" / "clip"

    @property
    def autoencoder(self) -> Path:
        return self.root / "autoencoder" / "model"

    @property
    def preview_map(self) -> Path:
        return self.root / "autoencoder" / "preview.json"

    @property
    def unet(self) -> Path:
        return self.root / "unet" / "model"

    @property
    def scheduler(self) -> Path:
        return self.root / "unet" / "scheduler"

    @property
    def calibration_prompts(self) -> Path:
        """Training captions that precision int8 samples to calibrate its quantized U-Net (a JSON list)."""
        return self.root / "unet" / "calibration_prompts.json"

    @property
    def inference_cache(self) -> Path:
        """Derived files made at inference, e.g. the U-Net exported to ONNX; safe to delete."""
        return self.root / "cache"

    def summary(self, stage: str) -> Path:
        return self.root / stage / "summary.json"
