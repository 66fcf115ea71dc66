"""A training step's scalars read on the host without waiting for the work queued after them.

`float(t)` of a tensor on a GPU copies it to the host on the current stream, behind every kernel queued so far:
read after the next step has been queued, it waits for that step too, and the GPU idles while the host then
fetches and launches the one after. `HostValues` starts one non-blocking copy of all the scalars into pinned
memory as soon as the step is queued, records an event behind it, and waits for that event only when a value
is read.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["HostValues"]


class HostValues:
    """Named values: 0-d tensors (copied to the host as float64, exactly, for any float32/bfloat16/float64
    input) and anything else, kept as it is (None, a bool, a number)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._plain = {name: v for name, v in values.items() if not isinstance(v, torch.Tensor)}
        self._names = [name for name, v in values.items() if isinstance(v, torch.Tensor)]
        self._host: torch.Tensor | None = None   # [V] float64 on the CPU
        self._ready: torch.cuda.Event | None = None
        if not self._names:
            return
        stacked = torch.stack([values[name].detach().reshape(()).double() for name in self._names])   # [V]
        if stacked.is_cuda:
            self._host = stacked.to("cpu", non_blocking=True)   # into pinned memory, without waiting
            self._ready = torch.cuda.Event()
            self._ready.record()
        else:
            self._host = stacked

    def __getitem__(self, name: str) -> Any:
        if name in self._plain:
            return self._plain[name]
        if name not in self._names:
            raise KeyError(name)
        if self._ready is not None:   # the copy was queued right after the step: wait for it, not for more
            self._ready.synchronize()
            self._ready = None
        return float(self._host[self._names.index(name)])
