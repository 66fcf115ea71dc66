"""A tiny 3D CNN for tests and the CPU demo: a few thousand parameters, BatchNorm, fast at 8x112x112 on a CPU.

It keeps the contract of the real backbones (clips [N, 3, T, H, W] -> features [N, feature_dim], BatchNorm
that shuffle-BN / SyncBN treat like the others) so the whole PAL pipeline can run end to end in seconds.
"""
from __future__ import annotations

import torch
from torch import nn

from ._validate import check_clips

__all__ = ["TinyBackbone"]


def _conv_bn_relu(in_channels: int, out_channels: int, kernel, stride, padding) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(nn.Module):
    """Three conv-BN-ReLU stages (spatial stem, spatio-temporal, pointwise) and global average pooling.

    width: channels of the first stage (the others have 2x and 4x); feature_dim = 4 * width.
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an int >= 1, got {width!r}")
        self.feature_dim = 4 * width
        self.stem = _conv_bn_relu(3, width, (1, 5, 5), (1, 2, 2), (0, 2, 2))
        self.spatiotemporal = _conv_bn_relu(width, 2 * width, (3, 3, 3), (2, 2, 2), (1, 1, 1))
        self.pointwise = _conv_bn_relu(2 * width, 4 * width, (1, 1, 1), (1, 1, 1), (0, 0, 0))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:  # [N, 3, T, H, W] -> [N, 4 * width]
        check_clips(clips)
        x = self.stem(clips)            # [N, w, T, H/2, W/2]
        x = self.spatiotemporal(x)      # [N, 2w, T/2, H/4, W/4]
        x = self.pointwise(x)           # [N, 4w, T/2, H/4, W/4]
        return x.mean(dim=(2, 3, 4))
