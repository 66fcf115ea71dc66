"""`uptal::region_infonce`: PAL's region InfoNCE loss against a queue of keys, without [B, K] logits in memory.

Specification: region_infonce_ref.py. Implementations, chosen per call:
  cuda   the Triton kernels of uptal.kernels.region_infonce (fused region mean + normalise + split-K online
         log-sum-exp; the backward recomputes the logits tile by tile), else the reference
  cpu    the reference; the same Triton kernels in the interpreter when TRITON_INTERPRET=1 was set before they
         were first imported (that is how the tests run them without a GPU)
float64 inputs, D > 256 (the kernels hold a whole feature row per program) and tensors too large for 32-bit
offsets always run the reference.

Gradient flows into clip_q only: k comes from the momentum encoder and is detached, and the queue is a buffer.
The queue is saved for backward, so enqueueing into it in place before `loss.backward()` is an autograd error:
enqueue after the backward pass (or pass a copy).

The queue must hold at least one key (K >= 1): with no negatives the loss is identically zero, which is always a
bug upstream (MoCo initialises its queue with random unit vectors for this reason).
All arguments are validated in Python: a bad argument is a ValueError that names it. The range check of the
regions needs their values: pass them on the CPU (as the PAL plan makes them) to avoid a device sync; inside a
compiled graph that check is skipped and the kernels clamp the bounds so that nothing is read out of bounds.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
from typing import NamedTuple

import torch

from .region_infonce_ref import compute_dtype, region_infonce_backward_ref, region_infonce_forward_ref

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
MAX_KERNEL_DIM = 256  # the GPU tiles are sized for D <= 128; wider rows spill registers (see kernels/)
MAX_KERNEL_ELEMENTS = 2**31 - 1  # the kernels index with 32-bit offsets


class RegionInfoNCEStats(NamedTuple):
    """0-d fp32 tensors (no host sync); detached."""
    positive_similarity: torch.Tensor  # mean over regions of q.k
    negative_similarity: torch.Tensor  # mean over regions and queue keys of q.queue_k
    accuracy: torch.Tensor             # fraction of regions whose positive beats every negative


def region_infonce(clip_q: torch.Tensor, clip_k: torch.Tensor, regions_q: torch.Tensor, regions_k: torch.Tensor,
                   queue: torch.Tensor, tau: float = 0.07) -> tuple[torch.Tensor, RegionInfoNCEStats, torch.Tensor]:
    """Region InfoNCE: clip_q, clip_k [B, J, D] (float32/bfloat16/float16/float64), regions_q, regions_k [B, 2]
    inclusive clip ranges [s, e] (int32/int64, CPU or the clips' device), queue [K, D], tau > 0.

    Returns (loss [] fp32 (fp64 for fp64 inputs), stats, keys [B, D]): `keys` are the normalised key regions
    (detached, fp32) for the caller to enqueue after the backward pass.
    """
    regions_q, regions_k = check_region_infonce_inputs(clip_q, clip_k, regions_q, regions_k, queue, tau)
    loss, stats, keys, _, _, _ = torch.ops.uptal.region_infonce(clip_q, clip_k, regions_q, regions_k, queue,
                                                                float(tau))
    return loss, RegionInfoNCEStats(*stats.detach().unbind()), keys.detach()


def implementation_for(device_type: str) -> tuple[str, str]:
    """(implementation, why) that `region_infonce` uses for float32/bfloat16/float16 tensors on `device_type`."""
    if device_type not in ("cpu", "cuda"):
        return "reference", f"no Triton kernel for {device_type}"
    if device_type == "cpu" and not _interpreter_requested():
        return "reference", "the Triton kernels need a GPU (TRITON_INTERPRET=1 runs them in the interpreter)"
    kernels, reason = _kernels()
    if kernels is None:
        return "reference", reason
    if kernels.INTERPRETED:
        return "triton-interpreter", "TRITON_INTERPRET=1: the Triton kernels run in the interpreter (slow; tests)"
    if device_type == "cpu":
        return "reference", "the Triton kernels were imported compiled; they need a GPU"
    return "triton", (f"uptal.kernels.region_infonce (triton {kernels.triton.__version__}); float64 or "
                      f"D > {MAX_KERNEL_DIM} run the reference")


# ---------------------------------------------------------------------------------------------------------
# torch.library registration


@torch.library.custom_op("uptal::region_infonce", mutates_args=())
def _region_infonce_op(clip_q: torch.Tensor, clip_k: torch.Tensor, regions_q: torch.Tensor, regions_k: torch.Tensor,
                       queue: torch.Tensor, tau: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> loss, stats [3], keys [B, D], and the residuals of backward: queries [B, D], query norms [B],
    row losses [B] (lse - positive logit)."""
    batch, num_clips, dim = clip_q.shape
    if not _runs_kernels(clip_q, queue):
        return region_infonce_forward_ref(clip_q, clip_k, regions_q, regions_k, queue, tau)
    kernels = _kernels()[0]
    tiling = kernels.choose_tiling(batch, queue.shape[0], dim, clip_q.device, clip_q.dtype, backward=False)
    with _on_device(clip_q.device):
        return kernels.forward(clip_q.contiguous(), clip_k.contiguous(), regions_q.contiguous(),
                               regions_k.contiguous(), queue.contiguous(), tau, tiling)


@_region_infonce_op.register_fake
def _(clip_q, clip_k, regions_q, regions_k, queue, tau):
    batch, _, dim = clip_q.shape
    dtype = compute_dtype(clip_q.dtype)

    def empty(*shape):
        return clip_q.new_empty(shape, dtype=dtype)

    return empty(), empty(3), empty(batch, dim), empty(batch, dim), empty(batch), empty(batch)


@torch.library.custom_op("uptal::region_infonce_backward", mutates_args=())
def _region_infonce_backward_op(grad_loss: torch.Tensor, regions_q: torch.Tensor, queries: torch.Tensor,
                                query_norms: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor,
                                row_losses: torch.Tensor, tau: float, num_clips: int, clip_dtype: torch.dtype
                                ) -> torch.Tensor:
    """d loss / d clip_q [B, J, D] in clip_dtype."""
    residuals = (regions_q, queries, query_norms, keys, queue, row_losses)
    if not _runs_kernels(queries, queue, num_clips):
        return region_infonce_backward_ref(grad_loss, *residuals, tau, num_clips, clip_dtype)
    kernels = _kernels()[0]
    batch, dim = queries.shape
    # One split per row block means no two programs add into the same gradient row: bitwise reproducible.
    max_splits = 1 if torch.are_deterministic_algorithms_enabled() else None
    tiling = kernels.choose_tiling(batch, queue.shape[0], dim, queries.device, clip_dtype, backward=True,
                                   max_splits=max_splits)
    with _on_device(queries.device):
        return kernels.backward(grad_loss.float().contiguous(), *(t.contiguous() for t in residuals), tau,
                                num_clips, clip_dtype, tiling)


@_region_infonce_backward_op.register_fake
def _(grad_loss, regions_q, queries, query_norms, keys, queue, row_losses, tau, num_clips, clip_dtype):
    return queries.new_empty((queries.shape[0], num_clips, queries.shape[1]), dtype=clip_dtype)


def _setup_context(ctx, inputs, output):
    clip_q, _, regions_q, _, queue, tau = inputs
    _, _, keys, queries, query_norms, row_losses = output
    ctx.save_for_backward(regions_q, queries, query_norms, keys, queue, row_losses)
    ctx.tau, ctx.num_clips, ctx.clip_dtype = tau, clip_q.shape[1], clip_q.dtype


def _backward(ctx, grad_loss, *unused_grads):
    # Only the loss is differentiable: stats, keys and residuals are handed out detached.
    grad_clip_q = torch.ops.uptal.region_infonce_backward(grad_loss, *ctx.saved_tensors, ctx.tau, ctx.num_clips,
                                                          ctx.clip_dtype)
    return grad_clip_q, None, None, None, None, None


_region_infonce_op.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------------------------------------
# Choosing the implementation


def _interpreter_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") not in ("", "0")


@functools.cache
def _kernels():
    """(module, "") or (None, why the Triton kernels cannot be used). Imported on first use, not with uptal."""
    try:
        from uptal.kernels import region_infonce as kernels
    except (ImportError, RuntimeError) as error:
        return None, f"uptal.kernels.region_infonce not importable: {error}"
    return kernels, ""


def _runs_kernels(features: torch.Tensor, queue: torch.Tensor, num_clips: int | None = None) -> bool:
    """Whether the Triton kernels handle these tensors (features: clip_q [B, J, D] or queries [B, D])."""
    if features.dtype == torch.float64 or features.shape[-1] > MAX_KERNEL_DIM:
        return False
    clip_elements = features.numel() * (num_clips or 1)
    if max(clip_elements, queue.numel()) > MAX_KERNEL_ELEMENTS:
        return False
    return implementation_for(features.device.type)[0] in ("triton", "triton-interpreter")


def _on_device(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' device."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------------------
# Validation


def check_region_infonce_inputs(clip_q, clip_k, regions_q, regions_k, queue, tau):
    """Validate every argument; returns (regions_q, regions_k) as int64 on the clips' device.
    Raises ValueError naming the argument."""
    _check_features(clip_q, "clip_q")
    batch, num_clips, dim = clip_q.shape
    _check_features(clip_k, "clip_k")
    _require(clip_k.shape == clip_q.shape, "clip_k", f"must have the shape of clip_q {list(clip_q.shape)}, "
             f"got {list(clip_k.shape)}")
    _require(clip_k.dtype == clip_q.dtype, "clip_k",
             f"must have the dtype of clip_q ({clip_q.dtype}), got {clip_k.dtype}")
    _require(clip_k.device == clip_q.device, "clip_k", f"must be on {clip_q.device}, got {clip_k.device}")
    _require(isinstance(queue, torch.Tensor), "queue", f"must be a tensor, got {type(queue).__name__}")
    _require(queue.dim() == 2 and queue.shape[1] == dim, "queue",
             f"must have shape [K, D={dim}], got {list(queue.shape)}")
    _require(queue.shape[0] >= 1, "queue", "must hold at least one key (K >= 1): without negatives the loss is 0")
    _require(queue.dtype in FLOAT_DTYPES, "queue", f"must have a dtype among {_names(FLOAT_DTYPES)}, got {queue.dtype}")
    _require(queue.device == clip_q.device, "queue", f"must be on {clip_q.device}, got {queue.device}")
    _require(isinstance(tau, (int, float)) and not isinstance(tau, bool) and math.isfinite(tau) and tau > 0, "tau",
             f"must be a finite number > 0, got {tau!r}")
    return (_check_regions(regions_q, "regions_q", batch, num_clips, clip_q.device),
            _check_regions(regions_k, "regions_k", batch, num_clips, clip_q.device))


def _check_features(clip, name):
    _require(isinstance(clip, torch.Tensor), name, f"must be a tensor, got {type(clip).__name__}")
    _require(clip.dim() == 3 and min(clip.shape) >= 1, name, f"must have shape [B, J, D] with no empty axis, "
             f"got {list(clip.shape)}")
    _require(clip.dtype in FLOAT_DTYPES, name, f"must have a dtype among {_names(FLOAT_DTYPES)}, got {clip.dtype}")


def _check_regions(regions, name, batch, num_clips, device) -> torch.Tensor:
    _require(isinstance(regions, torch.Tensor), name, f"must be a tensor, got {type(regions).__name__}")
    _require(regions.dtype in (torch.int32, torch.int64), name, f"must be int32 or int64, got {regions.dtype}")
    _require(regions.shape == (batch, 2), name, f"must have shape [B={batch}, 2], got {list(regions.shape)}")
    _require(regions.device.type == "cpu" or regions.device == device, name,
             f"must be on the CPU or on {device}, got {regions.device}")
    if not torch.compiler.is_compiling():
        values = regions.detach().cpu()
        first, last = values[:, 0], values[:, 1]
        outside = (first < 0) | (last > num_clips - 1) | (first > last)                 # [B]
        if bool(outside.any()):   # the message only when needed: building it costs more than the check
            bad = int(outside.nonzero()[0])
            raise ValueError(f"{name}: region [{bad}] = {values[bad].tolist()}: every region [s, e] must satisfy "
                             f"0 <= s <= e <= J - 1 = {num_clips - 1}")
    return regions.to(device=device, dtype=torch.int64, non_blocking=True)   # a blocking copy would sync the GPU


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{name}: {message}")


def _names(dtypes) -> str:
    return ", ".join(str(d) for d in dtypes)
