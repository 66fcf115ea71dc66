"""Helpers of the trainer tests: a PAL setting at toy scale, as command-line overrides."""
from __future__ import annotations

from pathlib import Path

# A PAL setting at toy scale: 4 clips of 2 frames at 16x16, regions of 1..2 clips, every augmentation on.
TINY = [
    "pal.clips=4", "pal.frames=2", "pal.size=16", "pal.max_region_clips=2", "pal.blur_kernel=3",
    "data.fps=10", "data.height=24", "data.width=32", "data.workers=0", "data.min_frames=4",
    "model.backbone=tiny", "model.dim=16", "model.queue_size=24", "model.momentum=0.9",
    "train.batch_size=4", "train.val_fraction=0.25", "train.val_batches=1", "train.lr=1e-3",
    "train.log_every=1", "train.image_every=0", "train.checkpoint_every=0", "train.tensorboard=false",
]


def tiny_overrides(videos: Path, out: Path, *extra: str) -> list[str]:
    return TINY + [f"data.source={videos}", f"train.out={out}", *extra]
