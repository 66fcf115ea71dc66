"""The `uptal probe` subcommand: probes of frozen features that need no TAL toolbox.

    uptal probe tad --features DIR --gt ANNOTATIONS.json --out DIR [--train-subset training]
                    [--test-subset validation] [--epochs 30] [--seed 0] [--hidden 128]
    uptal probe equivariance VIDEO --segment START END --out DIR --encoder SPEC [--encoder SPEC ...]
                    [--fps 25] [--clip-frames 8] [--clip-stride 4] [--size 112] [--background-seconds 8]

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

__all__ = ["add_subcommand", "run_tad", "run_equivariance"]

MISSING_SHOWN = 10   # ids listed per subset; the count is always complete


def add_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `probe` with its `tad` and `equivariance` sub-commands; return the `probe` parser."""
    parser = subparsers.add_parser("probe", help="probe frozen features (TAD probe, equivariance probe)",
                                   description="Probes of frozen features that need no TAL toolbox.")
    probes = parser.add_subparsers(dest="probe", metavar="{tad,equivariance}")
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
    _add_equivariance(probes)
    return parser


def _add_equivariance(probes: argparse._SubParsersAction) -> None:
    equivariance = probes.add_parser(
        "equivariance", help="similarity maps of an action re-inserted 2x faster and 2x slower (paper Fig. 3)",
        description="Re-insert the action [START, END] of VIDEO down-sampled 2x earlier and up-sampled 2x later "
                    "into its background, extract clip features with each encoder, and write equivariance.png "
                    "(clip-by-clip cosine similarity, copies marked) and equivariance.json (standout score: mean "
                    "similarity inside the copies minus mean similarity inside vs outside).")
    equivariance.add_argument("video", help="the video file")
    equivariance.add_argument("--segment", required=True, nargs=2, type=float, metavar=("START", "END"),
                              help="the annotated action, in seconds")
    equivariance.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG and the JSON")
    equivariance.add_argument("--encoder", required=True, action="append", metavar="SPEC",
                              help="checkpoint:PATH, i3d-k400 or backbone:NAME (random, seeded); repeat to "
                                   "compare encoders side by side")
    equivariance.add_argument("--fps", type=float, default=25.0, help="frames per second (default: %(default)g)")
    equivariance.add_argument("--clip-frames", type=int, default=8, help="frames per clip (default: %(default)s)")
    equivariance.add_argument("--frame-stride", type=int, default=1, help="(default: %(default)s)")
    equivariance.add_argument("--clip-stride", type=int, default=4,
                              help="frames between clip starts (default: %(default)s)")
    equivariance.add_argument("--size", type=int, default=112, help="crop size (default: %(default)s)")
    equivariance.add_argument("--background-seconds", type=float, default=8.0,
                              help="background taken around the action, at most (default: %(default)g)")
    equivariance.add_argument("--batch-size", type=int, default=16, help="clips per forward (default: %(default)s)")
    equivariance.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    equivariance.add_argument("--json", action="store_true", help="print equivariance.json instead of a table")
    equivariance.set_defaults(func=run_equivariance)


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


def run_equivariance(args: argparse.Namespace) -> int:
    """Run the equivariance probe that `args` describes; print the score table; return the exit code."""
    from ..features.extract import ClipSampling   # torch loads only when the probe runs
    from .equivariance import format_scores, run_equivariance_probe
    try:
        sampling = ClipSampling(fps=args.fps, clip_frames=args.clip_frames, frame_stride=args.frame_stride,
                                clip_stride=args.clip_stride)
        report = run_equivariance_probe(args.video, tuple(args.segment), args.encoder, args.out,
                                        sampling=sampling, size=args.size,
                                        background_seconds=args.background_seconds,
                                        batch_size=args.batch_size, device=args.device)
    except (ValueError, OSError) as error:
        print(f"uptal probe equivariance: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(report.json_path.read_text(), end="")
    else:
        print(format_scores(report.scores))
        print(f"\nwrote {report.figure_path} and {report.json_path}")
    return 0
