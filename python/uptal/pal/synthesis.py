"""Synthesis entry point of the PAL room: a decoded batch + its plan -> synthetic clips."""
from __future__ import annotations

import torch

from .. import ops
from .plan import PalPlan


def synthesize_batch(videos: torch.Tensor, lengths, plan: PalPlan, out_dtype: torch.dtype = torch.float32,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 videos [B, T, H, W, 3] decoded once per batch -> clips [2B, 3, J*F, S, S] (queries first).

    The plan must have been built for these videos (same B, lengths and frame size)."""
    if tuple(videos.shape[2:4]) != (plan.height, plan.width):
        raise ValueError(f"videos: frames are {tuple(videos.shape[2:4])} but the plan's crops were drawn for "
                         f"{plan.height}x{plan.width}")
    return ops.synthesize(videos, lengths, plan, out_dtype=out_dtype, out=out)
