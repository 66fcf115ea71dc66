"""Proposal AR@AN / AUC: a hand-computed case, official budget rules, and a loop reference."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uptal.eval.activitynet import EvaluationWarning, ground_truth_from_dict, predictions_from_dict
from uptal.eval.metrics import proposal_ar_an

pytestmark = pytest.mark.filterwarnings("ignore::uptal.eval.activitynet.EvaluationWarning")

GT = [("v1", 0, 10, "a"), ("v1", 20, 30, "b"), ("v2", 0, 10, "a")]
PROPOSALS = [("v1", 0, 10, "x", 0.9), ("v1", 50, 60, "x", 0.8), ("v1", 20, 30, "x", 0.7), ("v2", 0, 10, "x", 0.5)]


def proposals_of(anet, gt_rows, rows, **kwargs):
    gt, pred = anet.build(gt_rows, rows, with_labels=False)
    return proposal_ar_an(gt, pred, **kwargs)


def test_hand_computed_curve(anet):
    # 2 videos, 4 proposals, max 2 per video: ratio 1, budgets v1 3, v2 1; sample j keeps int(3 j/100)
    # proposals of v1 and int(j/100) of v2, at AN = 2 j/100. v1's first proposal recalls [0,10] from
    # j = 34, its third [20,30] and v2's only one at j = 100. Recall: 0 (j<34), 1/3 (34..99), 1 (j=100).
    result = proposals_of(anet, GT, PROPOSALS, max_avg_nr_proposals=2, tiou_thresholds=[0.5])
    expected = np.where(np.arange(1, 101) < 34, 0.0, 1 / 3)
    expected[-1] = 1.0
    np.testing.assert_allclose(result.recall[0], expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(result.proposals_per_video, np.arange(1, 101) / 50)
    assert result.ar_at(1) == pytest.approx(1 / 3)
    assert result.ar_at(2) == pytest.approx(1.0)
    # trapezoids of width 0.02: 1/6 + 65 * 1/3 + 2/3 = 22.5 -> 0.45; AUC = 100 * 0.45 / 2
    assert result.auc == pytest.approx(22.5, abs=1e-9)


def test_labels_are_ignored(anet):
    relabelled = [(v, s, e, "anything", sc) for v, s, e, _, sc in PROPOSALS]
    a = proposals_of(anet, GT, PROPOSALS, max_avg_nr_proposals=2, tiou_thresholds=[0.5])
    b = proposals_of(anet, GT, relabelled, max_avg_nr_proposals=2, tiou_thresholds=[0.5])
    np.testing.assert_array_equal(a.recall, b.recall)


def test_recall_is_not_one_to_one(anet):
    # one proposal may recall two ground truths (unlike detection)
    gt = [("v1", 0, 10, "a"), ("v1", 1, 10, "a")]
    result = proposals_of(anet, gt, [("v1", 0, 10, "x", 0.9)], max_avg_nr_proposals=1, tiou_thresholds=[0.5])
    assert result.recall[0, -1] == 1.0


def test_unknown_videos_shrink_the_budget_as_officially(anet):
    gt = ground_truth_from_dict(anet.gt_dict(GT))
    rows = PROPOSALS + [("zz", 0, 1, "x", 0.1)] * 4
    data = anet.pred_dict(rows)
    # official: ratio = 2 * 2 / 8 proposals (unknown ones included) = 0.5 -> v1 keeps 1, v2 keeps 0
    with pytest.warns(EvaluationWarning, match="proposal budget"):
        kept = predictions_from_dict(data, gt, with_labels=False)
    result = proposal_ar_an(gt, kept, max_avg_nr_proposals=2, tiou_thresholds=[0.5])
    assert result.recall[0, -1] == pytest.approx(1 / 3)
    dropped = predictions_from_dict(data, gt, with_labels=False, drop_unknown_videos=True)
    assert proposal_ar_an(gt, dropped, max_avg_nr_proposals=2, tiou_thresholds=[0.5]).recall[0, -1] == 1.0


def test_default_budget_is_the_actual_average(anet):
    result = proposals_of(anet, GT, PROPOSALS, max_avg_nr_proposals=None, tiou_thresholds=[0.5])
    np.testing.assert_allclose(result.proposals_per_video[-1], 2.0)  # 4 proposals / 2 videos


def test_no_proposals_give_zero_recall(anet):
    result = proposals_of(anet, GT, [], max_avg_nr_proposals=100, tiou_thresholds=[0.5, 0.7])
    assert result.auc == 0.0
    np.testing.assert_array_equal(result.recall, np.zeros((2, 100)))
    with pytest.raises(ValueError, match="no proposals"):
        proposals_of(anet, GT, [], max_avg_nr_proposals=None)


def test_zero_length_pair_is_a_miss_as_officially(anet):
    result = proposals_of(anet, [("v1", 5, 5, "a")], [("v1", 5, 5, "x", 0.9)], tiou_thresholds=[0.5])
    assert result.recall.max() == 0.0


# --------------------------------------------------------------------------------------------------
# loop reference of eval_proposal.average_recall_vs_avg_nr_proposals


def reference_tiou(s1, e1, s2, e2):
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    union = (e2 - s2) + (e1 - s1) - inter
    return inter / union if union > 0 else float("nan")


def reference_proposals(gt_rows, rows, max_avg, thresholds):
    """(recall [T, 100], proposals_per_video, AUC) following eval_proposal.py literally; None when no
    proposal fits in the budget."""
    videos = list(dict.fromkeys(row[0] for row in gt_rows))
    ratio = max_avg * len(videos) / len(rows)
    kept, total = {}, 0
    for video in videos:
        mine = [row for row in rows if row[0] == video]
        order = np.argsort([row[4] for row in mine], kind="stable")[::-1]
        budget = min(int(len(mine) * ratio), len(mine))
        kept[video] = [mine[i] for i in order[:budget]]
        total += budget
    if total == 0:
        return None  # the official code divides by zero here
    pcn = np.arange(1, 101) / 100.0 * (max_avg * len(videos) / total)
    recall = np.zeros((len(thresholds), 100))
    for t, threshold in enumerate(thresholds):
        for j in range(100):
            found = 0
            for video in videos:
                props = kept[video][: min(int(len(kept[video]) * pcn[j]), len(kept[video]))]
                for g in (row for row in gt_rows if row[0] == video):
                    found += any(reference_tiou(p[1], p[2], g[1], g[2]) >= threshold for p in props)
            recall[t, j] = found / len(gt_rows)
    per_video = pcn * (total / len(videos))
    avg = recall.mean(axis=0)
    area = sum((per_video[i + 1] - per_video[i]) * (avg[i + 1] + avg[i]) / 2 for i in range(99))
    return recall, per_video, 100 * area / per_video[-1]


segments = st.tuples(st.integers(0, 20), st.integers(0, 8)).map(lambda p: (float(p[0]), float(p[0] + p[1])))


@settings(max_examples=60, deadline=None)
@given(gt=st.lists(st.tuples(st.sampled_from(["v0", "v1", "v2"]), segments), min_size=1, max_size=6),
       props=st.lists(st.tuples(st.sampled_from(["v0", "v1", "v2", "zz"]), segments,
                                st.sampled_from([0.0, 0.5, 1.0])), min_size=1, max_size=14),
       max_avg=st.sampled_from([0.5, 1, 3, 100]))
def test_matches_loop_reference(anet, gt, props, max_avg):
    gt_rows = [(v, s, e, "a") for v, (s, e) in gt]
    rows = [(v, s, e, "a", sc) for v, (s, e), sc in props]
    first = {}
    for row in gt_rows + rows:  # the order the JSON files list them in
        first.setdefault(row[0], len(first))
    gt_rows.sort(key=lambda row: first[row[0]])
    rows.sort(key=lambda row: first[row[0]])
    thresholds = np.array([0.1, 0.5, 0.9])
    result = proposals_of(anet, gt_rows, rows, max_avg_nr_proposals=max_avg, tiou_thresholds=thresholds)
    expected = reference_proposals(gt_rows, rows, max_avg, thresholds)
    if expected is None:  # we define that case as zero recall
        assert result.auc == 0.0 and not result.recall.any()
        return
    recall, per_video, auc = expected
    np.testing.assert_array_equal(result.recall, recall)
    np.testing.assert_allclose(result.proposals_per_video, per_video, rtol=1e-15)
    assert result.auc == pytest.approx(auc, rel=1e-12, abs=1e-12)
