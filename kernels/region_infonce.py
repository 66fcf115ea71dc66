"""Triton kernels of the region InfoNCE objective (`uptal::region_infonce`; spec: uptal/ops/region_infonce_ref.py).

For B regions, clip features [B, J, D] and a queue of K keys [K, D]:

forward
  1. _pool_normalize     one program per region: mean of the clips s..e of clip_q and of clip_k, L2-normalised
                         -> queries q, keys k [B, D], the norm of q before normalising, the positive similarity q.k
  2. _queue_lse_partial  grid (row blocks, queue splits): each program streams its share of the queue tile by tile,
                         sim = q @ tile^T, and keeps an online log-sum-exp (running max, running sum of exp) and
                         the sum of its keys, whose dot with q is the sum of the split's similarities in fp32
                         (summing the dots' TF32 similarities instead was 20x less accurate than the reference).
                         The [B, K] logits never exist in memory; splitting the queue over programs (split-K) fills
                         the GPU even when B is small.
  3. _combine            one program per region merges the splits with the positive -> loss of the row, stats
backward
  4. _queue_grad         same grid as 2: recomputes each logit tile, p = exp(logit - lse), accumulates p @ tile
                         into sum_k p_k queue_k [B, D] (fp32 atomics across splits; one split is deterministic)
  5. _region_backward    one program per region: dq = (sum_k p_k queue_k + (p_pos - 1) k) * grad / (tau B), back
                         through the normalisation and the region mean into d clip_q [B, J, D]

Everything is computed in fp32: bf16/fp16 loads are cast before tl.dot (the CPU interpreter gets low-precision dots
wrong); the dots are plain fp32 (tensor cores off), or TF32 for bfloat16 features (see dot_precision).
Logits are taken relative to the positive, (sim - q.k) * log2(e) / tau, in base 2 (exp2/log2). Relative to the
positive, the logits that carry the probability mass are small numbers, so fp32 rounds them finely: with absolute
logits of magnitude 1 / tau the backward's softmax was measurably less accurate than the reference's. For the same
reason the residual kept for backward is the row's loss (lse - positive logit, natural units), not its lse.
Inputs must be contiguous; uptal.ops validates everything before a kernel runs. Region bounds are clamped into
[0, J - 1] here only so that a compiled graph (where the Python range check cannot run) never reads out of bounds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

EPS = tl.constexpr(1e-12)          # F.normalize's eps: x / max(|x|, eps)
LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)
# Fused multiply-adds, stated rather than left to TRITON_DEFAULT_FP_FUSION (whose default changes in Triton 3.10).
FP_FUSION = dict(enable_fp_fusion=True)

# GPU tiles for D <= 128 per (dot precision, backward?): (block_b, block_k, num_warps, num_stages). Chosen without a
# GPU by compiling for sm_90 (triton.compile with GPUTarget("cuda", 90, 32), then cuobjdump -res-usage): the largest
# tiles that fit the 227 KB of shared memory and do not spill registers. Not timed: tune them on a GPU.
GPU_TILES = {
    ("tf32", False): (64, 64, 8, 3),    # 118 registers, 64 KB shared memory
    ("tf32", True): (64, 64, 8, 3),     # 226 registers, 96 KB
    ("ieee", False): (32, 64, 8, 3),    # 136 registers, 81 KB (most other shapes spill: fp32 dots need registers)
    ("ieee", True): (64, 32, 8, 3),     # 140 registers, 72 KB
}


@dataclass(frozen=True)
class Tiling:
    block_b: int          # query rows per program
    block_k: int          # queue keys per tile
    block_d: int          # a whole feature row per program, padded to a power of two
    splits: int           # programs along the queue for each block of rows
    tiles_per_split: int
    num_warps: int
    num_stages: int
    precision: str        # tl.dot input_precision for the fp32 operands


def dot_precision(clip_dtype: torch.dtype) -> str:
    """TF32 suffices for bfloat16 features, whose own rounding (8 bits) is coarser than TF32's (11 bits): emulated
    at B=512, K=16384, D=128, the row losses' and gradient's errors grow by at most 2% over the bf16 reference's,
    and an H200 measured the same. fp32 and fp16 features need fp32 dots: with 3xTF32 the row losses' error on an
    H200 was 3.6x (B=70, K=1000) and 4x (B=512, K=16384) the fp32 reference's. The queue matmuls are small
    (2 B K D flops each way), so giving up the tensor cores for fp32 features costs little."""
    if clip_dtype == torch.bfloat16 and not torch.version.hip:
        return "tf32"
    return "ieee"


def choose_tiling(batch: int, num_keys: int, dim: int, device: torch.device, clip_dtype: torch.dtype,
                  backward: bool, max_splits: int | None = None) -> Tiling:
    """Fixed tiles (no autotuning) and enough queue splits for about two programs per SM.

    `max_splits=1` makes the backward deterministic (no atomics race) at the cost of parallelism.
    """
    precision = dot_precision(clip_dtype)
    block_d = max(16, triton.next_power_of_2(dim))
    if INTERPRETED:  # the interpreter's cost grows with tile area; small tiles exercise the tiling at test sizes
        block_b, block_k, num_warps, num_stages, target_programs = 16, 16, 4, 1, 4
    else:
        block_b, block_k, num_warps, num_stages = GPU_TILES[precision, backward]
        shrink = max(1, block_d // 128)  # wider rows: fewer of them per tile, to keep registers and shared memory
        block_b, block_k = max(16, block_b // shrink), max(16, block_k // shrink)
        num_stages = min(num_stages, 2) if shrink > 1 else num_stages
        target_programs = 2 * torch.cuda.get_device_properties(device).multi_processor_count
    block_b = min(block_b, max(16, triton.next_power_of_2(batch)))
    row_blocks = triton.cdiv(batch, block_b)
    tiles = triton.cdiv(num_keys, block_k)
    splits = min(tiles, max(1, triton.cdiv(target_programs, row_blocks)), max_splits or tiles)
    tiles_per_split = triton.cdiv(tiles, splits)
    splits = triton.cdiv(tiles, tiles_per_split)  # so that no split is empty
    return Tiling(block_b, block_k, block_d, splits, tiles_per_split, num_warps, num_stages, precision)


# ---------------------------------------------------------------------------------------------------------
# Launchers (torch tensors in, torch tensors out)


def forward(clip_q, clip_k, regions_q, regions_k, queue, tau: float, tiling: Tiling):
    """-> loss [], stats [3] (positive similarity, negative similarity, accuracy), keys [B, D], and the residuals
    for backward: queries [B, D], query_norms [B], row_losses [B]. All fp32."""
    batch, num_clips, dim = clip_q.shape
    num_keys = queue.shape[0]
    f32 = dict(dtype=torch.float32, device=clip_q.device)
    queries, keys = torch.empty(batch, dim, **f32), torch.empty(batch, dim, **f32)
    query_norms, positives = torch.empty(batch, **f32), torch.empty(batch, **f32)
    _pool_normalize_kernel[(batch,)](clip_q, clip_k, regions_q, regions_k, queries, keys, query_norms, positives,
                                     num_clips, dim, BLOCK_J=triton.next_power_of_2(num_clips),
                                     BLOCK_D=tiling.block_d, **FP_FUSION)

    scale = LOG2E.value / tau
    partials = torch.empty(3, tiling.splits, batch, **f32)  # running max, sum of exp2, sum of similarities
    grid = (triton.cdiv(batch, tiling.block_b), tiling.splits)
    _queue_lse_partial_kernel[grid](queries, queue, positives, partials, batch, num_keys, dim, scale,
                                    tiling.tiles_per_split,
                                    BLOCK_B=tiling.block_b, BLOCK_K=tiling.block_k, BLOCK_D=tiling.block_d,
                                    PRECISION=tiling.precision, num_warps=tiling.num_warps,
                                    num_stages=tiling.num_stages, **FP_FUSION)

    row_losses = torch.empty(batch, **f32)
    row_stats = torch.empty(batch, 3, **f32)  # positive similarity, mean negative similarity, correct
    _combine_kernel[(batch,)](partials, positives, row_losses, row_stats, batch, num_keys, tiling.splits,
                              BLOCK_S=triton.next_power_of_2(tiling.splits), **FP_FUSION)
    return row_losses.mean(), row_stats.mean(0), keys, queries, query_norms, row_losses


def backward(grad_loss, regions_q, queries, query_norms, keys, queue, row_losses, tau: float, num_clips: int,
             clip_dtype: torch.dtype, tiling: Tiling) -> torch.Tensor:
    """d loss / d clip_q [B, J, D] in `clip_dtype` (zero outside each region)."""
    batch, dim = queries.shape
    num_keys = queue.shape[0]
    scale = LOG2E.value / tau
    weighted_keys = torch.zeros_like(queries)  # [B, D]: sum_k softmax_k queue_k, accumulated across splits
    grid = (triton.cdiv(batch, tiling.block_b), tiling.splits)
    _queue_grad_kernel[grid](queries, keys, queue, row_losses, weighted_keys, batch, num_keys, dim, scale,
                             tiling.tiles_per_split,
                             BLOCK_B=tiling.block_b, BLOCK_K=tiling.block_k, BLOCK_D=tiling.block_d,
                             PRECISION=tiling.precision, num_warps=tiling.num_warps, num_stages=tiling.num_stages,
                             **FP_FUSION)
    grad_clip = torch.empty(batch, num_clips, dim, dtype=clip_dtype, device=queries.device)
    _region_backward_kernel[(batch,)](grad_loss, regions_q, queries, query_norms, keys, row_losses, weighted_keys,
                                      grad_clip, batch, num_clips, dim, 1.0 / tau,
                                      BLOCK_J=triton.next_power_of_2(num_clips), BLOCK_D=tiling.block_d, **FP_FUSION)
    return grad_clip


# ---------------------------------------------------------------------------------------------------------
# Kernels


@triton.jit
def _clamped_region(region_ptr, J):
    first = tl.maximum(tl.load(region_ptr), 0).to(tl.int32)
    last = tl.minimum(tl.load(region_ptr + 1), J - 1).to(tl.int32)
    return first, last


@triton.jit
def _region_unit_vector(clip_ptr, region_ptr, b, J, D, d, in_dim, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr):
    """Mean of clips first..last of region b, L2-normalised; also returns the norm before normalising."""
    first, last = _clamped_region(region_ptr + 2 * b, J)
    j = tl.arange(0, BLOCK_J)
    inside = (j >= first) & (j <= last)                                                  # [BLOCK_J]
    clips = tl.load(clip_ptr + (b * J + j[:, None]) * D + d[None, :], mask=inside[:, None] & in_dim[None, :],
                    other=0.0).to(tl.float32)                                            # [BLOCK_J, BLOCK_D]
    mean = tl.sum(clips, axis=0) / (last - first + 1).to(tl.float32)                     # [BLOCK_D]
    norm = tl.sqrt(tl.sum(mean * mean, axis=0))
    return mean / tl.maximum(norm, EPS), norm


@triton.jit
def _pool_normalize_kernel(clip_q, clip_k, regions_q, regions_k, queries, keys, query_norms, positives, J, D,
                           BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0)
    d = tl.arange(0, BLOCK_D)
    in_dim = d < D
    q, q_norm = _region_unit_vector(clip_q, regions_q, b, J, D, d, in_dim, BLOCK_J, BLOCK_D)
    k, _ = _region_unit_vector(clip_k, regions_k, b, J, D, d, in_dim, BLOCK_J, BLOCK_D)
    tl.store(queries + b * D + d, q, mask=in_dim)
    tl.store(keys + b * D + d, k, mask=in_dim)
    tl.store(query_norms + b, q_norm)
    tl.store(positives + b, tl.sum(q * k, axis=0))


@triton.jit
def _load_query_block(queries, B, D, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    d = tl.arange(0, BLOCK_D)
    q = tl.load(queries + rows[:, None] * D + d[None, :], mask=(rows[:, None] < B) & (d[None, :] < D),
                other=0.0)  # [BLOCK_B, BLOCK_D]; padding rows are zero and never stored
    return rows, d, q


@triton.jit
def _split_range(K, tiles_per_split, BLOCK_K: tl.constexpr):
    first_key = tl.program_id(1) * tiles_per_split * BLOCK_K
    return first_key, tl.minimum(first_key + tiles_per_split * BLOCK_K, K)


@triton.jit
def _load_queue_tile(queue, start, end_key, D, d, BLOCK_K: tl.constexpr):
    key_index = start + tl.arange(0, BLOCK_K)
    valid = key_index < end_key
    tile = tl.load(queue + key_index[:, None] * D + d[None, :], mask=valid[:, None] & (d[None, :] < D), other=0.0)
    return tile.to(tl.float32), valid  # [BLOCK_K, BLOCK_D], [BLOCK_K]


@triton.jit
def _queue_lse_partial_kernel(queries, queue, positives, partials, B, K, D, scale, tiles_per_split,
                              BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                              PRECISION: tl.constexpr):
    rows, d, q = _load_query_block(queries, B, D, BLOCK_B, BLOCK_D)
    in_batch = rows < B
    positive = tl.load(positives + rows, mask=in_batch, other=0.0)
    first_key, end_key = _split_range(K, tiles_per_split, BLOCK_K)
    running_max = tl.full([BLOCK_B], float("-inf"), dtype=tl.float32)
    running_sum = tl.zeros([BLOCK_B], dtype=tl.float32)
    key_sum = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(first_key, end_key, BLOCK_K):
        tile, valid = _load_queue_tile(queue, start, end_key, D, d, BLOCK_K)
        similarity = tl.dot(q, tl.trans(tile), input_precision=PRECISION)  # [BLOCK_B, BLOCK_K]
        logit = tl.where(valid[None, :], (similarity - positive[:, None]) * scale, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(logit, axis=1))
        running_sum = running_sum * tl.exp2(running_max - new_max) + tl.sum(tl.exp2(logit - new_max[:, None]), axis=1)
        running_max = new_max
        key_sum += tl.sum(tile, axis=0)  # masked keys load as zeros
    split_rows = tl.program_id(1) * B + rows
    num_splits = tl.num_programs(1)
    tl.store(partials + split_rows, running_max, mask=in_batch)
    tl.store(partials + num_splits * B + split_rows, running_sum, mask=in_batch)
    tl.store(partials + 2 * num_splits * B + split_rows, tl.sum(q * key_sum[None, :], axis=1), mask=in_batch)


@triton.jit
def _combine_kernel(partials, positives, row_losses, row_stats, B, K, num_splits, BLOCK_S: tl.constexpr):
    b = tl.program_id(0)
    split = tl.arange(0, BLOCK_S)
    present = split < num_splits
    split_max = tl.load(partials + split * B + b, mask=present, other=float("-inf"))
    split_sum = tl.load(partials + (num_splits + split) * B + b, mask=present, other=0.0)
    split_similarity = tl.load(partials + (2 * num_splits + split) * B + b, mask=present, other=0.0)
    negative_max = tl.max(split_max, axis=0)  # base-2 logits relative to the positive, whose own logit is 0
    top = tl.maximum(negative_max, 0.0)
    total = tl.sum(split_sum * tl.exp2(split_max - top), axis=0) + tl.exp2(-top)
    tl.store(row_losses + b, (top + tl.log2(total)) * LN2)  # lse - positive logit
    tl.store(row_stats + 3 * b, tl.load(positives + b))
    tl.store(row_stats + 3 * b + 1, tl.sum(split_similarity, axis=0) / K)
    tl.store(row_stats + 3 * b + 2, (negative_max < 0.0).to(tl.float32))


@triton.jit
def _queue_grad_kernel(queries, keys, queue, row_losses, weighted_keys, B, K, D, scale, tiles_per_split,
                       BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                       PRECISION: tl.constexpr):
    rows, d, q = _load_query_block(queries, B, D, BLOCK_B, BLOCK_D)
    _, _, k = _load_query_block(keys, B, D, BLOCK_B, BLOCK_D)
    in_batch = rows < B
    positive = tl.sum(q * k, axis=1)                                                    # [BLOCK_B]
    row_loss = tl.load(row_losses + rows, mask=in_batch, other=0.0) * LOG2E            # [BLOCK_B]
    first_key, end_key = _split_range(K, tiles_per_split, BLOCK_K)
    accumulated = tl.zeros([BLOCK_B, BLOCK_D], dtype=tl.float32)
    for start in range(first_key, end_key, BLOCK_K):
        tile, valid = _load_queue_tile(queue, start, end_key, D, d, BLOCK_K)
        similarity = tl.dot(q, tl.trans(tile), input_precision=PRECISION)  # [BLOCK_B, BLOCK_K]
        # p = exp(logit - lse) = exp2((sim - positive) * scale - row loss)
        exponent = (similarity - positive[:, None]) * scale - row_loss[:, None]
        probability = tl.where(valid[None, :], tl.exp2(exponent), 0.0)
        accumulated = tl.dot(probability, tile, accumulated, input_precision=PRECISION)  # [BLOCK_B, BLOCK_D]
    tl.atomic_add(weighted_keys + rows[:, None] * D + d[None, :], accumulated,
                  mask=in_batch[:, None] & (d[None, :] < D))


@triton.jit
def _region_backward_kernel(grad_loss, regions_q, queries, query_norms, keys, row_losses, weighted_keys, grad_clip,
                            B, J, D, inv_tau, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0)
    d = tl.arange(0, BLOCK_D)
    in_dim = d < D
    q = tl.load(queries + b * D + d, mask=in_dim, other=0.0)
    k = tl.load(keys + b * D + d, mask=in_dim, other=0.0)
    positive_probability = tl.exp(-tl.load(row_losses + b))
    # d loss / d q for the normalised query q (mean over B regions, logits / tau)
    grad_q = (tl.load(weighted_keys + b * D + d, mask=in_dim, other=0.0) + (positive_probability - 1.0) * k) \
        * (tl.load(grad_loss).to(tl.float32) * inv_tau / B)
    # through q = u / max(|u|, eps): the radial component drops out only where the norm is not clamped
    norm = tl.load(query_norms + b)
    radial = tl.where(norm > EPS, tl.sum(q * grad_q, axis=0), 0.0)
    grad_mean = (grad_q - q * radial) / tl.maximum(norm, EPS)
    # through the mean over clips first..last: each clip inside gets an equal share, the others nothing
    first, last = _clamped_region(regions_q + 2 * b, J)
    share = grad_mean / (last - first + 1).to(tl.float32)                                # [BLOCK_D]
    j = tl.arange(0, BLOCK_J)
    inside = (j >= first) & (j <= last)                                                  # [BLOCK_J]
    grad = tl.where(inside[:, None], share[None, :], 0.0)                                # [BLOCK_J, BLOCK_D]
    tl.store(grad_clip + (b * J + j[:, None]) * D + d[None, :], grad.to(grad_clip.dtype.element_ty),
             mask=(j[:, None] < J) & in_dim[None, :])


# @triton.jit chose, when this module was imported, between compiled and interpreted (TRITON_INTERPRET=1) kernels.
INTERPRETED = isinstance(_pool_normalize_kernel, InterpretedFunction)
