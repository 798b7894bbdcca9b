"""Frozen configs for every stage, presets, and their JSON round trip.

Each stage's config is saved as JSON beside its weights, so a checkpoint always says how it
was made. Presets are plain functions of nothing: `PRESETS[name]()` returns a `RunConfig`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every stage's training loop."""

    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    mixed_precision: str = "no"  # "no" | "bf16": measured per stage, see DESIGN.md
    checkpoint_every: int = 500
    log_every: int = 10
    sample_every: int = 0  # 0: no sample grids during training
    seed: int = 0
    # torch.compile the trained module. A lone emoji U-Net step measured 11% faster, but the bench's
    # training loop saw no gain (docs/performance.md), so it is off; it changes no result, so a run may
    # switch it between resumes.
    compile: bool = False


@dataclass(frozen=True)
class DataConfig:
    image_size: int = 64
    holdout_fraction: float = 0.05
    # Caption languages to train on (keys of a record's `captions`); empty: every language present.
    langs: tuple[str, ...] = ("en", "zh", "zh-hant", "ja")
    max_image_bytes: int = 20_000_000  # larger files are skipped as oversized
    # Shard folders only (`marble data shard`): samples a stream shuffles among, DataLoader workers per process.
    shuffle_buffer: int = 1000
    stream_workers: int = 2


@dataclass(frozen=True)
class TextConfig:
    """Text encoder: Marble's own small CLIP, or a frozen packaged MiniLM."""

    kind: str = "clip"  # "clip" | "minilm"
    vocab_size: int = 4096
    max_length: int = 32  # tokens per prompt, including start and end tokens
    width: int = 192
    layers: int = 3
    heads: int = 4
    vision_width: int = 192
    vision_layers: int = 3
    vision_heads: int = 4
    patch_size: int = 8
    projection_dim: int = 128
    # bf16 autocast: faster than fp32 for every emoji stage here (docs/precision.md). 1,200 steps, not
    # 800: the loss was still falling fast at 800 (recall@1 0.53 -> 0.70, docs/reference-model.md).
    train: TrainConfig = TrainConfig(steps=1200, batch_size=128, learning_rate=5e-4, warmup_steps=80,
                                     mixed_precision="bf16", checkpoint_every=200)
    # Then train the text tower alone against the frozen image tower's embeddings of every training
    # image (locked-image tuning, LiT: Zhai et al. 2022): each caption must pick its own image out of
    # all of them, not out of one batch, so the rare hard negatives (apple vs heart) are always there
    # (recall@1 0.70 -> 0.96 in 400 steps, docs/reference-model.md). steps=0 skips it.
    locked_image: TrainConfig = TrainConfig(steps=400, batch_size=512, learning_rate=2e-4, warmup_steps=50,
                                            mixed_precision="bf16", checkpoint_every=200)


@dataclass(frozen=True)
class AutoencoderConfig:
    """diffusers AutoencoderKL; downsampling factor is 2 ** (len(block_out_channels) - 1)."""

    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    kl_weight: float = 1e-6
    # The L1 weight of each of the four corner pixels, the others weighing 1 (zero padding makes the
    # corners a convolutional decoder's worst pixels; see autoencoder/loss.py). 1: a plain mean.
    corner_weight: float = 1.0
    # Weight of an extra L1 on the colour part of the error (its deviation from the channel mean; see
    # autoencoder/loss.py chroma_l1), against coloured fringes at edges. 0: none.
    chroma_weight: float = 0.0
    gan_weight: float = 0.0  # 0 disables the patch-GAN loss
    gan_start_step: int = 2000
    init_from: str = ""  # start from this autoencoder: a run folder, a model folder, or "reference"
    # With init_from: train the decoder alone, the encoder frozen, so the latent space (and every U-Net
    # trained on it) stays valid while the pixels improve, as Stable Diffusion's fine-tuned VAE decoders did.
    decoder_only: bool = False
    train: TrainConfig = TrainConfig(steps=1400, batch_size=16, learning_rate=5e-4, warmup_steps=50,
                                     mixed_precision="bf16", checkpoint_every=200)


