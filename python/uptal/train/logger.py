"""What a run leaves for its user to watch: JSON lines, TensorBoard scalars and pictures, a progress bar.

Only rank 0 writes; other ranks get a logger whose methods do nothing, so the training loop never asks
which rank it is on before logging.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["RunLogger"]


class RunLogger:
    """log.jsonl (one JSON object per logged step or event), events.* (TensorBoard), pictures/*.png."""

    def __init__(self, folder: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.folder = Path(folder)
        self.enabled = enabled
        self._jsonl = None
        self._writer = None
        if not enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.folder / "log.jsonl", "a", buffering=1)   # line-buffered: survives a crash
        if tensorboard:
            self._writer = _tensorboard_writer(self.folder)

    def scalars(self, step: int, values: dict[str, float], kind: str = "train") -> None:
        """One JSON line {"kind", "step", "time", **values} and a TensorBoard scalar per value."""
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3),
                  **{k: _finite_or_none(v) for k, v in values.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(f"{kind}/{name}", value, step)

    def event(self, step: int, message: str, **fields: Any) -> None:
        """A one-off event (start, resume, checkpoint, lr change, stop) in the JSON lines log."""
        if self.enabled:
            self._jsonl.write(json.dumps({"kind": "event", "step": step, "time": round(time.time(), 3),
                                          "message": message, **fields}) + "\n")

    def image(self, step: int, picture, name: str = "synthetic_batch") -> Path | None:
        """Save a PIL image as pictures/<name>-<step>.png and add it to TensorBoard."""
        if not self.enabled:
            return None
        folder = self.folder / "pictures"
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}-{step:09d}.png"
        picture.save(path)
        if self._writer is not None:
            array = torch.from_numpy(np.array(picture)).permute(2, 0, 1)   # [3, H, W]
            self._writer.add_image(name, array, step)
        return path

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:   # tensorboard is a dependency, but a stripped environment should still train
        import warnings
        warnings.warn("tensorboard is not installed: no TensorBoard events (log.jsonl has the same scalars)")
        return None
    return SummaryWriter(log_dir=str(folder))
