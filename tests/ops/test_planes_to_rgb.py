"""The decoder's planar -> packed RGB step: uptal._C's interleave against its numpy twin, and bad arguments."""
from __future__ import annotations

import numpy as np
import pytest

from uptal.data.decode import _interleave_planar_rgb
from uptal.data.orientation import Orientation
from uptal.ops import _native
from uptal.ops.planes_to_rgb import planes_to_rgb, planes_to_rgb_ref

av = pytest.importorskip("av")
native = pytest.mark.skipif(not _native.CPU.loaded, reason=f"uptal._C {_native.CPU.reason}")


def gbrp_frame(height: int, width: int, seed: int):
    """A planar G, B, R frame of random pixels, its rows padded as FFmpeg pads them."""
    from av.video.reformatter import VideoReformatter

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    return VideoReformatter().reformat(frame, width=width, height=height, format="gbrp")


def rgb_planes(frame):
    green, blue, red = frame.planes
    return red, green, blue


@native
@pytest.mark.parametrize("variant", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("height, width", [(1, 1), (2, 3), (128, 171), (37, 173), (9, 64)])
def test_native_matches_numpy(monkeypatch, variant, height, width):
    if variant not in _native.CPU.module.cpu_variants():
        pytest.skip(f"this processor does not run the {variant} build")
    monkeypatch.setenv("UPTAL_CPU_VARIANT", variant)   # each build the processor runs, not only the widest
    assert _native.CPU.module.cpu_variant() == variant
    frame = gbrp_frame(height, width, seed=height * 1000 + width)
    assert any(plane.line_size > width for plane in frame.planes) or width % 32 == 0   # padded rows
    expected = planes_to_rgb_ref(rgb_planes(frame), height, width, np.empty((height, width, 3), np.uint8))
    np.testing.assert_array_equal(expected, frame.to_ndarray(format="rgb24"))
    np.testing.assert_array_equal(planes_to_rgb(rgb_planes(frame), height, width,
                                                np.empty((height, width, 3), np.uint8)), expected)


@native
def test_native_writes_only_its_rows_of_a_wider_buffer(monkeypatch):
    frame = gbrp_frame(20, 33, seed=1)
    canvas = np.full((20, 40, 3), 7, np.uint8)
    calls = []
    native_call = _native.CPU.module.planes_to_rgb
    monkeypatch.setattr(_native.CPU.module, "planes_to_rgb", lambda *args: calls.append(args) or native_call(*args))
    out = planes_to_rgb(rgb_planes(frame), 20, 33, canvas[:, :33])   # rows 120 bytes apart, 99 written
    assert calls, "a view with packed pixels and spaced rows takes the native path"
    np.testing.assert_array_equal(out, frame.to_ndarray(format="rgb24"))
    assert (canvas[:, 33:] == 7).all()


def test_unpacked_destination_takes_the_numpy_path():
    frame = gbrp_frame(16, 24, seed=2)
    channels_first = np.zeros((3, 16, 24), np.uint8).transpose(1, 2, 0)   # [H, W, 3] with strides (24, 1, 384)
    out = planes_to_rgb(rgb_planes(frame), 16, 24, channels_first)
    assert out is channels_first
    np.testing.assert_array_equal(out, frame.to_ndarray(format="rgb24"))


def test_decoder_turns_rotated_frames_after_the_interleave():
    frame = gbrp_frame(6, 10, seed=3)
    quarter_turn = Orientation(transpose=True, flip_cols=True)
    expected = quarter_turn.apply(frame.to_ndarray(format="rgb24"))
    np.testing.assert_array_equal(_interleave_planar_rgb(frame, None, quarter_turn), expected)
    into = np.empty((10, 6, 3), np.uint8)
    assert _interleave_planar_rgb(frame, into, quarter_turn) is into
    np.testing.assert_array_equal(into, expected)


@pytest.mark.parametrize("make_args, name", [
    (lambda f: (rgb_planes(f)[:2], 8, 12, np.empty((8, 12, 3), np.uint8)), "planes"),
    (lambda f: (rgb_planes(f), 8, 12, np.empty((8, 12, 4), np.uint8)), "out"),
    (lambda f: (rgb_planes(f), 8, 12, np.empty((8, 12, 3), np.float32)), "out"),
    (lambda f: (rgb_planes(f), 16, 12, np.empty((16, 12, 3), np.uint8)), "planes"),   # more rows than held
    (lambda f: (rgb_planes(f), 8, 200, np.empty((8, 200, 3), np.uint8)), "planes"),   # wider than a row
])
def test_bad_arguments_name_themselves(make_args, name):
    with pytest.raises(ValueError, match=name):
        planes_to_rgb(*make_args(gbrp_frame(8, 12, seed=4)))
