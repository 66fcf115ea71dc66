"""The `uptal evaluate` subcommand: detection mAP, proposal AR@AN / AUC, grounding R@1 / mIoU.

    uptal evaluate detection --gt gt.json --pred pred.json [--subset validation] [--tiou activitynet]
    uptal evaluate proposals --gt gt.json --pred proposals.json [--max-avg-proposals 100]
    uptal evaluate grounding --gt captions_val.json --pred grounding.json [--tiou 0.3,0.5,0.7]

`add_subcommand(subparsers)` registers it on the caller's argparse sub-parsers; every leaf parser sets
``func``, a callable taking the parsed namespace and returning the exit code: 0, or 2 after printing a
one-line error to stderr when an input is bad (no traceback reaches the user).

With --json the result is one JSON object on stdout:
``{"metric": ..., "tiou": [...], "values": [...], "average": ...}`` where `values` holds one number per
threshold and `average` is their mean (detection: mAP per threshold; proposals: recall at the largest
average number of proposals; grounding: R@1), plus metric-specific keys (proposals: "AR@1", "AR@5",
"AR@10", "AR@100", "AUC"; grounding: "mIoU"). Fractions are in [0, 1]; AUC is in percent, as officially.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any, Callable, Iterable

from . import activitynet as anet
from . import metrics

__all__ = ["add_subcommand", "run"]

GROUNDING_FORMAT = """\
grounding input format (ActivityNet-Captions-like):
  --gt    {"<video>": {"timestamps": [[start, end], ...], "duration": 120.5, "sentences": [...]}, ...}
          one query per timestamp; "duration" and "sentences" are optional and unused.
  --pred  {"<video>": [[start, end], ...], ...}
          exactly one predicted segment per query, in the order of "timestamps".
