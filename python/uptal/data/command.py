"""The `uptal data` subcommand: check a data set, write it as tar shards or transcoded copies, write a benchmark.

    uptal data check SOURCE [--min-duration S] [--json] [--no-progress] [--workers N] [--no-cache]
    uptal data shard SOURCE --out DIR [--max-size 1GB | --per-shard N] [--min-duration S] [--no-progress]
    uptal data transcode SOURCE --out DIR [--short-side 128] [--gop 1] [--crf 23] [--jobs N] [--force]
                         [--min-duration S] [--no-progress]
    uptal data synth-tal --out DIR [--videos 40] [--classes 4] [--seed 0] [--duration-range 8 16] [--fps 10]
                         [--height 64] [--width 85] [--test-fraction 0.25]

SOURCE is a folder of videos, a CSV/TXT list, or a shard set (its folder or shards.json); see
`uptal.data.index`. `add_subcommand(subparsers)` registers `data` on the caller's argparse sub-parsers;
every leaf parser sets ``func``, which takes the parsed namespace and returns the exit code: 0 when the data
set has usable videos (check), records were written (shard), every usable video is in DIR (transcode) or the
benchmark was written (synth-tal), 1 when there are none (shard then writes nothing) or a video failed
(transcode), and 2 after a one-line error on stderr when an input is bad (no traceback reaches the user).

`check --json` prints one JSON object per file and nothing else on stdout (progress goes to stderr).
"""
from __future__ import annotations

import argparse
import json
import sys

from ..config import DataConfig
from .check import check_index, format_report, summarize
from .index import load_index
from .shards import DEFAULT_MAX_SIZE, MANIFEST_NAME, parse_size, write_shards
from .synth_tal import CLASS_NAMES, write_synth_tal
from .transcode import LIST_NAME, TranscodeSettings, transcode

__all__ = ["add_subcommand", "run_check", "run_shard", "run_synth_tal", "run_transcode"]

SOURCE_HELP = "a folder of videos (searched recursively), a .csv/.txt list, or a shard set (folder or shards.json)"


