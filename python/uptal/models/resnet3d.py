"""Video ResNet-18s (Tran et al., "A Closer Look at Spatiotemporal Convolutions", CVPR 2018).

- R3D-18: full 3x3x3 convolutions.
- R(2+1)D-18: every 3x3x3 convolution factorised into a spatial (1, 3, 3) and a temporal (3, 1, 1) one, with
  the intermediate width M = floor(27 * C_in * C_out / (9 * C_in + 3 * C_out)) chosen so the factorised block
  has as many parameters as the full one (the paper's rule).

Layout (as the common torchvision models, so parameter counts are comparable): a stem that halves H and W,
four stages of two basic blocks (64, 128, 256, 512 channels; stages 2-4 halve T, H and W), global average
pooling. `forward(clips [N, 3, T, H, W]) -> [N, 512]`.
"""
from __future__ import annotations

import torch
from torch import nn

from ._validate import check_clips

__all__ = ["VideoResNet18", "r3d_18", "r2plus1d_18", "factorised_width"]

STAGE_WIDTHS = (64, 128, 256, 512)


def factorised_width(in_channels: int, out_channels: int) -> int:
    """R(2+1)D's intermediate width: the factorised pair has the parameters of one 3x3x3 convolution."""
    return (27 * in_channels * out_channels) // (9 * in_channels + 3 * out_channels)


def _conv3x3x3(in_channels: int, out_channels: int, stride: int, middle: int | None) -> nn.Module:
    """A 3x3x3 convolution (middle None), or its (2+1)D factorisation through `middle` channels."""
    if middle is None:
        return nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
    return nn.Sequential(
        nn.Conv3d(in_channels, middle, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(middle),
        nn.ReLU(inplace=True),
        nn.Conv3d(middle, out_channels, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
    )


class BasicBlock3D(nn.Module):
    """Two 3x3x3 (or (2+1)D) conv-BN layers with a residual connection (1x1x1 conv-BN when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, factorised: bool) -> None:
        super().__init__()
        middle = factorised_width(in_channels, out_channels) if factorised else None
        self.conv1 = _conv3x3x3(in_channels, out_channels, stride, middle)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.conv2 = _conv3x3x3(out_channels, out_channels, 1, middle)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm3d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C_in, T, H, W] -> [N, C_out, T/s, H/s, W/s]
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


def _stem(factorised: bool) -> nn.Sequential:
    """Halve H and W: a (3, 7, 7) convolution, or (1, 7, 7) to 45 channels then (3, 1, 1) for R(2+1)D."""
    if not factorised:
        return nn.Sequential(
            nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64), nn.ReLU(inplace=True))
    return nn.Sequential(
        nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(45), nn.ReLU(inplace=True),
        nn.Conv3d(45, 64, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(64), nn.ReLU(inplace=True))


class VideoResNet18(nn.Module):
    """R3D-18 (factorised=False) or R(2+1)D-18 (factorised=True): [N, 3, T, H, W] -> [N, 512]."""

    feature_dim = STAGE_WIDTHS[-1]

    def __init__(self, factorised: bool) -> None:
        super().__init__()
        self.stem = _stem(factorised)
        stages, in_channels = [], 64
        for index, width in enumerate(STAGE_WIDTHS):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(BasicBlock3D(in_channels, width, stride, factorised),
                                        BasicBlock3D(width, width, 1, factorised)))
            in_channels = width
        self.stages = nn.Sequential(*stages)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        check_clips(clips)
        x = self.stages(self.stem(clips))  # [N, 512, T/8, H/16, W/16]
        return x.mean(dim=(2, 3, 4))


def r3d_18() -> VideoResNet18:
    return VideoResNet18(factorised=False)


def r2plus1d_18() -> VideoResNet18:
    return VideoResNet18(factorised=True)
