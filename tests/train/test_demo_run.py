"""The README's main command: `uptal pretrain --config demo` trains and its loss goes down (about a minute)."""
from __future__ import annotations

import json

import pytest

from uptal.config import load_pretrain_config
from uptal.train.pretrain import pretrain


@pytest.mark.slow
def test_demo_pretraining_lowers_the_loss(tmp_path):
    out = pretrain(load_pretrain_config("demo", [f"train.out={tmp_path / 'demo'}", "train.tensorboard=false"]))
    by_epoch: dict[int, list[float]] = {}
    queue_full_from = None
    for record in map(json.loads, (out / "log.jsonl").read_text().splitlines()):
        if record["kind"] != "train":
            continue
        epoch = int(record["epoch"] - 1e-9)
        by_epoch.setdefault(epoch, []).append(record["loss"])
        if record["queue_fill"] >= 1.0 and queue_full_from is None:
            queue_full_from = epoch + 1            # the first epoch that starts with a full queue
    mean = {epoch: sum(v) / len(v) for epoch, v in by_epoch.items()}
    assert len(mean) == 12 and queue_full_from is not None
    first, last = mean[queue_full_from], mean[max(mean)]
    assert last < 0.95 * first, mean               # the loss comparable once the queue is full goes down
    assert all(loss == loss and loss > 0 for loss in mean.values())
