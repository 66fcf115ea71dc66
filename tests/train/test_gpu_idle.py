"""GpuIdle: the GPU's idle time between training steps, from CUDA events."""
from __future__ import annotations

import time

import pytest
import torch

from uptal.train.gpu_idle import GpuIdle


class _At:
    """An event that happened at a given time (ms), as torch.cuda.Event.elapsed_time sees it."""

    def __init__(self, ms: float) -> None:
        self.ms = ms

    def elapsed_time(self, later: "_At") -> float:
        return later.ms - self.ms

    def synchronize(self) -> None:
        pass


def test_off_cuda_every_call_is_a_no_op():
    idle = GpuIdle(torch.device("cpu"))
    begin, end = idle.mark(), idle.mark()
    idle.add(begin, end)
    assert begin is None and end is None and idle.fraction is None


def test_idle_is_the_gap_from_one_step_end_to_the_next_begin_over_the_window():
    idle = GpuIdle(torch.device("cpu"), window=2)
    idle.enabled = True                       # the arithmetic, on events with known times
    idle.add(_At(0), _At(10))                 # first step: no gap before it
    assert idle.fraction == 0.0
    idle.add(_At(15), _At(25))                # 5 ms idle, 10 busy
    assert idle.fraction == pytest.approx(5 / 25)
    idle.add(_At(45), _At(50))                # 20 idle, 5 busy; the window drops the first step
    assert idle.fraction == pytest.approx((5 + 20) / (15 + 25))


@pytest.mark.gpu
def test_host_pauses_between_steps_show_as_idle_and_queued_steps_do_not():
    device = torch.device("cuda")
    x = torch.randn(2048, 2048, device=device)

    def run(pause_s: float) -> float:
        idle, marks = GpuIdle(device), []
        for _ in range(4):
            begin = idle.mark()
            for _ in range(10):
                x @ x
            marks.append((begin, idle.mark()))
            if pause_s:
                torch.cuda.synchronize()
                time.sleep(pause_s)
        torch.cuda.synchronize()
        for begin, end in marks:
            idle.add(begin, end)
        return idle.fraction

    assert run(pause_s=0.2) > 0.5
    assert run(pause_s=0.0) < 0.05
