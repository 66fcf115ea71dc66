"""Detection mAP: hand-computed cases, a loop-by-loop reference of the official algorithm, and properties."""
from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from uptal.eval.activitynet import EvaluationWarning
from uptal.eval.metrics import detection_map, interpolated_average_precision

pytestmark = pytest.mark.filterwarnings("ignore::uptal.eval.activitynet.EvaluationWarning")


def ap_of(anet, gt_rows, pred_rows, thresholds):
    """AP [T, C] of a small case."""
    gt, pred = anet.build(gt_rows, pred_rows)
    return detection_map(gt, pred, thresholds)


# --------------------------------------------------------------------------------------------------
# hand-computed cases


def test_one_class_two_videos_with_duplicate(anet):
    # npos = 3. Ranked: [0,10] v1 (tIoU 1), [0,5] v2 (0.5), [20,28] v1 (0.8), [0,10] v1 again (duplicate).
    gt = [("v1", 0, 10, "a"), ("v1", 20, 30, "a"), ("v2", 0, 10, "a")]
    pred = [("v1", 0, 10, "a", 0.9), ("v2", 0, 5, "a", 0.8), ("v1", 20, 28, "a", 0.7), ("v1", 0, 10, "a", 0.6)]
    result = ap_of(anet, gt, pred, [0.5, 0.75, 0.9])
    # 0.5:  TP TP TP FP -> AP 1
    # 0.75: TP FP TP FP -> precision 1, .5, 2/3, .5 at recall 1/3, 1/3, 2/3, 2/3 -> 1/3*1 + 1/3*2/3 = 5/9
    # 0.9:  TP FP FP FP -> 1/3
    np.testing.assert_allclose(result.map_per_threshold, [1.0, 5 / 9, 1 / 3], rtol=0, atol=1e-12)
    assert result.average == pytest.approx(17 / 27, abs=1e-12)


def test_score_ties_rank_the_later_entry_first(anet):
    # The official argsort()[::-1] puts the later of two equal scores first.
    gt = [("v1", 0, 10, "a")]
    later_is_wrong = [("v1", 0, 10, "a", 0.5), ("v1", 0, 4, "a", 0.5)]   # [0,4]: tIoU 0.4, a false positive
    later_is_right = [("v1", 0, 4, "a", 0.5), ("v1", 0, 10, "a", 0.5)]
    assert ap_of(anet, gt, later_is_wrong, [0.5]).average == pytest.approx(0.5)  # FP then TP: 1 * 1/2
    assert ap_of(anet, gt, later_is_right, [0.5]).average == pytest.approx(1.0)


def test_score_ties_across_videos_follow_file_order(anet):
    gt = [("v1", 0, 10, "a"), ("v2", 0, 10, "a")]
    # v2's false positive comes later in the file, so it ranks first among the three 0.5 scores
    pred = [("v1", 0, 10, "a", 0.5), ("v2", 0, 10, "a", 0.5), ("v2", 50, 60, "a", 0.5)]
    # ranked: FP, TP(v2), TP(v1): precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> 1/2*2/3 + 1/2*2/3 = 2/3
    assert ap_of(anet, gt, pred, [0.5]).average == pytest.approx(2 / 3)


def test_prediction_takes_the_ground_truth_with_highest_tiou(anet):
    # p0 [3,13] overlaps g0 [0,10] with 7/13 and g1 [4,14] with 9/11: it takes g1 although g0 comes first.
    # p1 [5,14] then overlaps only g1 enough (0.9; g0: 5/14) and g1 is taken: false positive.
    gt = [("v1", 0, 10, "a"), ("v1", 4, 14, "a")]
    pred = [("v1", 3, 13, "a", 0.9), ("v1", 5, 14, "a", 0.8)]
    result = ap_of(anet, gt, pred, [0.5])
    assert result.average == pytest.approx(0.5)  # TP FP: precision 1 at recall 1/2


