"""How long the GPU sat idle between training steps, measured on the device.

The host's wait for the next batch does not say how long the GPU starved once the host runs ahead of it (the
trainer queues a step before it reads the previous one): the host may wait while the GPU still runs the step
before. This measures the device itself: an event on the current stream when a step's batch is in hand (before
its first copy to the device) and one once the step is queued; the time from one step's end event to the next
one's begin event is time the GPU had nothing to do.
"""
from __future__ import annotations

from collections import deque

import torch

__all__ = ["GpuIdle"]


class GpuIdle:
    """Idle time between steps over busy + idle time, on CUDA; every method is a no-op elsewhere.

        idle = GpuIdle(device, window=20)
        begin = idle.mark()          # the batch is in hand
        ... queue the step ...
        end = idle.mark()            # the step is queued
        idle.add(begin, end)         # best once the device has passed `end` (the step's HostValues were read)
        idle.fraction                # over the last `window` steps (None: all of them; None off CUDA)
    """

    def __init__(self, device: torch.device, window: int | None = None) -> None:
        self.enabled = device.type == "cuda"
        self._records: deque[tuple[float, float]] = deque(maxlen=window)   # (idle ms before, busy ms)
        self._previous_end: torch.cuda.Event | None = None

    def mark(self) -> torch.cuda.Event | None:
        if not self.enabled:
            return None
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def add(self, begin: torch.cuda.Event | None, end: torch.cuda.Event | None) -> None:
        """Record one step, in step order: best once the device has passed `end` (this waits for it)."""
        if not self.enabled:
            return
        end.synchronize()   # elapsed_time of an event still pending would raise
        idle = self._previous_end.elapsed_time(begin) if self._previous_end is not None else 0.0
        self._records.append((idle, begin.elapsed_time(end)))
        self._previous_end = end

    @property
    def fraction(self) -> float | None:
        if not self.enabled:
            return None
        total = sum(idle + busy for idle, busy in self._records)
        return sum(idle for idle, _ in self._records) / total if total else 0.0
