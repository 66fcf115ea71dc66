"""Reading ActivityNet JSON: subsets, blocked videos, and clear errors for malformed files."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from uptal.eval.activitynet import (EvaluationWarning, ground_truth_from_dict, load_ground_truth, load_predictions,
                                    load_video_list, predictions_from_dict)

GT = {
    "version": "VERSION 1.3", "taxonomy": [],
    "database": {
        "vidA": {"subset": "validation", "annotations": [{"segment": [1.0, 5.0], "label": "Surfing"},
                                                         {"segment": [6, 9], "label": "Diving"}]},
        "vidB": {"subset": "validation", "annotations": [{"segment": [0.0, 2.5], "label": "Surfing"}]},
        "vidC": {"subset": "testing", "annotations": []},
        "vidD": {"subset": "training", "annotations": [{"segment": [0.0, 1.0], "label": "Skiing"}]},
    },
}
PRED = {
    "version": "VERSION 1.3", "external_data": {},
    "results": {
        "vidA": [{"segment": [1.0, 5.0], "label": "Surfing", "score": 0.9},
                 {"segment": [6.0, 9.0], "label": "Diving", "score": 0.4}],
        "vidB": [{"segment": [0.5, 2.0], "label": "Surfing", "score": 0.7}],
    },
}


def test_ground_truth_arrays_and_class_order():
    gt = ground_truth_from_dict(GT)
    assert gt.video_ids == ("vidA", "vidB") and gt.classes == ("Surfing", "Diving")  # first appearance
    np.testing.assert_array_equal(gt.video, [0, 0, 1])
    np.testing.assert_array_equal(gt.label, [0, 1, 0])
    np.testing.assert_array_equal(gt.start, [1.0, 6.0, 0.0])
    assert gt.start.dtype == np.float64 and gt.num_instances == 3


def test_subset_filter_and_all():
    assert ground_truth_from_dict(GT, subset="training").video_ids == ("vidD",)
    assert ground_truth_from_dict(GT, subset=None).classes == ("Surfing", "Diving", "Skiing")
    with pytest.raises(ValueError, match=r"no video of subset 'test' \(subsets present: 'testing', 'training', "
                                         r"'validation'\)"):
        ground_truth_from_dict(GT, subset="test")
    with pytest.raises(ValueError, match="have no annotations"):
        ground_truth_from_dict(GT, subset="testing")


def test_blocked_videos_leave_ground_truth_and_predictions(write_json):
    blocked = load_video_list(write_json("blocked.txt", "# missing on YouTube\nvidB\n\n  vidZ  # gone\n"))
    assert blocked == {"vidB", "vidZ"}
    assert load_video_list(write_json("blocked.json", '["vidB"]')) == {"vidB"}
    gt = ground_truth_from_dict(GT, blocked=blocked)
    pred = predictions_from_dict(PRED, gt, blocked=blocked)
    assert gt.video_ids == ("vidA",) and pred.video.size == 2 and pred.num_unknown == 0


def test_predictions_arrays():
    gt = ground_truth_from_dict(GT)
    pred = predictions_from_dict(PRED, gt)
    np.testing.assert_array_equal(pred.video, [0, 0, 1])
    np.testing.assert_array_equal(pred.label, [0, 1, 0])
    np.testing.assert_array_equal(pred.score, [0.9, 0.4, 0.7])
    np.testing.assert_array_equal(pred.end, [5.0, 9.0, 2.0])
    assert pred.is_indexed_against(gt)


def test_optional_metadata_fields():
    minimal_gt = {"database": GT["database"]}
    minimal_pred = {"results": PRED["results"]}
    gt = ground_truth_from_dict(minimal_gt)
    assert predictions_from_dict(minimal_pred, gt).video.size == 3


def test_unknown_videos_warning_mentions_v_prefix():
    gt = ground_truth_from_dict(GT)
    data = {"results": {"v_vidA": PRED["results"]["vidA"], "v_vidB": PRED["results"]["vidB"]}}
    with pytest.warns(EvaluationWarning, match="3 predictions on 2 videos not in .*'v_' prefix"):
        pred = predictions_from_dict(data, gt, source="pred.json")
    assert pred.num_unknown == 3 and pred.video_ids[2:] == ("v_vidA", "v_vidB")


def test_predictions_of_other_subsets_are_unknown_videos():
    gt = ground_truth_from_dict(GT)
    data = copy.deepcopy(PRED)
    data["results"]["vidD"] = [{"segment": [0.0, 1.0], "label": "Surfing", "score": 0.1}]
    with pytest.warns(EvaluationWarning, match="'validation' subset"):
        assert predictions_from_dict(data, gt).num_unknown == 1


def mutate(base, path, value):
    """A deep copy of `base` with the item at `path` replaced (or deleted when value is DELETE)."""
    data = copy.deepcopy(base)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


DELETE = object()
ANN = ("database", "vidA", "annotations", 1)
RES = ("results", "vidB", 0)


@pytest.mark.parametrize("path, value, message", [
    (("database",), DELETE, "gt.json: missing field 'database'"),
    (("database",), [], "gt.json: field 'database': expected a JSON object, got array"),
    (("database", "vidB", "subset"), DELETE, "gt.json: video 'vidB': missing field 'subset'"),
    (("database", "vidB", "annotations"), DELETE, "gt.json: video 'vidB': missing field 'annotations'"),
    (("database", "vidB", "annotations"), "none", "video 'vidB': field 'annotations' must be an array"),
    (ANN + ("segment",), DELETE, "gt.json: video 'vidA', annotation 1: missing field 'segment'"),
    (ANN + ("label",), DELETE, "video 'vidA', annotation 1: missing field 'label'"),
    (ANN + ("label",), 3, "annotation 1: field 'label' must be a string, got number 3"),
    (ANN + ("segment",), [6.0], r"annotation 1: field 'segment' must be \[start, end\], got \[6.0\]"),
    (ANN + ("segment",), "6-9", r"field 'segment' must be \[start, end\]"),
    (ANN + ("segment",), [6.0, "9"], "field 'segment' must hold two numbers"),
    (ANN + ("segment",), [6.0, True], "field 'segment' must hold two numbers"),
    (ANN + ("segment",), [9.0, 6.0], "annotation 1: field 'segment' ends before it starts"),
    (ANN + ("segment",), [float("nan"), 6.0], "annotation 1: field 'segment' is not finite"),
    (ANN, "Diving", "annotation 1: expected a JSON object, got string"),
])
def test_malformed_ground_truth(write_json, path, value, message):
    with pytest.raises(ValueError, match=message):
        load_ground_truth(write_json("gt.json", mutate(GT, path, value)))


@pytest.mark.parametrize("path, value, message", [
    (("results",), DELETE, "pred.json: missing field 'results'"),
    (("results", "vidB"), {"segment": [0, 1]}, "pred.json: video 'vidB': expected an array of predictions, got object"),
    (RES + ("score",), DELETE, "pred.json: video 'vidB', prediction 0: missing field 'score'"),
    (RES + ("segment",), DELETE, "video 'vidB', prediction 0: missing field 'segment'"),
    (RES + ("label",), DELETE, "video 'vidB', prediction 0: missing field 'label'"),
    (RES + ("score",), float("nan"), "video 'vidB', prediction 0: field 'score' is NaN"),
    (RES + ("score",), float("inf"), "prediction 0: field 'score' is infinite"),
    (RES + ("score",), "0.7", "prediction 0: field 'score' must be a number, got string"),
    (RES + ("score",), None, "field 'score' must be a number, got null"),
    (RES + ("segment",), [0.5, 2.0, 3.0], r"prediction 0: field 'segment' must be \[start, end\]"),
    (RES + ("segment",), [0.5, None], "field 'segment' must hold two numbers"),
    (RES + ("segment",), [2.0, 0.5], "prediction 0: field 'segment' ends before it starts"),
    (RES + ("segment",), [0.5, float("inf")], "field 'segment' is not finite"),
    (RES + ("label",), "surfing", "prediction 0: label 'surfing' is not a class of the ground truth "
                                  r"\(.*gt.json, 2 classes\); did you mean 'Surfing'\?"),
    (RES + ("label",), 7, r"prediction 0: field 'label' must be a class name \(string\), got number 7"),
    (RES, [0.5, 2.0], "video 'vidB', prediction 0: expected a JSON object, got array"),
])
def test_malformed_predictions(write_json, path, value, message):
    gt = load_ground_truth(write_json("gt.json", GT))
    with pytest.raises(ValueError, match=message):
        load_predictions(write_json("pred.json", mutate(PRED, path, value)), gt)


def test_proposals_need_no_label_but_bad_labels_still_fail_detection(write_json):
    gt = load_ground_truth(write_json("gt.json", GT))
    path = write_json("pred.json", mutate(PRED, RES + ("label",), DELETE))
    assert load_predictions(path, gt, with_labels=False).label.tolist() == [-1, -1, -1]


def test_error_in_one_of_many_entries_is_located(write_json):
    # the bulk path converts everything at once; the error must still name the exact entry
    gt = load_ground_truth(write_json("gt.json", GT))
    data = copy.deepcopy(PRED)
    data["results"]["vidA"] = [{"segment": [0, 1], "label": "Surfing", "score": 0.5}] * 500
    data["results"]["vidA"] = data["results"]["vidA"] + [{"segment": [0, 1], "label": "Surfing", "score": -np.inf}]
    with pytest.raises(ValueError, match="video 'vidA', prediction 500: field 'score' is infinite"):
        load_predictions(write_json("pred.json", data), gt)


@pytest.mark.parametrize("content, message", [
    ("not json at all", r"pred.json: not valid JSON: Expecting value at line 1, column 1"),
    ('{"results": {"vidA": [}', "pred.json: not valid JSON"),
    ("", "pred.json: not valid JSON"),
    ('["a list"]', "pred.json: expected a JSON object, got array"),
])
def test_non_json_files(write_json, content, message):
    gt = load_ground_truth(write_json("gt.json", GT))
    with pytest.raises(ValueError, match=message):
        load_predictions(write_json("pred.json", content), gt)


def test_binary_file(tmp_path):
    path = tmp_path / "gt.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match="gt.json: not a JSON file"):
        load_ground_truth(path)


def test_json_nan_literal_in_file_is_caught(write_json):
    # Python's json accepts NaN / Infinity literals, which some writers emit
    gt = load_ground_truth(write_json("gt.json", GT))
    text = json.dumps(PRED).replace("0.7", "NaN")
    with pytest.raises(ValueError, match="video 'vidB', prediction 0: field 'score' is NaN"):
        load_predictions(write_json("pred.json", text), gt)
