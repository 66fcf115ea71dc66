"""Helpers for the data tests: frames that carry their own index, and a PyAV video writer."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

_LEVELS = 6           # grey levels per stripe
_STRIPES = 3          # stripes per frame: frame ids 0 .. 6**3 - 1

#: Presentation times (ms) of the variable frame rate video: gaps, bursts and a long hold.
VFR_PTS_MS = [0, 40, 80, 200, 210, 220, 500, 540, 900, 1000]


def id_frame(i: int, height: int = 48, width: int = 96) -> np.ndarray:
    """A frame that encodes the integer i as three flat grey stripes (base 6): uint8 [H, W, 3]."""
    frame = np.empty((height, width, 3), np.uint8)
    for s in range(_STRIPES):
        digit = (i // _LEVELS ** s) % _LEVELS
        frame[:, s * width // _STRIPES:(s + 1) * width // _STRIPES] = 30 + 40 * digit
    return frame


def read_ids(frames: torch.Tensor) -> list[int]:
    """Invert id_frame on decoded frames [T, H, W, 3] (any size; lossy coding tolerated)."""
    _, h, w, _ = frames.shape
    ids = torch.zeros(frames.shape[0], dtype=torch.long)
    for s in range(_STRIPES):
        lo, hi = s * w // _STRIPES, (s + 1) * w // _STRIPES
        inner = frames[:, h // 4:3 * h // 4, lo + (hi - lo) // 4:hi - (hi - lo) // 4].float()
        digit = ((inner.mean(dim=(1, 2, 3)) - 30) / 40).round().long().clamp(0, _LEVELS - 1)
        ids += digit * _LEVELS ** s
    return ids.tolist()


def write_video(path: Path, frames: np.ndarray, pts: list[int], time_base: Fraction, *, fmt: str = "mp4",
                codec: str = "libx264", gop: int = 12, options: dict | None = None,
                constant_rate: bool = True, pix_fmt: str = "yuv420p", codec_options: dict | None = None,
                display: tuple[int, bool, bool] | None = None) -> Path:
    """Write uint8 frames [T, H, W, 3] with the given presentation timestamps (in time_base units).

    constant_rate: declare 1 / time_base as the stream's frame rate (False for variable frame rate).
    display: (degrees counter-clockwise, hflip, vflip) written as the stream's display matrix (as phones do).
    """
    import av

    with av.open(str(path), mode="w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=(1 / time_base) if constant_rate else None,
                                      options=codec_options or {})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if display is not None:
            degrees, hflip, vflip = display
            stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = 1
        for rgb, p in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = p, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
