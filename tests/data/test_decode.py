"""uptal.data.decode on videos written by the tests themselves (no shared data needed)."""
from __future__ import annotations

import math
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from broken import cut, zero_video_payload
from datahelpers import VFR_PTS_MS, id_frame, read_ids, write_video
from hypothesis import given, settings
from hypothesis import strategies as st

from uptal.data import (
    VIDEO_ERROR_REASONS,
    DecodedWindow,
    Decoder,
    PyAVDecoder,
    VideoError,
    VideoInfo,
    decode_window,
    probe,
)
from uptal.data.decode import _timed_frames

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------- probe


def test_probe_constant_frame_rate(cfr_video):
    info = probe(cfr_video)
    assert isinstance(info, VideoInfo)
    assert info.path == cfr_video
    assert info.fps == pytest.approx(25.0)
    assert info.num_frames == 60
    assert info.duration == pytest.approx(60 / 25)
    assert (info.height, info.width) == (48, 96)
    assert (info.codec, info.pix_fmt, info.has_audio) == ("h264", "yuv420p", False)


def test_probe_variable_frame_rate(vfr_video):
    info = probe(vfr_video)
    assert info.num_frames == len(VFR_PTS_MS)
    # the last frame lasts one packet duration beyond 1.0 s
    assert 1.0 < info.duration < 1.1


def test_probe_avi_with_dropped_frames(tmp_path):
    """An AVI with empty chunks for dropped frames (like tree.avi): the header counts slots, not frames."""
    pts = [0, 1, 2, 5, 6, 9]
    path = write_video(tmp_path / "gaps.avi", np.stack([id_frame(i) for i in range(6)]), pts, Fraction(1, 10),
                       fmt="avi", codec="mpeg4")
    info = probe(path)
    assert info.num_frames == 6
    assert info.duration == pytest.approx(1.0)
    window = decode_window(path, 0, 100, 10, 24, 48)
    assert window.length == 10
    assert read_ids(window.frames) == [0, 1, 2, 2, 2, 3, 4, 4, 4, 5]
    assert window.timestamps.tolist() == pytest.approx([0, 0.1, 0.2, 0.2, 0.2, 0.5, 0.6, 0.6, 0.6, 0.9])


def test_probe_leaves_out_packets_timed_far_outside_the_header_duration(cfr_video, tmp_path):
    """A damaged MP4 sample table can time a frame hours after a 2.4 s clip: the duration must not follow it
    (windows would be drawn where no frame is), `uptal data check` says so, and the frames still decode."""
    import av

    from uptal.data.check import file_warnings

    damaged = tmp_path / "stray.mp4"
    with av.open(str(cfr_video)) as reader, av.open(str(damaged), "w", format="mp4") as writer:
        stream = reader.streams.video[0]
        out = writer.add_stream_from_template(stream)
        packets = [packet for packet in reader.demux(stream) if packet.size]
        last_keyframe = max(packet.pts for packet in packets if packet.is_keyframe)
        for packet in packets:
            if packet.pts == last_keyframe:
                packet.pts += round(3600 / stream.time_base)   # now shown an hour later
            packet.stream = out
            writer.mux(packet)
    info = probe(damaged)
    assert info.stray_packets == 1 and info.num_frames == 60
    assert info.duration == pytest.approx(60 / 25)
    assert any("1 packets timed far outside the header's duration" in w for w in file_warnings(info))
    assert probe(cfr_video).stray_packets == 0 and not any("outside" in w for w in file_warnings(probe(cfr_video)))
    window = decode_window(damaged, 0.0, 10, 25.0, 24, 48)
    assert read_ids(window.frames) == list(range(10))


# ---------------------------------------------------------------------------------------------- errors


