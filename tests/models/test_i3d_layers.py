"""TF "SAME" padding and DeepMind's classifier semantics, the details that make the I3D port exact."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uptal.models.i3d import Conv3dSame, Logits, MaxPool3dSame, tf_same_padding


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 7, 2, (2, 3)),   # even input, stride 2: the odd cell goes to the end
    (225, 7, 2, (3, 3)),
    (112, 3, 2, (0, 1)),   # I3D's 1x3x3 / stride 2 pools
    (16, 3, 1, (1, 1)),
    (8, 1, 1, (0, 0)),
    (7, 2, 2, (0, 1)),
    (2, 7, 2, (2, 3)),     # kernel larger than the input
])
def test_tf_same_padding(size, kernel, stride, expected):
    assert tf_same_padding(size, kernel, stride) == expected


def test_conv_same_matches_explicit_asymmetric_padding():
    torch.manual_seed(0)
    conv = Conv3dSame(2, 3, kernel_size=(3, 7, 7), stride=(1, 2, 2))
    x = torch.randn(1, 2, 5, 16, 17)  # [N, C, T, H, W]
    # T: (1, 1); H = 16: (2, 3); W = 17: (3, 3)
    expected = F.conv3d(F.pad(x, (3, 3, 2, 3, 1, 1)), conv.weight, stride=(1, 2, 2))
    out = conv(x)
    assert out.shape == (1, 3, 5, 8, 9)  # ceil(size / stride)
    torch.testing.assert_close(out, expected)


def test_max_pool_same_ignores_padding():
    x = -torch.arange(1.0, 1 + 2 * 4 * 4).view(1, 1, 2, 4, 4)  # all negative: a zero pad would win
    out = MaxPool3dSame((1, 3, 3), (1, 2, 2))(x)
    # H = W = 4, kernel 3, stride 2: pads (0, 1); windows start at 0 and 2 and the last one is cut at the border
    expected = torch.stack([x[..., :3, :3].amax((-1, -2)), x[..., :3, 2:].amax((-1, -2)),
                            x[..., 2:, :3].amax((-1, -2)), x[..., 2:, 2:].amax((-1, -2))], -1).view(1, 1, 2, 2, 2)
    assert out.shape == (1, 1, 2, 2, 2)
    torch.testing.assert_close(out, expected)
    assert (out < 0).all()


def test_logits_average_over_time_of_sliding_pairs():
    """Avg pool (2, 7, 7) stride 1 then mean over time: the end frames of Mixed_5c weigh half the others."""
    torch.manual_seed(0)
    head = Logits(4, 5)
    fmap = torch.randn(2, 4, 3, 7, 7)  # [N, C, T=3, 7, 7]
    frame_means = fmap.mean(dim=(3, 4))                                           # [N, C, 3]
    weighted = (0.25 * frame_means[..., 0] + 0.5 * frame_means[..., 1] + 0.25 * frame_means[..., 2])
    expected = F.linear(weighted, head.conv3d_0c_1x1.weight.view(5, 4), head.conv3d_0c_1x1.bias)
    torch.testing.assert_close(head(fmap), expected)
    plain_mean = F.linear(fmap.mean(dim=(2, 3, 4)), head.conv3d_0c_1x1.weight.view(5, 4), head.conv3d_0c_1x1.bias)
    assert not torch.allclose(head(fmap), plain_mean)  # the pairing matters


def test_logits_on_other_sizes_average_every_position():
    torch.manual_seed(0)
    head = Logits(4, 5)
    fmap = torch.randn(1, 4, 1, 3, 3)  # one frame, 3x3 (a 96x96 input): the window shrinks to the map
    expected = F.linear(fmap.mean(dim=(2, 3, 4)), head.conv3d_0c_1x1.weight.view(5, 4), head.conv3d_0c_1x1.bias)
    torch.testing.assert_close(head(fmap), expected)
