"""Temporal localization metrics with the official ActivityNet semantics, vectorised with numpy.

* :func:`detection_map`: Evaluation/eval_detection.py (ANETdetection) of the official ActivityNet repository.
* :func:`proposal_ar_an`: Evaluation/eval_proposal.py (ANETproposal): average recall vs average number of
  proposals per video, and the area under that curve.
* :func:`grounding_recall`: temporal grounding R@1 at tIoU thresholds and mean tIoU.

Points where the official code leaves room, and what we do:

* Score ties. The official code orders predictions with ``score.argsort()[::-1]`` (numpy's default sort,
  reversed). With numpy 1.x, the code's era, that sort is stable for small arrays (insertion sort up to 16
  elements), so among equal scores the entry that comes *later* in the file is ranked first; larger
  arrays, and numpy 2's SIMD sorts, order ties in a CPU-dependent way. We rank later entries first among
  equal scores for every size, deterministically (a stable sort, reversed).
* tIoU ties during matching. The official code walks the ground truth in ``tiou.argsort()[::-1]`` order,
  so (same reasoning) among equally overlapping ground truths the later one in the file is taken. So do we.
* Zero-length segments. A zero-length prediction and a zero-length ground truth of the same video have
  tIoU 0/0 = NaN in the official code (ActivityNet v1.3 validation has 3 zero-length ground truths). Its
  detection loop then treats the pair as passing every threshold, ahead of any real overlap (``nan <
  thr`` is False and NaN sorts last, so first after reversing); its proposal code treats it as a miss
  (``nan >= thr`` is False). We reproduce both, without NaN arithmetic. :func:`segment_iou` and grounding
  give 0 for such a pair instead, or 1 when the two points coincide (grounding).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .activitynet import EvaluationWarning, GroundTruth, Predictions

__all__ = [
    "TIOU_PRESETS",
    "DetectionResult",
    "ProposalResult",
    "parse_tiou_thresholds",
    "check_tiou_thresholds",
    "segment_iou",
    "interpolated_average_precision",
    "detection_map",
    "proposal_ar_an",
    "grounding_recall",
]

# The official code uses np.linspace(0.5, 0.95, 10); THUMOS14 papers report 0.3:0.1:0.7.
TIOU_PRESETS: dict[str, np.ndarray] = {
    "activitynet": np.linspace(0.5, 0.95, 10),
    "thumos14": np.linspace(0.3, 0.7, 5),
}


# --------------------------------------------------------------------------------------------------
# thresholds


def check_tiou_thresholds(values: Iterable[float] | np.ndarray, name: str = "tiou_thresholds") -> np.ndarray:
    """Return thresholds as a 1-D float64 array; each must lie in (0, 1]."""
    try:
        thresholds = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numbers, got {values!r}") from None
    if thresholds.size == 0:
        raise ValueError(f"{name}: no threshold given")
    bad = thresholds[~((thresholds > 0) & (thresholds <= 1))]  # also catches NaN
    if bad.size:
        raise ValueError(f"{name}: tIoU thresholds must lie in (0, 1], got {float(bad[0])!r}")
    return thresholds


def parse_tiou_thresholds(spec: str) -> np.ndarray:
    """Parse "activitynet", "thumos14", "start:stop:step" (stop included) or "0.3,0.5,0.7".

    A range gives the same floats as np.linspace(start, stop, n), so "0.5:0.95:0.05" is bit-identical to
    the official thresholds; a stop that the step does not reach (beyond float error) is left out.
    """
    text = spec.strip().lower()
    if text in TIOU_PRESETS:
        return TIOU_PRESETS[text].copy()
    name = f"tIoU {spec!r}"
    if ":" in text:
        parts = _numbers(text.split(":"), spec)
        if len(parts) != 3:
            raise _syntax_error(spec)
        return check_tiou_thresholds(_inclusive_range(*parts, spec=spec), name=name)
    return check_tiou_thresholds(_numbers(text.split(","), spec), name=name)


def _syntax_error(spec: str) -> ValueError:
    """The error for a threshold specification that does not parse."""
    return ValueError(f"tIoU {spec!r}: expected a preset ({', '.join(TIOU_PRESETS)}), start:stop:step or a "
                      f"comma list such as 0.3,0.5,0.7")


def _numbers(parts: list[str], spec: str) -> list[float]:
    """Floats of a split specification, or the syntax error."""
    try:
        return [float(part) for part in parts]
    except ValueError:
        raise _syntax_error(spec) from None


def _inclusive_range(start: float, stop: float, step: float, spec: str) -> np.ndarray:
    """start, start+step, ... up to stop inclusive, tolerant of float error in (stop - start) / step."""
    if not (math.isfinite(start) and math.isfinite(stop) and math.isfinite(step)) or step <= 0 or stop < start:
        raise ValueError(f"tIoU {spec!r}: a range needs finite start <= stop and step > 0")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    last = start + (count - 1) * step
    # snap the end point: to `stop` when the step reaches it, else off the float noise of the product
    last = stop if abs(last - stop) <= 1e-9 * max(1.0, abs(stop)) else round(last, 12)
    return np.linspace(start, last, count)


# --------------------------------------------------------------------------------------------------
# tIoU and AP


def _tiou(start_a: np.ndarray, end_a: np.ndarray, start_b: np.ndarray, end_b: np.ndarray,
          degenerate: float = 0.0) -> np.ndarray:
    """Element-wise temporal IoU; `degenerate` where both segments have zero length (official: 0/0)."""
    inter = (np.minimum(end_a, end_b) - np.maximum(start_a, start_b)).clip(0)
    union = (end_b - start_b) + (end_a - start_a) - inter  # same operation order as the official code
    out = np.full(np.broadcast(inter, union).shape, degenerate)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def segment_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """tIoU matrix [len(a), len(b)] between segments a [n, 2] and b [m, 2]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    return _tiou(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1])


def interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """VOC 2011 interpolated AP (the official `interpolated_prec_rec`), over the last axis.

    Precision at recall r is replaced by the best precision at any recall >= r, then summed over the
    recall steps; the sentinel recall 1 with precision 0 adds nothing, as in the official code.
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    pad = np.zeros(precision.shape[:-1] + (1,))
    mprec = np.concatenate([pad, precision, pad], axis=-1)
    mrec = np.concatenate([pad, recall, pad + 1.0], axis=-1)
    mprec = np.flip(np.maximum.accumulate(np.flip(mprec, -1), axis=-1), -1)
    step = np.diff(mrec, axis=-1)
    return np.where(step != 0, step * mprec[..., 1:], 0.0).sum(axis=-1)


# --------------------------------------------------------------------------------------------------
# detection


@dataclass(frozen=True, eq=False)
class DetectionResult:
    """Detection mAP: `ap[t, c]` per threshold and class, `map_per_threshold[t]`, and their `average`."""

    map_per_threshold: np.ndarray
    average: float
    ap: np.ndarray
    tiou_thresholds: np.ndarray
    classes: tuple[str, ...]


def _check_pair(gt: GroundTruth, pred: Predictions) -> None:
    """Refuse predictions that were indexed against another ground truth."""
    if not isinstance(gt, GroundTruth) or not isinstance(pred, Predictions):
        raise TypeError("expected a GroundTruth and a Predictions (see uptal.eval.activitynet)")
    if gt.num_instances == 0:
        raise ValueError(f"{gt.source}: no ground-truth instance to evaluate against")
    if not pred.is_indexed_against(gt):
        raise ValueError(f"predictions {pred.source} were read against another ground truth than {gt.source}; "
                         f"build them with predictions_from_dict(data, gt) / load_predictions(path, gt)")


def _rank_order(score: np.ndarray, index: np.ndarray, *groups: np.ndarray) -> np.ndarray:
    """Order by `groups` (ascending), then score descending, ties: later `index` first.

    This is the official ``argsort()[::-1]`` inside each group, made deterministic (see module docstring).
    """
    return np.lexsort((-index, -score) + tuple(reversed(groups)))


def _segment_starts(sizes: np.ndarray) -> np.ndarray:
    """Start offsets of consecutive segments with the given sizes."""
    starts = np.zeros(sizes.size, dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    return starts


def _pairs(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For owners with `sizes[i]` partners each: (owner of every pair, rank of the pair within owner)."""
    owner = np.repeat(np.arange(sizes.size), sizes)
    rank = np.arange(owner.size) - np.repeat(_segment_starts(sizes), sizes)
    return owner, rank