def _write_audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), mode="w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture
def bad_files(tmp_path, cfr_video, noise_frames) -> dict[str, tuple[Path, str]]:
    """name -> (path, the reason probe must give)."""
    from PIL import Image

    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    (tmp_path / "random.avi").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, np.uint8).tobytes())
    (tmp_path / "folder.mp4").mkdir()
    Image.fromarray(id_frame(5)).save(tmp_path / "still.png")
    avi = write_video(tmp_path / "noise.avi", noise_frames, list(range(40)), Fraction(1, 10), fmt="avi",
                      codec="mpeg4")
    mp4 = write_video(tmp_path / "noise.mp4", noise_frames, list(range(40)), Fraction(1, 10))
    faststart = write_video(tmp_path / "noise_fs.mp4", noise_frames, list(range(40)), Fraction(1, 10),
                            options={"movflags": "faststart"})
    return {
        "missing": (tmp_path / "nope.mp4", "missing"),
        "empty": (tmp_path / "empty.mp4", "empty"),
        "text": (tmp_path / "text.mp4", "not_a_video"),
        "random": (tmp_path / "random.avi", "not_a_video"),
        "folder": (tmp_path / "folder.mp4", "not_a_video"),
        "still image": (tmp_path / "still.png", "not_a_video"),
        "audio only": (_write_audio_only(tmp_path / "tone.wav"), "not_a_video"),
        "mp4 cut (index at the end)": (cut(mp4, tmp_path / "cut.mp4", 0.6), "truncated"),
        "mp4 cut (index first)": (cut(faststart, tmp_path / "cut_fs.mp4", 0.6), "truncated"),
        "avi cut": (cut(avi, tmp_path / "cut.avi", 0.6), "truncated"),
        "mp4 with zeroed video data": (zero_video_payload(cfr_video, tmp_path / "zeros.mp4"), "undecodable"),
    }


def test_probe_reasons(bad_files):
    for name, (path, reason) in bad_files.items():
        with pytest.raises(VideoError) as caught:
            probe(path)
        error = caught.value
        assert error.reason == reason, f"{name}: expected {reason}, got {error}"
        assert error.path == path
        assert str(path) in str(error) and reason in str(error)
        assert isinstance(error, ValueError)


def test_decode_window_reasons(bad_files):
    """decode_window rejects the same unusable files (a cut AVI still decodes: see the next test)."""
    for name, (path, reason) in bad_files.items():
        if name in ("avi cut", "mp4 cut (index first)"):
            continue
        with pytest.raises(VideoError) as caught:
            decode_window(path, 0.0, 4, 10.0, 16, 16)
        assert caught.value.reason == reason, name


def test_cut_avi_decodes_what_is_there(bad_files):
    path, _ = bad_files["avi cut"]
    window = decode_window(path, 0.0, 40, 10.0)
    assert 1 <= window.length < 40
    assert window.frames.shape == (window.length, 48, 64, 3)


def test_the_video_stream_is_the_best_one_not_a_picture_before_it(tmp_path):
    """An MKV whose first video stream is a one-frame MJPEG picture (a thumbnail track) and whose second is
    the video: probe, decode and every window read the video, as ffplay would."""
    import av

    path = tmp_path / "thumbnail_first.mkv"
    with av.open(str(path), mode="w", format="matroska") as container:
        thumbnail = container.add_stream("mjpeg", rate=1)
        thumbnail.width, thumbnail.height, thumbnail.pix_fmt = 64, 64, "yuvj420p"
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 96, 48, "yuv420p"
        picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="rgb24")
        picture.pts = 0
        container.mux(thumbnail.encode(picture.reformat(format="yuvj420p")))
        container.mux(thumbnail.encode(None))
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(id_frame(i), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    info = probe(path)
    assert (info.codec, info.num_frames, info.height, info.width) == ("h264", 30, 48, 96)
    assert read_ids(decode_window(path, 0.4, 10, 25.0).frames) == list(range(10, 20))


def test_video_error_is_picklable_and_checks_reason(tmp_path):
    error = VideoError(tmp_path / "x.mp4", "truncated", "cut at 3 MB")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.path, clone.reason, clone.detail, str(clone)) == (error.path, error.reason, error.detail, str(error))
    assert set(VIDEO_ERROR_REASONS) == {"missing", "empty", "not_a_video", "undecodable", "truncated"}
    with pytest.raises(ValueError, match="reason"):
        VideoError("x.mp4", "broken")


