"""Shared-memory batch buffers: a worker's slot is reused by later batches, also by slightly larger ones."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from uptal.data import batch_buffers
from uptal.data.batch_buffers import GROWTH_HEADROOM, BatchBuffers


@pytest.fixture
def in_worker(monkeypatch):
    """Run BatchBuffers as DataLoader worker 0 would."""
    monkeypatch.setattr(batch_buffers, "get_worker_info", lambda: SimpleNamespace(id=0))


def test_a_slot_serves_batches_a_little_larger_than_the_one_that_made_it(in_worker):
    buffers = BatchBuffers(num_workers=1)
    frames, lease = buffers.tensor((2, 100, 4, 4, 3))
    segment = frames.untyped_storage().data_ptr()
    buffers.release_in_worker(lease)
    # a frame count that varies from batch to batch by up to the headroom (1/8) lands in the same segment
    assert GROWTH_HEADROOM == 1.125
    larger = 112
    again, lease_again = buffers.tensor((2, larger, 4, 4, 3))
    assert lease_again.slot == lease.slot and again.untyped_storage().data_ptr() == segment
    assert tuple(again.shape) == (2, larger, 4, 4, 3)
    buffers.release_in_worker(lease_again)
    grown, lease_grown = buffers.tensor((2, larger + 1, 4, 4, 3))   # past the headroom: a new segment
    assert lease_grown.slot == lease.slot and grown.untyped_storage().data_ptr() != segment


def test_a_busy_slot_is_never_handed_out_twice(in_worker):
    buffers = BatchBuffers(num_workers=1)
    first, lease = buffers.tensor((1, 10, 2, 2, 3))
    second, other = buffers.tensor((1, 10, 2, 2, 3))
    assert other.slot != lease.slot
    assert first.untyped_storage().data_ptr() != second.untyped_storage().data_ptr()
