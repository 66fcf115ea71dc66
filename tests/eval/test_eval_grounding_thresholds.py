"""Grounding R@1 / mIoU, its file format, and tIoU threshold parsing."""
from __future__ import annotations

import numpy as np
import pytest

from uptal.eval.activitynet import EvaluationWarning, load_grounding
from uptal.eval.metrics import TIOU_PRESETS, grounding_recall, parse_tiou_thresholds, segment_iou

# --------------------------------------------------------------------------------------------------
# grounding


def test_grounding_recall_hand_computed():
    gt = [[0, 10], [5, 15], [0, 4]]
    pred = [[0, 10], [10, 20], [np.nan, np.nan]]  # tIoU 1, 5/15, no prediction
    result = grounding_recall(gt, pred)
    assert list(result) == ["R@1,tIoU=0.3", "R@1,tIoU=0.5", "R@1,tIoU=0.7", "mIoU"]
    assert result["R@1,tIoU=0.3"] == pytest.approx(2 / 3)
    assert result["R@1,tIoU=0.5"] == pytest.approx(1 / 3)
    assert result["R@1,tIoU=0.7"] == pytest.approx(1 / 3)
    assert result["mIoU"] == pytest.approx(4 / 9)


def test_grounding_keys_have_no_float_noise():
    result = grounding_recall([[0, 1]], [[0, 1]], np.linspace(0.3, 0.7, 5))
    assert list(result)[:5] == [f"R@1,tIoU={t}" for t in ("0.3", "0.4", "0.5", "0.6", "0.7")]


def test_grounding_zero_length_same_instant_is_perfect():
    assert grounding_recall([[3, 3]], [[3, 3]])["mIoU"] == 1.0
    assert grounding_recall([[3, 3]], [[4, 4]])["mIoU"] == 0.0


def test_grounding_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        grounding_recall([[0, 1]], [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="no grounding queries"):
        grounding_recall(np.zeros((0, 2)), np.zeros((0, 2)))


def test_grounding_files(write_json):
    gt = write_json("gt.json", {"v1": {"duration": 20.0, "timestamps": [[0, 10], [5, 15]], "sentences": ["a", "b"]},
                                "v2": {"duration": 9.0, "timestamps": [[0, 4]]}})
    pred = write_json("pred.json", {"v1": [[0, 10], [10, 20]], "v9": [[0, 1]]})
    with pytest.warns(EvaluationWarning) as caught:
        pairs = load_grounding(gt, pred)
    messages = " | ".join(str(w.message) for w in caught)
    assert "no prediction for 1 videos" in messages and "'v2'" in messages
    assert "ignored predictions of 1 videos" in messages and "'v9'" in messages
    assert pairs.video_ids == ("v1", "v1", "v2") and pairs.num_missing == 1
    assert grounding_recall(pairs.gt_segments, pairs.pred_segments)["mIoU"] == pytest.approx(4 / 9)


@pytest.mark.parametrize("pred, message", [
    ({"v1": [[0, 10]]}, r"pred.json: video 'v1': expected one \[start, end\] per query \(2 queries"),
    ({"v1": [[0, 10], [5]]}, r"pred.json: video 'v1', query 1: field 'segment' must be \[start, end\]"),
    ({"v1": [[0, 10], [9, 5]]}, "query 1: field 'segment' ends before it starts"),
    ({"v1": {"a": 1}}, "expected one .* got object"),
])
def test_grounding_bad_predictions(write_json, pred, message):
    gt = write_json("gt.json", {"v1": {"timestamps": [[0, 10], [5, 15]]}})
    with pytest.raises(ValueError, match=message):
        load_grounding(gt, write_json("pred.json", pred))


def test_grounding_bad_ground_truth(write_json):
    pred = write_json("pred.json", {})
    with pytest.raises(ValueError, match="gt.json: video 'v1': missing field 'timestamps'"):
        load_grounding(write_json("gt.json", {"v1": {"duration": 3}}), pred)


# --------------------------------------------------------------------------------------------------
# thresholds


def test_presets_are_the_official_thresholds():
    np.testing.assert_array_equal(parse_tiou_thresholds("activitynet"), np.linspace(0.5, 0.95, 10))
    np.testing.assert_allclose(parse_tiou_thresholds(" THUMOS14 "), [0.3, 0.4, 0.5, 0.6, 0.7], rtol=1e-15)
    assert parse_tiou_thresholds("activitynet") is not TIOU_PRESETS["activitynet"]  # callers may mutate


@pytest.mark.parametrize("spec, expected", [
    ("0.5:0.95:0.05", np.linspace(0.5, 0.95, 10)),   # bit-identical to the official thresholds
    ("0.3:0.7:0.1", np.linspace(0.3, 0.7, 5)),       # (0.7 - 0.3) / 0.1 = 4.000000000000001
    ("0.1:0.35:0.1", [0.1, 0.2, 0.3]),               # a stop the step does not reach is left out
    ("0.5:0.5:0.1", [0.5]),
    ("0.3,0.5,0.7", [0.3, 0.5, 0.7]),
    ("0.5", [0.5]),
    ("1", [1.0]),
])
def test_parse_thresholds(spec, expected):
    np.testing.assert_array_equal(parse_tiou_thresholds(spec), expected)


@pytest.mark.parametrize("spec, message", [
    ("0.9:0.5:0.1", "start <= stop"),
    ("0.5:0.9:0", "step > 0"),
    ("0.5:0.9", "expected a preset"),
    ("high", "expected a preset"),
    ("0.3,,0.5", "expected a preset"),
    ("0,0.5", r"\(0, 1\]"),
    ("1.5", r"\(0, 1\]"),
    ("nan", r"\(0, 1\]"),
])
def test_parse_thresholds_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_tiou_thresholds(spec)


def test_segment_iou_matrix():
    np.testing.assert_allclose(segment_iou([[0, 10], [5, 5]], [[0, 10], [5, 15], [5, 5]]),
                               [[1.0, 1 / 3, 0.0], [0.0, 0.0, 0.0]])
