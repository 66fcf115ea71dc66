"""`uptal::synthesize`: PAL synthetic clips from uint8 source videos and a packed plan.

Three implementations of one function, chosen per device:
  cpu   uptal._C (C++17, OpenMP; threads = torch.get_num_threads()), else the reference
  cuda  uptal._C_cuda on the current stream, else the reference
  other the reference (synthesize_ref.py, the specification)
All arguments are validated here, in Python, before any kernel runs: a bad argument is a ValueError that
names it, never a crash or an out-of-bounds read.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from . import _native
from .synthesize_layout import NUM_FIXED_COLUMNS, Col, blur_radius
from .synthesize_ref import synthesize_ref

OUT_DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.uint8: 2}
_CROP_SLACK = 1e-3  # float32 rounding of crop boxes, in source pixels
MAX_SIZE = 2048     # the kernels' exact contrast mean divides by size * size * 256 in 32-bit int
MAX_FRAME_BYTES = 2**31 - 1     # the native kernels address bytes within one frame with int32


# ---------------------------------------------------------------------------------------------------------
# Public entry points


def synthesize(videos: torch.Tensor, lengths: Any, plan: Any, out_dtype: torch.dtype = torch.float32,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 videos [N, T, H, W, 3] + usable lengths [N] + a `PalPlan` -> clips [M, 3, J*F, S, S].

    `out_dtype` is float32 or bfloat16 (normalised with the plan's mean/std) or uint8 (0..255).
    `out`, when given (e.g. a pinned buffer of a DataLoader worker), receives the result and is returned.
    """
    sources, frames, params, norm = plan.packed()
    return synthesize_packed(videos, lengths, sources, frames, params, norm, plan.size, out_dtype, out)


def synthesize_packed(videos: torch.Tensor, lengths: Any, sources: torch.Tensor, frames: torch.Tensor,
                      params: torch.Tensor, norm: torch.Tensor, size: int,
                      out_dtype: torch.dtype = torch.float32, out: torch.Tensor | None = None) -> torch.Tensor:
    """`synthesize` on the packed plan tensors (see synthesize_layout.py)."""
    videos, sources, frames, params, norm = check_synthesis_inputs(
        videos, lengths, sources, frames, params, norm, size, out_dtype)
    if out is not None:
        _check_out(out, videos, sources.shape[0], frames.shape[2], size, out_dtype)
    if torch.compiler.is_compiling():
        if out is None:
            return torch.ops.uptal.synthesize(videos, sources, frames, params, norm, size, out_dtype)
        torch.ops.uptal.synthesize_into(videos, sources, frames, params, norm, size, out)
        return out
    # Eager: call the implementation directly. Going through the registered op would import torch._dynamo on
    # the first call (seconds, in every DataLoader worker) for no benefit outside a compiled graph.
    if out is None:
        out = _empty_output(videos, sources, frames, size, out_dtype)
    _run(videos, sources, frames, params, norm, size, out)
    return out


def implementation_for(device_type: str) -> tuple[str, str]:
    """(implementation, why) that `synthesize` uses for tensors on `device_type`."""
    if device_type == "cpu":
        if _native.CPU.loaded:
            threads = "OpenMP" if _native.CPU.module.openmp else "no OpenMP: 1 thread"
            return "cpp", f"uptal._C ({threads})"
        return "reference", f"uptal._C {_native.CPU.reason}"
    if device_type == "cuda":
        if not _native.CUDA.loaded:
            return "reference", f"uptal._C_cuda {_native.CUDA.reason}"
        info = _native.CUDA.module.runtime_info()
        if info["device_count"] == 0:
            return "reference", f"uptal._C_cuda loaded but sees no CUDA device ({info['error'] or 'none'})"
        return "cuda", f"uptal._C_cuda (archs {_native.CUDA.module.compiled_archs})"
    return "reference", f"no native kernel for {device_type}"


# ---------------------------------------------------------------------------------------------------------
# torch.library registration


