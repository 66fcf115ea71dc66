"""Fixtures for the trainer tests: a folder of tiny demo videos and a config small enough for seconds per run."""
from __future__ import annotations

from pathlib import Path

import pytest

from uptal.data import write_demo_videos


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs torch single-threaded (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory) -> Path:
    """Sixteen 3.2 s demo videos at 10 fps, 32x24 (4 held out for validation, 12 to train: 3 steps of 4)."""
    folder = tmp_path_factory.mktemp("train_videos")
    write_demo_videos(folder, num_videos=16, seed=1, num_frames=32, fps=10, height=24, width=32)
    return folder
