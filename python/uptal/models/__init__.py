"""Video backbones (I3D, R(2+1)D-18, R3D-18, S3D, a tiny test network), PAL's heads and the clip encoder.

Every backbone maps clips [N, 3, F, S, S] to features [N, feature_dim]; `build_backbone(name)` makes one.
"""
from .heads import ClipEncoder, ProjectionHead, TemporalHead, l2_normalize, split_clips
from .i3d import I3D
from .registry import BACKBONES, build_backbone, build_clip_encoder
from .resnet3d import VideoResNet18, r2plus1d_18, r3d_18
from .s3d import S3D
from .tiny import TinyBackbone

__all__ = [
    "BACKBONES", "build_backbone", "build_clip_encoder",
    "I3D", "S3D", "VideoResNet18", "r3d_18", "r2plus1d_18", "TinyBackbone",
    "ClipEncoder", "ProjectionHead", "TemporalHead", "l2_normalize", "split_clips",
]
