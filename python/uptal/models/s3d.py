"""S3D (Xie et al., "Rethinking Spatiotemporal Feature Learning", ECCV 2018): I3D with every convolution that
spans both time and space replaced by a spatial (1, k, k) and a temporal (k, 1, 1) convolution.

It shares I3D's trunk (same Inception widths, TF SAME padding) and differs only in the separable units and in
learning the BatchNorm scale, as S3D implementations that are trained from scratch do. No gating (that is S3D-G).
"""
from __future__ import annotations

from .i3d import I3D

__all__ = ["S3D"]


class S3D(I3D):
    """S3D. `forward(clips [N, 3, T, H, W]) -> [N, 1024]`; num_classes > 0 adds a logits layer."""

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__(num_classes, separable=True, learn_bn_scale=True)
