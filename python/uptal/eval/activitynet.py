"""Read the JSON files temporal action localization users already have.

Three layouts, all keyed by video id:

* Ground truth, ActivityNet layout::

      {"version": ..., "taxonomy": [...],
       "database": {"<video>": {"subset": "validation",
                                "annotations": [{"segment": [start, end], "label": "<class>"}, ...]}}}

* Detection / proposal predictions, ActivityNet layout::

      {"version": ..., "external_data": {...},
       "results": {"<video>": [{"segment": [start, end], "label": "<class>", "score": 0.9}, ...]}}

  Proposals need no "label".

* Temporal grounding (ActivityNet-Captions-like), one predicted segment per query::

      ground truth  {"<video>": {"timestamps": [[start, end], ...], "duration": 120.5, "sentences": [...]}}
      predictions   {"<video>": [[start, end], ...]}          (same length and order as "timestamps")

Everything a metric needs becomes flat numpy arrays (one row per instance) so that the metrics in
:mod:`uptal.eval.metrics` can be vectorised. Bad input raises :class:`ValueError` whose message names the
file, the video, the entry and the field. Where the official ActivityNet code tolerates something
questionable, we tolerate it too and say so with an :class:`EvaluationWarning`.

Deliberate leniency compared to the official loader: only the fields a metric reads are required
("database" for ground truth, "results" for predictions); "version", "taxonomy" and "external_data" are
optional because several toolboxes omit them and they do not change any number.
"""
from __future__ import annotations

import difflib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = [
    "EvaluationWarning",
    "GroundTruth",
    "Predictions",
    "GroundingPairs",
    "read_json",
    "load_video_list",
    "ground_truth_from_dict",
    "load_ground_truth",
    "predictions_from_dict",
    "load_predictions",
    "grounding_from_dicts",
    "load_grounding",
]


class EvaluationWarning(UserWarning):
    """Input the evaluation accepts (as the official code does) but that the user should know about."""


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Ground-truth instances of one subset, one row per annotated segment.

    `video` indexes `video_ids` (every video of the subset that survived the blocked list, annotated or
    not), `label` indexes `classes` (in order of first appearance in the file, like the official
    `activity_index`). `start`, `end` are float64 seconds.
    """

    video_ids: tuple[str, ...]
    classes: tuple[str, ...]
    video: np.ndarray
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    subset: str | None
    source: str

    @property
    def num_instances(self) -> int:
        """Number of annotated segments."""
        return int(self.video.size)


@dataclass(frozen=True, eq=False)
class Predictions:
    """Predicted segments indexed against one :class:`GroundTruth`.

    `video_ids` is the ground truth's `video_ids` followed by the ids of videos the ground truth does not
    know (`video >= num_known_videos` marks those rows). `label` indexes the ground truth's `classes`,
    or is -1 everywhere when the predictions were read without labels (proposals).
    """

    video_ids: tuple[str, ...]
    num_known_videos: int
    classes: tuple[str, ...]
    video: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray
    label: np.ndarray
    has_labels: bool
    source: str

    @property
    def num_unknown(self) -> int:
        """Number of predictions on videos that are not in the ground truth."""
        return int(np.count_nonzero(self.video >= self.num_known_videos))

    def is_indexed_against(self, gt: GroundTruth) -> bool:
        """True when these predictions were built for `gt` (same classes and video index)."""
        return (self.classes == gt.classes
                and self.video_ids[: self.num_known_videos] == gt.video_ids)


@dataclass(frozen=True, eq=False)
class GroundingPairs:
    """One row per grounding query: its video, ground-truth segment and predicted segment.

    A query whose video has no prediction has a NaN row in `pred_segments`; metrics count it as a miss.
    """

    video_ids: tuple[str, ...]
    gt_segments: np.ndarray
    pred_segments: np.ndarray

    @property
    def num_missing(self) -> int:
        """Number of queries without a prediction."""
        return int(np.count_nonzero(np.isnan(self.pred_segments[:, 0])))


# --------------------------------------------------------------------------------------------------
# small helpers


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a file that is not JSON raises ValueError naming the file and the position."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a JSON file (it is not UTF-8 text)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None


def load_video_list(path: str | Path) -> frozenset[str]:
    """Read video ids to exclude (blocked or missing videos): one id a line, '#' starts a comment.

    A JSON list of ids (the form the official server returned) is accepted too.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        ids = read_json(path)
        if not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{path}: a JSON video list must hold strings only")
        return frozenset(ids)
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(line for line in lines if line)


