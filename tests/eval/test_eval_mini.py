"""The two-video ActivityNet case of ../shared/data/eval against the official code's published numbers."""
from __future__ import annotations

import numpy as np
import pytest

from uptal.eval.activitynet import load_ground_truth, load_predictions
from uptal.eval.metrics import detection_map, proposal_ar_an

# /work/shared/data/README.md, section eval/ (official ActivityNet evaluation code)
MINI_MAP = [0.714286, 0.714286, 0.714286, 0.6875, 0.6875, 0.597222, 0.520833, 0.520833, 0.520833, 0.5]
MINI_AVERAGE = 0.6177579365079365


@pytest.fixture(scope="module")
def mini(shared_data):
    """Paths of mini_gt.json and mini_pred.json."""
    return shared_data / "eval" / "mini_gt.json", shared_data / "eval" / "mini_pred.json"


def test_mini_detection_map_matches_official(mini):
    gt = load_ground_truth(mini[0])
    result = detection_map(gt, load_predictions(mini[1], gt))
    np.testing.assert_allclose(result.map_per_threshold, MINI_MAP, atol=1e-6, rtol=0)
    assert result.average == pytest.approx(MINI_AVERAGE, abs=1e-12)
    assert result.ap.shape == (10, 2)
    np.testing.assert_array_equal(result.tiou_thresholds, np.linspace(0.5, 0.95, 10))


def test_mini_proposals_match_official(mini):
    gt = load_ground_truth(mini[0])
    result = proposal_ar_an(gt, load_predictions(mini[1], gt, with_labels=False), max_avg_nr_proposals=100)
    assert result.ar_at(1) == pytest.approx(0.0, abs=1e-6)
    assert result.ar_at(5) == pytest.approx(0.6, abs=1e-6)
    assert result.ar_at(10) == pytest.approx(0.75, abs=1e-6)
    assert result.auc == pytest.approx(72.525, abs=1e-6)
    # the AN axis is the official one: 1 .. 100 proposals per video
    np.testing.assert_allclose(result.proposals_per_video, np.arange(1, 101), rtol=1e-12)
    assert result.recall.shape == (10, 100)
    np.testing.assert_allclose(result.avg_recall, result.recall.mean(axis=0))


def test_mini_labels_are_ignored_for_proposals(mini, write_json):
    import json
    data = json.loads(mini[1].read_text())
    for entries in data["results"].values():
        for entry in entries:
            del entry["label"]
    gt = load_ground_truth(mini[0])
    result = proposal_ar_an(gt, load_predictions(write_json("nolabel.json", data), gt, with_labels=False))
    assert result.auc == pytest.approx(72.525, abs=1e-6)
