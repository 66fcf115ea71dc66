"""Fixtures for the model tests: the Kinetics-400 I3D with its real weights (`k400_weights` lives in
tests/conftest.py, shared with the feature tests; `shared_data` there skips when ../shared is absent)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def k400_model(k400_weights):
    """I3D(num_classes=400) with the Kinetics-400 weights, in eval mode."""
    from uptal.models.command import load_kinetics_i3d

    return load_kinetics_i3d(k400_weights)
