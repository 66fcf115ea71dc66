"""`uptal pretrain --config FILE [section.key=value ...]`: PAL pre-training (alone or under torchrun)."""
from __future__ import annotations

import argparse
import logging
import os
import sys


def add_subcommand(commands) -> None:
    parser = commands.add_parser(
        "pretrain", help="pre-train an encoder with PAL (alone or under torchrun)",
        description="Pre-train a video encoder with Pseudo Action Localization. Settings: the defaults of "
                    "uptal.config <- the YAML file of --config <- section.key=value overrides "
                    "(e.g. train.lr=3e-4 data.source=/data/k400). Under torchrun every rank runs this command.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file (configs/*.yaml); omitted: the built-in defaults")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="continue a run: the newest checkpoint of train.out, or the checkpoint given")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from ..config import ConfigError, load_pretrain_config
    from ..data.loader import DataError
    from .pretrain import TrainingError, pretrain

    overrides = list(args.overrides) + ([f"train.resume={args.resume}"] if args.resume else [])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_pretrain_config(args.config, overrides)
        run = pretrain(config)
    except (ConfigError, DataError, TrainingError) as error:
        print(f"uptal pretrain: error: {error}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":
        print(f"run folder: {run}")
    return 0
