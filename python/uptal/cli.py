"""The `uptal` command: one console script, one subcommand per job.

    uptal info                       versions, native modules, which implementation each op uses
    uptal demo [--out DIR]           write the demo videos, plan a PAL batch, synthesize it, save a picture
    uptal evaluate ...               ActivityNet-style detection / proposal / grounding metrics
    uptal data check|shard ...       report unusable files of a data set; write it as tar shards
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="uptal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    info = commands.add_parser("info", help="versions, native modules and the implementation of every op")
    info.add_argument("--json", action="store_true", help="one JSON object instead of text")
    info.set_defaults(func=_info)

    demo = commands.add_parser("demo", help="synthesize a batch of PAL samples from the demo videos")
    demo.add_argument("--out", default="demo_out", help="folder for the videos, the plan and the picture")
    demo.add_argument("--videos", type=int, default=8, help="source videos in the batch (>= 3)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)

    from .eval.command import add_subcommand as add_evaluate
    add_evaluate(commands)
    from .data.command import add_subcommand as add_data
    add_data(commands)

    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def _info(args) -> int:
    from . import info
    return info.main(["--json"] if args.json else [])


def _demo(args) -> int:
    from .demo import run_demo
    return run_demo(args.out, num_videos=args.videos, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
