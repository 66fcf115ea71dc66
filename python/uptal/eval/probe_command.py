"""The `uptal probe` subcommand: probes of frozen features that need no TAL toolbox.

    uptal probe tad --features DIR --gt ANNOTATIONS.json --out DIR [--train-subset training]
                    [--test-subset validation] [--epochs 30] [--seed 0] [--hidden 128]

`add_subcommand(subparsers)` registers it; bad input prints one line to stderr and exits with 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from . import metrics
from .activitynet import EvaluationWarning
from .command import TIOU_HELP, _format_table

__all__ = ["add_subcommand", "run_tad"]

MISSING_SHOWN = 10   # ids listed per subset; the count is always complete


def add_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `probe` with its `tad` sub-command; return the `probe` parser."""
    parser = subparsers.add_parser("probe", help="probe frozen features (TAD probe)",
                                   description="Probes of frozen features that need no TAL toolbox.")
    probes = parser.add_subparsers(dest="probe", metavar="{tad}")
    probes.required = True
    tad = probes.add_parser(
        "tad", help="train a small temporal head on frozen features and report detection mAP",
        description="Train a small temporal Conv1d head (actionness / class / boundaries) on the features of "
                    "the training subset, predict the test subset, write ActivityNet predictions.json and "
                    "metrics.json (detection mAP, as `uptal evaluate detection`).")
    tad.add_argument("--features", required=True, metavar="DIR", help="an `uptal extract` output folder")
    tad.add_argument("--gt", required=True, metavar="FILE", help="ActivityNet ground truth JSON")
    tad.add_argument("--out", required=True, metavar="DIR", help="folder for predictions.json and metrics.json")
    tad.add_argument("--train-subset", default="training", help="subset to train on (default: %(default)s)")
    tad.add_argument("--test-subset", default="validation", help="subset to evaluate (default: %(default)s)")
    tad.add_argument("--epochs", type=int, default=30, help="passes over the training videos (default: %(default)s)")
    tad.add_argument("--seed", type=int, default=0, help="weights and video order (default: %(default)s)")
    tad.add_argument("--hidden", type=int, default=128, help="channels of the temporal layers (default: %(default)s)")
    tad.add_argument("--layers", type=int, default=2, help="temporal Conv1d layers (default: %(default)s)")
    tad.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)g)")
    tad.add_argument("--tiou", default="activitynet", metavar="SPEC", help=TIOU_HELP)
    tad.add_argument("--json", action="store_true", help="print metrics.json's content instead of a table")
    tad.set_defaults(func=run_tad)
    return parser


def _report_missing(missing: dict[str, list[str]]) -> None:
    """Ground-truth videos without features: counted and listed (a few) on stderr."""
    for subset, ids in missing.items():
        if ids:
            shown = ", ".join(ids[:MISSING_SHOWN]) + (", ..." if len(ids) > MISSING_SHOWN else "")
            print(f"uptal probe tad: warning: skipped {len(ids)} {subset!r} videos without features: {shown}",
                  file=sys.stderr)


def run_tad(args: argparse.Namespace) -> int:
    """Run the TAD probe that `args` describes; print the mAP table; return the exit code."""
    from .tad_probe import run_tad_probe  # torch loads only when the probe runs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EvaluationWarning)
        try:
            report = run_tad_probe(args.features, args.gt, args.out, train_subset=args.train_subset,
                                   test_subset=args.test_subset, epochs=args.epochs, seed=args.seed,
                                   hidden=args.hidden, layers=args.layers, lr=args.lr,
                                   tiou_thresholds=metrics.parse_tiou_thresholds(args.tiou))
        except (ValueError, OSError) as error:
            print(f"uptal probe tad: error: {error}", file=sys.stderr)
            return 2
    for item in caught:   # e.g. classes the probe never predicted (AP 0): one plain line each
        print(f"uptal probe tad: warning: {item.message}", file=sys.stderr)
    _report_missing(report.missing)
    if args.json:
        print(json.dumps(report.metrics))
    else:
        print(_format_table(report.metrics))
        print(f"\nwrote {report.predictions_path} and {report.metrics_path}")
    return 0