@torch.library.custom_op("uptal::synthesize", mutates_args=())
def _synthesize_op(videos: torch.Tensor, sources: torch.Tensor, frames: torch.Tensor, params: torch.Tensor,
                   norm: torch.Tensor, size: int, out_dtype: torch.dtype) -> torch.Tensor:
    out = _empty_output(videos, sources, frames, size, out_dtype)
    _run(videos, sources, frames, params, norm, size, out)
    return out


@_synthesize_op.register_fake
def _(videos, sources, frames, params, norm, size, out_dtype):
    return videos.new_empty((sources.shape[0], 3, frames.shape[2], size, size), dtype=out_dtype)


@torch.library.custom_op("uptal::synthesize_into", mutates_args=("out",))
def _synthesize_into_op(videos: torch.Tensor, sources: torch.Tensor, frames: torch.Tensor, params: torch.Tensor,
                        norm: torch.Tensor, size: int, out: torch.Tensor) -> None:
    _run(videos, sources, frames, params, norm, size, out)


@_synthesize_into_op.register_fake
def _(videos, sources, frames, params, norm, size, out):
    return None


def _empty_output(videos, sources, frames, size, out_dtype):
    return torch.empty((sources.shape[0], 3, frames.shape[2], size, size), dtype=out_dtype, device=videos.device)


def _run(videos, sources, frames, params, norm, size, out):
    implementation, _ = implementation_for(videos.device.type)
    if implementation == "cpp":
        _native.CPU.module.synthesize(*_pointer_args(videos, sources, frames, params, norm, size, out),
                                      torch.get_num_threads())
    elif implementation == "cuda":
        workspace = torch.empty(sources.shape[0] * frames.shape[2], dtype=torch.int64, device=videos.device)
        stream = torch.cuda.current_stream(videos.device).cuda_stream
        with torch.cuda.device(videos.device):
            _native.CUDA.module.synthesize(*_pointer_args(videos, sources, frames, params, norm, size, out),
                                           workspace.data_ptr(), stream)
    else:
        out.copy_(synthesize_ref(videos, sources, frames, params, norm, size, out.dtype))


def _pointer_args(videos, sources, frames, params, norm, size, out):
    n, t, h, w, _ = videos.shape
    return (videos.data_ptr(), n, t, h, w, sources.data_ptr(), frames.data_ptr(), params.data_ptr(),
            sources.shape[0], frames.shape[2], params.shape[1], norm.data_ptr(), size, out.data_ptr(),
            OUT_DTYPE_CODES[out.dtype])


# ---------------------------------------------------------------------------------------------------------
# Validation


def check_synthesis_inputs(videos, lengths, sources, frames, params, norm, size, out_dtype):
    """Validate and normalise every argument; returns (videos, sources, frames, params, norm) ready for a
    kernel: contiguous, int32/float32, on the videos' device. Raises ValueError naming the argument."""
    _require(isinstance(videos, torch.Tensor), "videos", f"must be a tensor, got {type(videos).__name__}")
    _require(videos.dtype == torch.uint8, "videos", f"must be uint8, got {videos.dtype}")
    _require(videos.dim() == 5 and videos.shape[-1] == 3, "videos",
             f"must have shape [N, T, H, W, 3], got {list(videos.shape)}")
    num_videos, max_frames, height, width, _ = videos.shape
    _require(num_videos >= 1, "videos", "is an empty batch (N = 0)")
    _require(max_frames >= 1 and height >= 1 and width >= 1, "videos", f"has an empty axis: {list(videos.shape)}")
    _require(height * width * 3 <= MAX_FRAME_BYTES, "videos",
             f"frames of {height} x {width} pixels hold {height * width * 3} bytes, more than the kernels' 32-bit "
             f"offsets within a frame allow ({MAX_FRAME_BYTES})")
    _require(isinstance(size, int) and 1 <= size <= MAX_SIZE, "size", f"must be an int in [1, {MAX_SIZE}], got {size!r}")
    _require(out_dtype in OUT_DTYPE_CODES, "out_dtype",
             f"must be one of {', '.join(map(str, OUT_DTYPE_CODES))}, got {out_dtype}")

    lengths = _check_lengths(lengths, num_videos, max_frames)
    sources = _as_cpu_tensor(sources, "sources", (torch.int32, torch.int64))
    frames = _as_cpu_tensor(frames, "frames", (torch.int32, torch.int64))
    params = _as_cpu_tensor(params, "params", (torch.float32,))
    norm = _as_cpu_tensor(norm, "norm", (torch.float32,))

    _require(sources.dim() == 2 and sources.shape[1] == 2, "sources",
             f"must have shape [M, 2], got {list(sources.shape)}")
    num_outputs = sources.shape[0]
    _require(num_outputs >= 1, "sources", "is an empty plan (M = 0)")
    _require(frames.dim() == 3 and frames.shape[0] == num_outputs and frames.shape[1] == 2 and frames.shape[2] >= 1,
             "frames", f"must have shape [M={num_outputs}, 2, J*F], got {list(frames.shape)}")
    _check_indices(sources, frames, lengths, num_videos)
    _check_params(params, num_outputs, size, height, width)
    _require(norm.shape == (2, 3) and bool(torch.isfinite(norm).all()) and bool((norm[0] != 0).all()), "norm",
             f"must be a finite [2, 3] tensor of per-channel scale (non-zero) and shift, got {norm.tolist()}")

    # non_blocking: a blocking copy to a GPU waits until the device has finished all queued work (a host sync
    # in every training step). From pageable memory CUDA stages the bytes before the call returns, so the
    # checked CPU tensors may go right after.
    device = videos.device

    def moved(tensor, dtype=None):
        return tensor.to(device, dtype, non_blocking=True).contiguous()

    return videos.contiguous(), moved(sources, torch.int32), moved(frames, torch.int32), moved(params), moved(norm)


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{name}: {message}")


