"""TAD probe: time mapping, NMS, decoding, and the whole probe on synthetic features (no video decoding)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from uptal.cli import main as uptal_main
from uptal.eval.tad_probe import (
    decode_segments,
    match_feature_name,
    nms_1d,
    run_tad_probe,
    segments_to_steps,
)

CLASSES = ("jump", "run", "throw")
FPS, CLIP_STRIDE, SPAN = 4.0, 4, 4          # one feature per second, centred at i + 0.5 s
STEPS, CHANNELS = 48, 12
SMALL = {"epochs": 30, "hidden": 32}      # enough for the synthetic task, about a second on one core


def write_synthetic_set(root: Path, *, num_videos: int = 30, signal: float = 3.0, seed: int = 0,
                        prefix: str = "") -> Path:
    """Features = noise + a class vector inside ground-truth segments; returns the ground-truth JSON path.

    The first two thirds of the videos are 'training', the rest 'validation'. `signal=0` gives features
    that know nothing about the actions.
    """
    rng = np.random.default_rng(seed)
    class_vectors = rng.normal(size=(len(CLASSES), CHANNELS))
    class_vectors *= signal / np.linalg.norm(class_vectors, axis=1, keepdims=True)
    timestamps = (np.arange(STEPS) * CLIP_STRIDE + SPAN / 2) / FPS        # [T]
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    database = {}
    for v in range(num_videos):
        video_id = f"vid{v:02d}"
        features = rng.normal(size=(STEPS, CHANNELS))                       # [T, C]
        annotations = []
        for slot in range(2):   # two actions per video, one per half, so they never overlap
            length = rng.uniform(5, 14)
            start = slot * STEPS / 2 + rng.uniform(1, STEPS / 2 - length - 1)
            label = int(rng.integers(len(CLASSES)))
            inside = (timestamps >= start) & (timestamps <= start + length)
            features[inside] += class_vectors[label]
            annotations.append({"segment": [round(start, 3), round(start + length, 3)], "label": CLASSES[label]})
        name = prefix + video_id
        np.save(root / f"{name}.npy", features.astype(np.float32))
        metadata = {"video": name, "feature_file": f"{name}.npy", "fps": FPS, "clip_frames": SPAN,
                    "frame_stride": 1, "clip_stride": CLIP_STRIDE, "clip_span_frames": SPAN,
                    "timestamps": timestamps.tolist(), "duration": STEPS * CLIP_STRIDE / FPS,
                    "num_features": STEPS, "feature_dim": CHANNELS}
        (root / "metadata" / f"{name}.json").write_text(json.dumps(metadata))
        subset = "training" if v < num_videos * 2 // 3 else "validation"
        database[video_id] = {"subset": subset, "duration": STEPS, "annotations": annotations}
    gt_path = root / "gt.json"
    gt_path.write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": [], "database": database}))
    return gt_path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tad_features")
    return root, write_synthetic_set(root)


# --------------------------------------------------------------------------------------------------
# pieces


def test_segments_map_to_the_steps_whose_centres_they_cover():
    timestamps = np.arange(10) + 0.5                    # steps cover [i, i + 1)
    targets = segments_to_steps(timestamps, [[2.2, 5.9], [8.1, 8.3]], [1, 0], num_classes=2)
    # centres 2.5, 3.5, 4.5, 5.5 lie in [2.2, 5.9]; the 0.2 s segment has no centre: nearest step 7 or 8 -> 8
    assert targets.classes.tolist() == [0, 0, 2, 2, 2, 2, 0, 0, 1, 0]
    assert np.flatnonzero(targets.starts).tolist() == [2, 8]   # 2.2 nearest 2.5; 8.1 nearest 8.5
    assert np.flatnonzero(targets.ends).tolist() == [5, 8]     # 5.9 nearest 5.5; 8.3 nearest 8.5


def test_a_shorter_segment_inside_a_longer_one_keeps_its_steps():
    targets = segments_to_steps(np.arange(10) + 0.5, [[3.0, 4.0], [0.0, 10.0]], [1, 0], num_classes=2)
    assert targets.classes.tolist() == [1, 1, 1, 2, 1, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("timestamps, segments, labels, match", [
    ([0.5, 0.5, 1.5], [[0, 1]], [0], "timestamps"),
    ([0.5, 1.5], [[1, 0]], [0], "segments"),
    ([0.5, 1.5], [[0, 1]], [3], "labels"),
    ([0.5, 1.5], [[0, 1]], [0, 1], "labels"),
])
def test_bad_mapping_input_names_the_argument(timestamps, segments, labels, match):
    with pytest.raises(ValueError, match=match):
        segments_to_steps(timestamps, segments, labels, num_classes=2)


def test_nms_keeps_the_best_of_overlapping_segments_and_disjoint_ones():
    segments = [[0, 10], [1, 10], [20, 30], [0.5, 9], [25, 40]]
    scores = [0.9, 0.95, 0.5, 0.7, 0.6]
    # [1,10] wins; [0,10] (IoU 0.9) and [0.5,9] (IoU 0.8) go; [25,40] vs [20,30]: IoU 0.25 -> both stay
    assert nms_1d(segments, scores, 0.5).tolist() == [1, 4, 2]
    assert nms_1d(segments, scores, 1.0).tolist() == [1, 0, 3, 4, 2]   # nothing suppressed
    with pytest.raises(ValueError, match="scores"):
        nms_1d(segments, scores[:2])


def test_decoding_turns_runs_into_segments_with_boundaries_and_scores():
    timestamps = np.arange(8) + 0.5
    best = [0, 1, 1, 1, 0, 2, 2, 0]                       # class 1 on steps 1..3, class 2 on steps 5..6
    class_probs = np.full((8, 3), 0.1)
    class_probs[np.arange(8), best] = 0.8                 # [T, K + 1]
    boundary_probs = np.full((8, 2), 0.1)
    boundary_probs[1, 0] = boundary_probs[3, 1] = 0.9     # confident at the run's own edges
    boundary_probs[5, 0] = 0.2                            # weak, but likelier than its neighbours: edge stays
    boundary_probs[7, 1] = 0.6                            # a neighbour one step out is the likelier end
    candidates = decode_segments(class_probs, boundary_probs, timestamps, step_seconds=1.0, duration=7.6)
    assert [c[:3] for c in candidates] == [(1.0, 4.0, 0), (5.0, 7.5, 1)]
    assert candidates[0][3] == pytest.approx(0.8 * 0.9)
    assert candidates[1][3] == pytest.approx(0.8 * np.sqrt(0.2 * 0.6))


def test_feature_names_match_with_or_without_the_v_prefix():
    assert match_feature_name("abc", {"v_abc"}) == "v_abc"
    assert match_feature_name("v_abc", {"abc"}) == "abc"
    assert match_feature_name("abc", {"abc", "v_abc"}) == "abc"
    assert match_feature_name("abc", {"abd"}) is None


# --------------------------------------------------------------------------------------------------
# the whole probe


def test_probe_finds_the_planted_actions(synthetic, tmp_path, one_torch_thread):
    root, gt = synthetic
    report = run_tad_probe(root, gt, tmp_path / "probe", seed=0, **SMALL)
    assert report.metrics["average"] > 0.5, report.metrics
    assert report.metrics["values"][0] > 0.8, report.metrics           # tIoU 0.5
    assert report.metrics["train"]["videos"] == 20 and report.metrics["test"]["videos"] == 10
    written = json.loads(report.metrics_path.read_text())
    assert written["average"] == pytest.approx(report.metrics["average"])
    predictions = json.loads(report.predictions_path.read_text())["results"]
    assert set(predictions) == {f"vid{v:02d}" for v in range(20, 30)}


@pytest.mark.filterwarnings("ignore::uptal.eval.activitynet.EvaluationWarning")   # tiny runs miss classes
def test_probe_is_deterministic_for_a_seed(synthetic, tmp_path, one_torch_thread):
    root, gt = synthetic
    state = torch.get_rng_state()
    first = run_tad_probe(root, gt, tmp_path / "a", seed=3, epochs=2, hidden=16)
    second = run_tad_probe(root, gt, tmp_path / "b", seed=3, epochs=2, hidden=16)
    assert first.predictions_path.read_text() == second.predictions_path.read_text()
    assert torch.equal(torch.get_rng_state(), state)   # the caller's generator is left alone


def test_probe_learns_nothing_from_labels_shuffled_across_videos(synthetic, tmp_path, one_torch_thread):
    root, gt_path = synthetic
    data = json.loads(gt_path.read_text())
    database = data["database"]
    training = [video for video in database if database[video]["subset"] == "training"]
    annotations = [database[video]["annotations"] for video in training]
    for video, source in zip(training, np.random.default_rng(0).permutation(len(training))):
        database[video]["annotations"] = annotations[source]   # features and training labels no longer agree
    shuffled = tmp_path / "shuffled_gt.json"
    shuffled.write_text(json.dumps(data))
    report = run_tad_probe(root, shuffled, tmp_path / "probe", seed=0, **SMALL)
    assert report.metrics["test"]["predictions"] > 0        # it still predicts, it just cannot place them
    assert report.metrics["average"] < 0.1, report.metrics


@pytest.mark.filterwarnings("ignore::uptal.eval.activitynet.EvaluationWarning")   # tiny runs miss classes
def test_videos_without_features_are_skipped_and_listed(tmp_path, one_torch_thread):
    root = tmp_path / "features"
    gt = write_synthetic_set(root, num_videos=9)
    for name in ("vid00", "vid08"):                     # one training, one validation video
        (root / "metadata" / f"{name}.json").unlink()
    report = run_tad_probe(root, gt, tmp_path / "probe", epochs=1, hidden=8)
    assert report.missing == {"training": ["vid00"], "validation": ["vid08"]}
    assert report.metrics["test"]["videos"] == 2 and report.metrics["test"]["instances"] == 4


def test_unknown_test_labels_and_empty_subsets_are_errors(tmp_path):
    root = tmp_path / "features"
    gt_path = write_synthetic_set(root, num_videos=6)
    data = json.loads(gt_path.read_text())
    data["database"]["vid05"]["annotations"][0]["label"] = "swim"   # a validation-only label
    gt_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="'swim'"):
        run_tad_probe(root, gt_path, tmp_path / "out", epochs=1)
    with pytest.raises(ValueError, match="testing"):
        run_tad_probe(root, gt_path, tmp_path / "out", test_subset="testing", epochs=1)


def test_a_subset_without_any_features_is_an_error(tmp_path):
    root = tmp_path / "features"
    gt_path = write_synthetic_set(root, num_videos=6)
    for name in ("vid04", "vid05"):                     # the whole validation subset
        (root / "metadata" / f"{name}.json").unlink()
    with pytest.raises(ValueError, match="none of the 2 videos of subset 'validation'"):
        run_tad_probe(root, gt_path, tmp_path / "out", epochs=1)


def test_cli_writes_predictions_that_uptal_evaluate_accepts(tmp_path, capsys, one_torch_thread):
    root = tmp_path / "features"
    gt = write_synthetic_set(root, num_videos=12, prefix="v_")   # ActivityNet-style feature names
    out = tmp_path / "probe"
    code = uptal_main(["probe", "tad", "--features", str(root), "--gt", str(gt), "--out", str(out),
                       "--epochs", "30", "--hidden", "32", "--json"])
    assert code == 0
    probe_metrics = json.loads(capsys.readouterr().out)
    assert uptal_main(["evaluate", "detection", "--gt", str(gt), "--pred", str(out / "predictions.json"),
                       "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["values"] == pytest.approx(probe_metrics["values"])
    assert probe_metrics["average"] > 0.3


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    code = uptal_main(["probe", "tad", "--features", str(tmp_path), "--gt", str(tmp_path / "gt.json"),
                       "--out", str(tmp_path / "out")])
    assert code == 2
    assert "uptal probe tad: error:" in capsys.readouterr().err
