"""Collectives that are no-ops without an initialised process group, so that the same code runs alone, under
torchrun, on one CPU or on many GPUs. Used by models/moco and train alike (this module imports nothing of uptal).

Every collective here needs the same tensor shape on every rank (torch.distributed's rule), and every rank must
call it: a rank that skips one makes the others wait forever.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_dist() -> bool:
    """True when a process group is initialised (even a group of one)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0, in rank order: [world_size * N, ...].

    Gradient flows only into the local part: this rank's slice of the result is `tensor` itself, the other
    ranks' slices are received copies without history. Alone, returns `tensor` unchanged.
    """
    if world_size() == 1:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(gathered, tensor.detach().contiguous())
    gathered[rank()] = tensor
    return torch.cat(gathered, dim=0)


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite `tensor` in place with rank `src`'s and return it."""
    if world_size() > 1:
        dist.broadcast(tensor, src=src)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Replace `tensor` in place by its mean over ranks and return it (e.g. for logging a loss)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(world_size())
    return tensor


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