def add_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `data` with its check | shard | transcode | synth-tal sub-commands; return its parser."""
    parser = subparsers.add_parser("data", help="check a video data set, write it as tar shards or transcoded "
                                                "copies, write a synthetic TAL benchmark",
                                   description="Index, check, shard and transcode video data sets; write a "
                                               "synthetic temporal action localization benchmark.")
    actions = parser.add_subparsers(dest="action", metavar="{check,shard,transcode,synth-tal}")
    actions.required = True

    check = actions.add_parser(
        "check", help="report unreadable, too-short and odd files, and a summary",
        description="Probe every video once (cached beside the data) and report the files training cannot use "
                    "(missing, empty, not a video, undecodable, truncated, too short) and odd ones (low fps, "
                    "tiny frames, a wrong header frame count). Exit status 1 when no file is usable.")
    _add_index_options(check)
    check.add_argument("--json", action="store_true", help="one JSON object per file (JSON lines) instead of a table")
    check.add_argument("--no-cache", action="store_true", help="probe every file again; read and write no cache")
    check.set_defaults(func=run_check)

    shard = actions.add_parser(
        "shard", help="write the usable videos as WebDataset-style tar shards",
        description="Write every usable video as one record (<key>.<ext> + <key>.json) of tar shards "
                    "DIR/shard-NNNNNN.tar, plus the manifest DIR/shards.json.")
    _add_index_options(shard)
    shard.add_argument("--out", required=True, metavar="DIR", help="folder for the shards and shards.json")
    limit = shard.add_mutually_exclusive_group()
    limit.add_argument("--max-size", metavar="SIZE", default=None,
                       help=f"largest shard, e.g. 500MB, 1GB, 64MiB (default: {DEFAULT_MAX_SIZE // 10**9}GB)")
    limit.add_argument("--per-shard", type=int, metavar="N", default=None, help="records per shard instead")
    shard.set_defaults(func=run_shard)

    recode = actions.add_parser(
        "transcode", help="re-encode the usable videos once at the training size, for cheap decoding",
        description="Write every usable video again as DIR/<path>.mp4: H.264 (tune fastdecode), the short side "
                    "scaled down to --short-side, a keyframe every --gop seconds, no audio, every frame at its "
                    f"time; plus DIR/{LIST_NAME} (path,label) to train from. Videos already in DIR are kept "
                    "(--force writes them again); a crash loses only the files in flight.")
    _add_index_options(recode)
    recode.add_argument("--out", required=True, metavar="DIR", help="folder for the videos and " + LIST_NAME)
    defaults = TranscodeSettings()
    recode.add_argument("--short-side", type=int, default=defaults.short_side, metavar="PX",
                        help="short side of the written frames; smaller sources keep theirs (default: %(default)s)")
    recode.add_argument("--gop", type=float, default=defaults.gop_seconds, metavar="S",
                        help="a keyframe at least every S seconds (default: %(default)g)")
    recode.add_argument("--crf", type=int, default=defaults.crf, help="x264 quality, lower is better and "
                                                                      "bigger (default: %(default)s)")
    recode.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="videos written in parallel (default: the CPU count)")
    recode.add_argument("--force", action="store_true", help="write again the videos already in DIR")
    recode.set_defaults(func=run_transcode)

    synth = actions.add_parser(
        "synth-tal", help="write untrimmed videos with known action instances and ActivityNet ground truth",
        description="Write a synthetic temporal action localization benchmark: DIR/videos/<id>.mp4 (textured "
                    "moving backgrounds with a scene cut, 1-3 non-overlapping action instances of 1-4 s each), "
                    "DIR/annotations.json (ActivityNet format; the test split is the 'validation' subset) and "
                    f"DIR/classes.txt. Classes are motion patterns: {', '.join(CLASS_NAMES)}. The same "
                    "arguments give the same annotations and pixels.")
    synth.add_argument("--out", required=True, metavar="DIR", help="folder for videos/, annotations.json, classes.txt")
    synth.add_argument("--videos", type=int, default=40, metavar="N", help="videos to write (default: %(default)s)")
    synth.add_argument("--classes", type=int, default=4, metavar="K",
                       help=f"action classes, 1 to {len(CLASS_NAMES)} (default: %(default)s)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    synth.add_argument("--duration-range", type=float, nargs=2, default=(8.0, 16.0), metavar=("MIN", "MAX"),
                       help="video length in seconds, drawn uniformly (default: 8 16)")
    synth.add_argument("--fps", type=float, default=10.0, help="frame rate, >= 5 (default: %(default)g)")
    synth.add_argument("--height", type=int, default=64, help="frame height (default: %(default)s)")
    synth.add_argument("--width", type=int, default=85, help="frame width (default: %(default)s)")
    synth.add_argument("--test-fraction", type=float, default=0.25, metavar="F",
                       help="fraction of the videos in the test ('validation') split (default: %(default)g)")
    synth.set_defaults(func=run_synth_tal)
    return parser


#: The shortest video the default data config trains on: min_frames frames at its fps.
DEFAULT_MIN_DURATION = DataConfig().min_frames / DataConfig().fps


def _add_index_options(parser: argparse.ArgumentParser) -> None:
    """Options for reading the source, shared by check, shard and transcode."""
    parser.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    parser.add_argument("--min-duration", type=float, default=DEFAULT_MIN_DURATION, metavar="S",
                        help="files shorter than S seconds are too_short (default: %(default)g s, the "
                             "default data config's min_frames at its fps: shorter files are never trained on)")
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="probing threads (default: up to 8)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fail(action: str, error: Exception) -> int:
    """Print a one-line input error; the exit code for it."""
    message = f"{error.filename}: {error.strerror}" if isinstance(error, OSError) and error.filename else str(error)
    print(f"uptal data {action}: error: {message}", file=sys.stderr)
    return 2


def run_check(args: argparse.Namespace) -> int:
    """`uptal data check`: print the report (or JSON lines); 0 when some file is usable, else 1."""
    try:
        index = load_index(args.source, min_duration=args.min_duration, workers=args.workers,
                           progress=not args.no_progress, cache=not args.no_cache)
    except (ValueError, OSError) as error:
        return _fail("check", error)
    records = check_index(index)
    summary = summarize(records)
    if args.json:
        for record in records:
            print(json.dumps(record.to_json()))
    else:
        print(format_report(records, summary))
    if summary.usable == 0:
        print(f"uptal data check: no usable video in {index.source}", file=sys.stderr)
        return 1
    return 0


def run_shard(args: argparse.Namespace) -> int:
    """`uptal data shard`: write the shards, print what was written; 0 when some record was written, else 1."""
    try:
        max_size = parse_size(args.max_size) if args.max_size is not None else None
        index = load_index(args.source, min_duration=args.min_duration, workers=args.workers,
                           progress=not args.no_progress)
        if not index.usable():
            print(f"uptal data shard: no usable video in {index.source}; nothing written", file=sys.stderr)
            return 1
        shard_set = write_shards(index, args.out, max_size=max_size, per_shard=args.per_shard,
                                 progress=not args.no_progress)
    except (ValueError, OSError) as error:
        return _fail("shard", error)
    print(f"wrote {shard_set.total} videos in {len(shard_set.shards)} shards ({shard_set.num_bytes / 1e6:.1f} MB) "
          f"to {shard_set.directory}; manifest {shard_set.directory / MANIFEST_NAME}")
    left_out = len(index.bad()) + len(shard_set.skipped)
    if left_out:
        print(f"left out {left_out} unusable files (`uptal data check` says why)")
    return 0 if shard_set.total else 1


def run_transcode(args: argparse.Namespace) -> int:
    """`uptal data transcode`: write the videos, print a summary and every failure; 0 when all usable videos
    are in DIR, 1 when none is usable or some failed, 2 after a one-line error."""
    try:
        settings = TranscodeSettings(short_side=args.short_side, gop_seconds=args.gop, crf=args.crf)
        index = load_index(args.source, min_duration=args.min_duration, workers=args.workers,
                           progress=not args.no_progress)
        if not index.usable():
            print(f"uptal data transcode: no usable video in {index.source}; nothing written", file=sys.stderr)
            return 1
        result = transcode(index, args.out, settings=settings, workers=args.jobs, force=args.force,
                           progress=not args.no_progress)
    except (ValueError, OSError) as error:
        return _fail("transcode", error)
    for video in result.videos:
        if video.status == "failed":
            print(f"failed: {video.source}: {video.detail}")
    print(f"{result.count('written')} written, {result.count('kept')} already there, {result.count('failed')} "
          f"failed, in {result.out}; list {result.out / LIST_NAME}")
    if result.not_usable:
        print(f"left out {len(result.not_usable)} unusable files (`uptal data check` says why)")
    return 1 if result.count("failed") else 0


def run_synth_tal(args: argparse.Namespace) -> int:
    """`uptal data synth-tal`: write the benchmark, print what was written; 0, or 2 after a one-line error."""
    try:
        written = write_synth_tal(args.out, videos=args.videos, classes=args.classes, seed=args.seed,
                                  duration_range=tuple(args.duration_range), fps=args.fps, height=args.height,
                                  width=args.width, test_fraction=args.test_fraction)
    except (ValueError, OSError) as error:
        return _fail("synth-tal", error)
    print(f"wrote {len(written.videos)} videos ({written.num_training} training, {written.num_validation} "
          f"validation; {written.num_instances} action instances) to {written.directory / 'videos'}; "
          f"ground truth {written.annotations}; classes {written.classes}")
    return 0