@dataclass(frozen=True)
class UNetConfig:
    """diffusers UNet2DConditionModel noise predictor and its DDPM training objective."""

    block_out_channels: tuple[int, ...] = (64, 128, 128)
    layers_per_block: int = 1
    attention_head_dim: int = 8  # diffusers' legacy name: the number of attention heads
    norm_num_groups: int = 32
    # Attention only at 8x8 and 4x4: keeps a training step near 1.2 s at batch 64 on two cores.
    cross_attention_blocks: tuple[bool, ...] = (False, True, True)
    # > 0: an attention-pooled summary of the text (this many heads) is added to the time-step
    # embedding (diffusers' addition_embed_type="text", as in Imagen and DeepFloyd IF), so every
    # ResNet block, not only the cross-attention ones, is told which emoji the prompt names.
    pooled_text_heads: int = 0
    prediction_type: str = "epsilon"  # "epsilon" | "v_prediction"
    min_snr_gamma: float = 5.0  # 0 disables min-SNR loss weighting
    caption_dropout: float = 0.1
    # A metadata field (e.g. "group": an emoji with its skin tones): draw each of its values equally
    # often instead of each image, so a few concepts with many variants do not take most steps.
    balance_by: str = ""
    # Start from this U-Net instead of a fresh init (a run folder, a U-Net model folder, or "reference"):
    # fine-tune or continue a model whose checkpoints are gone (fresh optimizer and LR schedule).
    init_from: str = ""
    # > 0: representation alignment (REPA; training/alignment.py): down block `align_block` also learns,
    # with this weight, to predict the run's own CLIP image tower's patch features of the clean image.
    align_weight: float = 0.0
    align_block: int = 1
    ema_decay: float = 0.999
    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    train: TrainConfig = TrainConfig(steps=1600, batch_size=64, learning_rate=5e-4, warmup_steps=100,
                                     mixed_precision="bf16", checkpoint_every=200, sample_every=400)


@dataclass(frozen=True)
class RunConfig:
    name: str = "emoji"
    data: DataConfig = DataConfig()
    text: TextConfig = TextConfig()
    autoencoder: AutoencoderConfig = AutoencoderConfig()
    unet: UNetConfig = UNetConfig()


def emoji_preset() -> RunConfig:
    # The pooled-text path since session 10: the shipped model has it (docs/reference-model.md), so a
    # run continued from it (`unet.init_from=reference`) needs the same architecture. Corner weight 32
    # since session 12: from scratch it took the held-out corner error from 19.7 to 2.9 levels and
    # PSNR from 25.26 to 25.55 dB (docs/reference-model.md).
    # U-Net batch 32 for 2,600 steps since session 14: the same time as 64 for 1,600 (a step costs 0.456 s
    # against 0.743 s here), and from scratch it gave FD EfficientNet 172.2 against 182.9, CLIP score 60.54
    # against 59.26 (docs/reference-model.md).
    return RunConfig(autoencoder=AutoencoderConfig(corner_weight=32.0),
                     unet=replace_train(UNetConfig(pooled_text_heads=4), steps=2600, batch_size=32))


def tiny_preset() -> RunConfig:
    """A few thousand parameters per model: for tests and smoke runs, not for quality."""
    quick = TrainConfig(steps=4, batch_size=8, warmup_steps=1, checkpoint_every=2, log_every=1)
    return RunConfig(
        name="tiny",
        data=DataConfig(image_size=16, holdout_fraction=0.25, langs=("en", "zh")),
        text=TextConfig(
            vocab_size=300, max_length=12, width=16, layers=1, heads=2,
            vision_width=16, vision_layers=1, vision_heads=2, patch_size=8, projection_dim=8, train=quick,
            locked_image=dataclasses.replace(quick, steps=0),
        ),
        autoencoder=AutoencoderConfig(
            block_out_channels=(8, 8), latent_channels=2, norm_num_groups=4, train=quick,
        ),
        unet=UNetConfig(
            block_out_channels=(16, 16), attention_head_dim=4, norm_num_groups=4, cross_attention_blocks=(True, False),
            ema_decay=0.9, train=quick,
        ),
    )


