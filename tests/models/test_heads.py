"""PAL's heads: projection MLP, temporal embedding head, L2 normalisation, and the clip encoder."""
from __future__ import annotations

import pytest
import torch

from uptal.models import ClipEncoder, ProjectionHead, TemporalHead, build_clip_encoder, l2_normalize, split_clips


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_projection_head(batch_norm):
    head = ProjectionHead(1024, 128, batch_norm=batch_norm)
    out = head(torch.randn(6, 1024))
    assert out.shape == (6, 128)
    hidden = head.net[0]
    assert hidden.out_features == 1024  # MoCo v2: hidden width = input width
    assert isinstance(head.net[1], torch.nn.BatchNorm1d) == batch_norm
    assert ProjectionHead(64, 32, hidden_dim=16)(torch.randn(3, 64)).shape == (3, 32)


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_temporal_head_shape_and_layers(layers):
    head = TemporalHead(16, layers)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv1d)]
    relus = [m for m in head.modules() if isinstance(m, torch.nn.ReLU)]
    assert len(convs) == layers and len(relus) == max(layers - 1, 0)  # ReLU between, not after the last
    assert all(c.kernel_size == (3,) and c.padding == (1,) for c in convs)
    x = torch.randn(4, 8, 16)  # [B, J, D]
    assert head(x).shape == (4, 8, 16)
    if layers == 0:
        assert torch.equal(head(x), x)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_temporal_head_mixes_across_clips_within_its_receptive_field(layers):
    head = TemporalHead(8, layers)
    x = torch.randn(2, 8, 8)  # [B, J, D]
    changed = x.clone()
    changed[:, 0] += 1.0  # perturb clip 0 only
    difference = (head(changed) - head(x)).abs().amax(dim=(0, 2))  # [J]
    # L kernel-3 layers see L clips either side: clips 0..L change, the others cannot
    assert (difference[: layers + 1] > 0).all()
    assert (difference[layers + 1:] == 0).all()
    # and videos of a batch never mix
    other = x.clone()
    other[1] += 1.0
    torch.testing.assert_close(head(other)[0], head(x)[0])


def test_l2_normalize():
    x = torch.randn(5, 7) * 10
    assert torch.allclose(l2_normalize(x).norm(dim=-1), torch.ones(5))
    assert torch.equal(l2_normalize(torch.zeros(2, 3)), torch.zeros(2, 3))


def test_split_clips_takes_consecutive_frames():
    videos = torch.arange(2 * 3 * 12 * 2 * 2, dtype=torch.float32).view(2, 3, 12, 2, 2)  # [N, 3, J*F, S, S]
    clips = split_clips(videos, 4)
    assert clips.shape == (2, 3, 3, 4, 2, 2)  # [N, J, 3, F, S, S]
    assert torch.equal(clips[1, 2], videos[1, :, 8:12])
    with pytest.raises(ValueError, match="videos"):
        split_clips(videos, 5)


def test_clip_encoder_shapes_and_unit_norm():
    encoder = build_clip_encoder("tiny", dim=16, temporal_layers=2).eval()
    clips = torch.randn(2, 4, 3, 8, 32, 32)  # [B, J, 3, F, S, S]
    features = encoder(clips)
    assert features.shape == (2, 4, 16)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(2, 4))
    flat = encoder(clips.flatten(0, 1), num_clips=4)  # [B*J, 3, F, S, S]
    torch.testing.assert_close(flat, features)


def test_clip_encoder_keeps_videos_apart_and_trains():
    encoder = build_clip_encoder("tiny", dim=16, temporal_layers=2).eval()
    clips = torch.randn(2, 4, 3, 8, 32, 32)
    changed = clips.clone()
    changed[1] = torch.randn_like(changed[1])
    torch.testing.assert_close(encoder(changed)[0], encoder(clips)[0])  # eval BN: video 0 is untouched

    encoder.train()
    features = encoder(clips)
    features[:, :2].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


def test_clip_encoder_parts_and_errors():
    encoder = build_clip_encoder("i3d", dim=128)
    assert isinstance(encoder, ClipEncoder)
    assert encoder.projection.net[0].in_features == 1024 and encoder.projection.out_dim == 128
    assert encoder.temporal_head.layers == 2
    with pytest.raises(ValueError, match="num_clips"):
        encoder(torch.randn(4, 3, 8, 32, 32))
    with pytest.raises(ValueError, match="num_clips"):
        encoder(torch.randn(5, 3, 8, 32, 32), num_clips=2)
    with pytest.raises(ValueError, match="num_clips"):
        encoder(torch.randn(1, 2, 3, 8, 32, 32), num_clips=3)
    with pytest.raises(ValueError, match="clips"):
        encoder(torch.randn(3, 8, 32, 32))
    with pytest.raises(ValueError, match="layers"):
        TemporalHead(8, -1)
    with pytest.raises(ValueError, match="out_dim"):
        ProjectionHead(8, 0)