def detection_map(gt: GroundTruth, pred: Predictions,
                  tiou_thresholds: Sequence[float] | np.ndarray = TIOU_PRESETS["activitynet"]) -> DetectionResult:
    """Mean average precision of detections, as the official ActivityNet `ANETdetection.evaluate`.

    Per class, predictions are ranked by score; each, in turn, is a true positive at threshold t when some
    not yet matched ground truth of its class and video has tIoU >= t (it takes the one with the highest
    tIoU). AP is VOC-interpolated; classes come from the ground truth and a class without predictions has
    AP 0. mAP averages over classes, `average` over thresholds.
    """
    _check_pair(gt, pred)
    if not pred.has_labels:
        raise ValueError(f"predictions {pred.source} were read without labels; detection needs labels")
    thresholds = check_tiou_thresholds(tiou_thresholds)
    num_classes = len(gt.classes)
    order = _rank_order(pred.score, np.arange(pred.score.size), pred.label)
    true_pos = _match_detections(gt, pred, order, thresholds)
    sorted_label = pred.label[order]
    bounds = np.searchsorted(sorted_label, np.arange(num_classes + 1))
    num_positives = np.bincount(gt.label, minlength=num_classes)
    ap = np.zeros((thresholds.size, num_classes))
    for c in range(num_classes):
        lo, hi = bounds[c], bounds[c + 1]
        if lo == hi:  # no prediction of this class: AP 0, as the official code
            continue
        tp_cum = np.cumsum(true_pos[:, lo:hi], axis=1, dtype=np.float64)
        precision = tp_cum / np.arange(1, hi - lo + 1, dtype=np.float64)
        ap[:, c] = interpolated_average_precision(precision, tp_cum / num_positives[c])
    _warn_classes_without_predictions(gt, pred, bounds)
    map_per_threshold = ap.mean(axis=1)
    return DetectionResult(map_per_threshold=map_per_threshold, average=float(map_per_threshold.mean()),
                           ap=ap, tiou_thresholds=thresholds, classes=gt.classes)


def _warn_classes_without_predictions(gt: GroundTruth, pred: Predictions, bounds: np.ndarray) -> None:
    """The official code prints a warning per class without predictions (their AP is 0); we warn once."""
    empty = [gt.classes[c] for c in np.flatnonzero(np.diff(bounds) == 0)]
    if empty:
        examples = ", ".join(repr(name) for name in empty[:3]) + (", ..." if len(empty) > 3 else "")
        warnings.warn(f"{pred.source}: no predictions for {len(empty)} of {len(gt.classes)} classes "
                      f"({examples}): their AP is 0", EvaluationWarning, stacklevel=3)


