"""Input checks shared by the backbones: a bad input is a ValueError that names the argument."""
from __future__ import annotations

import torch


def check_clips(clips: torch.Tensor, name: str = "clips") -> None:
    """Raise ValueError unless `clips` is a floating point [N, 3, T, H, W] tensor."""
    if not isinstance(clips, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [N, 3, T, H, W], got {type(clips).__name__}")
    if clips.dim() != 5 or clips.shape[1] != 3:
        raise ValueError(f"{name} must be a [N, 3, T, H, W] tensor, got shape {tuple(clips.shape)}")
    if not clips.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {clips.dtype}")