@pytest.mark.parametrize("kwargs, name", [
    (dict(start_sec=-1.0), "start_sec"),
    (dict(start_sec=float("nan")), "start_sec"),
    (dict(num_frames=0), "num_frames"),
    (dict(num_frames=2.5), "num_frames"),
    (dict(fps=0.0), "fps"),
    (dict(fps=float("inf")), "fps"),
    (dict(height=0), "height"),
    (dict(width=-3), "width"),
    (dict(out=torch.zeros(4, 16, 16, 3)), "out"),                          # wrong dtype
    (dict(out=torch.zeros(2, 16, 16, 3, dtype=torch.uint8)), "out"),       # too few rows
    (dict(out=torch.zeros(4, 16, 8, 3, dtype=torch.uint8)), "out"),        # wrong size
])
def test_decode_window_argument_errors(cfr_video, kwargs, name):
    args = dict(start_sec=0.0, num_frames=4, fps=25.0, height=16, width=16) | kwargs
    with pytest.raises(ValueError, match=name):
        decode_window(cfr_video, **args)


# ---------------------------------------------------------------------------------------------- sampling


def test_native_fps_gives_every_frame_once(cfr_video):
    window = decode_window(cfr_video, 0.0, 1000, 25.0)
    assert isinstance(window, DecodedWindow)
    assert window.length == 60
    assert window.frames.shape == (60, 48, 96, 3) and window.frames.dtype == torch.uint8
    assert window.timestamps.dtype == torch.float64
    assert read_ids(window.frames) == list(range(60))
    torch.testing.assert_close(window.timestamps, torch.arange(60, dtype=torch.float64) / 25)


@pytest.mark.parametrize("fps", [10.0, 50.0, 7.0])
def test_other_fps_picks_latest_frame_at_or_before_each_time(cfr_video, fps):
    window = decode_window(cfr_video, 0.0, 1000, fps, 24, 48)
    expected_len = math.ceil(60 / 25 * fps - 1e-9)
    assert window.length == expected_len
    expected = [math.floor(k * 25 / fps + 1e-9) for k in range(expected_len)]
    assert read_ids(window.frames) == expected
    torch.testing.assert_close(window.timestamps, torch.tensor(expected, dtype=torch.float64) / 25)


def test_window_from_the_middle_matches_decode_from_start(cfr_video):
    """Seek correctness: start between keyframes (every 12 frames), B-frames in the stream."""
    full = decode_window(cfr_video, 0.0, 1000, 25.0)
    for start_frame in (17, 30, 41):
        window = decode_window(cfr_video, start_frame / 25 + 0.01, 8, 25.0)
        assert window.length == 8
        assert torch.equal(window.frames, full.frames[start_frame:start_frame + 8])
        assert torch.equal(window.timestamps, full.timestamps[start_frame:start_frame + 8])


def test_short_window_at_the_end_into_a_larger_buffer(cfr_video):
    out = torch.full((10, 24, 48, 3), 7, dtype=torch.uint8)
    window = decode_window(cfr_video, 55 / 25, 10, 25.0, out=out)
    assert window.length == 5
    assert read_ids(window.frames) == [55, 56, 57, 58, 59]
    assert window.frames.data_ptr() == out.data_ptr()          # a view of the caller's buffer
    assert bool((out[5:] == 7).all())                          # rows past `length` untouched
    assert window.timestamps.shape == (5,)


def test_window_after_the_end_is_empty(cfr_video):
    window = decode_window(cfr_video, 10.0, 4, 25.0, 24, 48)
    assert window.length == 0
    assert window.frames.shape == (0, 24, 48, 3) and window.timestamps.shape == (0,)


def test_native_size_when_height_and_width_are_none(cfr_video):
    assert decode_window(cfr_video, 0.5, 3, 25.0).frames.shape == (3, 48, 96, 3)
    assert decode_window(cfr_video, 0.5, 3, 25.0, 20, None).frames.shape == (3, 20, 96, 3)


