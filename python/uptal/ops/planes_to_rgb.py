"""Packed RGB rows from the three planes of a planar frame: the decoder's last conversion step.

swscale scales into planar RGB faster than into packed rgb24 (uptal/data/decode.py), so every resized frame is
interleaved here, into its row of the batch. Not a torch op: it runs on numpy views inside the decoder, once per
frame, where a torch dispatch would cost more than the work.
  uptal._C  a plain loop the compiler turns into byte shuffles (13-19 us per 128 x 171 frame on the CPU
            machine, Python's share included)
  numpy     `planes_to_rgb_ref`: three strided copies (32-46 us), the twin and the fallback
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _native


def planes_to_rgb(planes: Sequence[Any], height: int, width: int, out: np.ndarray) -> np.ndarray:
    """Write `out` [height, width, 3] uint8 from `planes` = (R, G, B), each a buffer of at least `height` rows
    `plane.line_size` bytes apart (PyAV's VideoPlane: FFmpeg pads rows); returns `out`."""
    _check(planes, height, width, out)
    packed_pixels = out.strides[1:] == (3, 1) and out.strides[0] >= 3 * width
    if _native.CPU.loaded and packed_pixels and out.flags.writeable:
        red, green, blue = planes
        _native.CPU.module.planes_to_rgb(red.buffer_ptr, red.line_size, green.buffer_ptr, green.line_size,
                                         blue.buffer_ptr, blue.line_size, height, width, out.ctypes.data,
                                         out.strides[0])
        return out
    return planes_to_rgb_ref(planes, height, width, out)


def planes_to_rgb_ref(planes: Sequence[Any], height: int, width: int, out: np.ndarray) -> np.ndarray:
    """`planes_to_rgb` in numpy, into `out` of any strides."""
    for channel, plane in enumerate(planes):
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)[:height]   # [H, line_size]
        out[:, :, channel] = rows[:, :width]
    return out


def implementation_for(device_type: str) -> tuple[str, str]:
    """(implementation, why) for `uptal info`; frames decode on the CPU whatever device trains on them, so
    `device_type` changes nothing."""
    if _native.CPU.loaded:
        return "cpp", "uptal._C (the decoder's conversion runs on the CPU)"
    return "numpy", f"uptal._C {_native.CPU.reason}"


def _check(planes, height, width, out) -> None:
    """ValueError naming the argument: the native loop trusts every size it is given."""
    if len(planes) != 3:
        raise ValueError(f"planes must be (R, G, B), got {len(planes)} planes")
    if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (height, width, 3)):
        raise ValueError(f"out must be a uint8 array of shape {(height, width, 3)}, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
    for name, plane in zip("RGB", planes):
        if plane.line_size < width or plane.buffer_size < plane.line_size * (height - 1) + width:
            raise ValueError(f"planes: the {name} plane ({plane.buffer_size} bytes, rows {plane.line_size} apart) "
                             f"does not hold {height} rows of {width} pixels")
