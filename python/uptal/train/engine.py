"""One PAL optimisation step and one validation pass (DESIGN.md, "The data path", steps 3-6).

    synthetic clips [2B, 3, J*F, S, S]  (queries: rows 0..B-1, keys: rows B..2B-1)
      -> query encoder on the query views (gradient), key encoder on the key views (momentum, shuffle-BN)
      -> clip features [B, J, D] each
      -> region InfoNCE of the pasted regions against the queue (uptal.ops.region_infonce)
      -> backward, optional gradient clipping, optimizer step, momentum update, enqueue the keys of all ranks
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields

import torch
from torch import nn

from ..config import ModelConfig
from ..models import build_backbone, build_clip_encoder
from ..models.moco import MoCo
from ..ops import region_infonce
from ..pal import PalPlan, synthesize_batch

__all__ = ["StepResult", "build_moco", "compile_backbones", "split_views", "PalStep"]


@dataclass
class StepResult:
    """Detached scalars of one step (0-d tensors on the step's device; read them on the host through
    `uptal.train.host_values.HostValues(result.scalars())`, which does not wait for later steps)."""

    loss: torch.Tensor
    positive_similarity: torch.Tensor
    negative_similarity: torch.Tensor
    accuracy: torch.Tensor
    grad_norm: torch.Tensor | None = None

    def scalars(self) -> dict[str, torch.Tensor | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def build_moco(model: ModelConfig) -> MoCo:
    """backbone -> projection -> temporal head -> L2 norm, wrapped in MoCo (momentum encoder + queue)."""
    backbone = build_backbone(model.backbone)
    if model.init:
        _initialise(backbone, model)
    encoder = build_clip_encoder(backbone, dim=model.dim, temporal_layers=model.temporal_layers)
    return MoCo(encoder, dim=model.dim, K=model.queue_size, m=model.momentum, shuffle_bn=model.shuffle_bn,
                split_bn_groups=model.split_bn_groups)


def compile_backbones(moco: MoCo) -> None:
    """train.compile: torch.compile both backbones in place. The backbones are where the time goes; compiling
    them in place (nn.Module.compile) keeps the state_dict keys of checkpoints unchanged, and keeps MoCo's
    shuffles and queue out of the graph."""
    moco.encoder_q.backbone.compile()
    moco.encoder_k.backbone.compile()


def _initialise(backbone: nn.Module, model: ModelConfig) -> None:
    """model.init: "i3d-k400" (DeepMind's Kinetics-400 weights, converted on first use) or a backbone state
    dict saved with torch.save (loaded strictly: every key must match)."""
    if model.init == "i3d-k400":
        if model.backbone != "i3d":
            raise ValueError(f"model.init: i3d-k400 weights need model.backbone=i3d, got {model.backbone}")
        from ..models.weights import load_i3d_k400
        load_i3d_k400(backbone)
        return
    backbone.load_state_dict(torch.load(model.init, map_location="cpu", weights_only=True), strict=True)


def split_views(clips: torch.Tensor, plan: PalPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """[2B, 3, J*F, S, S] -> query and key clips [B, J, 3, F, S, S] each (views, not copies)."""
    m, c, jf, s, _ = clips.shape
    per_clip = clips.view(m, c, plan.clips, plan.frames, s, s).transpose(1, 2)   # [2B, J, 3, F, S, S]
    b = plan.num_sources
    return per_clip[:b], per_clip[b:]


class PalStep:
    """The training step and the validation loss of one rank.

    model: the module whose forward maps (query clips, key clips) to clip features: `moco`, or its DDP
    wrapper (DDP then averages the query encoder's gradients over the ranks).
    """

    def __init__(self, moco: MoCo, model: nn.Module, optimizer: torch.optim.Optimizer, tau: float,
                 grad_clip: float = 0.0, autocast_dtype: torch.dtype | None = None) -> None:
        self.moco, self.model, self.optimizer = moco, model, optimizer
        self.tau, self.grad_clip = tau, grad_clip
        self.autocast_dtype = autocast_dtype

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def clips(self, batch, device: torch.device) -> torch.Tensor:
        """The synthetic clips of a batch on `device`: made in the worker (CPU path) or here (GPU path)."""
        if batch.clips is not None:
            return batch.clips.to(device, non_blocking=True)
        videos = batch.videos.to(device, non_blocking=True)
        out_dtype = self.autocast_dtype or torch.float32
        return synthesize_batch(videos, batch.lengths, batch.plan, out_dtype=out_dtype)

    def _loss(self, clips: torch.Tensor, plan: PalPlan, model: nn.Module):
        query_clips, key_clips = split_views(clips, plan)
        with self._autocast(clips.device):
            clip_q, clip_k = model(query_clips, key_clips)         # [B, J, D] each
        b = plan.num_sources
        return region_infonce(clip_q, clip_k, plan.region[:b], plan.region[b:], self.moco.queue, self.tau)

    def train_step(self, clips: torch.Tensor, plan: PalPlan) -> StepResult:
        """Momentum update, loss, backward, (clipping), optimizer step, then enqueue the keys of all ranks."""
        self.moco.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, stats, keys = self._loss(clips, plan, self.model)
        loss.backward()
        grad_norm = None
        if self.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.moco.encoder_q.parameters(), self.grad_clip)
        self.optimizer.step()
        self.moco.enqueue(keys)          # after backward: the loss saved the queue for its gradient
        return StepResult(loss.detach(), stats.positive_similarity, stats.negative_similarity, stats.accuracy,
                          grad_norm)

    @torch.no_grad()
    def validation_loss(self, clips: torch.Tensor, plan: PalPlan) -> StepResult:
        """The same loss on held-out videos: eval-mode BatchNorm, no learning, momentum update or enqueueing."""
        self.moco.eval()
        loss, stats, _ = self._loss(clips, plan, self.moco)
        return StepResult(loss, stats.positive_similarity, stats.negative_similarity, stats.accuracy)