def _reference_ids(start: float, num: int, fps: float, end: float) -> list[int]:
    """The sampling rule, stated directly on the known presentation times."""
    times = [p / 1000 for p in VFR_PTS_MS]
    ids = []
    for k in range(num):
        t = start + k / fps
        if t >= end - 1e-6:
            break
        ids.append(max([0] + [i for i, ti in enumerate(times) if ti <= t + 1e-6]))
    return ids


@settings(max_examples=30, deadline=None)
@given(start_ms=st.integers(0, 1100), num=st.integers(1, 16), fps=st.sampled_from([3.0, 7.5, 10.0, 24.0, 60.0]))
def test_variable_frame_rate_sampling_property(vfr_video, start_ms, num, fps):
    end = probe(vfr_video).duration
    window = decode_window(vfr_video, start_ms / 1000 + 0.0005, num, fps, 24, 48)
    expected = _reference_ids(start_ms / 1000 + 0.0005, num, fps, end)
    assert read_ids(window.frames) == expected
    assert window.length == len(expected)
    assert window.timestamps.tolist() == pytest.approx([VFR_PTS_MS[i] / 1000 for i in expected])


def test_out_of_order_pts_fall_back_to_dts():
    """Packed B-frames in AVI (makeup.avi): frames leave the decoder in display order with pts 1, 2, 4, 3, ...
    while dts counts 1, 2, 3, 4; the times must follow dts, including the frame held back one step."""
    pts = [1, 2, 4, 3, 5, 7, 6, 8, None]
    dts = [1, 2, 3, 4, 5, 6, 7, 8, None]
    frames = [SimpleNamespace(pts=p, dts=d, duration=1) for p, d in zip(pts, dts)]
    stream = SimpleNamespace(time_base=Fraction(1, 25), start_time=0, average_rate=Fraction(25),
                             guessed_rate=None, base_rate=None)
    times = [item.time for item in _timed_frames(iter(frames), stream)]
    assert times == pytest.approx([k / 25 for k in range(1, 10)])


# ---------------------------------------------------------------------------------------------- interface


def test_threads_decode_independently(cfr_video):
    starts = [0.0, 0.3, 0.9, 1.5, 2.0, 0.7, 1.1, 0.2]
    sequential = [decode_window(cfr_video, s, 6, 12.5, 24, 48) for s in starts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda s: decode_window(cfr_video, s, 6, 12.5, 24, 48), starts))
    for a, b in zip(sequential, parallel):
        assert a.length == b.length and torch.equal(a.frames, b.frames) and torch.equal(a.timestamps, b.timestamps)


def test_decoder_protocol_and_backend_choice(cfr_video):
    assert isinstance(PyAVDecoder(), Decoder)

    class Recording:
        def __init__(self):
            self.calls = []

        def probe(self, path):
            self.calls.append(("probe", path))
            return PyAVDecoder().probe(path)

        def decode_window(self, path, start_sec, num_frames, fps, height=None, width=None, *, out=None,
                          rows=None):
            self.calls.append(("decode_window", start_sec))
            return PyAVDecoder(threads=0, interpolation="AREA").decode_window(
                path, start_sec, num_frames, fps, height, width, out=out, rows=rows)

    backend = Recording()
    assert isinstance(backend, Decoder)
    assert probe(cfr_video, decoder=backend).num_frames == 60
    assert read_ids(decode_window(cfr_video, 0.4, 3, 25.0, decoder=backend).frames) == [10, 11, 12]
    assert [c[0] for c in backend.calls] == ["probe", "decode_window"]
    with pytest.raises(ValueError, match="threads"):
        PyAVDecoder(threads=-1)


