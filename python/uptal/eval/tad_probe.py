"""TAD probe: a small temporal head trained on frozen features, scored with the official detection mAP.

The quick way to compare pre-trainings on a user's own annotated videos without a TAL toolbox:

1. Features come from an `uptal extract` folder (``<video>.npy`` [T, C] and ``metadata/<video>.json`` with the
   centre time of every feature, ``timestamps``). Ground truth is ActivityNet JSON; a ground-truth id ``xxx``
   also matches features named ``v_xxx`` (and the reverse), as ActivityNet feature sets name them.
2. Targets per feature step (:func:`segments_to_steps`): class (0 = background, c + 1 = class c) for every
   step whose centre lies inside a ground-truth segment, and start / end for the step nearest to each
   boundary. A segment shorter than a step still claims the step nearest its middle, so none vanishes.
3. :class:`TemporalHead`: per-channel standardisation (training statistics), `layers` Conv1d(kernel 3) + ReLU,
   then a 1x1 classifier (C + 1 ways) and a 1x1 boundary head (start, end). Trained with cross-entropy +
   binary cross-entropy, Adam, one video per step, seeded and on CPU so two runs give the same numbers.
4. Decoding (:func:`decode_segments`): runs of consecutive steps whose most likely class is the same action
   become candidates; each boundary moves to the most likely start / end step within one step of the run's
   edge; score = mean class probability over the run x sqrt(start prob x end prob). Per-class 1-D NMS
   (:func:`nms_1d`) removes duplicates.
5. Predictions go to ``predictions.json`` (ActivityNet format) and are evaluated with
   :func:`uptal.eval.metrics.detection_map`, the same code as ``uptal evaluate detection``; the table goes to
   ``metrics.json``. Test videos without features are skipped (reported, and left out of the evaluation).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..features.export import FeatureSet, read_feature_set
from ..files import write_json_atomically
from . import activitynet as anet
from . import metrics

__all__ = [
    "ProbeReport",
    "ProbeVideo",
    "StepTargets",
    "TemporalHead",
    "decode_segments",
    "match_feature_name",
    "nms_1d",
    "predict_video",
    "run_tad_probe",
    "segments_to_steps",
    "train_head",
]

NMS_IOU = 0.5               # duplicates of one action overlap much more than two neighbouring actions
MAX_SEGMENTS_PER_VIDEO = 100  # ActivityNet's usual cap on detections per video
BOUNDARY_SEARCH_STEPS = 1     # a run's edge is at most one step away from the true boundary step


@dataclass(frozen=True)
class ProbeVideo:
    """One annotated video with its features: what the probe trains or predicts on."""

    video_id: str                 # the ground-truth id (predictions are written under it)
    features: np.ndarray          # [T, C] float32
    timestamps: np.ndarray        # [T] centre of every feature, seconds
    step_seconds: float           # time between two features (clip_stride / fps)
    duration: float | None        # seconds, to clip predicted segments; None when unknown
    segments: np.ndarray          # [N, 2] ground-truth [start, end] seconds
    labels: np.ndarray            # [N] int64 class index into the probe's classes


@dataclass(frozen=True)
class StepTargets:
    """Per-step training targets of one video."""

    classes: np.ndarray   # [T] int64: 0 background, c + 1 for class c
    starts: np.ndarray    # [T] float32: 1 at the step nearest to a segment start
    ends: np.ndarray      # [T] float32: 1 at the step nearest to a segment end


@dataclass
class ProbeReport:
    """What :func:`run_tad_probe` did: the metrics dictionary (also in metrics.json) and the files it wrote."""

    metrics: dict[str, Any]
    predictions_path: Path
    metrics_path: Path
    missing: dict[str, list[str]]   # subset -> ground-truth ids without features (skipped)


# --------------------------------------------------------------------------------------------------
# time mapping


def _check_timestamps(timestamps: Any) -> np.ndarray:
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.ndim != 1 or timestamps.size == 0 or not np.all(np.isfinite(timestamps)):
        raise ValueError(f"timestamps must be a non-empty 1-D array of finite seconds, got shape {timestamps.shape}")
    if np.any(np.diff(timestamps) <= 0):
        raise ValueError("timestamps must increase strictly (one centre time per feature)")
    return timestamps


def segments_to_steps(timestamps: Any, segments: Any, labels: Any, num_classes: int) -> StepTargets:
    """Targets for the features centred at `timestamps` [T] from ground-truth `segments` [N, 2] of `labels` [N].

    Overlapping segments: the shorter one wins its steps (it is written last), so a short action inside a
    long one is still learnt.
    """
    timestamps = _check_timestamps(timestamps)
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)          # [N, 2]
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)                   # [N]
    if labels.size != segments.shape[0]:
        raise ValueError(f"labels must have one entry per segment ({segments.shape[0]}), got {labels.size}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, num_classes={num_classes}), got {labels.min()}..{labels.max()}")
    if np.any(segments[:, 1] < segments[:, 0]):
        raise ValueError("segments must be [start, end] with end >= start")
    steps = timestamps.size
    classes = np.zeros(steps, dtype=np.int64)
    starts = np.zeros(steps, dtype=np.float32)
    ends = np.zeros(steps, dtype=np.float32)
    for index in np.argsort(segments[:, 0] - segments[:, 1], kind="stable"):   # longest first
        start, end = segments[index]
        inside = (timestamps >= start) & (timestamps <= end)                  # [T]
        if not inside.any():   # shorter than a step, or between two centres: keep it on its nearest step
            inside[np.argmin(np.abs(timestamps - (start + end) / 2))] = True
        classes[inside] = labels[index] + 1
        starts[np.argmin(np.abs(timestamps - start))] = 1.0
        ends[np.argmin(np.abs(timestamps - end))] = 1.0
    return StepTargets(classes=classes, starts=starts, ends=ends)


# --------------------------------------------------------------------------------------------------
# decoding


def nms_1d(segments: Any, scores: Any, iou_threshold: float = NMS_IOU) -> np.ndarray:
    """Greedy non-maximum suppression of [N, 2] segments; returns the kept indices, best score first."""
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size != segments.shape[0]:
        raise ValueError(f"scores must have one entry per segment ({segments.shape[0]}), got {scores.size}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    suppressed = np.zeros(scores.size, dtype=bool)
    iou = metrics.segment_iou(segments, segments)                             # [N, N]
    for index in order:
        if suppressed[index]:
            continue
        kept.append(int(index))
        suppressed |= iou[index] > iou_threshold
    return np.asarray(kept, dtype=np.int64)


def _runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """(value, first, last) for every run of equal consecutive values."""
    edges = np.flatnonzero(np.diff(values)) + 1
    firsts = np.concatenate([[0], edges])
    lasts = np.concatenate([edges - 1, [values.size - 1]])
    return [(int(values[a]), int(a), int(b)) for a, b in zip(firsts, lasts)]


def _best_step_near(probabilities: np.ndarray, step: int, radius: int) -> int:
    low, high = max(0, step - radius), min(probabilities.size, step + radius + 1)
    return low + int(np.argmax(probabilities[low:high]))


def decode_segments(class_probs: np.ndarray, boundary_probs: np.ndarray, timestamps: Any, step_seconds: float,
                    duration: float | None = None) -> list[tuple[float, float, int, float]]:
    """(start, end, class, score) candidates of one video, before NMS.

    class_probs [T, K + 1] (column 0 background), boundary_probs [T, 2] (start, end). A run's own edges are
    the outer borders of its first and last step; the boundary head may move each edge to a neighbouring
    step's centre when it is confident there (that is where the target put the boundary).
    """
    timestamps = _check_timestamps(timestamps)
    if class_probs.ndim != 2 or class_probs.shape[0] != timestamps.size:
        raise ValueError(f"class_probs must be [T={timestamps.size}, K + 1], got {class_probs.shape}")
    if boundary_probs.shape != (timestamps.size, 2):
        raise ValueError(f"boundary_probs must be [T={timestamps.size}, 2], got {boundary_probs.shape}")
    if not step_seconds > 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds}")
    best_class = class_probs.argmax(axis=1)                                    # [T]
    candidates = []
    for label, first, last in _runs(best_class):
        if label == 0:
            continue
        start_step = _best_step_near(boundary_probs[:, 0], first, BOUNDARY_SEARCH_STEPS)
        end_step = _best_step_near(boundary_probs[:, 1], last, BOUNDARY_SEARCH_STEPS)
        start = timestamps[start_step] if start_step != first else timestamps[first] - step_seconds / 2
        end = timestamps[end_step] if end_step != last else timestamps[last] + step_seconds / 2
        start, end = max(0.0, start), end if duration is None else min(duration, end)
        if end <= start:
            continue
        confidence = float(class_probs[first:last + 1, label].mean())
        boundary = math.sqrt(float(boundary_probs[start_step, 0]) * float(boundary_probs[end_step, 1]))
        candidates.append((float(start), float(end), label - 1, confidence * boundary))
    return candidates


# --------------------------------------------------------------------------------------------------
# the head


class TemporalHead(nn.Module):
    """Temporal Conv1d stack over a feature sequence -> class logits (K + 1) and boundary logits (2) per step."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("hidden", hidden),
                            ("layers", layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        # frozen features have any scale: standardise with the training set's statistics
        self.register_buffer("mean", torch.zeros(in_channels))
        self.register_buffer("std", torch.ones(in_channels))
        blocks: list[nn.Module] = []
        for index in range(layers):
            blocks += [nn.Conv1d(in_channels if index == 0 else hidden, hidden, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*blocks)
        self.classifier = nn.Conv1d(hidden, num_classes + 1, 1)
        self.boundaries = nn.Conv1d(hidden, 2, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features [T, C] -> (class logits [T, K + 1], boundary logits [T, 2])."""
        standardised = (features - self.mean) / self.std                      # [T, C]
        hidden = self.body(standardised.t().unsqueeze(0))                      # [1, H, T]
        return self.classifier(hidden)[0].t(), self.boundaries(hidden)[0].t()


def _channel_statistics(videos: Sequence[ProbeVideo]) -> tuple[torch.Tensor, torch.Tensor]:
    stacked = np.concatenate([video.features for video in videos]).astype(np.float64)   # [sum T, C]
    std = stacked.std(axis=0)
    std[std < 1e-6] = 1.0   # a constant channel carries nothing; do not blow it up
    return torch.from_numpy(stacked.mean(axis=0)).float(), torch.from_numpy(std).float()


def train_head(videos: Sequence[ProbeVideo], num_classes: int, *, epochs: int = 30, seed: int = 0,
               hidden: int = 128, layers: int = 2, lr: float = 1e-3) -> TemporalHead:
    """Fit a :class:`TemporalHead` on `videos` (one video per optimiser step); deterministic for a seed."""
    if not videos:
        raise ValueError("videos must hold at least one training video")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    channels = {video.features.shape[1] for video in videos}
    if len(channels) > 1:
        raise ValueError(f"videos mix feature sizes {sorted(channels)}: not one feature set")
    targets = [segments_to_steps(v.timestamps, v.segments, v.labels, num_classes) for v in videos]
    inputs = [torch.from_numpy(np.ascontiguousarray(v.features, dtype=np.float32)) for v in videos]
    order = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):   # seed the weights without touching the caller's generator
        torch.manual_seed(seed)
        head = TemporalHead(channels.pop(), num_classes, hidden=hidden, layers=layers)
    head.mean, head.std = _channel_statistics(videos)
    optimiser = torch.optim.Adam(head.parameters(), lr=lr)
    head.train()
    for _ in range(epochs):
        for index in order.permutation(len(videos)):
            class_logits, boundary_logits = head(inputs[index])               # [T, K + 1], [T, 2]
            target = targets[index]
            boundary_target = torch.from_numpy(np.stack([target.starts, target.ends], axis=1))   # [T, 2]
            loss = (F.cross_entropy(class_logits, torch.from_numpy(target.classes))
                    + F.binary_cross_entropy_with_logits(boundary_logits, boundary_target))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return head.eval()


@torch.no_grad()
def predict_video(head: TemporalHead, video: ProbeVideo, classes: Sequence[str],
                  iou_threshold: float = NMS_IOU, max_segments: int = MAX_SEGMENTS_PER_VIDEO) -> list[dict]:
    """ActivityNet-format detections of one video: [{"segment": [s, e], "label": name, "score": x}]."""
    class_logits, boundary_logits = head(torch.from_numpy(np.ascontiguousarray(video.features, dtype=np.float32)))
    candidates = decode_segments(class_logits.softmax(dim=1).numpy(), boundary_logits.sigmoid().numpy(),
                                 video.timestamps, video.step_seconds, video.duration)
    detections = []
    for label in sorted({c[2] for c in candidates}):
        of_label = [c for c in candidates if c[2] == label]
        segments = np.array([c[:2] for c in of_label])                          # [n, 2]
        scores = np.array([c[3] for c in of_label])                             # [n]
        for index in nms_1d(segments, scores, iou_threshold):
            detections.append({"segment": [round(float(segments[index, 0]), 6), round(float(segments[index, 1]), 6)],
                               "label": classes[label], "score": float(scores[index])})
    detections.sort(key=lambda d: -d["score"])
    return detections[:max_segments]


# --------------------------------------------------------------------------------------------------
# data


def match_feature_name(video_id: str, feature_names: Any) -> str | None:
    """The feature video for a ground-truth id: the same name, or with / without ActivityNet's `v_` prefix."""
    candidates = [video_id, f"v_{video_id}"] + ([video_id[2:]] if video_id.startswith("v_") else [])
    return next((name for name in candidates if name in feature_names), None)


def _probe_videos(feature_set: FeatureSet, gt: anet.GroundTruth,
                  class_index: dict[str, int]) -> tuple[list[ProbeVideo], list[str]]:
    """Videos of `gt` that have features, and the ids of those that have none."""
    videos, missing = [], []
    for index, video_id in enumerate(gt.video_ids):
        name = match_feature_name(video_id, feature_set.videos)
        if name is None:
            missing.append(video_id)
            continue
        metadata = feature_set.metadata(name)
        features = feature_set.load(name)                                       # [T, C]
        timestamps = np.asarray(metadata["timestamps"], dtype=np.float64)       # [T]
        if features.ndim != 2 or features.shape[0] != timestamps.size:
            raise ValueError(f"features_dir: {name} has features of shape {features.shape} but "
                             f"{timestamps.size} timestamps")
        rows = gt.video == index
        videos.append(ProbeVideo(
            video_id=video_id, features=features, timestamps=timestamps,
            step_seconds=float(metadata["clip_stride"]) / float(metadata["fps"]),
            duration=float(metadata["duration"]) if metadata.get("duration") else None,
            segments=np.stack([gt.start[rows], gt.end[rows]], axis=1),
            labels=np.array([class_index[gt.classes[c]] for c in gt.label[rows]], dtype=np.int64)))
    return videos, missing


def _check_labels(train: anet.GroundTruth, test: anet.GroundTruth) -> None:
    unknown = sorted(set(test.classes) - set(train.classes))
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:10])
        raise ValueError(f"gt: {len(unknown)} labels of the test subset {test.subset!r} never occur in the "
                         f"training subset {train.subset!r}, so the probe cannot predict them: {shown}")


def _load_subsets(gt_path: str | os.PathLike, train_subset: str, test_subset: str,
                  ) -> tuple[Any, anet.GroundTruth, anet.GroundTruth]:
    data = anet.read_json(gt_path)
    train = anet.ground_truth_from_dict(data, subset=train_subset, source=str(gt_path))
    test = anet.ground_truth_from_dict(data, subset=test_subset, source=str(gt_path))
    _check_labels(train, test)
    return data, train, test


def _require_some(videos: list[ProbeVideo], missing: list[str], subset: str, features_dir: Any) -> None:
    if not videos:
        raise ValueError(f"features_dir {features_dir}: none of the {len(missing)} videos of subset {subset!r} "
                         f"has features (e.g. {', '.join(repr(v) for v in missing[:3])})")


# --------------------------------------------------------------------------------------------------
# the whole probe


def run_tad_probe(features_dir: str | os.PathLike, gt_path: str | os.PathLike, out: str | os.PathLike, *,
                  train_subset: str = "training", test_subset: str = "validation", epochs: int = 30,
                  seed: int = 0, hidden: int = 128, layers: int = 2, lr: float = 1e-3,
                  tiou_thresholds: Any = metrics.TIOU_PRESETS["activitynet"]) -> ProbeReport:
    """Train on `train_subset`, predict `test_subset`, write predictions.json and metrics.json into `out`."""
    thresholds = metrics.check_tiou_thresholds(tiou_thresholds)
    feature_set = read_feature_set(features_dir)
    data, train_gt, test_gt = _load_subsets(gt_path, train_subset, test_subset)
    class_index = {name: index for index, name in enumerate(train_gt.classes)}
    train_videos, train_missing = _probe_videos(feature_set, train_gt, class_index)
    test_videos, test_missing = _probe_videos(feature_set, test_gt, class_index)
    _require_some(train_videos, train_missing, train_subset, features_dir)
    _require_some(test_videos, test_missing, test_subset, features_dir)

    head = train_head(train_videos, len(train_gt.classes), epochs=epochs, seed=seed, hidden=hidden,
                      layers=layers, lr=lr)
    # videos without features are left out of the evaluation, not counted as misses
    evaluated_gt = anet.ground_truth_from_dict(data, subset=test_subset, blocked=test_missing, source=str(gt_path))
    # a class absent from the evaluated ground truth has no AP to change, and evaluators refuse its label
    evaluated_labels = set(evaluated_gt.classes)
    results = {video.video_id: [d for d in predict_video(head, video, train_gt.classes)
                                if d["label"] in evaluated_labels] for video in test_videos}
    predictions = {"version": "VERSION 1.3", "results": results,
                   "external_data": {"used": False, "details": f"uptal TAD probe on {features_dir}"}}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    predictions_path = out / "predictions.json"
    write_json_atomically(predictions_path, predictions)

    evaluated = metrics.detection_map(evaluated_gt, anet.predictions_from_dict(
        predictions, evaluated_gt, source=str(predictions_path)), thresholds)
    summary = {
        "metric": "detection", "tiou": [round(float(t), 10) for t in thresholds],
        "values": [float(v) for v in evaluated.map_per_threshold], "average": evaluated.average,
        "value_name": "mAP",
        "ap_per_class": {name: float(ap) for name, ap in zip(evaluated.classes, evaluated.ap.mean(axis=0))},
        "train": {"subset": train_subset, "videos": len(train_videos), "instances": train_gt.num_instances},
        "test": {"subset": test_subset, "videos": len(test_videos), "instances": evaluated_gt.num_instances,
                 "predictions": sum(len(d) for d in results.values())},
        "missing_features": {train_subset: train_missing, test_subset: test_missing},
        "settings": {"epochs": epochs, "seed": seed, "hidden": hidden, "layers": layers, "lr": lr,
                     "nms_iou": NMS_IOU, "features": str(features_dir), "gt": str(gt_path)},
        "summary": (f"{gt_path}: trained on {len(train_videos)} {train_subset!r} videos, evaluated on "
                    f"{len(test_videos)} {test_subset!r} videos ({evaluated_gt.num_instances} instances, "
                    f"{len(evaluated_gt.classes)} classes)"),
    }
    metrics_path = out / "metrics.json"
    write_json_atomically(metrics_path, summary)
    return ProbeReport(metrics=summary, predictions_path=predictions_path, metrics_path=metrics_path,
                       missing={train_subset: train_missing, test_subset: test_missing})