def test_equal_tiou_takes_the_later_ground_truth(anet):
    # p0 [5,10] has tIoU 0.5 with both g0 [0,10] and g1 [5,15]; the official reversed argsort takes g1,
    # which leaves g0 for p1 [0,10] (tIoU 1). Taking g0 would make p1 a false positive (g1: 5/15).
    gt = [("v1", 0, 10, "a"), ("v1", 5, 15, "a")]
    pred = [("v1", 5, 10, "a", 0.9), ("v1", 0, 10, "a", 0.8)]
    assert ap_of(anet, gt, pred, [0.5]).average == pytest.approx(1.0)


def test_duplicate_detections_count_once(anet):
    gt = [("v1", 0, 10, "a")]
    pred = [("v1", 0, 10, "a", 0.9), ("v1", 0, 10, "a", 0.8), ("v1", 0, 10, "a", 0.7)]
    result = ap_of(anet, gt, pred, [0.5])
    assert result.average == pytest.approx(1.0)  # the duplicates come after full recall: no effect
    low_first = [("v1", 0, 10, "a", 0.5), ("v1", 1, 10, "a", 0.9), ("v1", 2, 10, "a", 0.8)]
    # [1,10] (0.9 tIoU) matches first, the exact [0,10] comes last: TP FP FP -> AP 1
    assert ap_of(anet, gt, low_first, [0.5]).average == pytest.approx(1.0)


def test_empty_prediction_set_gives_zero(anet):
    gt = [("v1", 0, 10, "a"), ("v2", 3, 4, "b")]
    gt_obj, pred = anet.build(gt, [])
    with pytest.warns(EvaluationWarning, match="no predictions for 2 of 2 classes"):
        result = detection_map(gt_obj, pred, [0.5, 0.7])
    np.testing.assert_array_equal(result.ap, np.zeros((2, 2)))
    assert result.average == 0.0


def test_class_without_predictions_has_ap_zero_and_counts(anet):
    gt = [("v1", 0, 10, "a"), ("v1", 20, 30, "b")]
    gt_obj, pred = anet.build(gt, [("v1", 0, 10, "a", 0.9)])
    with pytest.warns(EvaluationWarning, match="no predictions for 1 of 2 classes \\('b'\\)"):
        result = detection_map(gt_obj, pred, [0.5])
    assert result.classes == ("a", "b")
    np.testing.assert_array_equal(result.ap, [[1.0, 0.0]])
    assert result.average == pytest.approx(0.5)


def test_wrong_class_or_video_is_a_false_positive(anet):
    gt = [("v1", 0, 10, "a"), ("v1", 0, 10, "b"), ("v2", 0, 10, "a")]
    # [0,10] labelled b on v2 (no b there) ranks first: a false positive for class b
    pred = [("v2", 0, 10, "b", 0.9), ("v1", 0, 10, "b", 0.8), ("v1", 0, 10, "a", 0.7), ("v2", 0, 10, "a", 0.6)]
    result = ap_of(anet, gt, pred, [0.5])
    np.testing.assert_allclose(result.ap, [[1.0, 0.5]])  # b: FP TP -> 1 * 1/2


def test_unknown_video_predictions_are_false_positives_unless_dropped(anet):
    from uptal.eval.activitynet import ground_truth_from_dict, predictions_from_dict
    gt = ground_truth_from_dict(anet.gt_dict([("v1", 0, 10, "a")]))
    data = anet.pred_dict([("other", 0, 10, "a", 0.9), ("v1", 0, 10, "a", 0.8)])
    with pytest.warns(EvaluationWarning, match="1 predictions on 1 videos not in"):
        kept = predictions_from_dict(data, gt)
    assert kept.num_unknown == 1
    assert detection_map(gt, kept, [0.5]).average == pytest.approx(0.5)  # official: FP, then TP
    with pytest.warns(EvaluationWarning, match="ignored 1 predictions"):
        dropped = predictions_from_dict(data, gt, drop_unknown_videos=True)
    assert dropped.num_unknown == 0
    assert detection_map(gt, dropped, [0.5]).average == pytest.approx(1.0)