def _match_detections(gt: GroundTruth, pred: Predictions, order: np.ndarray,
                      thresholds: np.ndarray) -> np.ndarray:
    """True-positive flags [T, P] for predictions taken in `order` (class, then rank).

    Matching is greedy in rank order but independent between (class, video) groups, so groups advance
    together: step s handles the s-th candidate of every group at once, over all thresholds. Predictions
    that overlap no ground truth of their group enough for the lowest threshold are false positives
    without entering the loop; groups are bucketed by their number of ground truths to bound padding.
    """
    true_pos = np.zeros((thresholds.size, order.size), dtype=bool)
    num_videos = len(pred.video_ids)
    group_keys, gt_group = np.unique(gt.label * num_videos + gt.video, return_inverse=True)
    gt_in_group = np.argsort(gt_group, kind="stable")  # gt rows grouped, file order inside a group
    group_size = np.bincount(gt_group, minlength=group_keys.size)
    group_start = _segment_starts(group_size)

    pred_key = pred.label[order] * num_videos + pred.video[order]
    group = np.minimum(np.searchsorted(group_keys, pred_key), group_keys.size - 1)
    position = np.flatnonzero(group_keys[group] == pred_key)  # ranked predictions with some ground truth
    if position.size == 0:
        return true_pos
    group = group[position]
    owner, slot = _pairs(group_size[group])
    row = order[position[owner]]
    gt_row = gt_in_group[group_start[group[owner]] + slot]
    # inf: the official NaN tIoU of two zero-length segments passes every threshold and is tried first
    tiou = _tiou(pred.start[row], pred.end[row], gt.start[gt_row], gt.end[gt_row], degenerate=np.inf)
    pair_start = _segment_starts(group_size[group])
    candidate = np.maximum.reduceat(tiou, pair_start) >= thresholds.min()

    width = 1 << np.ceil(np.log2(group_size[group])).astype(np.int64)  # bucket: ground truths rounded up
    for bucket_width in np.unique(width[candidate]):
        members = np.flatnonzero(candidate & (width == bucket_width))
        _match_bucket(true_pos, thresholds, position[members], group[members], group_size[group[members]],
                      pair_start[members], tiou, int(bucket_width))
    return true_pos


def _match_bucket(true_pos: np.ndarray, thresholds: np.ndarray, position: np.ndarray, group: np.ndarray,
                  size: np.ndarray, pair_start: np.ndarray, tiou: np.ndarray, width: int) -> None:
    """Greedy matching of candidate predictions (in rank order) whose groups have <= `width` ground truths."""
    # padded tIoU [candidates, width]; -1 marks padding, below any threshold
    padded = np.full((position.size, width), -1.0)
    owner, slot = _pairs(size)
    padded[owner, slot] = tiou[pair_start[owner] + slot]
    # step = rank of a candidate inside its group; groups numbered by decreasing candidate count, so the
    # groups still active at step s are exactly 0 .. n_s-1
    local_group, group_of = np.unique(group, return_inverse=True)
    counts = np.bincount(group_of)
    by_count = np.argsort(-counts, kind="stable")
    dense = np.empty_like(by_count)
    dense[by_count] = np.arange(by_count.size)
    dense_group = dense[group_of]
    step = np.empty(position.size, dtype=np.int64)
    within = np.argsort(group_of, kind="stable")  # candidates are already in rank order within a group
    step[within] = np.arange(position.size) - np.repeat(_segment_starts(counts), counts)
    sequence = np.lexsort((dense_group, step))
    step_bounds = np.searchsorted(step[sequence], np.arange(counts.max() + 1))

    locked = np.zeros((local_group.size, thresholds.size, width), dtype=bool)
    cut = thresholds[None, :, None]
    for s in range(counts.max()):
        rows = sequence[step_bounds[s]:step_bounds[s + 1]]
        overlap = padded[rows][:, None, :]                                  # [n, 1, W]
        free = (overlap >= cut) & ~locked[: rows.size]                     # [n, T, W]
        # highest tIoU wins; among equal tIoU the later ground truth, as the official reversed argsort
        choice = width - 1 - np.argmax(np.where(free, overlap, -1.0)[:, :, ::-1], axis=2)
        hit = np.take_along_axis(free, choice[:, :, None], axis=2)[:, :, 0]
        r, t = np.nonzero(hit)
        locked[r, t, choice[r, t]] = True
        true_pos[t, position[rows[r]]] = True


