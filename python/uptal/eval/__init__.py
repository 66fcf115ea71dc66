"""Evaluation of temporal localization: detection mAP, proposal AR@AN/AUC, grounding R@1/mIoU.

The metrics follow the official ActivityNet evaluation code (Evaluation/eval_detection.py and
eval_proposal.py); see :mod:`uptal.eval.metrics` for the few places where it leaves room and what we do.
This package only needs numpy.
"""
from .activitynet import (EvaluationWarning, GroundingPairs, GroundTruth, Predictions, ground_truth_from_dict,
                          grounding_from_dicts, load_ground_truth, load_grounding, load_predictions,
                          load_video_list, predictions_from_dict, read_json)
from .metrics import (TIOU_PRESETS, DetectionResult, ProposalResult, check_tiou_thresholds, detection_map,
                      grounding_recall, interpolated_average_precision, parse_tiou_thresholds, proposal_ar_an,
                      segment_iou)

__all__ = [
    "EvaluationWarning", "GroundTruth", "Predictions", "GroundingPairs", "read_json", "load_video_list",
    "ground_truth_from_dict", "load_ground_truth", "predictions_from_dict", "load_predictions",
    "grounding_from_dicts", "load_grounding", "TIOU_PRESETS", "DetectionResult", "ProposalResult",
    "parse_tiou_thresholds", "check_tiou_thresholds", "segment_iou", "interpolated_average_precision",
    "detection_map", "proposal_ar_an", "grounding_recall",
]