def test_rows_convert_only_the_chosen_frames_and_stop_after_the_last(cfr_video):
    full = decode_window(cfr_video, 0.2, 20, 25.0)                        # frames 5..24
    out = torch.full((5, 48, 96, 3), 7, dtype=torch.uint8)
    rows = [-1] * 20
    rows[1], rows[4], rows[5], rows[11] = 0, 1, 2, 3                      # four positions into rows 0..3
    window = decode_window(cfr_video, 0.2, 20, 25.0, out=out, rows=rows)
    assert window.length == 12                                             # stopped after position 11
    kept = [1, 4, 5, 11]   # left-out positions may be timed by an earlier frame (one dropped undecoded)
    assert torch.equal(window.timestamps[kept], full.timestamps[kept])
    assert window.frames is out
    for position, row in ((1, 0), (4, 1), (5, 2), (11, 3)):
        assert torch.equal(out[row], full.frames[position])
    assert (out[4] == 7).all()                                             # never written
    with pytest.raises(ValueError, match="rows needs out"):
        decode_window(cfr_video, 0.0, 3, 25.0, rows=[0, 1, 2])
    with pytest.raises(ValueError, match="rows must have num_frames=3"):
        decode_window(cfr_video, 0.0, 3, 25.0, out=out, rows=[0])
    with pytest.raises(ValueError, match=r"out must be a contiguous \[>= 9"):
        decode_window(cfr_video, 0.0, 3, 25.0, out=out, rows=[0, 8, -1])


def _colour_frames() -> np.ndarray:
    """12 frames of colour gradients with a moving texture (red across, green down, blue checkered): [12, 48, 96, 3]."""
    y, x = np.mgrid[0:48, 0:96]
    return np.stack([np.stack([x * 200 // 95 + 3 * t, y * 255 // 47, 128 + 60 * (((x + t) // 5 + y // 5) % 2)],
                              axis=-1).astype(np.uint8) for t in range(12)])


@pytest.fixture(scope="module")
def colour_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "colour.mp4", _colour_frames(), list(range(12)),
                       Fraction(1, 25))


def _packed_rgb(path: Path, height: int, width: int) -> torch.Tensor:
    """Every frame through swscale's packed rgb24 output at height x width: [T, H, W, 3]."""
    import av

    with av.open(str(path)) as container:
        return torch.from_numpy(np.stack([
            frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
            for frame in container.decode(video=0)]))


@pytest.mark.parametrize("size", [(61, 113), (128, 171), (48, 96)])   # odd, enlarged, native
def test_frames_agree_with_ffmpeg_packed_rgb_conversion(colour_video, size):
    """Resized frames are scaled into planar RGB (faster in swscale) and interleaved by uptal; swscale's packed
    rgb24 output gives the same colours, channel order included, within 1 (rounding). Frames kept at their own
    size are rgb24 itself."""
    height, width = size
    window = decode_window(colour_video, 0.0, 12, 25.0, height, width)
    difference = (window.frames.int() - _packed_rgb(colour_video, height, width).int()).abs()
    assert difference.max() <= (0 if size == (48, 96) else 1)


def test_half_size_frames_are_nearer_the_source_than_packed_rgb(colour_video):
    """At exactly half size swscale's packed rgb24 path differs more from the planar one; the planar one is
    the nearer to the source's 2 x 2 averages."""
    source = torch.from_numpy(_colour_frames()).double().reshape(12, 24, 2, 48, 2, 3).mean(dim=(2, 4))
    planar = decode_window(colour_video, 0.0, 12, 25.0, 24, 48).frames.double()          # [12, 24, 48, 3]
    packed = _packed_rgb(colour_video, 24, 48).double()
    assert (planar - source).abs().mean() < (packed - source).abs().mean()


def test_a_frame_shown_at_several_positions_fills_each_row(colour_video):
    """At twice the video's rate every frame is shown twice: converted once into its first row, copied after."""
    out = torch.zeros((10, 24, 48, 3), dtype=torch.uint8)
    window = decode_window(colour_video, 0.0, 10, 50.0, 24, 48, out=out, rows=[9 - k for k in range(10)])
    assert window.length == 10
    once = decode_window(colour_video, 0.0, 5, 25.0, 24, 48).frames                    # [5, 24, 48, 3]
    for position in range(10):
        assert torch.equal(out[9 - position], once[position // 2])


def test_importing_uptal_data_does_not_import_av():
    code = "import sys, uptal.data; assert 'av' not in sys.modules, 'av imported'; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO / "python"), "PATH": ""}, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
