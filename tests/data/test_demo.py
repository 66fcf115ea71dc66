"""uptal.data.demo: procedurally generated demo videos (pixels and mp4 files)."""
from __future__ import annotations

import time

import pytest
import torch

from uptal.data import decode_window, demo_frames, demo_specs, probe, write_demo_videos

SMALL = dict(num_frames=48, height=64, width=86)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return 10 * torch.log10(torch.tensor(255.0 ** 2 / mse)).item()


def test_default_shape_texture_and_motion():
    frames = demo_frames()  # 8 videos, 160 frames, 128 x 171
    assert frames.shape == (8, 160, 128, 171, 3) and frames.dtype == torch.uint8
    f = frames.float()
    # texture: every frame is far from flat (a flat image has std 0)
    assert float(f.std(dim=(2, 3, 4)).min()) > 20
    # motion: every pair of consecutive frames differs
    assert float((f[:, 1:] - f[:, :-1]).abs().mean(dim=(2, 3, 4)).min()) > 1.0
    # the videos differ from each other
    assert float((f[0] - f[1]).abs().mean()) > 10


def test_deterministic_from_the_seed():
    a = demo_frames(num_videos=3, seed=7, **SMALL)
    assert torch.equal(a, demo_frames(num_videos=3, seed=7, **SMALL))
    assert not torch.equal(a, demo_frames(num_videos=3, seed=8, **SMALL))
    # video i depends only on (seed, i), not on how many videos are asked for
    assert torch.equal(a[:2], demo_frames(num_videos=2, seed=7, **SMALL))


def test_scene_cut_is_the_largest_change():
    frames = demo_frames(num_videos=4, seed=3, num_frames=60, height=64, width=86).float()
    for video, spec in zip(frames, demo_specs(num_videos=4, seed=3, num_frames=60, height=64, width=86)):
        change = (video[1:] - video[:-1]).abs().mean(dim=(1, 2, 3))  # [T - 1]: change into frame k + 1
        assert int(change.argmax()) + 1 == spec.cut_frame
        assert 0.3 * 60 <= spec.cut_frame <= 0.7 * 60


def test_action_segment_draws_the_checkerboard_only_inside_it():
    """The action disc's dark squares are exactly RGB (13, 13, 13), a value the background never takes."""
    specs = demo_specs(num_videos=4, seed=1, **SMALL)
    frames = demo_frames(num_videos=4, seed=1, **SMALL)
    for video, spec in zip(frames, specs):
        dark = (video == 13).all(dim=-1).sum(dim=(1, 2))  # [T] pixels of the checker's dark squares
        inside = torch.zeros(SMALL["num_frames"], dtype=torch.bool)
        inside[spec.action_start:spec.action_end] = True
        assert 1 <= spec.action_end - spec.action_start < SMALL["num_frames"]
        assert int(dark[inside].min()) > 50, "the action is missing from a frame of its segment"
        assert int(dark[~inside].max()) == 0, "the action appears outside its segment"
        start, end = spec.action_segment_sec
        assert (start, end) == (spec.action_start / spec.fps, spec.action_end / spec.fps)


def test_written_videos_decode_back_at_the_requested_size(tmp_path):
    paths = write_demo_videos(tmp_path / "demo", num_videos=2, seed=5, num_frames=40)
    assert [p.name for p in paths] == ["demo_000.mp4", "demo_001.mp4"]
    reference = demo_frames(num_videos=2, seed=5, num_frames=40)  # [2, 40, 128, 171, 3]
    for path, expected in zip(paths, reference):
        info = probe(path)
        # 4:2:0 needs even sizes: the 171-wide video is stored 172 wide
        assert (info.codec, info.pix_fmt, info.num_frames, info.height, info.width) == ("h264", "yuv420p", 40,
                                                                                         128, 172)
        assert info.fps == pytest.approx(25.0) and info.duration == pytest.approx(40 / 25)
        window = decode_window(path, 0.0, 100, 25.0, 128, 171)
        assert window.length == 40 and window.frames.shape == (40, 128, 171, 3)
        torch.testing.assert_close(window.timestamps, torch.arange(40, dtype=torch.float64) / 25)
        assert _psnr(window.frames, expected) > 24  # lossy coding plus a 172 -> 171 resample


def test_written_videos_match_the_pixels_at_an_even_size(tmp_path):
    paths = write_demo_videos(tmp_path, num_videos=1, seed=2, num_frames=30, fps=10, height=64, width=96)
    window = decode_window(paths[0], 0.0, 30, 10.0)
    expected = demo_frames(num_videos=1, seed=2, num_frames=30, fps=10, height=64, width=96)[0]
    assert window.frames.shape == expected.shape
    assert _psnr(window.frames, expected) > 30  # only H.264 (crf 18) and 4:2:0 losses


def test_eight_default_videos_are_quick(tmp_path):
    start = time.perf_counter()
    paths = write_demo_videos(tmp_path)
    elapsed = time.perf_counter() - start
    assert len(paths) == 8 and all(p.stat().st_size > 10_000 for p in paths)
    assert elapsed < 30, f"8 demo videos took {elapsed:.1f} s"


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        demo_frames(num_frames=1)
    with pytest.raises(ValueError, match="num_videos"):
        demo_specs(num_videos=0)


def test_odd_sizes_are_stored_one_pixel_larger(tmp_path):
    (path,) = write_demo_videos(tmp_path, num_videos=1, num_frames=12, height=63, width=85)
    info = probe(path)
    assert (info.height, info.width) == (64, 86)
    window = decode_window(path, 0.0, 12, 25.0, 63, 85)
    assert window.frames.shape == (12, 63, 85, 3)
    assert _psnr(window.frames, demo_frames(num_videos=1, num_frames=12, height=63, width=85)[0]) > 24
