"""`uptal data transcode`: every usable video written once at the training size, with its frame times."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from broken import MIN_DURATION
from datahelpers import id_frame, read_ids, write_video

from uptal.cli import main
from uptal.data import decode_window, load_index, probe
from uptal.data.transcode import LIST_NAME, TranscodeSettings, output_size, transcode


@pytest.fixture(scope="module")
def folder_copy(broken_dataset, tmp_path_factory):
    """The broken data set's folder transcoded once (two processes)."""
    out = tmp_path_factory.mktemp("transcoded")
    return transcode(broken_dataset.folder, out, min_duration=MIN_DURATION, workers=2, progress=False)


def _ids(path, fps: float = 25.0, size=(64, 96)) -> list[int]:
    return read_ids(decode_window(path, 0.0, 1000, fps, *size).frames)


def test_every_usable_video_is_written_with_the_same_frames_at_the_same_times(broken_dataset, folder_copy):
    out = folder_copy.out
    usable = sorted(p for p, status in broken_dataset.expected.items() if status == "ok")
    assert sorted(v.source for v in folder_copy.videos) == usable
    assert {v.status for v in folder_copy.videos} == {"written"}
    # good.mp4 keeps its name; good.avi, whose .mp4 name is taken, keeps its extension too
    assert sorted(v.out for v in folder_copy.videos) == [Path("good.avi.mp4"), Path("good.mp4"), Path("slow.mp4"),
                                                         Path("sub/nested.mp4")]
    assert sorted(path for path, _ in folder_copy.not_usable) == sorted(
        p for p, status in broken_dataset.expected.items() if status != "ok")
    for video in folder_copy.videos:
        copy = out / video.out
        original, written = probe(video.source), probe(copy)
        assert (written.codec, written.pix_fmt, written.has_audio) == ("h264", "yuv420p", False)
        assert (written.width, written.height) == (original.width, original.height)   # never enlarged
        assert written.num_frames == original.num_frames == video.frames
        assert _ids(copy) == _ids(video.source)                                         # same frame at every time
    assert not [name for name in os.listdir(out) if name.startswith(".")]              # no temporary left


def test_the_list_names_every_written_video_and_loads_as_a_source(folder_copy):
    index = load_index(folder_copy.out / LIST_NAME, progress=False, cache=False)
    assert [Path(e.path) for e in index.entries] == [folder_copy.out / v.out for v in folder_copy.videos]
    assert all(e.ok and e.label is None for e in index.entries)


def test_a_second_run_keeps_what_is_there_and_force_writes_again(broken_dataset, tmp_path):
    index = load_index(broken_dataset.folder, min_duration=MIN_DURATION, progress=False, cache=False)
    first = transcode(index, tmp_path, workers=1, progress=False)
    stamps = {v.out: (tmp_path / v.out).stat().st_mtime_ns for v in first.videos}
    again = transcode(index, tmp_path, workers=1, progress=False)
    assert {v.status for v in again.videos} == {"kept"}
    assert {v.out: (tmp_path / v.out).stat().st_mtime_ns for v in again.videos} == stamps
    forced = transcode(index, tmp_path, workers=1, force=True, progress=False)
    assert {v.status for v in forced.videos} == {"written"}


def test_a_list_source_keeps_labels_and_files_outside_its_folder_go_to_external(broken_dataset, tmp_path):
    result = transcode(broken_dataset.csv_list, tmp_path, min_duration=MIN_DURATION, workers=1, progress=False)
    assert all(v.out.parts[0] == "external" for v in result.videos)   # the files are not below the list's folder
    index = load_index(tmp_path / LIST_NAME, progress=False, cache=False)
    assert [e.label for e in index.entries] == [broken_dataset.labels[v.source] for v in result.videos]


