"""Dropping frames that no wanted position shows (decode._UnshownFrames): the decoder does less work and every
frame it delivers, with its timestamp, is what decoding everything gives."""
from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datahelpers import id_frame, read_ids, write_video

from uptal.data import decode as decode_module
from uptal.data import PyAVDecoder, probe

SIZE = (48, 96)

# name -> writer options: B-frames everywhere (the frames a decoder can drop), in the containers it trusts
CASES = {
    "h264_60fps.mp4": dict(codec="libx264", fmt="mp4", rate=60),
    "h264.mkv": dict(codec="libx264", fmt="matroska", rate=30),
    "hevc.mp4": dict(codec="libx265", fmt="mp4", rate=30, codec_options={"x265-params": "log-level=error"}),
    "mpeg4.mp4": dict(codec="mpeg4", fmt="mp4", rate=30, codec_options={"bf": "2"}),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("unshown")
    written = {}
    for name, options in CASES.items():
        options = dict(options)
        rate = options.pop("rate")
        frames = np.stack([id_frame(i, *SIZE) for i in range(4 * rate)])   # 4 s of numbered frames
        written[name] = write_video(folder / name, frames, list(range(len(frames))), Fraction(1, rate),
                                    gop=2 * rate, **options)
    return written


def _decode(path, start, num, fps, rows, monkeypatch, *, dropping: bool) -> tuple:
    """(window, out or None, frames the decoder delivered) with dropping switched on or off."""
    delivered = [0]
    real = decode_module._decoded_frames

    def counted(*args, **kwargs):
        for frame in real(*args, **kwargs):
            delivered[0] += 1
            yield frame

    out = None if rows is None else torch.zeros((max(max(rows), 0) + 1, *SIZE, 3), dtype=torch.uint8)
    with monkeypatch.context() as patch:
        patch.setattr(decode_module, "_decoded_frames", counted)
        window = PyAVDecoder(drop_unshown=dropping).decode_window(path, start, num, fps, *SIZE, out=out, rows=rows)
    return window, out, delivered[0]


def _same_shown_frames(path, start, num, fps, rows, monkeypatch) -> tuple[int, int]:
    """Decode with and without dropping; assert the shown frames agree; return the frames each delivered."""
    everything, all_out, all_count = _decode(path, start, num, fps, rows, monkeypatch, dropping=False)
    dropped, drop_out, drop_count = _decode(path, start, num, fps, rows, monkeypatch, dropping=True)
    where = f"{path.name} start={start:.3f} num={num} fps={fps} rows={rows}"
    assert dropped.length == everything.length, where
    if rows is None:
        assert torch.equal(dropped.frames, everything.frames), where
        assert torch.equal(dropped.timestamps, everything.timestamps), where
    else:
        assert torch.equal(drop_out, all_out), where
        kept = [k for k, row in enumerate(rows[:everything.length]) if row >= 0]
        assert torch.equal(dropped.timestamps[kept], everything.timestamps[kept]), where
    return all_count, drop_count


def _random_rows(rng: random.Random, num: int, keep: float) -> list[int]:
    rows, row = [], 0
    for _ in range(num):
        wanted = rng.random() < keep
        rows.append(row if wanted else -1)
        row += wanted
    return rows


@pytest.mark.parametrize("name", list(CASES))
def test_shown_frames_are_the_same_and_fewer_frames_are_decoded(videos, name, monkeypatch):
    path, rng = videos[name], random.Random(name)
    totals = np.zeros(2, dtype=int)
    for fps, num in ((25.0, 40), (13.0, 20), (CASES[name]["rate"], 50)):
        for _ in range(4):
            start = rng.uniform(0.0, 3.0) if rng.random() < 0.8 else 0.0
            totals += _same_shown_frames(path, start, num, fps, None, monkeypatch)
            totals += _same_shown_frames(path, start, num, fps, _random_rows(rng, num, 0.4), monkeypatch)
    all_count, drop_count = totals
    assert drop_count < 0.9 * all_count, (name, all_count, drop_count)


def test_native_rate_in_full_still_gives_every_frame(videos, monkeypatch):
    path = videos["h264_60fps.mp4"]
    window, _, delivered = _decode(path, 0.0, 200, 60.0, None, monkeypatch, dropping=True)   # ids go to 215
    assert read_ids(window.frames) == list(range(200)) and delivered >= 200


def test_avi_timestamps_are_not_trusted(tmp_path, monkeypatch):
    frames = np.stack([id_frame(i, *SIZE) for i in range(60)])
    avi = write_video(tmp_path / "b_frames.avi", frames, list(range(60)), Fraction(1, 30), fmt="avi",
                      codec="mpeg4", codec_options={"bf": "2"})   # AVI timestamps are decoding times
    whole, _, all_count = _decode(avi, 0.5, 10, 10.0, None, monkeypatch, dropping=False)
    window, _, count = _decode(avi, 0.5, 10, 10.0, None, monkeypatch, dropping=True)
    assert count == all_count and torch.equal(window.frames, whole.frames)


def _remux_with_repeated_pts(source: Path, target: Path, frame: int) -> list[int]:
    """Copy `source` with the packet of display frame `frame` given the pts of frame `frame - 1` (a muxer
    rounding variable-rate times); returns the packets' pts in display order, as written."""
    import av

    with av.open(str(source)) as reader, av.open(str(target), "w", format="matroska") as writer:
        stream = reader.streams.video[0]
        out = writer.add_stream_from_template(stream)
        packets = [packet for packet in reader.demux(stream) if packet.size]
        shown = sorted(packet.pts for packet in packets)
        for packet in packets:
            if packet.pts == shown[frame]:
                packet.pts = shown[frame - 1]
            packet.stream = out
            writer.mux(packet)
    return shown[:frame] + [shown[frame - 1]] + shown[frame + 1:]


def test_a_repeated_pts_is_placed_after_the_frame_before_and_dropping_agrees(videos, tmp_path, monkeypatch):
    """Two frames with one pts (Matroska stores milliseconds) are two frames in a row, not out-of-order
    timestamps: times stay presentation times (not decode times, earlier with B-frames), and dropping gives the
    frames decoding everything gives."""
    path = tmp_path / "repeated_pts.mkv"
    pts = _remux_with_repeated_pts(videos["h264.mkv"], path, frame=30)
    assert pts[29] == pts[30]
    whole, _, _ = _decode(path, 0.0, 120, 30.0, None, monkeypatch, dropping=False)
    assert read_ids(whole.frames) == list(range(120))
    expected = [p / 1000 for p in pts[:30]] + [(pts[29] + 33) / 1000] + [p / 1000 for p in pts[31:120]]
    assert whole.timestamps.tolist() == pytest.approx(expected)   # the second one frame (33 ms) later
    rng = random.Random(1)
    for fps, num in ((12.5, 20), (25.0, 40), (30.0, 60)):
        for start in (0.0, 0.5, 0.9, rng.uniform(0.0, 2.0)):
            _same_shown_frames(path, start, num, fps, None, monkeypatch)
            _same_shown_frames(path, start, num, fps, _random_rows(rng, num, 0.4), monkeypatch)


def test_only_one_decoder_thread_drops_frames(videos):
    """Frame threads would take a skip_frame change late."""
    media = decode_module._Media(videos["h264_60fps.mp4"])
    for threads, applies in ((1, True), (2, False), (0, False)):
        with decode_module._open(media) as container:
            stream = decode_module._video_stream(container, media, threads)
            assert decode_module._UnshownFrames.applies(container, stream) == applies, threads


def test_packets_read_before_a_demuxing_error_are_all_decoded():
    """The look-ahead holds packets back; a damaged file's error must not lose them."""
    import av

    def packets():
        for pts in range(5):
            yield SimpleNamespace(pts=pts, size=100)
        raise av.InvalidDataError(1094995529, "damaged")   # AVERROR_INVALIDDATA

    stream = SimpleNamespace(time_base=Fraction(1, 25), start_time=0)
    unshown = decode_module._UnshownFrames(stream, wanted=[0.0, 0.16], eps=0.001)
    got = []
    with pytest.raises(av.FFmpegError):
        for packet, skippable in unshown.marked(packets()):
            got.append((packet.pts, skippable))
    # 0 may be the first frame, 1..3 are hidden by 4 at the wanted 0.16 s, 4 is shown there
    assert got == [(0, False), (1, True), (2, True), (3, True), (4, False)]


def test_after_a_repeated_pts_nothing_is_dropped():
    """A repeated pts is re-timed by the decoder's caller, so packet timestamps prove nothing from then on."""
    stream = SimpleNamespace(time_base=Fraction(1, 25), start_time=0)
    wanted = [0.0, 0.16, 0.32, 0.48]

    def marks(pts_list):
        unshown = decode_module._UnshownFrames(stream, wanted=wanted, eps=0.001)
        return [skippable for _, skippable in unshown.marked(SimpleNamespace(pts=p, size=100) for p in pts_list)]
    assert marks(range(13)) == [False, True, True, True, False, True, True, True, False, True, True, True, False]
    assert not any(marks([0, 1, 2, 3, 4, 5, 5, 7, 8, 9, 10, 11, 12]))   # seen within the look-ahead: none


def test_drop_unshown_is_a_bool():
    assert "drop_unshown=True" in repr(PyAVDecoder())
    with pytest.raises(ValueError, match="drop_unshown"):
        PyAVDecoder(drop_unshown=1)


def test_real_videos(shared_videos, monkeypatch):
    rng = random.Random(0)
    for path in sorted(shared_videos.glob("*.mp4")):
        duration = probe(path).duration
        for rows_kept in (None, 0.5):
            num = 60
            start = rng.uniform(0.0, max(0.0, duration - 1.0))
            rows = None if rows_kept is None else _random_rows(rng, num, rows_kept)
            _same_shown_frames(path, start, num, 25.0, rows, monkeypatch)
