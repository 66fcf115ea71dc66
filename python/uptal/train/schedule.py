"""The learning-rate schedule of PAL pre-training: an optional linear warm-up over the first steps (set every
iteration), then lr / 10 whenever the validation loss stops improving (decided every epoch).

Kept as a small class of our own (not torch's ReduceLROnPlateau) so that its whole state is three numbers
in the checkpoint and the rate of every step is a pure function of that state: a resumed run sets exactly
the rates the uninterrupted run would have set.
"""
from __future__ import annotations

import math

import torch

__all__ = ["PlateauSchedule"]


class PlateauSchedule:
    """Multiply the rate by `factor` after `patience` epochs without a validation loss below the best one
    (relative improvement threshold `threshold`, as ReduceLROnPlateau's default 'rel' mode). During the first
    `warmup_steps` steps the rate ramps linearly up to it."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, factor: float = 0.1, patience: int = 3,
                 threshold: float = 1e-4, min_lr: float = 0.0, warmup_steps: int = 0) -> None:
        self.optimizer = optimizer
        self.lr, self.factor, self.patience = lr, factor, patience
        self.threshold, self.min_lr = threshold, min_lr
        self.warmup_steps = warmup_steps
        self.best = math.inf
        self.bad_epochs = 0
        self.step = 0
        self.apply()

    @property
    def current(self) -> float:
        """The rate of the current step."""
        if self.warmup_steps and self.step < self.warmup_steps:
            return self.lr * (self.step + 1) / self.warmup_steps
        return self.lr

    def set_step(self, step: int) -> None:
        """Called before every optimizer step with the number of steps already done."""
        self.step = step
        self.apply()

    def apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.current

    def end_epoch(self, val_loss: float) -> bool:
        """Record an epoch's validation loss; returns True when the rate was just reduced."""
        if val_loss < self.best * (1.0 - self.threshold):
            self.best, self.bad_epochs = val_loss, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs <= self.patience:
            return False
        self.lr = max(self.lr * self.factor, self.min_lr)
        self.bad_epochs = 0
        self.apply()
        return True

    def state_dict(self) -> dict:
        return {"lr": self.lr, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.lr, self.best, self.bad_epochs = float(state["lr"]), float(state["best"]), int(state["bad_epochs"])
        self.apply()
