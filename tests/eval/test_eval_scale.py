"""Real ground truth at full scale: ActivityNet v1.3 validation (4926 videos) and THUMOS14 test."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from uptal.eval.activitynet import ground_truth_from_dict, load_ground_truth, load_predictions, predictions_from_dict
from uptal.eval.metrics import detection_map, proposal_ar_an

pytestmark = pytest.mark.filterwarnings("ignore::uptal.eval.activitynet.EvaluationWarning")


def synthetic_predictions(database: dict, per_video: int = 50, seed: int = 0) -> dict:
    """ActivityNet predictions: two jittered copies of every ground truth (scored high) and random false
    positives (half of them with the video's own class) up to `per_video` per video."""
    rng = np.random.default_rng(seed)
    classes = sorted({a["label"] for entry in database.values() for a in entry["annotations"]})
    results = {}
    for video, entry in database.items():
        annotations = entry["annotations"]
        segments = np.array([a["segment"] for a in annotations], dtype=np.float64).reshape(-1, 2)
        length = max(float(segments.max(initial=0.0)), 10.0) * 1.2
        rows = []
        if len(annotations):
            spans = np.maximum(segments[:, 1] - segments[:, 0], 1.0)
            for copy in range(2):
                jitter = rng.normal(0.0, 0.1, (len(annotations), 2)) * spans[:, None]
                starts, ends = np.sort(segments + jitter, axis=1).T
                scores = rng.uniform(0.3, 1.0, len(annotations))
                rows += [([s, e], a["label"], sc) for s, e, a, sc in zip(starts, ends, annotations, scores)]
        extra = per_video - len(rows)
        if extra > 0:
            starts = rng.uniform(0, length, extra)
            ends = starts + rng.uniform(0, 1, extra) * (length - starts)
            own = rng.random(extra) < 0.5
            labels = [annotations[0]["label"] if own[i] and annotations else classes[j]
                      for i, j in enumerate(rng.integers(len(classes), size=extra))]
            rows += [([s, e], lab, sc) for s, e, lab, sc in zip(starts, ends, labels, rng.uniform(0, 0.8, extra))]
        results[video] = [{"segment": [float(s), float(e)], "label": lab, "score": float(sc)}
                          for (s, e), lab, sc in rows]
    return {"version": "VERSION 1.3", "external_data": {}, "results": results}


@pytest.fixture(scope="module")
def activitynet_val(shared_data):
    path = shared_data / "annotations" / "activitynet13_val_gt.json"
    return path, json.loads(path.read_text())


@pytest.mark.slow
def test_activitynet_val_detection_and_proposals_are_fast(activitynet_val, tmp_path):
    gt_path, gt_data = activitynet_val
    pred_data = synthetic_predictions(gt_data["database"])
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(pred_data))

    start = time.perf_counter()
    gt = load_ground_truth(gt_path)
    pred = load_predictions(pred_path, gt)
    loaded = time.perf_counter()
    result = detection_map(gt, pred)
    detected = time.perf_counter()
    proposals = proposal_ar_an(gt, predictions_from_dict(pred_data, gt, with_labels=False))
    done = time.perf_counter()
    print(f"\nActivityNet val, {pred.video.size} predictions: load {loaded - start:.2f}s, "
          f"detection {detected - loaded:.2f}s, proposals (from the parsed dict) {done - detected:.2f}s; "
          f"average mAP {result.average:.4f}, AUC {proposals.auc:.2f}")

    assert (len(gt.video_ids), gt.num_instances, len(gt.classes)) == (4926, 7654, 200)
    assert 45 * 4926 <= pred.video.size <= 55 * 4926
    assert detected - start < 10.0, "detection mAP at ActivityNet-val scale should take a few seconds"
    assert done - detected < 10.0
    # jittered copies: high mAP at loose thresholds, low at strict ones
    assert result.map_per_threshold[0] > 0.3 and result.map_per_threshold[-1] < 0.1
    assert 0.1 < result.average < 0.6
    assert 50 < proposals.auc < 95


@pytest.mark.parametrize("name, subset", [("activitynet13_val_gt.json", "validation"),
                                          ("thumos14_test_gt.json", "test")])
def test_perfect_predictions_on_real_ground_truth(shared_data, name, subset):
    data = json.loads((shared_data / "annotations" / name).read_text())
    gt = ground_truth_from_dict(data, subset=subset)
    rng = np.random.default_rng(1)
    results = {video: [{"segment": a["segment"], "label": a["label"], "score": float(rng.random())}
                       for a in entry["annotations"]] for video, entry in data["database"].items()}
    result = detection_map(gt, predictions_from_dict({"results": results}, gt))
    # ActivityNet has zero-length ground truths: matched by the official NaN rule, so still 1.0
    np.testing.assert_array_equal(result.map_per_threshold, 1.0)
