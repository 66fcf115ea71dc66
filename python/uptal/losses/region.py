"""PAL's region contrastive loss as the module the trainer holds (the op: uptal.ops.region_infonce)."""
from __future__ import annotations

import math

import torch
from torch import nn

from uptal.ops import RegionInfoNCEStats, region_infonce


class RegionInfoNCE(nn.Module):
    """InfoNCE between the query region of clip_q and the key region of clip_k, against a queue of negatives.

    forward(clip_q [B, J, D], clip_k [B, J, D], regions_q [B, 2], regions_k [B, 2], queue [K, D])
        -> (loss, stats, keys [B, D]); gradient flows into clip_q only. Enqueue `keys` after `loss.backward()`.
    The MoCo-v2 baseline is the case of one-clip regions (s = e).
    """

    def __init__(self, tau: float = 0.07):
        super().__init__()
        if not (isinstance(tau, (int, float)) and not isinstance(tau, bool) and math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau: must be a finite number > 0, got {tau!r}")
        self.tau = float(tau)

    def forward(self, clip_q: torch.Tensor, clip_k: torch.Tensor, regions_q: torch.Tensor, regions_k: torch.Tensor,
                queue: torch.Tensor) -> tuple[torch.Tensor, RegionInfoNCEStats, torch.Tensor]:
        return region_infonce(clip_q, clip_k, regions_q, regions_k, queue, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"