# --------------------------------------------------------------------------------------------------
# proposals


@dataclass(frozen=True, eq=False)
class ProposalResult:
    """AR vs AN: `recall[t, j]` at threshold t and average number of proposals per video
    `proposals_per_video[j]`, `avg_recall` over thresholds, and `auc` in percent (official number)."""

    avg_recall: np.ndarray
    proposals_per_video: np.ndarray
    auc: float
    recall: np.ndarray
    tiou_thresholds: np.ndarray

    def ar_at(self, num_proposals: float) -> float:
        """Average recall at `num_proposals` proposals per video (the grid point, or interpolated)."""
        nearest = int(np.argmin(np.abs(self.proposals_per_video - num_proposals)))
        if np.isclose(self.proposals_per_video[nearest], num_proposals, rtol=1e-9, atol=1e-9):
            return float(self.avg_recall[nearest])
        return float(np.interp(num_proposals, self.proposals_per_video, self.avg_recall))


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """np.trapz with its exact operation order (np.trapz is gone from numpy 2 under that name)."""
    return float(np.add.reduce(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def proposal_ar_an(gt: GroundTruth, pred: Predictions, max_avg_nr_proposals: float | None = 100,
                   tiou_thresholds: Sequence[float] | np.ndarray = TIOU_PRESETS["activitynet"]) -> ProposalResult:
    """Average recall vs average number of proposals, as the official `ANETproposal.evaluate`.

    Labels are ignored. Videos are those with ground truth. Every video keeps its top
    int(n_v * ratio) proposals, ratio = max_avg_nr_proposals * num_videos / num_proposals (all loaded
    proposals, unknown videos included, as officially). The curve samples 100 fractions of that budget;
    a ground truth is recalled when any proposal within the budget reaches the threshold (no one-to-one
    matching). AUC = 100 * trapz(avg_recall, proposals_per_video) / proposals_per_video[-1].
    With no proposal at all the recall is 0 everywhere (the official code divides by zero).
    """
    _check_pair(gt, pred)
    thresholds = check_tiou_thresholds(tiou_thresholds)
    videos, gt_video = np.unique(gt.video, return_inverse=True)
    num_videos, total = videos.size, pred.video.size
    if not max_avg_nr_proposals and total == 0:
        raise ValueError("no proposals: max_avg_nr_proposals=None takes the budget from the proposals")
    max_avg = float(max_avg_nr_proposals) if max_avg_nr_proposals else total / num_videos
    if max_avg <= 0 or not math.isfinite(max_avg):
        raise ValueError(f"max_avg_nr_proposals must be positive, got {max_avg_nr_proposals!r}")

    compact = np.full(len(pred.video_ids), -1, dtype=np.int64)
    compact[videos] = np.arange(num_videos)
    keep = np.flatnonzero(compact[pred.video] >= 0)
    ranked = keep[_rank_order(pred.score[keep], keep, compact[pred.video[keep]])]
    per_video = np.bincount(compact[pred.video[ranked]], minlength=num_videos)
    budget = (np.minimum((per_video * (max_avg * float(num_videos) / total)).astype(np.int64), per_video)
              if total else np.zeros(num_videos, dtype=np.int64))
    total_kept = int(budget.sum())
    fractions = np.arange(1, 101) / 100.0
    if total_kept == 0:
        zeros = np.zeros((thresholds.size, fractions.size))
        return ProposalResult(avg_recall=zeros.mean(axis=0), proposals_per_video=fractions * max_avg, auc=0.0,
                              recall=zeros, tiou_thresholds=thresholds)
    pcn = fractions * (max_avg * float(num_videos) / total_kept)
    # proposals inside the budget, contiguous per video in rank order
    _, rank = _pairs(per_video)
    kept = ranked[rank < np.repeat(budget, per_video)]
    first_hit = _first_hits(gt, pred, kept, gt_video, budget, thresholds)
    allowed = np.minimum((budget[:, None] * pcn[None, :]).astype(np.int64), budget[:, None])  # [V, 100]
    recall = np.stack([(first_hit[:, t, None] < allowed[gt_video]).sum(axis=0) / gt.video.size
                       for t in range(thresholds.size)])
    avg_recall = recall.mean(axis=0)
    proposals_per_video = pcn * (float(total_kept) / num_videos)
    auc = float(100.0 * _trapezoid(avg_recall, proposals_per_video) / proposals_per_video[-1])
    return ProposalResult(avg_recall=avg_recall, proposals_per_video=proposals_per_video, auc=auc,
                          recall=recall, tiou_thresholds=thresholds)


def _first_hits(gt: GroundTruth, pred: Predictions, kept: np.ndarray, gt_video: np.ndarray,
                budget: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """[G, T]: rank of the first budgeted proposal of each ground truth's video reaching each threshold.

    A ground truth is recalled with the top-k proposals iff its first hit is < k; no hit gives a rank
    no budget reaches.
    """
    never = np.iinfo(np.int64).max
    first_hit = np.full((gt.video.size, thresholds.size), never, dtype=np.int64)
    partners = budget[gt_video]
    has = np.flatnonzero(partners > 0)
    if has.size == 0:
        return first_hit
    owner, rank = _pairs(partners[has])
    proposal = kept[_segment_starts(budget)[gt_video[has]][owner] + rank]
    g = has[owner]
    tiou = _tiou(pred.start[proposal], pred.end[proposal], gt.start[g], gt.end[g])  # official NaN: a miss
    starts = _segment_starts(partners[has])
    for t, threshold in enumerate(thresholds):
        first_hit[has, t] = np.minimum.reduceat(np.where(tiou >= threshold, rank, never), starts)
    return first_hit


# --------------------------------------------------------------------------------------------------
# grounding


def _threshold_key(threshold: float) -> str:
    """'R@1,tIoU=0.5' style key with float noise removed (0.30000000000000004 -> 0.3)."""
    return f"R@1,tIoU={round(float(threshold), 6):g}"


def grounding_recall(gt_segments: np.ndarray, pred_segments: np.ndarray,
                     tiou_thresholds: Sequence[float] | np.ndarray = (0.3, 0.5, 0.7)) -> dict[str, float]:
    """Temporal grounding with one predicted segment per query.

    Returns {"R@1,tIoU=x": fraction of queries whose prediction has tIoU >= x, ..., "mIoU": mean tIoU}
    (fractions in [0, 1]). A NaN row in `pred_segments` means "no prediction" and counts as tIoU 0; a
    zero-length prediction equal to a zero-length ground truth has tIoU 1.
    """
    thresholds = check_tiou_thresholds(tiou_thresholds)
    gt = np.asarray(gt_segments, dtype=np.float64)
    pred = np.asarray(pred_segments, dtype=np.float64)
    if gt.ndim != 2 or gt.shape[1] != 2 or gt.shape != pred.shape:
        raise ValueError(f"gt_segments and pred_segments must both be [N, 2], got {gt.shape} and {pred.shape}")
    if gt.shape[0] == 0:
        raise ValueError("no grounding queries")
    if not np.isfinite(gt).all():
        raise ValueError("gt_segments must be finite")
    tiou = _tiou(pred[:, 0], pred[:, 1], gt[:, 0], gt[:, 1])
    tiou[(pred == gt).all(axis=1) & (gt[:, 0] == gt[:, 1])] = 1.0  # the same instant: a perfect answer
    tiou[np.isnan(pred).any(axis=1)] = 0.0
    result = {_threshold_key(t): float(np.mean(tiou >= t)) for t in thresholds}
    result["mIoU"] = float(tiou.mean())
    return result