def _json_kind(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string"}.get(type(value), type(value).__name__)


def _show(value: Any, limit: int = 80) -> str:
    """A short JSON rendering of a value for error messages."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    """JSON numbers only: Python's bool is an int, but `true` is not a time or a score."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_segment(value: Any, where: str, field: str = "segment") -> tuple[float, float]:
    """Validate one [start, end] pair of finite numbers with end >= start."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{where}: field {field!r} must be [start, end], got {_show(value)}")
    if not (_is_number(value[0]) and _is_number(value[1])):
        raise ValueError(f"{where}: field {field!r} must hold two numbers, got {_show(value)}")
    try:
        start, end = float(value[0]), float(value[1])
    except OverflowError:
        start = end = math.inf
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"{where}: field {field!r} is not finite: {_show(value)}")
    if end < start:
        raise ValueError(f"{where}: field {field!r} ends before it starts: {_show(value)}")
    return start, end


def _check_score(value: Any, where: str) -> float:
    """Validate one finite numeric score."""
    if not _is_number(value):
        raise ValueError(f"{where}: field 'score' must be a number, got {_json_kind(value)} {_show(value)}")
    score = float(value)
    if math.isnan(score):
        raise ValueError(f"{where}: field 'score' is NaN")
    if math.isinf(score):
        raise ValueError(f"{where}: field 'score' is infinite")
    return score


def _require_object(value: Any, where: str) -> dict:
    """Raise unless `value` is a JSON object."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a JSON object, got {_json_kind(value)}")
    return value


def _require_field(entry: Mapping, field: str, where: str) -> Any:
    """entry[field], or a ValueError naming the missing field."""
    if field not in entry:
        raise ValueError(f"{where}: missing field {field!r}")
    return entry[field]


# --------------------------------------------------------------------------------------------------
# ground truth


def ground_truth_from_dict(data: Any, subset: str | None = "validation", blocked: Iterable[str] = (),
                           source: str = "<ground truth>") -> GroundTruth:
    """Build a :class:`GroundTruth` from parsed ActivityNet ground-truth JSON.

    Keeps the videos whose "subset" equals `subset` (every video when `subset` is None) and that are not
    in `blocked`. Classes are numbered in order of first appearance, as the official code does.
    """
    database = _require_field(_require_object(data, source), "database", source)
    _require_object(database, f"{source}: field 'database'")
    blocked = frozenset(blocked)
    video_ids: list[str] = []
    class_index: dict[str, int] = {}
    rows: list[tuple[int, float, float, int]] = []
    subsets_seen: set[str] = set()
    for vid, entry in database.items():
        where = f"{source}: video {vid!r}"
        _require_object(entry, where)
        if subset is not None:
            entry_subset = _require_field(entry, "subset", where)
            subsets_seen.add(str(entry_subset))
            if entry_subset != subset:
                continue
        if vid in blocked:
            continue
        annotations = _require_field(entry, "annotations", where)
        if not isinstance(annotations, list):
            raise ValueError(f"{where}: field 'annotations' must be an array, got {_json_kind(annotations)}")
        video_index = len(video_ids)
        video_ids.append(vid)
        for k, annotation in enumerate(annotations):
            at = f"{where}, annotation {k}"
            _require_object(annotation, at)
            start, end = _check_segment(_require_field(annotation, "segment", at), at)
            label = _require_field(annotation, "label", at)
            if not isinstance(label, str):
                raise ValueError(f"{at}: field 'label' must be a string, got {_json_kind(label)} {_show(label)}")
            rows.append((video_index, start, end, class_index.setdefault(label, len(class_index))))
    if not video_ids:
        seen = ", ".join(repr(s) for s in sorted(subsets_seen)) or "none"
        raise ValueError(f"{source}: no video of subset {subset!r} (subsets present: {seen})")
    if not rows:
        raise ValueError(f"{source}: the {len(video_ids)} videos of subset {subset!r} have no annotations")
    video, start, end, label = zip(*rows)
    return GroundTruth(
        video_ids=tuple(video_ids), classes=tuple(class_index), video=np.asarray(video, dtype=np.int64),
        start=np.asarray(start, dtype=np.float64), end=np.asarray(end, dtype=np.float64),
        label=np.asarray(label, dtype=np.int64), subset=subset, source=source)


