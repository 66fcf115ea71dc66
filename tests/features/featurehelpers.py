"""Helpers of the feature tests: a backbone that reads back which source frame each clip frame is."""
from __future__ import annotations

import torch
from torch import nn

from uptal.features.extract import Encoder

INDEX_LEVEL_STEP = 6   # grey level of frame k is 6 * k: survives H.264 to within +-2


class FrameIndexBackbone(nn.Module):
    """Features = the source frame index of every clip frame, read back from its grey level: [N, F]."""

    def __init__(self, clip_frames: int) -> None:
        super().__init__()
        self.feature_dim = clip_frames

    def forward(self, clips: torch.Tensor) -> torch.Tensor:   # [N, 3, F, S, S] in [0, 255] units
        return clips.mean(dim=(1, 3, 4)) / INDEX_LEVEL_STEP    # [N, F]


def index_encoder(clip_frames: int) -> Encoder:
    """mean 0, std 1/255: the backbone sees raw 0..255 levels."""
    return Encoder(FrameIndexBackbone(clip_frames), "frame-index", (0.0, 0.0, 0.0), (1 / 255,) * 3,
                   source="random")
