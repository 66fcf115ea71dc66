"""Videos with a display matrix (phones store portrait video as landscape frames plus a turn): decoded,
probed and transcoded as displayed."""
from __future__ import annotations

import itertools
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from datahelpers import write_video

from uptal.data import PyAVDecoder, decode_window, probe
from uptal.data.orientation import UPRIGHT, Orientation, frame_orientation, orientation_from_matrix
from uptal.data.transcode import TranscodeSettings, transcode

HEIGHT, WIDTH = 48, 80
FRAMES = 4
#: Every display of a rectangle: (degrees counter-clockwise, hflip, vflip) as PyAV writes them.
DISPLAYS = list(itertools.product((0, 90, 180, 270), (False, True), (False, True)))


def pattern() -> np.ndarray:
    """uint8 [H, W, 3] blocks of distinct colours: every turn and mirror of it looks different."""
    image = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
    image[:16, :40] = (230, 30, 30)
    image[:16, 40:] = (30, 220, 40)
    image[16:, :20] = (40, 40, 230)
    image[32:, 60:] = (220, 220, 40)
    return image


def displayed(image: np.ndarray, degrees: int, hflip: bool, vflip: bool) -> np.ndarray:
    """What a player shows (PyAV's definition, which the ffmpeg tool's autorotate agrees with): turned
    counter-clockwise, then mirrored."""
    image = np.rot90(image, degrees // 90)
    if hflip:
        image = image[:, ::-1]
    if vflip:
        image = image[::-1]
    return image


def _write(path, image: np.ndarray, display=None, pix_fmt="yuv444p"):
    frames = np.stack([image] * FRAMES)
    return write_video(path, frames, list(range(FRAMES)), Fraction(1, 25), pix_fmt=pix_fmt,
                       codec_options={"qp": "0"}, display=display)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """The same lossless frames, once without and once with each display matrix."""
    folder = tmp_path_factory.mktemp("oriented")
    stored = _write(folder / "stored.mp4", pattern())
    oriented = {display: _write(folder / "d{}_{:d}{:d}.mp4".format(*display), pattern(), display)
                for display in DISPLAYS}
    return stored, oriented


@pytest.mark.parametrize("display", DISPLAYS)
def test_frames_come_out_as_displayed(videos, display):
    stored, oriented = videos
    as_stored = decode_window(stored, 0.0, FRAMES, 25.0).frames.numpy()               # [T, H, W, 3]
    window = decode_window(oriented[display], 0.0, FRAMES, 25.0)
    expected = np.stack([displayed(frame, *display) for frame in as_stored])
    assert window.length == FRAMES
    assert np.array_equal(window.frames.numpy(), expected)
    info = probe(oriented[display])
    assert (info.height, info.width) == expected.shape[1:3]


@pytest.mark.parametrize("display", [(90, False, False), (270, True, False), (180, False, True)])
def test_resized_frames_are_scaled_then_turned(videos, display):
    """Scaling happens in the stored orientation (to the output size swapped for a quarter turn), so the
    result is the stored frame scaled and turned, also into a caller's buffer at chosen rows."""
    stored, oriented = videos
    height, width = 30, 50
    swapped = display[0] in (90, 270)
    as_stored = decode_window(stored, 0.0, 2, 25.0, *((width, height) if swapped else (height, width))).frames
    expected = np.stack([displayed(frame, *display) for frame in as_stored.numpy()])
    assert np.array_equal(decode_window(oriented[display], 0.0, 2, 25.0, height, width).frames.numpy(), expected)
    out = torch.zeros(3, height, width, 3, dtype=torch.uint8)
    PyAVDecoder().decode_window(oriented[display], 0.0, 2, 25.0, height, width, out=out, rows=[2, 0])
    assert np.array_equal(out[2].numpy(), expected[0]) and np.array_equal(out[0].numpy(), expected[1])
    assert not out[1].any()


def test_a_turned_video_matches_one_stored_upright(videos, tmp_path):
    """Against a video whose pixels are already upright: the same picture at any size, up to the scaler's
    rounding (which differs between rows and columns)."""
    _, oriented = videos
    display = (90, False, False)
    upright = _write(tmp_path / "upright.mp4", np.ascontiguousarray(displayed(pattern(), *display)))
    for size in ((WIDTH, HEIGHT), (56, 34)):
        ours = decode_window(oriented[display], 0.0, 1, 25.0, *size).frames.float()
        reference = decode_window(upright, 0.0, 1, 25.0, *size).frames.float()
        assert (ours - reference).abs().mean() < 1.5


def test_orientation_of_matrices():
    unit = 1 << 16
    assert orientation_from_matrix([unit, 0, 0, 0, unit, 0, 0, 0, 1 << 30]) == UPRIGHT
    # a quarter turn counter-clockwise: x' = q, y' = -p
    quarter = Orientation(transpose=True, flip_rows=True, flip_cols=False)
    assert orientation_from_matrix([0, -unit, 0, unit, 0, 0, 0, 0, 1 << 30]) == quarter
    image = np.arange(6).reshape(2, 3)
    assert np.array_equal(quarter.apply(image), np.rot90(image))
    assert quarter.displayed_size(2, 3) == (3, 2)
    # 45 degrees is not a turn of the pixel grid: frames are left as stored
    c = round(unit / 2 ** 0.5)
    assert orientation_from_matrix([c, -c, 0, c, c, 0, 0, 0, 1 << 30]) == UPRIGHT


def test_transcoded_copy_is_upright_and_has_no_display_matrix(tmp_path):
    display = (90, False, False)
    (tmp_path / "src").mkdir()
    source = _write(tmp_path / "src" / "phone.mp4", pattern(), display, pix_fmt="yuv420p")
    result = transcode(tmp_path / "src", tmp_path / "out", settings=TranscodeSettings(short_side=40), workers=1,
                       progress=False)
    (video,) = result.videos
    assert video.status == "written"
    copy = tmp_path / "out" / video.out
    info = probe(copy)
    assert (info.height, info.width) == (66, 40)             # displayed 80 x 48, short side 40, sizes even
    with av.open(str(copy)) as container:
        assert frame_orientation(next(container.decode(video=0))) == UPRIGHT
    ours = decode_window(copy, 0.0, 1, 25.0, 66, 40).frames[0].float()
    original = decode_window(source, 0.0, 1, 25.0, 66, 40).frames[0].float()
    wrong = decode_window(source, 0.0, 1, 25.0, 66, 40).frames[0].flip(0).float()   # upside down
    assert (ours - original).abs().mean() < 6
    assert (ours - wrong).abs().mean() > 30