def test_zero_length_pair_follows_the_official_nan_rule(anet):
    # Official: a zero-length prediction and a zero-length ground truth have tIoU NaN, which passes
    # every threshold in the detection loop, even at another instant of the same video.
    gt = [("v1", 5, 5, "a"), ("v1", 20, 30, "a")]
    assert ap_of(anet, gt, [("v1", 5, 5, "a", 0.9)], [0.5, 0.95]).average == pytest.approx(0.5)
    assert ap_of(anet, gt, [("v1", 7, 7, "a", 0.9)], [0.95]).average == pytest.approx(0.5)
    # a zero-length prediction against a real segment overlaps nothing
    assert ap_of(anet, [("v1", 20, 30, "a")], [("v1", 25, 25, "a", 0.9)], [0.5]).average == 0.0


def test_interpolated_average_precision_matches_voc_definition():
    # precision 1, 0.5, 2/3 at recall 1/3, 1/3, 2/3: interpolated 1 up to 1/3, 2/3 up to 2/3, 0 beyond
    ap = interpolated_average_precision(np.array([1.0, 0.5, 2 / 3]), np.array([1 / 3, 1 / 3, 2 / 3]))
    assert ap == pytest.approx(1 / 3 + 2 / 9)
    batched = interpolated_average_precision(np.array([[1.0, 0.5], [0.0, 0.5]]), np.array([[0.5, 0.5], [0.0, 1.0]]))
    np.testing.assert_allclose(batched, [0.5, 0.5])


def test_predictions_of_another_ground_truth_are_refused(anet):
    gt_a, pred_a = anet.build([("v1", 0, 10, "a")], [("v1", 0, 10, "a", 0.9)])
    gt_b, _ = anet.build([("v1", 0, 10, "a"), ("v2", 0, 10, "b")], [])
    with pytest.raises(ValueError, match="another ground truth"):
        detection_map(gt_b, pred_a, [0.5])
    _, proposals = anet.build([("v1", 0, 10, "a")], [("v1", 0, 10, "a", 0.9)], with_labels=False)
    with pytest.raises(ValueError, match="without labels"):
        detection_map(gt_a, proposals, [0.5])


# --------------------------------------------------------------------------------------------------
# a plain, loop-by-loop reference of the official algorithm


def reference_tiou(s1, e1, s2, e2):
    """Official tIoU, with the NaN of two zero-length segments spelled out."""
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    union = (e2 - s2) + (e1 - s1) - inter
    return inter / union if union > 0 else float("nan")


def reference_voc_ap(precision, recall):
    """The official interpolated_prec_rec, element by element."""
    mprec = [0.0] + list(precision) + [0.0]
    mrec = [0.0] + list(recall) + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def reference_detection_ap(gt_rows, pred_rows, thresholds, classes):
    """AP [T, C] (columns in `classes` order) following eval_detection.py literally, stable sorts reversed."""
    ap = np.zeros((len(thresholds), len(classes)))
    for c, name in enumerate(classes):
        gts = [row for row in gt_rows if row[3] == name]
        preds = [row for row in pred_rows if row[3] == name]
        if not preds:
            continue
        ranked = [preds[i] for i in np.argsort([p[4] for p in preds], kind="stable")[::-1]]
        for t, threshold in enumerate(thresholds):
            locked, hits = set(), []
            for video, start, end, _, _ in ranked:
                mine = [j for j, g in enumerate(gts) if g[0] == video]
                tious = np.array([reference_tiou(start, end, gts[j][1], gts[j][2]) for j in mine])
                hit = False
                for k in np.argsort(tious, kind="stable")[::-1]:  # NaN sorts last, so comes first here
                    if tious[k] < threshold:
                        break
                    if mine[k] in locked:
                        continue
                    locked.add(mine[k])
                    hit = True
                    break
                hits.append(hit)
            tp = np.cumsum(hits)
            ap[t, c] = reference_voc_ap(tp / np.arange(1, len(hits) + 1), tp / len(gts))
    return ap


