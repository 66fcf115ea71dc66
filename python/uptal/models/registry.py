"""Backbones by name, and the PAL clip encoder built from a backbone name.

Every backbone maps clips [N, 3, F, S, S] to features [N, C] and has `feature_dim` = C.
"""
from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from .heads import ClipEncoder, ProjectionHead, TemporalHead
from .i3d import I3D
from .resnet3d import r2plus1d_18, r3d_18
from .s3d import S3D
from .tiny import TinyBackbone

__all__ = ["BACKBONES", "build_backbone", "build_clip_encoder"]

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "i3d": I3D,
    "r2plus1d_18": r2plus1d_18,
    "r3d_18": r3d_18,
    "s3d": S3D,
    "tiny": TinyBackbone,
}


def build_backbone(name: str, **kwargs) -> nn.Module:
    """A fresh backbone: "i3d" (the paper's default), "r2plus1d_18", "r3d_18", "s3d" or "tiny".

    kwargs go to the constructor (i3d / s3d: num_classes; tiny: width).
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone name must be one of {sorted(BACKBONES)}, got {name!r}")
    constructor = BACKBONES[name]
    try:
        inspect.signature(constructor).bind(**kwargs)
    except TypeError as e:  # an unknown keyword for this backbone
        raise ValueError(f"backbone {name!r} does not take {sorted(kwargs)}: {e}") from e
    return constructor(**kwargs)


def build_clip_encoder(backbone: str | nn.Module, dim: int = 128, temporal_layers: int = 2,
                       projection_batch_norm: bool = True, **backbone_kwargs) -> ClipEncoder:
    """PAL's encoder: backbone -> projection MLP (hidden = feature_dim, out = dim) -> temporal head -> L2."""
    if isinstance(backbone, str):
        backbone = build_backbone(backbone, **backbone_kwargs)
    projection = ProjectionHead(backbone.feature_dim, dim, batch_norm=projection_batch_norm)
    return ClipEncoder(backbone, projection, TemporalHead(dim, temporal_layers))
