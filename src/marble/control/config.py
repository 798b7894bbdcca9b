"""ControlNet training settings and presets, saved as JSON beside the trained ControlNet.

Kept beside the ControlNet code rather than in marble.config: a ControlNet is trained on top of
a finished run and stored in its own folder, not as a stage of RunConfig.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from marble.config import TrainConfig, apply_override


@dataclass(frozen=True)
class ControlNetConfig:
    condition: str = "canny"  # one of marble.control.conditions.CONDITIONS
    # Widths of the small condition encoder (Zhang et al. 2023, §3.2: 16, 32, 96, 256 for Stable
    # Diffusion's 8x). Its stride-2 convs must shrink the image to the latent size, so only the first
    # log2(image size / latent size) + 1 widths are used: three (16, 32, 96) for Marble's 4x autoencoder.
    conditioning_widths: tuple[int, ...] = (16, 32, 96, 256)
    # Zhang et al. 2023, §3.4: half the prompts become "" so the ControlNet learns to read the condition.
    caption_dropout: float = 0.5
    ema_decay: float = 0.999
    # The base U-Net's rate: the condition reaches the output only through two zero-initialised layers
    # (the condition encoder's last conv, then the zero convolutions), so it grows slowly at first.
    # Not tuned: the 15-minute demonstration (docs/controlnet.md) is its only measurement.
    train: TrainConfig = TrainConfig(steps=800, batch_size=32, learning_rate=5e-4, warmup_steps=50,
                                     mixed_precision="bf16", checkpoint_every=100, log_every=10)


def emoji_controlnet() -> ControlNetConfig:
    return ControlNetConfig()


def tiny_controlnet() -> ControlNetConfig:
    """A few thousand parameters more than the tiny U-Net: for tests and smoke runs."""
    quick = TrainConfig(steps=4, batch_size=8, warmup_steps=1, checkpoint_every=2, log_every=1)
    return ControlNetConfig(conditioning_widths=(4, 8, 8, 8), ema_decay=0.9, train=quick)


CONTROLNET_PRESETS = {"emoji": emoji_controlnet, "tiny": tiny_controlnet}


def controlnet_config(preset: str, condition: str, overrides: list[str] = (), **train_changes) -> ControlNetConfig:
    """A preset with the condition set, `KEY=VALUE` overrides applied, then TrainConfig fields changed."""
    if preset not in CONTROLNET_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(sorted(CONTROLNET_PRESETS))}")
    config = dataclasses.replace(CONTROLNET_PRESETS[preset](), condition=condition)
    for assignment in overrides:
        config = apply_override(config, assignment)
    changes = {name: value for name, value in train_changes.items() if value is not None}
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))