def _as_cpu_tensor(value, name, dtypes) -> torch.Tensor:
    _require(isinstance(value, torch.Tensor), name, f"must be a tensor, got {type(value).__name__}")
    _require(value.dtype in dtypes, name, f"must have dtype {' or '.join(map(str, dtypes))}, got {value.dtype}")
    return value.detach().cpu()


def _check_lengths(lengths, num_videos, max_frames) -> torch.Tensor:
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(list(lengths) if isinstance(lengths, Sequence) else lengths)
    _require(not lengths.is_floating_point() and not lengths.is_complex() and lengths.dtype != torch.bool,
             "lengths", f"must hold integers, got {lengths.dtype}")
    lengths = lengths.detach().cpu().long()
    _require(lengths.shape == (num_videos,), "lengths",
             f"must have one entry per video ({num_videos}), got shape {list(lengths.shape)}")
    bad = ((lengths < 1) | (lengths > max_frames)).nonzero().flatten()
    _require(bad.numel() == 0, "lengths",
             f"every length must be in [1, T={max_frames}]; video {bad[:1].tolist()} has "
             f"{lengths[bad[:1]].tolist()}")
    return lengths


def _check_indices(sources, frames, lengths, num_videos) -> None:
    sources, frames, lengths = sources.long().numpy(), frames.long().numpy(), lengths.numpy()
    for column, field in ((0, "background"), (1, "action")):
        s = sources[:, column]
        bad = np.flatnonzero((s < 0) | (s >= num_videos))
        _require(bad.size == 0, f"sources[:, {column}] (plan.{field})",
                 f"output {bad[:1].tolist()} names video {s[bad[:1]].tolist()}, outside [0, {num_videos})")
    for column, field, allow_none in ((0, "background_frames", False), (1, "action_frames", True)):
        index = frames[:, column]                                        # [M, JF]
        limit = lengths[sources[:, column]][:, None]                     # [M, 1]
        low = -1 if allow_none else 0
        bad = np.argwhere((index < low) | (index >= limit))
        if bad.size:
            m, t = bad[0].tolist()
            video = int(sources[m, column])
            rule = "-1 (nothing pasted) or " if allow_none else ""
            raise ValueError(f"frames[{m}, {column}, {t}] (plan.{field}): frame {int(index[m, t])} must be "
                             f"{rule}in [0, {int(limit[m, 0])}), the usable length of video {video}")


