"""HostValues: a step's scalars read on the host, exactly, without waiting for work queued after them."""
from __future__ import annotations

import pytest
import torch

from uptal.train.engine import StepResult
from uptal.train.host_values import HostValues


def test_values_arrive_exactly_and_plain_ones_pass_through():
    loss = torch.tensor(0.1, dtype=torch.float32)            # not a round number in binary
    accuracy = torch.tensor(0.75, dtype=torch.bfloat16)
    result = StepResult(loss, torch.tensor(0.3), torch.tensor(-0.2), accuracy)
    values = HostValues({**result.scalars(), "stop": False})
    assert values["loss"] == float(loss) and values["accuracy"] == 0.75
    assert values["positive_similarity"] == float(torch.tensor(0.3))
    assert values["grad_norm"] is None and values["stop"] is False
    with pytest.raises(KeyError):
        values["missing"]


def test_only_plain_values():
    assert HostValues({"stop": True})["stop"] is True


@pytest.mark.gpu
def test_reading_does_not_wait_for_work_queued_after_the_values():
    device = torch.device("cuda")
    values = HostValues({"loss": torch.full((), 2.5, device=device)})
    big = torch.randn(8192, 8192, device=device)
    for _ in range(20):                  # about a second of matrix products queued behind the copy
        big = big @ big
    later = torch.cuda.Event()
    later.record()
    assert values["loss"] == 2.5
    assert not later.query()             # the products are still running: only the copy was waited for
    torch.cuda.synchronize()
