"""Shared-memory batch buffers that DataLoader workers reuse instead of making a new one for every batch.

Why: a PAL batch is large (B x T' x H x W x 3 uint8 frames: 271 MB for the paper's config at B = 32). Made
fresh for every batch, its shared-memory segment costs an allocation (~119 ms for 271 MB on the CPU machine),
page faults in the worker as it is filled (~157 ms), and a new mapping in the main process. On an H200 node the
loader delivered at most ~70 samples/s (2.2 batches/s of 32) whether it ran 4 or 16 workers; on the CPU machine,
handing fresh 271 MB tensors from a worker to the main process ran at ~2 batches/s, and at ~9.5 when the
workers reused their buffers.

How: each worker keeps a few shared segments ("slots") and reuses them. A slot is busy from the moment its
worker takes it for a batch until the main process has let go of that batch's frames: a table of flags in
shared memory, made by the main process before the workers start, says which slots are free. The batch carries
a `SlotLease` to the main process, where it is attached to the frames tensor and frees the slot when garbage
collected: when that tensor and every view of it are gone, or, with pinned memory, as soon as the
DataLoader's pinning thread has copied the frames. The main process keeps each slot's storage
mapped, so a reused slot arrives without a new mapping. A worker that finds none of its slots free makes a new
one (up to `MAX_SLOTS`, then one-off segments as before): a consumer that holds many batches costs memory,
never a deadlock.
"""
from __future__ import annotations

import itertools
import math
import os
import weakref

import torch
from torch.utils.data import get_worker_info

__all__ = ["BatchBuffers", "SlotLease", "MAX_SLOTS", "GROWTH_HEADROOM"]

MAX_SLOTS = 16          # reusable slots per worker; more batches in flight get one-off segments
# A slot grows 1/8 beyond the batch that needs it: a batch's frame count varies (136-154 frames per window
# over 50 batches of the paper's config), and a slot grown to the exact size would be replaced again and again,
# each time a new segment whose pages the worker faults in as it fills it (~300 MB) and a new mapping in
# the main process, which unmaps the old one.
GROWTH_HEADROOM = 1.125
_FREE, _BUSY = 0, 1
_registry: "weakref.WeakValueDictionary[str, BatchBuffers]" = weakref.WeakValueDictionary()
_tokens = itertools.count()


class BatchBuffers:
    """The slots of every worker of one loader. Made in the main process; the DataLoader hands a copy to each
    worker with the dataset (the flags live in shared memory, so both sides see the same table)."""

    def __init__(self, num_workers: int) -> None:
        self.flags = torch.zeros(num_workers, MAX_SLOTS, dtype=torch.uint8).share_memory_()   # [W, S]
        self.token = f"{os.getpid()}-{next(_tokens)}"
        _registry[self.token] = self
        self._worker_slots: list[torch.UntypedStorage | None] = [None] * MAX_SLOTS   # in a worker: its segments
        self._mapped: dict[tuple[int, int], torch.UntypedStorage] = {}                # in the main process

    def __getstate__(self) -> dict:
        return {"flags": self.flags, "token": self.token}

    def __setstate__(self, state: dict) -> None:   # in a worker
        self.flags, self.token = state["flags"], state["token"]
        self._worker_slots = [None] * MAX_SLOTS
        self._mapped = {}

    def tensor(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, SlotLease | None]:
        """A uint8 tensor of `shape` in shared memory and the lease of its slot (None: a one-off segment, or
        outside a worker, where a plain tensor is returned)."""
        info = get_worker_info()
        if info is None:
            return torch.empty(shape, dtype=torch.uint8), None
        nbytes = math.prod(shape)
        slot = self._free_slot(info.id, nbytes)
        if slot is None:
            return _view(torch.UntypedStorage._new_shared(nbytes), shape), None
        self.flags[info.id, slot] = _BUSY
        return _view(self._worker_slots[slot], shape), SlotLease(self.token, info.id, slot)

    def _free_slot(self, worker: int, nbytes: int) -> int | None:
        """A free slot of this worker that holds `nbytes` (the smallest such), else a free one grown to
        `nbytes` plus headroom, else a new one; None when all MAX_SLOTS are busy."""
        free = [s for s in range(MAX_SLOTS) if int(self.flags[worker, s]) == _FREE]
        made = [s for s in free if self._worker_slots[s] is not None]
        fitting = [s for s in made if self._worker_slots[s].nbytes() >= nbytes]
        if fitting:
            return min(fitting, key=lambda s: self._worker_slots[s].nbytes())
        candidates = made or free
        if not candidates:
            return None
        slot = candidates[0]
        self._worker_slots[slot] = torch.UntypedStorage._new_shared(math.ceil(nbytes * GROWTH_HEADROOM))
        return slot

    def release_in_worker(self, lease: SlotLease) -> None:
        """A slot the worker took but will not send (its batch tensor was replaced by a larger one)."""
        self.flags[lease.worker, lease.slot] = _FREE

    def remember(self, lease: SlotLease, frames: torch.Tensor) -> None:
        """Main process: keep the slot's storage mapped, so that the next batch in it reuses the mapping."""
        self._mapped[lease.worker, lease.slot] = frames.untyped_storage()


class SlotLease:
    """A worker's claim on one slot. The copy that reaches the main process frees the slot when collected."""

    def __init__(self, token: str, worker: int, slot: int, in_main: bool = False) -> None:
        self.token, self.worker, self.slot, self.in_main = token, worker, slot, in_main

    def __reduce__(self):
        return SlotLease, (self.token, self.worker, self.slot, True)

    def remember(self, frames: torch.Tensor) -> None:
        buffers = _registry.get(self.token)
        if buffers is not None:
            buffers.remember(self, frames)

    def __del__(self) -> None:
        if not self.in_main:
            return
        try:
            buffers = _registry.get(self.token)
        except Exception:   # interpreter shutdown: the registry may already be gone, and so are the workers
            return
        if buffers is not None:
            buffers.flags[self.worker, self.slot] = _FREE


def _view(storage: torch.UntypedStorage, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, shape)