def _check_params(params, num_outputs, size, height, width) -> None:
    num_columns = params.shape[1] if params.dim() == 2 else -1
    taps = num_columns - NUM_FIXED_COLUMNS
    _require(params.dim() == 2 and params.shape[0] == num_outputs and taps >= 1 and taps % 2 == 1, "params",
             f"must have shape [M={num_outputs}, {NUM_FIXED_COLUMNS} + blur taps (odd)], got {list(params.shape)}")
    p = params.numpy()                                                   # [M, P] float32, shares params
    _require(bool(np.isfinite(p).all()), "params", "holds a non-finite value")
    radius = blur_radius(num_columns)
    _require(radius < size, "params", f"blur radius {radius} must be smaller than size {size} (reflect padding)")

    def column_rule(col, name, ok, rule):
        bad = np.flatnonzero(~ok)
        if bad.size:
            m = int(bad[0])
            raise ValueError(f"params[{m}, {col}] (plan.{name}) = {float(p[m, col])!r}: {rule}")

    column_rule(Col.BETA, "beta", (p[:, Col.BETA] >= 0) & (p[:, Col.BETA] <= 1), "must be in [0, 1]")
    for col, name in ((Col.SCALE_Y, "crop height / size"), (Col.SCALE_X, "crop width / size")):
        column_rule(col, name, p[:, col] > 0, "must be positive")
    for col, name, extent, scale in ((Col.CROP_Y0, "crop top", height, Col.SCALE_Y),
                                     (Col.CROP_X0, "crop left", width, Col.SCALE_X)):
        end = p[:, col] + p[:, scale] * size
        ok = (p[:, col] >= 0) & (end <= extent + _CROP_SLACK)
        column_rule(col, name, ok, f"the crop must lie inside the {height}x{width} frame")
    for col, name in ((Col.FLIP, "flip"), (Col.JITTER_ON, "jitter_on"), (Col.GRAYSCALE, "grayscale"),
                      (Col.BLUR_ON, "blur_on")):
        column_rule(col, name, (p[:, col] == 0) | (p[:, col] == 1), "must be 0 or 1")
    for col, name in ((Col.BRIGHTNESS, "brightness"), (Col.CONTRAST, "contrast"), (Col.SATURATION, "saturation")):
        column_rule(col, name, p[:, col] >= 0, "a jitter factor must be >= 0")
    column_rule(Col.HUE, "hue", np.abs(p[:, Col.HUE]) <= 0.5, "the hue shift must be in [-0.5, 0.5]")
    order = p[:, Col.ORDER0:Col.ORDER0 + 4]
    is_permutation = (np.sort(order, axis=1) == np.arange(4, dtype=p.dtype)).all(axis=1)
    column_rule(Col.ORDER0, "jitter_order", is_permutation, "each row must be a permutation of 0, 1, 2, 3")
    column_rule(Col.BLUR0, "blur_weights", (p[:, Col.BLUR0:] >= 0).all(axis=1), "blur taps must be >= 0")


def _check_out(out, videos, num_outputs, frames_per_video, size, out_dtype) -> None:
    expected = (num_outputs, 3, frames_per_video, size, size)
    _require(isinstance(out, torch.Tensor), "out", f"must be a tensor, got {type(out).__name__}")
    _require(tuple(out.shape) == expected, "out", f"must have shape {list(expected)}, got {list(out.shape)}")
    _require(out.dtype == out_dtype, "out", f"must have dtype {out_dtype}, got {out.dtype}")
    _require(out.device == videos.device, "out", f"must be on {videos.device}, got {out.device}")
    _require(out.is_contiguous(), "out", "must be contiguous")
    if not torch.compiler.is_compiling():   # traced (fake) tensors have no memory to compare
        _require(not _overlap(out, videos), "out", "must not overlap videos (the op reads them while it writes)")


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the memory spans of two tensors overlap (spans, not elements: conservative for strided views)."""
    if a.numel() == 0 or b.numel() == 0 or a.device != b.device:
        return False
    spans = [(t.data_ptr(), t.data_ptr() + (sum(s * (n - 1) for s, n in zip(t.stride(), t.shape)) + 1)
              * t.element_size()) for t in (a, b)]
    (a_start, a_end), (b_start, b_end) = spans
    return a_start < b_end and b_start < a_end