def emoji4_preset() -> RunConfig:
    """Four emoji styles at 128 px (`marble data emoji --styles twitter,noto,fluent3d,openmoji --size 128`).

    A fourth autoencoder level makes the downsampling 8, so latents stay 16 x 16 and the U-Net
    costs what it does in the emoji preset. Step counts scale the emoji preset's with the ~4x data;
    they are not tuned yet.
    """
    emoji = emoji_preset()
    return RunConfig(
        name="emoji4",
        data=DataConfig(image_size=128),
        # 16 px patches: the CLIP image tower sees 8 x 8 patches, as at 64 px with 8 px patches.
        text=dataclasses.replace(emoji.text, patch_size=16, train=dataclasses.replace(emoji.text.train, steps=1600)),
        autoencoder=dataclasses.replace(
            emoji.autoencoder, block_out_channels=(32, 64, 128, 128),
            train=dataclasses.replace(emoji.autoencoder.train, steps=2800),
        ),
        unet=replace_train(emoji.unet, steps=4800, batch_size=64),
    )


PRESETS = {"emoji": emoji_preset, "tiny": tiny_preset, "emoji4": emoji4_preset}


def preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()


# --- JSON round trip -------------------------------------------------------------------------


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls, data: dict):
    """Rebuild a (nested) config dataclass; unknown keys are an error, missing keys take defaults."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value)
    return cls(**kwargs)


def _coerce(hint, value):
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            if arm is not type(None):
                return _coerce(arm, value)
    return value


def save_json(config, path: Path) -> None:
    Path(path).write_text(json.dumps(to_dict(config), indent=2, ensure_ascii=False) + "\n")


def load_json(cls, path: Path):
    return from_dict(cls, json.loads(Path(path).read_text()))


def apply_override(config, assignment: str):
    """`"unet.train.steps=500"` → a copy of `config` with that one field changed, parsed by its type."""
    path, sep, text = assignment.partition("=")
    if not sep or not path:
        raise ValueError(f"override {assignment!r} is not KEY=VALUE (e.g. unet.prediction_type=v_prediction)")
    return _replace_path(config, path.split("."), text, path)


def _replace_path(config, parts: list[str], text: str, path: str):
    fields = {f.name for f in dataclasses.fields(config)}
    head, rest = parts[0], parts[1:]
    if head not in fields:
        raise ValueError(f"{path}: unknown key {head!r}; {type(config).__name__} has {', '.join(sorted(fields))}")
    current = getattr(config, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"{path}: {head} has no sub-keys")
        return dataclasses.replace(config, **{head: _replace_path(current, rest, text, path)})
    return dataclasses.replace(config, **{head: _parse(typing.get_type_hints(type(config))[head], text, path)})


def _parse(hint, text: str, name: str):
    try:
        if hint is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if typing.get_origin(hint) is tuple:
            item, inner = typing.get_args(hint)[0], text.strip()
            if inner[:1] + inner[-1:] in ("[]", "()"):  # written as JSON or Python would write it
                inner = inner[1:-1]
            return tuple(_parse(item, part.strip(), name) for part in inner.split(",") if part.strip())
        if hint in (int, float, str):
            return hint(text)
    except ValueError:
        raise ValueError(f"{name}: cannot read {text!r} as {_type_name(hint)}") from None
    raise ValueError(f"{name} cannot be set from the command line")


def _type_name(hint) -> str:
    if typing.get_origin(hint) is tuple:
        return f"comma-separated {_type_name(typing.get_args(hint)[0])} values"
    return getattr(hint, "__name__", str(hint))


def replace_train(config, **changes):
    """Copy of a stage config with some TrainConfig fields changed (CLI overrides)."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


__all__ = [
    "TrainConfig", "DataConfig", "TextConfig", "AutoencoderConfig", "UNetConfig", "RunConfig",
    "PRESETS", "preset", "to_dict", "from_dict", "save_json", "load_json", "replace_train", "apply_override",
]
