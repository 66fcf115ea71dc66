"""The learning-rate schedule: linear warm-up per step, lr x factor after `patience` epochs without progress."""
from __future__ import annotations

import torch

from uptal.train.schedule import PlateauSchedule


def make(**kwargs) -> tuple[PlateauSchedule, torch.optim.Optimizer]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=123.0)
    return PlateauSchedule(optimizer, lr=1.0, **kwargs), optimizer


def test_warmup_ramps_linearly_then_holds():
    schedule, optimizer = make(warmup_steps=4)
    rates = []
    for step in range(6):
        schedule.set_step(step)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_plateau_divides_after_patience_and_state_round_trips():
    schedule, optimizer = make(factor=0.1, patience=2)
    assert optimizer.param_groups[0]["lr"] == 1.0
    reduced = [schedule.end_epoch(loss) for loss in (5.0, 4.0, 4.0, 4.1, 4.0)]
    assert reduced == [False, False, False, False, True]     # 3 epochs without beating 4.0 (patience 2)
    assert optimizer.param_groups[0]["lr"] == 0.1
    other, other_optimizer = make(factor=0.1, patience=2)
    other.load_state_dict(schedule.state_dict())
    assert other_optimizer.param_groups[0]["lr"] == 0.1 and other.best == 4.0 and other.bad_epochs == 0
