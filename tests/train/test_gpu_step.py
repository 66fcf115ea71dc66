"""The training step on the GPU path never makes the host wait for the device.

A host sync inside a step (a blocking copy of a small CPU tensor to the GPU, reading a value) stalls the host
until the GPU has run everything queued, after which the GPU idles while the host launches what follows. The
trainer reads each step's results one step later (tests/train/test_pretrain.py); this checks that nothing
inside the step syncs: torch's sync debug mode turns every synchronising CUDA call into an error.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from uptal.config import ModelConfig, PalConfig
from uptal.ops import implementation_for
from uptal.pal import build_plan
from uptal.train.engine import PalStep, build_moco
from uptal.train.host_values import HostValues

PAL = PalConfig(clips=4, frames=2, size=16, max_region_clips=2, blur_kernel=3)
MODEL = ModelConfig(backbone="tiny", dim=16, queue_size=24, momentum=0.9, split_bn_groups=2)


def source_batch(num_sources: int, frames: int = 20, height: int = 24, width: int = 32):
    """What the loader hands the GPU path: pinned uint8 source videos, their lengths and the batch's plan."""
    g = torch.Generator().manual_seed(0)
    videos = torch.randint(0, 256, (num_sources, frames, height, width, 3), dtype=torch.uint8, generator=g)
    lengths = [frames] * num_sources
    plan = build_plan(g, lengths, height, width, PAL)
    return SimpleNamespace(clips=None, videos=videos.pin_memory(), lengths=lengths, plan=plan)


@pytest.mark.gpu
@pytest.mark.parametrize("grad_clip", [0.0, 1.0])
def test_a_training_step_on_the_gpu_path_has_no_host_sync(grad_clip):
    if implementation_for("cuda")[0] != "cuda":
        pytest.skip("the synthesis reference reads the plan on the host; the CUDA kernel is not built here")
    device = torch.device("cuda")
    torch.manual_seed(0)
    moco = build_moco(MODEL).to(device)
    assert moco.shuffle_mode() == "split"     # the key permutation is copied to the GPU in the step
    optimizer = torch.optim.Adam(moco.encoder_q.parameters(), lr=1e-3)
    step = PalStep(moco, moco, optimizer, tau=0.1, grad_clip=grad_clip, autocast_dtype=torch.bfloat16)
    batch = source_batch(num_sources=4)
    for _ in range(2):   # first calls may sync once (kernel compilation, allocator growth)
        step.train_step(step.clips(batch, device), batch.plan)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        result = step.train_step(step.clips(batch, device), batch.plan)
        values = HostValues(result.scalars())   # what the trainer queues right after the step
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert math.isfinite(values["loss"]) and values["loss"] == result.loss.item()
