"""The `uptal` command: one console script, one subcommand per job.

    uptal info                       versions, native modules, which implementation each op uses
    uptal demo [--out DIR]           write the demo videos, plan a PAL batch, synthesize it, save a picture
    uptal evaluate ...               ActivityNet-style detection / proposal / grounding metrics
    uptal data check|shard|synth-tal report unusable files; write tar shards; write a synthetic TAL benchmark
    uptal pretrain --config NAME     PAL pre-training (alone or under torchrun)
    uptal extract VIDEOS --out DIR   clip features of untrimmed videos (a checkpoint or the K400 I3D)
    uptal export DIR --to FORMAT     features in the layout ActionFormer / OpenTAD / G-TAD / BMN / TSP read
    uptal probe tad|equivariance ... a small TAD head on frozen features (mAP); speed-equivariance maps
    uptal weights i3d-k400           convert DeepMind's Kinetics-400 I3D to PyTorch
    uptal classify VIDEO             top-k Kinetics-400 classes of a video (I3D)
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
    info.add_argument("--model", help="also report parameters and GFLOPs per clip of this backbone "
                                      "(i3d, r2plus1d_18, r3d_18, s3d, tiny)")
    info.add_argument("--frames", type=int, default=8, help="clip length for --model (default: 8)")
    info.add_argument("--size", type=int, default=112, help="clip height and width for --model (default: 112)")
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
    from .models.command import add_subcommands
    add_subcommands(commands)
    from .train.command import add_subcommand as add_pretrain
    add_pretrain(commands)
    from .features.command import add_subcommands as add_features
    add_features(commands)
    from .eval.probe_command import add_subcommand as add_probe
    add_probe(commands)

    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def _info(args) -> int:
    from . import info
    model = ["--model", args.model, "--frames", str(args.frames), "--size", str(args.size)] if args.model else []
    return info.main(["--json"] * args.json + model)


def _demo(args) -> int:
    from .demo import run_demo
    return run_demo(args.out, num_videos=args.videos, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