VIDEOS = ["v0", "v1", "v2"]
segments = st.tuples(st.integers(0, 20), st.integers(0, 8)).map(lambda p: (float(p[0]), float(p[0] + p[1])))
gt_rows = st.lists(st.tuples(st.sampled_from(VIDEOS), segments, st.sampled_from(["a", "b", "c"])),
                   min_size=1, max_size=10).map(lambda rows: [(v, s, e, c) for v, (s, e), c in rows])


@st.composite
def detection_cases(draw, tied_scores=True):
    """Random ground truth and predictions; predictions may hit unknown videos and share scores."""
    gts = draw(gt_rows)
    classes = sorted({row[3] for row in gts})
    score = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]) if tied_scores else st.floats(0, 1)
    preds = draw(st.lists(st.tuples(st.sampled_from(VIDEOS + ["unknown"]), segments, st.sampled_from(classes),
                                    score), max_size=25))
    return gts, [(v, s, e, c, sc) for v, (s, e), c, sc in preds]


THRESHOLDS = np.linspace(0.1, 1.0, 10)


def in_file_order(rows):
    """Rows as the JSON file lists them: grouped by video (first appearance), row order inside a video."""
    first = {}
    for row in rows:
        first.setdefault(row[0], len(first))
    return sorted(rows, key=lambda row: first[row[0]])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=detection_cases())
def test_matches_loop_reference(anet, case):
    gts, preds = (in_file_order(rows) for rows in case)
    result = ap_of(anet, gts, preds, THRESHOLDS)
    expected = reference_detection_ap(gts, preds, THRESHOLDS, result.classes)
    np.testing.assert_allclose(result.ap, expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# properties


@settings(max_examples=60, deadline=None)
@given(gts=gt_rows, seed=st.integers(0, 2**32 - 1))
def test_perfect_predictions_give_map_one(anet, gts, seed):
    gts = [(v, s, e + 1.0, c) for v, s, e, c in gts]  # positive length: identical segments have tIoU 1
    rng = random.Random(seed)
    preds = [(v, s, e, c, rng.random()) for v, s, e, c in gts]
    rng.shuffle(preds)
    result = ap_of(anet, gts, preds, THRESHOLDS)
    np.testing.assert_array_equal(result.ap, np.ones_like(result.ap))
    assert result.average == 1.0


@settings(max_examples=60, deadline=None)
@given(case=detection_cases(tied_scores=False), seed=st.integers(0, 2**32 - 1))
def test_video_order_does_not_matter(anet, case, seed):
    gts, preds = case
    assume(len({p[4] for p in preds}) == len(preds))  # equal scores rank by file order, officially too
    rng = random.Random(seed)
    gt_order, pred_order = rng.sample(VIDEOS, len(VIDEOS)), rng.sample(VIDEOS + ["unknown"], len(VIDEOS) + 1)
    shuffled_gt = sorted(gts, key=lambda row: gt_order.index(row[0]))     # sorted() keeps order inside a video
    shuffled_pred = sorted(preds, key=lambda row: pred_order.index(row[0]))
    before = ap_of(anet, gts, preds, THRESHOLDS)
    after = ap_of(anet, shuffled_gt, shuffled_pred, THRESHOLDS)
    by_class = [after.classes.index(name) for name in before.classes]     # class numbering follows the file
    np.testing.assert_allclose(after.ap[:, by_class], before.ap, rtol=0, atol=1e-12)
    assert after.average == pytest.approx(before.average, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(case=detection_cases(), video=st.sampled_from(VIDEOS + ["unknown"]), label_index=st.integers(0, 2))
def test_lowest_scored_false_positive_never_increases_ap(anet, case, video, label_index):
    gts, preds = case
    classes = sorted({row[3] for row in gts})
    lowest = min([p[4] for p in preds], default=1.0) - 1.0
    far_away = (video, 1000.0, 1001.0, classes[label_index % len(classes)], lowest)  # overlaps no ground truth
    before = ap_of(anet, gts, preds, THRESHOLDS)
    after = ap_of(anet, gts, preds + [far_away], THRESHOLDS)
    assert (after.ap <= before.ap + 1e-12).all()
    assert after.average <= before.average + 1e-12
