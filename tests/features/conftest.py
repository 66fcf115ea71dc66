"""Tiny videos for the feature tests: demo videos, and one whose frame k has grey level 6 * k."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uptal.data import write_demo_videos
from uptal.data.demo import _encode
from featurehelpers import INDEX_LEVEL_STEP


@pytest.fixture(scope="session")
def demo_videos(tmp_path_factory) -> list[Path]:
    """3 videos, 40 frames at 10 fps, 48 x 64."""
    return write_demo_videos(tmp_path_factory.mktemp("demo"), num_videos=3, num_frames=40, fps=10, height=48,
                             width=64)


@pytest.fixture(scope="session")
def index_video(tmp_path_factory) -> Path:
    """37 frames at 10 fps, 48 x 64, frame k uniformly grey at level 6 * k (37: not a multiple of strides)."""
    frames = torch.arange(37, dtype=torch.uint8).mul(INDEX_LEVEL_STEP).view(-1, 1, 1, 1)  # [T, 1, 1, 1]
    video = frames.expand(-1, 48, 64, 3).contiguous()                                      # [T, H, W, 3]
    path = tmp_path_factory.mktemp("index") / "index.mp4"
    _encode(path, video, fps=10, crf=0, gop=20)
    return path