def test_large_frames_shrink_to_the_short_side_with_a_keyframe_every_second(tmp_path):
    import av

    (tmp_path / "videos").mkdir()
    frames = np.stack([id_frame(i, 240, 320) for i in range(60)])
    source = write_video(tmp_path / "videos" / "big.mp4", frames, list(range(60)), Fraction(1, 25), gop=250)
    result = transcode(tmp_path / "videos", tmp_path / "out", settings=TranscodeSettings(gop_seconds=1.0),
                       workers=1, progress=False)
    copy = tmp_path / "out" / "big.mp4"
    info = probe(copy)
    assert (info.width, info.height) == output_size(320, 240, 128) == (170, 128)
    assert result.videos[0].frames == 60
    with av.open(str(copy)) as container:
        keyframes = [i for i, packet in enumerate(p for p in container.demux(video=0) if p.size) if packet.is_keyframe]
    assert keyframes[0] == 0 and max(np.diff(keyframes + [60])) <= 25
    assert _ids(copy, size=(128, 170)) == _ids(source, size=(128, 170))


def test_variable_frame_rate_times_are_kept(vfr_video, tmp_path):
    index = load_index(vfr_video.parent, progress=False, cache=False)
    result = transcode(index, tmp_path / "out", workers=1, progress=False)
    copy = tmp_path / "out" / next(v.out for v in result.videos if v.source == str(vfr_video))
    for fps in (25.0, 7.0):
        assert _ids(copy, fps) == _ids(vfr_video, fps)


def test_a_file_that_fails_is_reported_and_the_others_are_written(tmp_path):
    (tmp_path / "videos").mkdir()
    for name in ("a.mp4", "b.mp4"):
        write_video(tmp_path / "videos" / name, np.stack([id_frame(i) for i in range(20)]), list(range(20)),
                    Fraction(1, 25))
    index = load_index(tmp_path / "videos", progress=False, cache=False)
    (tmp_path / "videos" / "a.mp4").write_bytes(b"")                      # broken after it was indexed
    result = transcode(index, tmp_path / "out", workers=1, progress=False)
    assert [(v.out.name, v.status) for v in result.videos] == [("a.mp4", "failed"), ("b.mp4", "written")]
    assert "empty" in result.videos[0].detail
    assert sorted(os.listdir(tmp_path / "out")) == ["b.mp4", LIST_NAME]
    assert load_index(tmp_path / "out" / LIST_NAME, progress=False, cache=False).entries[0].path.endswith("b.mp4")


def test_bad_arguments_are_errors(broken_dataset, tmp_path):
    with pytest.raises(ValueError, match="inside the source folder"):
        transcode(broken_dataset.folder, broken_dataset.folder / "copies", progress=False)
    for bad in (dict(short_side=1), dict(gop_seconds=0), dict(crf=60)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TranscodeSettings(**bad)
    with pytest.raises(ValueError, match="workers"):
        transcode(broken_dataset.folder, tmp_path, workers=0, progress=False)


def test_command_line(broken_dataset, tmp_path, capsys):
    code = main(["data", "transcode", str(broken_dataset.folder), "--out", str(tmp_path / "out"), "--no-progress",
                 "--min-duration", str(MIN_DURATION), "--jobs", "1", "--short-side", "32"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "4 written, 0 already there, 0 failed" in out and "left out 13 unusable files" in out
    assert probe(tmp_path / "out" / "good.mp4").height == 32
    assert main(["data", "transcode", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "uptal data transcode: error:" in capsys.readouterr().err


def test_a_shard_set_source_is_read_record_by_record(broken_dataset, tmp_path):
    from uptal.data import open_entry_source, write_shards

    index = load_index(broken_dataset.folder, min_duration=MIN_DURATION, progress=False, cache=False)
    write_shards(index, tmp_path / "shards", per_shard=2, progress=False)
    shards = load_index(tmp_path / "shards", progress=False)
    result = transcode(shards, tmp_path / "out", workers=1, progress=False)
    assert [v.status for v in result.videos] == ["written"] * 4
    for video, entry in zip(result.videos, shards.usable()):
        assert video.out == Path(entry.path.split("#")[1] + ".mp4")       # named by the record's key
        assert _ids(tmp_path / "out" / video.out) == _ids(open_entry_source(entry))
