"""MoCo machinery of PAL: a query encoder, its momentum copy (the key encoder) and a queue of keys.

The encoder maps clips [B, J, 3, F, S, S] to L2-normalised clip features [B, J, D]. One training step:

    clip_q, clip_k = moco(clips_q, clips_k)   # momentum update, then the keys (no grad) with shuffle BN
    loss, stats, keys = region_loss(clip_q, clip_k, regions_q, regions_k, moco.queue)
    loss.backward(); optimizer.step()
    moco.enqueue(keys)                        # every rank's keys; after backward, since the loss saved the queue

Shuffle BN (MoCo, section 3.3): BatchNorm statistics computed over a batch that holds both a query and its own
key let the model cheat. Modes:
  "ddp"    under torch.distributed: the key batch is gathered from all ranks, shuffled with a permutation drawn
           on rank 0, each rank encodes its share of the shuffled batch, and the keys are unshuffled
  "split"  the same semantics in one process, as if there were G = split_bn_groups ranks: the query batch is
           encoded as G sub-batches in order (what G ranks would see), the key batch is shuffled and encoded as G
           sub-batches, so every BatchNorm computes per-sub-batch statistics, then unshuffled
  "off"    both encoders see the whole batch
  "auto"   "off" when the encoder has no plain BatchNorm (none, or SyncBatchNorm whose statistics span all
           ranks anyway), else "ddp" with more than one rank, else "split" when split_bn_groups > 1, else "off"
SyncBatchNorm is an alternative on CUDA: `convert_sync_batchnorm(moco, device)`.
Every collective comes from uptal.dist and is a no-op without a process group.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from uptal import dist

SHUFFLE_BN_MODES = ("auto", "ddp", "split", "off")


class MoCo(nn.Module):
    """Query encoder `encoder_q`, momentum encoder `encoder_k` (a deep copy, no gradient), and a ring buffer
    `queue` [K, dim] of keys with its write position `queue_ptr` (both buffers, so checkpointed).

    The queue starts as random unit vectors (never empty), like MoCo's.
    """

    def __init__(self, encoder_q: nn.Module, dim: int, K: int = 16384, m: float = 0.999,
                 shuffle_bn: str = "auto", split_bn_groups: int = 2):
        super().__init__()
        _require(isinstance(encoder_q, nn.Module), "encoder_q", f"must be an nn.Module, got {type(encoder_q).__name__}")
        _require(_is_int(dim) and dim >= 1, "dim", f"must be an int >= 1, got {dim!r}")
        _require(_is_int(K) and K >= 1, "K", f"must be an int >= 1, got {K!r}")
        _require(isinstance(m, (int, float)) and 0.0 <= m <= 1.0, "m", f"must be a number in [0, 1], got {m!r}")
        _require(shuffle_bn in SHUFFLE_BN_MODES, "shuffle_bn", f"must be one of {SHUFFLE_BN_MODES}, got {shuffle_bn!r}")
        _require(_is_int(split_bn_groups) and split_bn_groups >= 1, "split_bn_groups",
                 f"must be an int >= 1, got {split_bn_groups!r}")
        self.encoder_q = encoder_q
        self.encoder_k = copy.deepcopy(encoder_q).requires_grad_(False)
        self.m = float(m)
        self.shuffle_bn = shuffle_bn
        self.split_bn_groups = split_bn_groups
        self.register_buffer("queue", F.normalize(torch.randn(K, dim), dim=1))  # [K, D]
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))   # next slot to write

    def forward(self, clips_q: torch.Tensor, clips_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clips [B, J, 3, F, S, S] twice -> clip features of the queries [B, J, D] (with gradient) and of the keys
        [B, J, D] (no gradient). In training mode the key encoder is momentum-updated first; in eval mode (a
        validation loss) it is left alone."""
        mode = self.shuffle_mode()
        clip_q = _encode_in_groups(self.encoder_q, clips_q, self.split_bn_groups if mode == "split" else 1)
        with torch.no_grad():
            if self.training:
                self.momentum_update()
            clip_k = self.encode_keys(clips_k, mode)
        return clip_q, clip_k

    def shuffle_mode(self) -> str:
        """The shuffle-BN mode in effect now (resolved per call: the process group may start after __init__)."""
        if self.shuffle_bn != "auto":
            return self.shuffle_bn
        if not _has_plain_batch_norm(self.encoder_k):
            return "off"
        if dist.world_size() > 1:
            return "ddp"
        return "split" if self.split_bn_groups > 1 else "off"

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key = m * key + (1 - m) * query for every parameter, in a few fused foreach kernels; buffers (BatchNorm
        running statistics) are copied from the query encoder."""
        key_params = list(self.encoder_k.parameters())
        query_params = [p.detach() for p in self.encoder_q.parameters()]
        torch._foreach_mul_(key_params, self.m)
        torch._foreach_add_(key_params, query_params, alpha=1.0 - self.m)
        key_buffers = list(self.encoder_k.buffers())
        if key_buffers:  # foreach ops reject empty lists
            torch._foreach_copy_(key_buffers, list(self.encoder_q.buffers()))

    @torch.no_grad()
    def encode_keys(self, clips_k: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """clips [B, J, 3, F, S, S] -> key clip features [B, J, D] in the input order, with shuffle BN `mode`
        (default: `shuffle_mode()`). The permutations come from torch's CPU generator on every rank."""
        mode = mode or self.shuffle_mode()
        _require(mode in SHUFFLE_BN_MODES[1:], "mode", f"must be one of {SHUFFLE_BN_MODES[1:]}, got {mode!r}")
        if mode == "ddp":
            return self._keys_shuffled_across_ranks(clips_k)
        if mode == "split":
            order = torch.randperm(clips_k.shape[0]).to(clips_k.device, non_blocking=True)   # no host sync
            shuffled = _encode_in_groups(self.encoder_k, clips_k[order], self.split_bn_groups)
            return shuffled[torch.argsort(order)]
        return self.encoder_k(clips_k)

    def _keys_shuffled_across_ranks(self, clips_k):
        local = clips_k.shape[0]
        everyone = dist.all_gather_cat(clips_k)                       # [W * B, J, 3, F, S, S], rank order
        # every rank draws (so their generators stay in step), rank 0's permutation is the one used
        order = torch.randperm(everyone.shape[0]).to(clips_k.device, non_blocking=True)   # no host sync
        order = dist.broadcast(order, src=0)                           # [W * B]
        mine = order[dist.rank() * local:(dist.rank() + 1) * local]
        shuffled_keys = dist.all_gather_cat(self.encoder_k(everyone[mine]))  # [W * B, J, D], shuffled order
        keys = shuffled_keys[torch.argsort(order)]                    # [W * B, J, D], rank order
        return keys[dist.rank() * local:(dist.rank() + 1) * local]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write the keys [N, D] of every rank (all-gathered, in rank order) into the queue after the newest.

        Any N: writes wrap around the ring, and when more than K keys arrive only the newest K are kept, exactly
        as if they had been written one by one. No host sync: the write position stays on the device.
        """
        num_keys, dim = self.queue.shape
        _require(isinstance(keys, torch.Tensor) and keys.dim() == 2 and keys.shape[1] == dim, "keys",
                 f"must be a [N, D={dim}] tensor, got {list(keys.shape) if isinstance(keys, torch.Tensor) else keys!r}")
        everyone = dist.all_gather_cat(keys.detach()).to(self.queue.dtype)    # [W * N, D]
        arriving = everyone.shape[0]
        slots = (self.queue_ptr + torch.arange(arriving, device=self.queue.device)) % num_keys  # [W * N]
        self.queue.index_copy_(0, slots[-num_keys:], everyone[-num_keys:])
        self.queue_ptr.copy_((self.queue_ptr + arriving) % num_keys)


def convert_sync_batchnorm(module: nn.Module, device: torch.device | str) -> nn.Module:
    """Every BatchNorm of `module` -> SyncBatchNorm (statistics over all ranks). CUDA only: SyncBatchNorm does
    not train on the CPU (gloo); there, use shuffle_bn="split" or "ddp"."""
    _require(torch.device(device).type == "cuda", "device",
             f"SyncBatchNorm trains only on CUDA, got {device}; use MoCo(shuffle_bn='split' or 'ddp') instead")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def _encode_in_groups(encoder: nn.Module, clips: torch.Tensor, groups: int) -> torch.Tensor:
    """encoder over `groups` consecutive sub-batches (so BatchNorm sees each alone), concatenated."""
    groups = min(groups, clips.shape[0])
    if groups == 1:
        return encoder(clips)
    return torch.cat([encoder(part) for part in clips.tensor_split(groups)], dim=0)


def _has_plain_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(layer, nn.modules.batchnorm._BatchNorm) and not isinstance(layer, nn.SyncBatchNorm)
               for layer in module.modules())


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{name}: {message}")
