"""Checkpoints: atomic writes, the last k kept, the newest loadable found, survival of SIGKILL mid-write."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from uptal.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint


def test_save_keeps_the_last_k_and_finds_the_newest(tmp_path):
    for step in (5, 10, 15, 20):
        save_checkpoint({"step": step, "w": torch.full((3,), float(step))}, tmp_path, step, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000015.pt", "step-000000020.pt"]
    newest = latest_checkpoint(tmp_path)
    assert load_checkpoint(newest)["step"] == 20


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    save_checkpoint({"step": 1}, tmp_path, 1)
    save_checkpoint({"step": 2}, tmp_path, 2)
    (tmp_path / "step-000000002.pt").write_bytes(b"\x00" * 100)     # e.g. a disk error
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 1


def test_leftover_temporaries_are_ignored_and_cleaned(tmp_path):
    (tmp_path / ".tmp-1234-step-000000009.pt").write_bytes(b"half a checkpoint")
    assert latest_checkpoint(tmp_path) is None
    save_checkpoint({"step": 3}, tmp_path, 3)
    assert not list(tmp_path.glob(".tmp-*"))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000003.pt"]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


WRITER = """
import sys, torch
from uptal.train.checkpoint import save_checkpoint
state = {"w": torch.randn(2_000_000)}      # 8 MB: long enough to be killed mid-write
step = 0
print("ready", flush=True)
while True:
    step += 1
    state["step"] = step
    save_checkpoint(state, sys.argv[1], step, keep_last=2)
"""


@pytest.mark.parametrize("delay", [0.3, 0.55, 0.8])
def test_sigkill_while_writing_leaves_a_loadable_checkpoint(tmp_path, delay):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    deadline = time.time() + 30
    while not list_checkpoints(tmp_path) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    newest = latest_checkpoint(tmp_path)
    assert newest is not None
    state = load_checkpoint(newest)
    assert state["w"].shape == (2_000_000,) and state["step"] >= 1
    # every file under a real name is complete (the newest is not merely the only readable one)
    for path in list_checkpoints(tmp_path):
        assert load_checkpoint(path)["w"].shape == (2_000_000,)
