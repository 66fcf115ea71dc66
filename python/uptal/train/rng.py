"""Every random number generator a training step touches, captured and restored together.

The data order and the PAL augmentations do not need this: each batch is drawn from generators seeded by
(seed, epoch, rank, batch). What remains is the global state some model code draws from (the shuffle-BN
permutation, dropout if a backbone has it, queue initialisation): Python's `random`, NumPy's global
generator, torch's CPU generator and every CUDA device's generator.
"""
from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything", "rng_state", "set_rng_state"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)   # also seeds every CUDA device


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
