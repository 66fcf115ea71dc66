"""Checkpoints that survive anything: atomic writes, the last k kept, the newest loadable one found.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'ed, then renamed over its
final name (an atomic step on POSIX file systems) and the folder is fsync'ed so the rename itself is durable.
A process killed at any moment (SIGKILL, power loss after the fsync) therefore leaves either the previous
set of checkpoints or the previous set plus the new complete one, never a half-written file under a real
name. Leftover temporary files of a killed writer are removed by the next writer.

Names: ``step-<global step, 9 digits>.pt`` in the run's ``checkpoints/`` folder, so the newest is the one
with the largest step.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["checkpoint_path", "list_checkpoints", "latest_checkpoint", "save_checkpoint", "load_checkpoint"]

_NAME = re.compile(r"^step-(\d{9})\.pt$")
_TEMP_PREFIX = ".tmp-"


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"step-{step:09d}.pt"


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Checkpoints in `folder`, oldest first (temporary files of interrupted writes are not listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest checkpoint that loads (a damaged newest file, e.g. a disk error, falls back to the previous)."""
    for path in reversed(list_checkpoints(folder)):
        try:
            torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except Exception:  # noqa: BLE001 - any unreadable file is skipped, the next older one is tried
            continue
        return path
    return None


def save_checkpoint(state: dict[str, Any], folder: str | os.PathLike, step: int, keep_last: int = 3) -> Path:
    """Write `state` atomically as step-<step>.pt in `folder`, then delete all but the newest `keep_last`."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder)
    final = checkpoint_path(folder, step)
    temporary = folder / f"{_TEMP_PREFIX}{os.getpid()}-{final.name}"
    with open(temporary, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    _fsync_folder(folder)
    for old in list_checkpoints(folder)[:-keep_last]:
        old.unlink(missing_ok=True)
    return final


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint on the CPU (the caller moves tensors to its devices)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    # weights_only=False: a checkpoint holds RNG states and the config (plain Python objects) besides tensors;
    # only load checkpoints you wrote.
    return torch.load(path, map_location="cpu", weights_only=False)


def _remove_stale_temporaries(folder: Path) -> None:
    for path in folder.glob(f"{_TEMP_PREFIX}*"):
        path.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); not possible on every platform, harmless to skip there."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
