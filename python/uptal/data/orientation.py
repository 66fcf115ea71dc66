"""Display orientation: how a container asks players to turn or mirror the frames it stores.

Phones store a portrait video as landscape frames plus a display matrix (the MP4 `tkhd` matrix, which FFmpeg
hands out as DISPLAYMATRIX side data of every decoded frame) that says how to turn them for display; the
decoder itself returns the frames as stored. uptal applies the matrix, as the ffmpeg tool and video players
do, so a portrait video comes out upright: `PyAVDecoder.decode_window` returns displayed frames,
`VideoInfo.height/width` is the displayed size, and `uptal data transcode` writes upright copies.

The matrix (FFmpeg's layout: nine int32 [a b u; c d v; x y w], a..d in 16.16 fixed point) maps a stored pixel
at column p, row q to the displayed point (a p + c q + x, b p + d q + y). When it is axis-aligned (one of the
eight turns and mirrors of a rectangle: b = c = 0, or a = d = 0) it is a transposition and/or reversals of
rows and columns, which is what `Orientation` holds. Other angles are rare; uptal leaves such frames as stored
(the ffmpeg tool turns them by the angle and fills the corners with black).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Orientation", "UPRIGHT", "frame_orientation", "orientation_from_matrix"]


@dataclass(frozen=True)
class Orientation:
    """Displayed image from a stored one: transpose (rows <-> columns) first, then reverse rows and/or columns.

    transpose: displayed rows are stored columns (a quarter turn; the displayed size is the stored size swapped).
    flip_rows: the rows of the (transposed) image are reversed: it is shown upside down.
    flip_cols: the columns of the (transposed) image are reversed: it is shown mirrored.
    """

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @property
    def upright(self) -> bool:
        """True when the stored frames are displayed as they are."""
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def displayed_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) on display of a stored height x width frame. Swapping is its own inverse, so this
        is also the stored size of a frame displayed at height x width."""
        return (width, height) if self.transpose else (height, width)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The displayed view (no copy) of a stored [H, W, ...] image: [H, W, ...] or [W, H, ...]."""
        if self.transpose:
            image = image.swapaxes(0, 1)
        if self.flip_rows:
            image = image[::-1]
        if self.flip_cols:
            image = image[:, ::-1]
        return image


UPRIGHT = Orientation()


def orientation_from_matrix(matrix) -> Orientation:
    """The `Orientation` of a display matrix (nine numbers in FFmpeg's layout); `UPRIGHT` when it is not an
    axis-aligned turn or mirror."""
    a, b, _, c, d, _, _, _, _ = (int(v) for v in matrix)
    if b == 0 and c == 0 and a != 0 and d != 0:   # columns stay columns: x' = a p, y' = d q
        return Orientation(transpose=False, flip_rows=d < 0, flip_cols=a < 0)
    if a == 0 and d == 0 and b != 0 and c != 0:   # a quarter turn: x' = c q, y' = b p
        return Orientation(transpose=True, flip_rows=b < 0, flip_cols=c < 0)
    return UPRIGHT


def frame_orientation(frame: Any) -> Orientation:
    """The `Orientation` of a decoded av.VideoFrame (`UPRIGHT` when it carries no display matrix)."""
    import av

    data = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
    if data is None or len(bytes(data)) != 36:
        return UPRIGHT
    return orientation_from_matrix(np.frombuffer(bytes(data), dtype=np.int32))