def load_ground_truth(path: str | Path, subset: str | None = "validation",
                      blocked: Iterable[str] = ()) -> GroundTruth:
    """Read an ActivityNet ground-truth JSON file (see :func:`ground_truth_from_dict`)."""
    return ground_truth_from_dict(read_json(path), subset=subset, blocked=blocked, source=str(path))


# --------------------------------------------------------------------------------------------------
# predictions


def _label_error(label: Any, where: str, classes: tuple[str, ...], gt_source: str) -> ValueError:
    """The error for a prediction label the ground truth does not have, with a spelling hint."""
    if not isinstance(label, str):
        return ValueError(f"{where}: field 'label' must be a class name (string), got "
                          f"{_json_kind(label)} {_show(label)}")
    close = difflib.get_close_matches(label, classes, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(f"{where}: label {label!r} is not a class of the ground truth "
                      f"({gt_source}, {len(classes)} classes){hint}")


def _parse_entries_slow(kept: list[tuple[str, int, list]], source: str, with_labels: bool,
                        class_index: Mapping[str, int], gt: GroundTruth) -> tuple[np.ndarray, ...]:
    """Validate prediction entries one by one; raise at the first bad one, else return the arrays.

    Only used when the bulk (fast) path saw something wrong, so its cost does not matter.
    """
    video, start, end, score, label = [], [], [], [], []
    for vid, video_index, entries in kept:
        for k, entry in enumerate(entries):
            where = f"{source}: video {vid!r}, prediction {k}"
            _require_object(entry, where)
            s, e = _check_segment(_require_field(entry, "segment", where), where)
            score.append(_check_score(_require_field(entry, "score", where), where))
            if with_labels:
                name = _require_field(entry, "label", where)
                if not isinstance(name, str) or name not in class_index:
                    raise _label_error(name, where, gt.classes, gt.source)
                label.append(class_index[name])
            video.append(video_index)
            start.append(s)
            end.append(e)
    labels = np.asarray(label, dtype=np.int64) if with_labels else np.full(len(video), -1, dtype=np.int64)
    return (np.asarray(video, dtype=np.int64), np.asarray(start, dtype=np.float64),
            np.asarray(end, dtype=np.float64), np.asarray(score, dtype=np.float64), labels)


def _parse_entries_fast(kept: list[tuple[str, int, list]], with_labels: bool,
                        class_index: Mapping[str, int]) -> tuple[np.ndarray, ...] | None:
    """Bulk-convert prediction entries with numpy; None when anything looks wrong.

    ActivityNet-scale files hold ~10^5-10^6 entries: list comprehensions plus one numpy conversion are
    several times faster than validating every entry in Python.
    """
    segments, scores, labels, counts = [], [], [], []
    try:
        for _, _, entries in kept:
            segments += [entry["segment"] for entry in entries]
            scores += [entry["score"] for entry in entries]
            if with_labels:
                labels += [class_index[entry["label"]] for entry in entries]
            counts.append(len(entries))
        seg = np.array(segments) if segments else np.zeros((0, 2))
        sco = np.array(scores) if scores else np.zeros(0)
    except (KeyError, TypeError, ValueError):  # missing field, non-object entry, unknown label, ragged
        return None
    if seg.ndim != 2 or seg.shape[1] != 2 or seg.dtype.kind not in "iuf" or sco.dtype.kind not in "iuf":
        return None
    seg = seg.astype(np.float64)
    sco = sco.astype(np.float64)
    if not (np.isfinite(seg).all() and np.isfinite(sco).all() and (seg[:, 1] >= seg[:, 0]).all()):
        return None
    video = np.repeat(np.asarray([index for _, index, _ in kept], dtype=np.int64), counts)
    label = (np.asarray(labels, dtype=np.int64) if with_labels
             else np.full(video.size, -1, dtype=np.int64))
    return video, seg[:, 0].copy(), seg[:, 1].copy(), sco, label


def _with_prefix_hint(unknown: list[str], known: Mapping[str, int]) -> str:
    """Point out the common 'v_' prefix mismatch between ground truth and prediction video ids."""
    sample = unknown[:100]
    fixed = sum((vid[2:] if vid.startswith("v_") else "v_" + vid) in known for vid in sample)
    if fixed * 2 > len(sample):
        return " (most of them match the ground truth after adding or removing a 'v_' prefix)"
    return ""


def predictions_from_dict(data: Any, gt: GroundTruth, blocked: Iterable[str] = (), with_labels: bool = True,
                          drop_unknown_videos: bool = False, source: str = "<predictions>") -> Predictions:
    """Build :class:`Predictions` from parsed ActivityNet prediction JSON, indexed against `gt`.

    `with_labels=False` reads proposals (no "label" needed). Predictions of `blocked` videos are skipped.
    Predictions of videos not in `gt` are kept by default, as the official code keeps them (detection
    counts them as false positives, proposals count them in the proposal budget), with a warning;
    `drop_unknown_videos=True` discards them instead.
    """
    results = _require_field(_require_object(data, source), "results", source)
    _require_object(results, f"{source}: field 'results'")
    blocked = frozenset(blocked)
    known = {vid: i for i, vid in enumerate(gt.video_ids)}
    class_index = {name: i for i, name in enumerate(gt.classes)}
    kept: list[tuple[str, int, list]] = []
    unknown: list[str] = []
    num_dropped = 0
    for vid, entries in results.items():
        if vid in blocked:
            continue
        if not isinstance(entries, list):
            raise ValueError(f"{source}: video {vid!r}: expected an array of predictions, got {_json_kind(entries)}")
        index = known.get(vid)
        if index is None:
            if drop_unknown_videos:
                num_dropped += len(entries)
                continue
            index = len(gt.video_ids) + len(unknown)
        if index >= len(gt.video_ids):
            unknown.append(vid)
        kept.append((vid, index, entries))
    arrays = (_parse_entries_fast(kept, with_labels, class_index)
              or _parse_entries_slow(kept, source, with_labels, class_index, gt))
    _warn_unknown_videos(source, gt, unknown, kept, num_dropped, known)
    video, start, end, score, label = arrays
    return Predictions(video_ids=gt.video_ids + tuple(unknown), num_known_videos=len(gt.video_ids),
                       classes=gt.classes, video=video, start=start, end=end, score=score, label=label,
                       has_labels=with_labels, source=source)


def _warn_unknown_videos(source: str, gt: GroundTruth, unknown: list[str], kept: list[tuple[str, int, list]],
                         num_dropped: int, known: Mapping[str, int]) -> None:
    """Warn about predictions on videos the ground truth (after subset and blocked filters) lacks."""
    where = f"the ground truth's {gt.subset!r} subset" if gt.subset is not None else "the ground truth"
    if num_dropped:
        warnings.warn(f"{source}: ignored {num_dropped} predictions on videos not in {where} "
                      f"(drop_unknown_videos)", EvaluationWarning, stacklevel=3)
    if not unknown:
        return
    count = sum(len(entries) for _, index, entries in kept if index >= len(gt.video_ids))
    examples = ", ".join(repr(v) for v in unknown[:3])
    warnings.warn(
        f"{source}: {count} predictions on {len(unknown)} videos not in {where} (e.g. {examples})"
        f"{_with_prefix_hint(unknown, known)}. The official evaluation keeps them: detection counts them "
        f"as false positives, proposals count them in the proposal budget. Use --drop-unknown-videos "
        f"(drop_unknown_videos=True) to ignore them.", EvaluationWarning, stacklevel=3)


def load_predictions(path: str | Path, gt: GroundTruth, blocked: Iterable[str] = (), with_labels: bool = True,
                     drop_unknown_videos: bool = False) -> Predictions:
    """Read an ActivityNet prediction JSON file (see :func:`predictions_from_dict`)."""
    return predictions_from_dict(read_json(path), gt, blocked=blocked, with_labels=with_labels,
                                 drop_unknown_videos=drop_unknown_videos, source=str(path))


# --------------------------------------------------------------------------------------------------
# temporal grounding


def grounding_from_dicts(gt: Any, pred: Any, blocked: Iterable[str] = (), gt_source: str = "<ground truth>",
                         pred_source: str = "<predictions>") -> GroundingPairs:
    """Pair every grounding query of `gt` with its predicted segment in `pred`.

    `gt`: {video: {"timestamps": [[s, e], ...], ...}}; `pred`: {video: [[s, e], ...]} with one segment per
    timestamp, in the same order. A ground-truth video without predictions counts as misses (warned);
    predictions of unknown videos are ignored (warned); a length mismatch is an error.
    """
    _require_object(gt, gt_source)
    _require_object(pred, pred_source)
    blocked = frozenset(blocked)
    query_video, gt_rows, pred_rows, missing = [], [], [], []
    nan_row = (math.nan, math.nan)
    for vid, entry in gt.items():
        if vid in blocked:
            continue
        where = f"{gt_source}: video {vid!r}"
        timestamps = _require_field(_require_object(entry, where), "timestamps", where)
        if not isinstance(timestamps, list):
            raise ValueError(f"{where}: field 'timestamps' must be an array, got {_json_kind(timestamps)}")
        gt_rows += [_check_segment(ts, f"{where}, query {k}", "timestamps") for k, ts in enumerate(timestamps)]
        query_video += [vid] * len(timestamps)
        if vid not in pred:
            missing.append(vid)
            pred_rows += [nan_row] * len(timestamps)
            continue
        segments = pred[vid]
        pwhere = f"{pred_source}: video {vid!r}"
        if not isinstance(segments, list) or len(segments) != len(timestamps):
            got = f"{len(segments)} segments" if isinstance(segments, list) else _json_kind(segments)
            raise ValueError(f"{pwhere}: expected one [start, end] per query ({len(timestamps)} queries in "
                             f"{gt_source}), got {got}")
        pred_rows += [_check_segment(seg, f"{pwhere}, query {k}", "segment") for k, seg in enumerate(segments)]
    if not gt_rows:
        raise ValueError(f"{gt_source}: no grounding queries (no 'timestamps' entries)")
    _warn_grounding_coverage(gt, pred, blocked, missing, gt_source, pred_source)
    return GroundingPairs(video_ids=tuple(query_video), gt_segments=np.asarray(gt_rows, dtype=np.float64),
                          pred_segments=np.asarray(pred_rows, dtype=np.float64))


def _warn_grounding_coverage(gt: Mapping, pred: Mapping, blocked: frozenset, missing: list[str],
                             gt_source: str, pred_source: str) -> None:
    """Warn about ground-truth videos without predictions and predictions of unknown videos."""
    if missing:
        warnings.warn(f"{pred_source}: no prediction for {len(missing)} videos of {gt_source} "
                      f"(e.g. {missing[0]!r}): their queries count as misses", EvaluationWarning, stacklevel=3)
    extra = [vid for vid in pred if vid not in gt and vid not in blocked]
    if extra:
        warnings.warn(f"{pred_source}: ignored predictions of {len(extra)} videos not in {gt_source} "
                      f"(e.g. {extra[0]!r})", EvaluationWarning, stacklevel=3)


def load_grounding(gt_path: str | Path, pred_path: str | Path, blocked: Iterable[str] = ()) -> GroundingPairs:
    """Read grounding ground truth and predictions files (see :func:`grounding_from_dicts`)."""
    return grounding_from_dicts(read_json(gt_path), read_json(pred_path), blocked=blocked,
                                gt_source=str(gt_path), pred_source=str(pred_path))