A ground-truth video missing from --pred counts as misses; predictions of other videos are ignored.
R@1,tIoU=x is the fraction of queries whose prediction overlaps the ground truth with tIoU >= x; mIoU is the
mean tIoU. Times are in seconds (any unit works if both files agree)."""

TIOU_HELP = ("tIoU thresholds: a preset (activitynet = 0.5:0.95:0.05, thumos14 = 0.3:0.7:0.1), "
             "start:stop:step (stop included) or a list such as 0.3,0.5,0.7 (default: %(default)s)")


def add_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `evaluate` with its detection | proposals | grounding sub-commands; return its parser."""
    parser = subparsers.add_parser(
        "evaluate", help="evaluate temporal localization results (official ActivityNet metrics)",
        description="Evaluate ActivityNet-format detections or proposals, or temporal grounding results.")
    metric_parsers = parser.add_subparsers(dest="metric", metavar="{detection,proposals,grounding}")
    metric_parsers.required = True

    detection = metric_parsers.add_parser(
        "detection", help="detection mAP at tIoU thresholds (ActivityNet eval_detection)",
        description="Mean average precision of ActivityNet-JSON detections, as the official "
                    "ActivityNet eval_detection.py computes it.")
    _add_anet_options(detection, pred_help="ActivityNet prediction JSON ({'results': {video: [{'segment', "
                                           "'label', 'score'}]}})")
    detection.set_defaults(func=run)

    proposals = metric_parsers.add_parser(
        "proposals", help="proposal AR@AN and AUC (ActivityNet eval_proposal)",
        description="Average recall vs average number of proposals per video (labels ignored), as the "
                    "official ActivityNet eval_proposal.py computes it.")
    _add_anet_options(proposals, pred_help="ActivityNet proposal JSON ({'results': {video: [{'segment', "
                                           "'score'}]}}; labels are ignored)")
    proposals.add_argument("--max-avg-proposals", type=float, default=100.0, metavar="N",
                           help="maximum average number of proposals per video (default: %(default)g)")
    proposals.set_defaults(func=run)

    grounding = metric_parsers.add_parser(
        "grounding", help="temporal grounding R@1 at tIoU thresholds and mIoU",
        description="Temporal grounding with one predicted segment per query.", epilog=GROUNDING_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    grounding.add_argument("--gt", required=True, metavar="FILE", help="grounding ground truth JSON (see below)")
    grounding.add_argument("--pred", required=True, metavar="FILE", help="grounding predictions JSON (see below)")
    grounding.add_argument("--tiou", default="0.3,0.5,0.7", metavar="SPEC", help=TIOU_HELP)
    _add_common_options(grounding)
    grounding.set_defaults(func=run)
    return parser


def _add_anet_options(parser: argparse.ArgumentParser, pred_help: str) -> None:
    """Options shared by the two ActivityNet-JSON metrics."""
    parser.add_argument("--gt", required=True, metavar="FILE",
                        help="ActivityNet ground truth JSON ({'database': {video: {'subset', 'annotations'}}})")
    parser.add_argument("--pred", required=True, metavar="FILE", help=pred_help)
    parser.add_argument("--subset", default="validation",
                        help="ground-truth subset to evaluate, or 'all' (default: %(default)s)")
    parser.add_argument("--tiou", default="activitynet", metavar="SPEC", help=TIOU_HELP)
    parser.add_argument("--drop-unknown-videos", action="store_true",
                        help="ignore predictions of videos not in the ground truth subset (the official "
                             "evaluation keeps them: false positives for detection)")
    _add_common_options(parser)


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    """--blocked and --json, for every metric."""
    parser.add_argument("--blocked", metavar="FILE",
                        help="video ids to exclude (blocked or missing videos), one per line")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


# --------------------------------------------------------------------------------------------------
# running


def run(args: argparse.Namespace) -> int:
    """Evaluate what `args` asks for and print it; return the exit code (2 on bad input)."""
    evaluate: Callable[[argparse.Namespace], dict[str, Any]] = {
        "detection": _evaluate_detection, "proposals": _evaluate_proposals, "grounding": _evaluate_grounding,
    }[args.metric]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", anet.EvaluationWarning)
        try:
            result = evaluate(args)
        except (ValueError, OSError) as err:  # bad input: a message, not a traceback
            _print_warnings(caught)
            print(f"uptal evaluate {args.metric}: error: {_describe(err)}", file=sys.stderr)
            return 2
    _print_warnings(caught)
    if args.json:
        print(json.dumps(result))
    else:
        print(_format_table(result))
    return 0


def _describe(err: Exception) -> str:
    """A one-line message for an input error (OSError's str repeats errno noise)."""
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror}"
    return str(err)


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Show collected warnings as plain lines on stderr."""
    for item in caught:
        print(f"uptal evaluate: warning: {item.message}", file=sys.stderr)


def _blocked(args: argparse.Namespace) -> frozenset[str]:
    """The --blocked video list, or nothing."""
    return anet.load_video_list(args.blocked) if args.blocked else frozenset()


def _load_anet(args: argparse.Namespace, with_labels: bool) -> tuple[anet.GroundTruth, anet.Predictions]:
    """Read --gt and --pred for the ActivityNet-JSON metrics."""
    blocked = _blocked(args)
    subset = None if args.subset == "all" else args.subset
    gt = anet.load_ground_truth(args.gt, subset=subset, blocked=blocked)
    pred = anet.load_predictions(args.pred, gt, blocked=blocked, with_labels=with_labels,
                                 drop_unknown_videos=args.drop_unknown_videos)
    return gt, pred


def _tiou_list(thresholds: Iterable[float]) -> list[float]:
    """Thresholds for display and JSON, without float noise (0.6000000000000001 -> 0.6)."""
    return [round(float(t), 10) for t in thresholds]


def _evaluate_detection(args: argparse.Namespace) -> dict[str, Any]:
    """Detection mAP as a result dictionary."""
    thresholds = metrics.parse_tiou_thresholds(args.tiou)
    gt, pred = _load_anet(args, with_labels=True)
    result = metrics.detection_map(gt, pred, thresholds)
    return {"metric": "detection", "tiou": _tiou_list(thresholds),
            "values": [float(v) for v in result.map_per_threshold], "average": result.average,
            "value_name": "mAP", "summary": _anet_summary(gt, pred)}


def _evaluate_proposals(args: argparse.Namespace) -> dict[str, Any]:
    """Proposal AR@AN and AUC as a result dictionary."""
    thresholds = metrics.parse_tiou_thresholds(args.tiou)
    if not args.max_avg_proposals > 0:
        raise ValueError(f"--max-avg-proposals must be positive, got {args.max_avg_proposals:g}")
    gt, pred = _load_anet(args, with_labels=False)
    result = metrics.proposal_ar_an(gt, pred, args.max_avg_proposals, thresholds)
    values = [float(v) for v in result.recall[:, -1]]
    out = {"metric": "proposals", "tiou": _tiou_list(thresholds), "values": values,
           "average": float(result.avg_recall[-1]), "value_name": f"recall@AN={args.max_avg_proposals:g}"}
    for an in (1, 5, 10, 100):
        if an <= args.max_avg_proposals:
            out[f"AR@{an}"] = result.ar_at(an)
    out["AUC"] = result.auc
    out["summary"] = _anet_summary(gt, pred)
    return out


def _evaluate_grounding(args: argparse.Namespace) -> dict[str, Any]:
    """Grounding R@1 and mIoU as a result dictionary."""
    thresholds = metrics.parse_tiou_thresholds(args.tiou)
    pairs = anet.load_grounding(args.gt, args.pred, blocked=_blocked(args))
    scores = metrics.grounding_recall(pairs.gt_segments, pairs.pred_segments, thresholds)
    values = [v for k, v in scores.items() if k != "mIoU"]
    return {"metric": "grounding", "tiou": _tiou_list(thresholds), "values": values,
            "average": sum(values) / len(values), "mIoU": scores["mIoU"], "value_name": "R@1",
            "summary": f"{args.gt}: {len(pairs.video_ids)} queries in {len(set(pairs.video_ids))} videos"}


def _anet_summary(gt: anet.GroundTruth, pred: anet.Predictions) -> str:
    """One line describing what was evaluated."""
    subset = "all subsets" if gt.subset is None else f"subset {gt.subset!r}"
    return (f"{gt.source} ({subset}): {len(gt.video_ids)} videos, {gt.num_instances} instances, "
            f"{len(gt.classes)} classes; {pred.source}: {pred.video.size} predictions")


def _format_table(result: dict[str, Any]) -> str:
    """The human-readable table: threshold -> value and their average, then the extras (all in percent)."""
    lines = [result["summary"], "", f"{'tIoU':>8}  {result['value_name']} (%)"]
    lines += [f"{t:>8g}  {100 * v:8.2f}" for t, v in zip(result["tiou"], result["values"])]
    lines.append(f"{'average':>8}  {100 * result['average']:8.2f}")
    extras = [(k, v) for k, v in result.items() if k.startswith("AR@") or k in ("AUC", "mIoU")]
    if extras:
        lines.append("")
        # AUC is already a percentage in the official code; the others are fractions
        lines += [f"{k:>8}  {v if k == 'AUC' else 100 * v:8.2f}" for k, v in extras]
    return "\n".join(lines)
