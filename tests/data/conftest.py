"""Fixtures for the data tests: tiny videos written with PyAV (see datahelpers.py) and the shared real videos."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from broken import Dataset, make_dataset
from datahelpers import VFR_PTS_MS, id_frame, write_video

# The real test material lives in shared/data beside the repository checkout (read-only, never copied in).
SHARED_DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs torch single-threaded (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    """The folder of real videos; skips when shared/data is not beside the checkout."""
    folder = SHARED_DATA / "videos"
    if not folder.is_dir():
        pytest.skip(f"real test videos not found at {folder} (shared/data beside the repository checkout)")
    return folder


@pytest.fixture(scope="session")
def cfr_video(tmp_path_factory) -> Path:
    """60 id frames, 25 fps, H.264 with B-frames and a keyframe every 12 frames, 96x48."""
    path = tmp_path_factory.mktemp("videos") / "cfr.mp4"
    frames = np.stack([id_frame(i) for i in range(60)])
    return write_video(path, frames, list(range(60)), Fraction(1, 25))


@pytest.fixture(scope="session")
def vfr_video(tmp_path_factory) -> Path:
    """Ten id frames at the irregular times VFR_PTS_MS, H.264 in mp4."""
    path = tmp_path_factory.mktemp("videos") / "vfr.mp4"
    frames = np.stack([id_frame(i) for i in range(len(VFR_PTS_MS))])
    return write_video(path, frames, VFR_PTS_MS, Fraction(1, 1000), gop=4, constant_rate=False)


@pytest.fixture(scope="session")
def noise_frames() -> np.ndarray:
    """40 frames of random texture (hard to compress, so a cut file still holds several frames)."""
    return np.random.default_rng(0).integers(0, 256, (40, 48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def broken_dataset(tmp_path_factory, noise_frames) -> Dataset:
    """A folder with every kind of bad file, 4 usable videos and TXT / CSV lists of it (see broken.py)."""
    return make_dataset(tmp_path_factory.mktemp("broken") / "videos", noise_frames)
