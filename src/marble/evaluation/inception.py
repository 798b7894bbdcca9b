"""FID's Inception-v3 (Szegedy et al. 2016) as the TensorFlow FID code ran it, without torchvision.

Module and parameter names match pytorch-fid's `fid_inception_v3()` (torchvision's Inception3 with
aux_logits=False, a 1008-way fc, and the FID-specific A/C/E blocks), so its weights file
`pt_inception-2015-12-05-*.pth` loads as is. The weights come from a local path only.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marble.errors import MarbleError

FID_CLASSES = 1008  # the 2015 TensorFlow graph's classifier (1000 ImageNet classes + unused)
POOL3_DIM = 2048
INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3 as in TensorFlow), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **conv_args) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_args)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_ignoring_padding(x: Tensor) -> Tensor:
    # TensorFlow's average pool leaves the padded zeros out of the average (pytorch-fid's patch).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_avg_pool_ignoring_padding(x))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 grid reduction."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), branch3x3dbl, branch_pool], 1)


class FIDInceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 then 7x1)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = self.branch_pool(_avg_pool_ignoring_padding(x))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 grid reduction."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = layer(branch7x7x3)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], 1)


class FIDInceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches; FID's graph pools by average in Mixed_7b, by max in Mixed_7c."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        # The max pool in Mixed_7c is likely a bug in the 2015 graph; FID scores depend on keeping it.
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_ignoring_padding(x)
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 trunk up to the 2048-d global average pool ("pool3"); `fc` is kept so the weights file loads."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(POOL3_DIM, FID_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, 299, 299) in [-1, 1] -> (N, 2048) pool3 features."""
        for name, layer in self.named_children():
            if name == "fc":
                break
            x = layer(x)
        return torch.flatten(x, 1)

    def logits(self, pool3: Tensor) -> Tensor:
        """(N, 2048) -> (N, 1008) class logits, for the Inception Score."""
        return self.fc(pool3)


def load_fid_inception(weights_path: str | Path) -> FIDInceptionV3:
    """FIDInceptionV3 in eval mode with a local pytorch-fid state_dict (.pth via weights_only, or .safetensors)."""
    model = FIDInceptionV3()
    state = _read_state_dict(Path(weights_path))
    # Files saved before torch 0.4.1 have no BatchNorm step counters; eval mode never reads them.
    expected = {key for key in model.state_dict() if not key.endswith("num_batches_tracked")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise MarbleError(
            f"{weights_path} is not an FID Inception-v3 state_dict (pytorch-fid's pt_inception-2015-12-05): "
            f"{len(missing)} missing keys {_first(missing)}, {len(unexpected)} unexpected keys {_first(unexpected)}"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise MarbleError(f"{weights_path}: tensor shapes do not fit FID Inception-v3: {error}") from None
    return model.eval().requires_grad_(False)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise MarbleError(f"Inception weights file not found: {path} (pytorch-fid's pt_inception-2015-12-05-*.pth)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or non-tensor file: report it as the user's problem
        raise MarbleError(f"cannot read Inception weights from {path}: {error}") from None
    if not isinstance(state, dict):
        raise MarbleError(f"{path} holds a {type(state).__name__}, not a state_dict")
    return state


def _first(keys: list[str], count: int = 5) -> str:
    return "[" + ", ".join(keys[:count]) + (", ..." if len(keys) > count else "") + "]"


__all__ = ["FIDInceptionV3", "load_fid_inception", "INPUT_SIZE", "POOL3_DIM", "FID_CLASSES"]
