"""PAL's heads (paper section 3): a non-linear projection per clip, a temporal embedding head across the J clips
of a video, and L2 normalisation; `ClipEncoder` chains them after a backbone.

    clips [B, J, 3, F, S, S] --backbone--> [B*J, C] --projection--> [B*J, D] --temporal head--> [B, J, D] --L2-->

The temporal head is what lets a clip feature see its neighbours: the region feature PAL contrasts is the mean
of the clip features inside a pasted region, and the head makes them aware of where that region starts and ends.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead", "TemporalHead", "ClipEncoder", "l2_normalize", "split_clips"]


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def l2_normalize(features: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Unit L2 norm along `dim` (a zero vector stays zero instead of becoming NaN)."""
    return F.normalize(features, p=2.0, dim=dim, eps=1e-12)


class ProjectionHead(nn.Module):
    """MoCo v2's non-linear projection: Linear(C, H) -> [BatchNorm1d] -> ReLU -> Linear(H, D).

    hidden_dim defaults to in_dim (MoCo v2). batch_norm=True puts BatchNorm after the hidden layer (which the
    PAL configuration uses, as MoCo v3 / SimCLR do); False is MoCo v2's original Linear-ReLU-Linear.
    """

    def __init__(self, in_dim: int, out_dim: int = 128, hidden_dim: int | None = None,
                 batch_norm: bool = True) -> None:
        super().__init__()
        _positive_int(in_dim, "in_dim")
        _positive_int(out_dim, "out_dim")
        hidden_dim = in_dim if hidden_dim is None else _positive_int(hidden_dim, "hidden_dim")
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=not batch_norm),  # BatchNorm's shift makes a bias redundant
            nn.BatchNorm1d(hidden_dim) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [N, C] -> [N, D]
        return self.net(features)


class TemporalHead(nn.Module):
    """`layers` Conv1d(D, D, kernel 3, padding 1) across the J clips of each video, ReLU between them.

    layers = 0 is the identity (the paper's ablation without a temporal head); the paper's default is 2.
    Zero padding at both ends, so J is unchanged and any J >= 1 works.
    """

    def __init__(self, dim: int, layers: int = 2) -> None:
        super().__init__()
        _positive_int(dim, "dim")
        _positive_int(layers, "layers", minimum=0)
        self.layers = layers
        modules: list[nn.Module] = []
        for index in range(layers):
            if index:
                modules.append(nn.ReLU(inplace=True))
            modules.append(nn.Conv1d(dim, dim, kernel_size=3, padding=1))
        self.net = nn.Sequential(*modules)

    def forward(self, clip_features: torch.Tensor) -> torch.Tensor:  # [B, J, D] -> [B, J, D]
        if clip_features.dim() != 3:
            raise ValueError(f"clip_features must be [B, J, D], got shape {tuple(clip_features.shape)}")
        if not self.layers:
            return clip_features
        return self.net(clip_features.transpose(1, 2)).transpose(1, 2)  # Conv1d runs over [B, D, J]


def split_clips(videos: torch.Tensor, clip_frames: int) -> torch.Tensor:
    """[N, 3, J*F, S, S] (what `uptal.ops.synthesize` makes) -> [N, J, 3, F, S, S], clip j = frames jF..jF+F-1."""
    _positive_int(clip_frames, "clip_frames")
    if videos.dim() != 5 or videos.shape[2] % clip_frames:
        raise ValueError(f"videos must be [N, C, J*{clip_frames}, H, W], got shape {tuple(videos.shape)}")
    n, c, frames, h, w = videos.shape
    return videos.view(n, c, frames // clip_frames, clip_frames, h, w).transpose(1, 2)


class ClipEncoder(nn.Module):
    """backbone -> projection -> temporal head -> L2 normalisation, mapping the J clips of B videos to
    unit clip features [B, J, D].

    Input: clips [B, J, 3, F, S, S], or [B*J, 3, F, S, S] with `num_clips` = J (clips of a video adjacent).
    """

    def __init__(self, backbone: nn.Module, projection: nn.Module, temporal_head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = projection
        self.temporal_head = temporal_head

    def forward(self, clips: torch.Tensor, num_clips: int | None = None) -> torch.Tensor:
        flat, num_clips = self._flatten(clips, num_clips)           # [B*J, 3, F, S, S]
        features = self.projection(self.backbone(flat))              # [B*J, D]
        per_video = features.reshape(-1, num_clips, features.shape[-1])  # [B, J, D]
        return l2_normalize(self.temporal_head(per_video))

    @staticmethod
    def _flatten(clips: torch.Tensor, num_clips: int | None) -> tuple[torch.Tensor, int]:
        if not isinstance(clips, torch.Tensor) or clips.dim() not in (5, 6):
            shape = tuple(clips.shape) if isinstance(clips, torch.Tensor) else type(clips).__name__
            raise ValueError(f"clips must be [B, J, 3, F, S, S] or [B*J, 3, F, S, S], got {shape}")
        if clips.dim() == 6:
            if num_clips is not None and num_clips != clips.shape[1]:
                raise ValueError(f"num_clips={num_clips} disagrees with clips of shape {tuple(clips.shape)}")
            return clips.flatten(0, 1), clips.shape[1]
        if num_clips is None:
            raise ValueError("num_clips (J) is required when clips are given flat as [B*J, 3, F, S, S]")
        _positive_int(num_clips, "num_clips")
        if clips.shape[0] % num_clips:
            raise ValueError(f"clips has {clips.shape[0]} clips, not a multiple of num_clips={num_clips}")
        return clips, num_clips
