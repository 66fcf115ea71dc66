"""`uptal::synthesize`: PAL synthetic clips from uint8 source videos and a packed plan.

Three implementations of one function, chosen per device:
  cpu   uptal._C (C++17, OpenMP; threads = torch.get_num_threads()), else the reference
  cuda  uptal._C_cuda on the current stream, else the reference
  other the reference (synthesize_ref.py, the specification)
All arguments are validated here, in Python, before any kernel runs: a bad argument is a ValueError that
names it, never a crash or an out-of-bounds read.
"""
from __future__ import annotations

from typing import Any, NoReturn, Sequence

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
    kernel: contiguous, int32/float32, on the videos' device. Raises ValueError naming the argument.
    It runs on the host before every call (on a GPU, between launches), so the checks that pass are whole-array
    numpy operations and format no message."""
    if not isinstance(videos, torch.Tensor):
        _fail("videos", f"must be a tensor, got {type(videos).__name__}")
    if videos.dtype != torch.uint8:
        _fail("videos", f"must be uint8, got {videos.dtype}")
    if videos.dim() != 5 or videos.shape[-1] != 3:
        _fail("videos", f"must have shape [N, T, H, W, 3], got {list(videos.shape)}")
    num_videos, max_frames, height, width, _ = videos.shape
    if num_videos < 1:
        _fail("videos", "is an empty batch (N = 0)")
    if min(max_frames, height, width) < 1:
        _fail("videos", f"has an empty axis: {list(videos.shape)}")
    if height * width * 3 > MAX_FRAME_BYTES:
        _fail("videos", f"frames of {height} x {width} pixels hold {height * width * 3} bytes, more than the "
                        f"kernels' 32-bit offsets within a frame allow ({MAX_FRAME_BYTES})")
    if not (isinstance(size, int) and 1 <= size <= MAX_SIZE):
        _fail("size", f"must be an int in [1, {MAX_SIZE}], got {size!r}")
    if out_dtype not in OUT_DTYPE_CODES:
        _fail("out_dtype", f"must be one of {', '.join(map(str, OUT_DTYPE_CODES))}, got {out_dtype}")

    lengths = _check_lengths(lengths, num_videos, max_frames)
    sources = _as_cpu_tensor(sources, "sources", (torch.int32, torch.int64))
    frames = _as_cpu_tensor(frames, "frames", (torch.int32, torch.int64))
    params = _as_cpu_tensor(params, "params", (torch.float32,))
    norm = _as_cpu_tensor(norm, "norm", (torch.float32,))

    if sources.dim() != 2 or sources.shape[1] != 2:
        _fail("sources", f"must have shape [M, 2], got {list(sources.shape)}")
    num_outputs = sources.shape[0]
    if num_outputs < 1:
        _fail("sources", "is an empty plan (M = 0)")
    if frames.dim() != 3 or frames.shape[0] != num_outputs or frames.shape[1] != 2 or frames.shape[2] < 1:
        _fail("frames", f"must have shape [M={num_outputs}, 2, J*F], got {list(frames.shape)}")
    _check_indices(sources, frames, lengths, num_videos)
    _check_params(params, num_outputs, size, height, width)
    norm_values = norm.numpy()                                           # [2, 3] scale, shift
    if norm_values.shape != (2, 3) or not (np.isfinite(norm_values).all() and norm_values[0].all()):
        _fail("norm", f"must be a finite [2, 3] tensor of per-channel scale (non-zero) and shift, "
                      f"got {norm.tolist()}")

    # non_blocking: a blocking copy to a GPU waits until the device has finished all queued work (a host sync
    # in every training step). From pageable memory CUDA stages the bytes before the call returns, so the
    # checked CPU tensors may go right after.
    device = videos.device

    def moved(tensor, dtype=None):
        return tensor.to(device, dtype, non_blocking=True).contiguous()

    return videos.contiguous(), moved(sources, torch.int32), moved(frames, torch.int32), moved(params), moved(norm)


def _fail(name: str, message: str) -> NoReturn:
    """A bad argument: ValueError naming it. Called once a check has failed, so that checks that pass never
    format a message."""
    raise ValueError(f"{name}: {message}")


def _as_cpu_tensor(value, name, dtypes) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        _fail(name, f"must be a tensor, got {type(value).__name__}")
    if value.dtype not in dtypes:
        _fail(name, f"must have dtype {' or '.join(map(str, dtypes))}, got {value.dtype}")
    return value.detach().cpu()


def _check_lengths(lengths, num_videos, max_frames) -> np.ndarray:
    """The usable lengths as int64 [N], checked."""
    if isinstance(lengths, torch.Tensor):
        values = lengths.detach().cpu().numpy()
    else:
        values = np.asarray(list(lengths) if isinstance(lengths, Sequence) else lengths)
    if values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.integer):
        _fail("lengths", f"must hold integers, got {values.dtype}")
    if values.shape != (num_videos,):
        _fail("lengths", f"must have one entry per video ({num_videos}), got shape {list(values.shape)}")
    if not ((values >= 1) & (values <= max_frames)).all():
        video = int(np.flatnonzero((values < 1) | (values > max_frames))[0])
        _fail("lengths", f"every length must be in [1, T={max_frames}]; video {video} has {int(values[video])}")
    return values.astype(np.int64, copy=False)


def _check_indices(sources, frames, lengths, num_videos) -> None:
    sources, frames = sources.numpy(), frames.numpy()                    # [M, 2], [M, 2, JF]
    fields = ("background", "action")
    source_ok = (sources >= 0) & (sources < num_videos)
    if not source_ok.all():
        m, column = np.argwhere(~source_ok)[0].tolist()
        _fail(f"sources[:, {column}] (plan.{fields[column]})",
              f"output {m} names video {int(sources[m, column])}, outside [0, {num_videos})")
    limit = lengths[sources][:, :, None]                                 # [M, 2, 1] usable length of each source
    lowest = np.array([0, -1])[None, :, None]                            # action frames: -1 = nothing pasted
    frame_ok = (frames >= lowest) & (frames < limit)                     # [M, 2, JF]
    if not frame_ok.all():
        m, column, t = np.argwhere(~frame_ok)[0].tolist()
        rule = "-1 (nothing pasted) or " if column == 1 else ""
        _fail(f"frames[{m}, {column}, {t}] (plan.{fields[column]}_frames)",
              f"frame {int(frames[m, column, t])} must be {rule}in [0, {int(limit[m, column, 0])}), the usable "
              f"length of video {int(sources[m, column])}")


# Rules of the params columns, one per column of `_params_ok`'s verdicts and in its order: (column reported,
# plan field, what the rule asks).
_PARAM_RULES = (
    (Col.BETA, "beta", "must be in [0, 1]"),
    (Col.SCALE_Y, "crop height / size", "must be positive"),
    (Col.SCALE_X, "crop width / size", "must be positive"),
    (Col.CROP_Y0, "crop top", "the crop must lie inside the {height}x{width} frame"),
    (Col.CROP_X0, "crop left", "the crop must lie inside the {height}x{width} frame"),
    (Col.FLIP, "flip", "must be 0 or 1"),
    (Col.JITTER_ON, "jitter_on", "must be 0 or 1"),
    (Col.GRAYSCALE, "grayscale", "must be 0 or 1"),
    (Col.BLUR_ON, "blur_on", "must be 0 or 1"),
    (Col.BRIGHTNESS, "brightness", "a jitter factor must be >= 0"),
    (Col.CONTRAST, "contrast", "a jitter factor must be >= 0"),
    (Col.SATURATION, "saturation", "a jitter factor must be >= 0"),
    (Col.HUE, "hue", "the hue shift must be in [-0.5, 0.5]"),
    (Col.ORDER0, "jitter_order", "each row must be a permutation of 0, 1, 2, 3"),
    (Col.BLUR0, "blur_weights", "blur taps must be >= 0"),
)
_FLAG_COLUMNS = [Col.FLIP, Col.JITTER_ON, Col.GRAYSCALE, Col.BLUR_ON]


def _params_ok(p: np.ndarray, size: int, height: int, width: int) -> np.ndarray:
    """[M, len(_PARAM_RULES)] whether each synthetic video's parameters keep each rule. Whole columns at once:
    a few array operations for any M (the checks run before every call, on the host)."""
    beta = p[:, Col.BETA]
    scale = p[:, Col.SCALE_Y:Col.SCALE_X + 1]                            # [M, 2] crop height, width / size
    start = p[:, Col.CROP_Y0:Col.CROP_X0 + 1]                            # [M, 2] crop top, left
    extent = np.array([height + _CROP_SLACK, width + _CROP_SLACK], dtype=p.dtype)
    flags = p[:, _FLAG_COLUMNS]                                          # [M, 4]
    order = p[:, Col.ORDER0:Col.ORDER0 + 4]                              # [M, 4]
    return np.column_stack([
        (beta >= 0) & (beta <= 1),
        scale > 0,
        (start >= 0) & (start + scale * size <= extent),
        (flags == 0) | (flags == 1),
        p[:, Col.BRIGHTNESS:Col.SATURATION + 1] >= 0,
        np.abs(p[:, Col.HUE]) <= 0.5,
        (np.sort(order, axis=1) == np.arange(4, dtype=p.dtype)).all(axis=1),
        (p[:, Col.BLUR0:] >= 0).all(axis=1),
    ])


def _check_params(params, num_outputs, size, height, width) -> None:
    num_columns = params.shape[1] if params.dim() == 2 else -1
    taps = num_columns - NUM_FIXED_COLUMNS
    if params.dim() != 2 or params.shape[0] != num_outputs or taps < 1 or taps % 2 != 1:
        _fail("params", f"must have shape [M={num_outputs}, {NUM_FIXED_COLUMNS} + blur taps (odd)], "
                        f"got {list(params.shape)}")
    p = params.numpy()                                                   # [M, P] float32, shares params
    if not np.isfinite(p).all():
        _fail("params", "holds a non-finite value")
    radius = blur_radius(num_columns)
    if radius >= size:
        _fail("params", f"blur radius {radius} must be smaller than size {size} (reflect padding)")
    ok = _params_ok(p, size, height, width)                              # [M, rules]
    if not ok.all():
        m, rule = np.argwhere(~ok)[0].tolist()
        col, name, message = _PARAM_RULES[rule]
        _fail(f"params[{m}, {col}] (plan.{name}) = {float(p[m, col])!r}", message.format(height=height, width=width))


def _check_out(out, videos, num_outputs, frames_per_video, size, out_dtype) -> None:
    expected = (num_outputs, 3, frames_per_video, size, size)
    if not isinstance(out, torch.Tensor):
        _fail("out", f"must be a tensor, got {type(out).__name__}")
    if tuple(out.shape) != expected:
        _fail("out", f"must have shape {list(expected)}, got {list(out.shape)}")
    if out.dtype != out_dtype:
        _fail("out", f"must have dtype {out_dtype}, got {out.dtype}")
    if out.device != videos.device:
        _fail("out", f"must be on {videos.device}, got {out.device}")
    if not out.is_contiguous():
        _fail("out", "must be contiguous")
    # traced (fake) tensors have no memory to compare
    if not torch.compiler.is_compiling() and _overlap(out, videos):
        _fail("out", "must not overlap videos (the op reads them while it writes)")


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the memory spans of two tensors overlap (spans, not elements: conservative for strided views)."""
    if a.numel() == 0 or b.numel() == 0 or a.device != b.device:
        return False
    spans = [(t.data_ptr(), t.data_ptr() + (sum(s * (n - 1) for s, n in zip(t.stride(), t.shape)) + 1)
              * t.element_size()) for t in (a, b)]
    (a_start, a_end), (b_start, b_end) = spans
    return a_start < b_end and b_start < a_end
