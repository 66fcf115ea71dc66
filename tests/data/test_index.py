"""uptal.data.index: folders and lists, every kind of bad file, the probe cache, and the real videos."""
from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import pytest
from broken import MIN_DURATION, good_frames
from datahelpers import write_video

from uptal.data import VIDEO_ERROR_REASONS, IndexEntry, VideoIndex, load_index, probe
from uptal.data import index as index_module
from uptal.data.index import CACHE_NAME, INDEX_STATUSES

# ---------------------------------------------------------------------------------------------- sources


def test_folder_scan_classifies_every_file(broken_dataset):
    index = load_index(broken_dataset.folder, min_duration=MIN_DURATION, progress=False, cache=False)
    assert isinstance(index, VideoIndex) and index.source == str(broken_dataset.folder)
    got = {entry.path: entry.status for entry in index.entries}
    # hidden files, resource forks and other extensions are not listed; everything named like a video is
    assert got == broken_dataset.expected
    assert [e.path for e in index.entries] == sorted(got)
    assert len(index) == len(broken_dataset.expected) == 17
    for entry in index.entries:
        assert isinstance(entry, IndexEntry) and entry.label is None
        assert entry.ok == (entry.status == "ok")
        if entry.status in VIDEO_ERROR_REASONS:
            assert entry.info is None and entry.detail, entry
        else:  # ok and too_short keep what probing found
            assert entry.info is not None and entry.info.duration > 0 and str(entry.info.path) == entry.path
    assert {e.path for e in index.usable()} == {p for p, s in got.items() if s == "ok"}
    assert {e.path for e in index.bad()} == {p for p, s in got.items() if s != "ok"}
    assert index.counts() == {"ok": 4, "missing": 1, "empty": 1, "not_a_video": 6, "undecodable": 2,
                              "truncated": 2, "too_short": 1}
    assert list(index.counts()) == [s for s in INDEX_STATUSES if s in index.counts()]


def test_too_short_says_how_long_and_what_was_needed(broken_dataset):
    index = load_index(broken_dataset.folder, min_duration=MIN_DURATION, progress=False, cache=False)
    (entry,) = [e for e in index.entries if e.status == "too_short"]
    assert entry.detail == "0.08 s long, needs at least 0.5 s"
    assert entry.info.num_frames == 2


def test_camcorder_phone_and_broadcast_containers_are_scanned_by_both_scanners(tmp_path):
    """AVCHD (.MTS, upper case as cameras name them), phone (.3gp) and DVD (.vob) files are found by the
    training index and by feature extraction alike; a .gif (often a still thumbnail) is not."""
    from uptal.features.extract import find_videos

    frames, tb = good_frames(20), Fraction(1, 25)
    written = [write_video(tmp_path / "camera.MTS", frames, list(range(20)), tb, fmt="mpegts"),
               write_video(tmp_path / "phone.3gp", frames, list(range(20)), tb, fmt="3gp"),
               write_video(tmp_path / "dvd.vob", frames, list(range(20)), tb, fmt="vob", codec="mpeg2video")]
    write_video(tmp_path / "thumbnail.gif", frames[:1], [0], tb, fmt="gif", codec="gif", pix_fmt="rgb8")
    index = load_index(tmp_path, progress=False, cache=False)
    assert {Path(e.path).name: e.status for e in index.entries} == {p.name: "ok" for p in written}
    assert find_videos([tmp_path]) == sorted(written)


def test_without_min_duration_the_two_frame_video_is_usable(broken_dataset):
    index = load_index(broken_dataset.folder, progress=False, cache=False, workers=1)
    assert index.counts()["ok"] == 5 and "too_short" not in index.counts()


def test_txt_list_with_labels_relative_paths_and_a_missing_file(broken_dataset):
    index = load_index(broken_dataset.txt_list, min_duration=MIN_DURATION, progress=False, cache=False)
    expected = {**broken_dataset.expected, broken_dataset.missing_in_list: "missing"}
    assert [e.path for e in index.entries] == list(expected)          # list order, absolute paths
    assert {e.path: e.status for e in index.entries} == expected
    assert {e.path: e.label for e in index.entries} == broken_dataset.labels
    (gone,) = [e for e in index.entries if e.path == broken_dataset.missing_in_list]
    assert gone.info is None and gone.detail == "no such file"


def test_csv_list_gives_the_same_entries(broken_dataset):
    from_txt = load_index(broken_dataset.txt_list, min_duration=MIN_DURATION, progress=False, cache=False)
    from_csv = load_index(broken_dataset.csv_list, min_duration=MIN_DURATION, progress=False, cache=False)
    assert from_csv.entries == from_txt.entries
    assert from_csv.listed_durations == {}      # the duration column is empty


def test_txt_list_lines(tmp_path):
    video = write_video(tmp_path / "a b.mp4", good_frames(3), [0, 1, 2], Fraction(1, 25))
    (tmp_path / "list.txt").write_text(f"{video}\n  a b.mp4   jumping  \n# a comment\n\n/abs/none.avi\n")
    index = load_index(tmp_path / "list.txt", progress=False, cache=False)
    # a line is "path [label]": the last word is the label, so a path with a space needs a label after it
    assert [(e.path, e.label, e.status) for e in index.entries] == [
        (str(tmp_path / "a"), "b.mp4", "missing"),
        (str(video), "jumping", "ok"),
        ("/abs/none.avi", None, "missing"),
    ]


def test_csv_list_columns_and_errors(tmp_path):
    video = write_video(tmp_path / "a.mp4", good_frames(25), list(range(25)), Fraction(1, 25))
    good = tmp_path / "good.csv"
    good.write_text("Path , Duration,label\na.mp4, 1.0 ,run\n./a.mp4,,\n")
    index = load_index(good, progress=False, cache=False)
    assert [(e.path, e.label, e.status) for e in index.entries] == [(str(video), "run", "ok"), (str(video), None, "ok")]
    assert index.listed_durations == {str(video): 1.0}
    cases = {
        "file,label\na.mp4,x\n": "a 'path' column",
        "path,duration\na.mp4,long\n": "line 2: 'duration'",
        "path,duration\na.mp4,-1\n": "line 2: 'duration'",
        "path,label\na.mp4,x\n,y\n": "line 3: empty 'path'",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message) as error:
            load_index(bad, progress=False, cache=False)
        assert str(bad) in str(error.value)


@pytest.mark.parametrize("kwargs, name", [
    (dict(min_duration=-1.0), "min_duration"),
    (dict(min_duration=float("nan")), "min_duration"),
    (dict(workers=0), "workers"),
    (dict(workers=2.5), "workers"),
])
def test_bad_arguments_name_themselves(broken_dataset, kwargs, name):
    with pytest.raises(ValueError, match=name):
        load_index(broken_dataset.folder, progress=False, cache=False, **kwargs)


def test_bad_sources_are_clear_errors(tmp_path, broken_dataset):
    with pytest.raises(ValueError, match="no such file or folder"):
        load_index(tmp_path / "nowhere", progress=False)
    with pytest.raises(ValueError, match="expected a folder, a .csv or .txt list"):
        load_index(broken_dataset.folder / "good.mp4", progress=False)


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    write_video(tmp_path / "a.mp4", good_frames(3), [0, 1, 2], Fraction(1, 25))
    load_index(tmp_path, cache=False)
    assert "probing videos" in capsys.readouterr().err
    load_index(tmp_path, cache=False, progress=False)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------------------- cache


@pytest.fixture
def counted_probe(monkeypatch):
    """Count the files index.load_index probes (the real probe still runs)."""
    calls: list[str] = []

    def counting(path):
        calls.append(str(path))
        return probe(path)

    monkeypatch.setattr(index_module, "probe", counting)
    return calls


@pytest.fixture
def small_folder(tmp_path, monkeypatch) -> Path:
    """Three files (two videos, one empty) and a private user cache folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user_cache"))
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "a.mp4", good_frames(10), list(range(10)), Fraction(1, 25))
    write_video(folder / "b.mp4", good_frames(20), list(range(20)), Fraction(1, 25))
    (folder / "empty.mp4").write_bytes(b"")
    return folder


def test_a_read_only_folder_is_left_untouched_and_the_cache_goes_to_the_user_cache(small_folder, counted_probe):
    """A folder without write bits gets no cache file, even for root (whom the permission check lets write)."""
    small_folder.chmod(0o555)
    try:
        first = load_index(small_folder, progress=False)
        assert sorted(p.name for p in small_folder.iterdir()) == ["a.mp4", "b.mp4", "empty.mp4"]
        assert len(list((small_folder.parent / "user_cache" / "uptal").glob("index-*.json"))) == 1
        counted_probe.clear()
        assert load_index(small_folder, progress=False).entries == first.entries and counted_probe == []
    finally:
        small_folder.chmod(0o755)


def test_cache_avoids_probing_again_and_reprobes_changed_files(small_folder, counted_probe):
    first = load_index(small_folder, progress=False)
    assert sorted(counted_probe) == sorted(str(p) for p in small_folder.glob("*.mp4"))
    cache_file = small_folder / CACHE_NAME
    assert cache_file.is_file()
    assert not [p for p in small_folder.iterdir() if p.name.endswith(".tmp")]   # written atomically
    counted_probe.clear()
    written = cache_file.stat().st_ino
    second = load_index(small_folder, progress=False)
    assert counted_probe == [] and second.entries == first.entries
    assert cache_file.stat().st_ino == written            # nothing new: the cache is not rewritten

    # same size, new mtime: probed again; a replaced file gets its new facts
    a = small_folder / "a.mp4"
    stat = a.stat()
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    write_video(small_folder / "b.mp4", good_frames(5), list(range(5)), Fraction(1, 25))
    third = load_index(small_folder, progress=False)
    assert sorted(counted_probe) == [str(a), str(small_folder / "b.mp4")]
    assert {Path(e.path).name: e.info.num_frames for e in third.usable()} == {"a.mp4": 10, "b.mp4": 5}
    assert json.loads(cache_file.read_text())["files"][str(a)]["mtime_ns"] == a.stat().st_mtime_ns


def test_cached_outcomes_still_honour_min_duration(small_folder, counted_probe):
    load_index(small_folder, progress=False)
    counted_probe.clear()
    index = load_index(small_folder, progress=False, min_duration=0.5)
    assert counted_probe == []
    assert {Path(e.path).name: e.status for e in index.entries} == {"a.mp4": "too_short", "b.mp4": "ok",
                                                                     "empty.mp4": "empty"}


def test_no_cache_probes_everything_and_writes_nothing(small_folder, counted_probe):
    load_index(small_folder, progress=False, cache=False)
    load_index(small_folder, progress=False, cache=False)
    assert len(counted_probe) == 6
    assert not (small_folder / CACHE_NAME).exists()


def test_unwritable_cache_location_falls_back_to_the_user_cache(small_folder, counted_probe, tmp_path):
    (small_folder / CACHE_NAME).mkdir()   # the cache file cannot be written there (even by root)
    first = load_index(small_folder, progress=False)
    fallback = list((tmp_path / "user_cache" / "uptal").glob("index-*.json"))
    assert len(fallback) == 1 and json.loads(fallback[0].read_text())["source"] == str(small_folder)
    counted_probe.clear()
    assert load_index(small_folder, progress=False).entries == first.entries
    assert counted_probe == []


def test_corrupt_or_foreign_caches_are_ignored(small_folder, counted_probe):
    cache_file = small_folder / CACHE_NAME
    for text in ("{not json", json.dumps({"format": "uptal-index-cache", "version": -1, "files": {}})):
        cache_file.write_text(text)
        counted_probe.clear()
        index = load_index(small_folder, progress=False)
        assert len(counted_probe) == 3 and index.counts() == {"ok": 2, "empty": 1}
    assert json.loads(cache_file.read_text())["version"] == index_module._CACHE_VERSION


def test_list_cache_lives_beside_the_list(small_folder, counted_probe):
    listing = small_folder.parent / "train.txt"
    listing.write_text("videos/a.mp4 x\nvideos/b.mp4 y\nvideos/gone.mp4 z\n")
    load_index(listing, progress=False)
    cache_file = small_folder.parent / "train.txt.uptal_index.json"
    written = cache_file.stat().st_ino
    counted_probe.clear()
    assert [e.status for e in load_index(listing, progress=False).entries] == ["ok", "ok", "missing"]
    assert counted_probe == [str(small_folder / "gone.mp4")]      # a missing file has no cache key
    assert cache_file.stat().st_ino == written


# ---------------------------------------------------------------------------------------------- real videos


def test_every_shared_video_is_usable(shared_videos):
    # cache=False: shared/data is not the project's to write into
    index = load_index(shared_videos, progress=False, cache=False, workers=2)
    names = {Path(e.path).name: e for e in index.entries}
    assert len(names) == 10 and index.counts() == {"ok": 10}
    for name, entry in names.items():
        info = entry.info
        assert info.duration > 0 and info.fps > 0 and info.num_frames > 0 and info.width > 0, name
    assert (names["tree.avi"].info.num_frames, names["tree.avi"].info.header_frames) == (68, 444)
    assert names["realshort.mp4"].info.num_frames == 36
    assert names["cockatoo.mp4"].info.pix_fmt == "yuv444p"
    # min_duration marks only the clips shorter than it
    short = load_index(shared_videos, progress=False, cache=False, min_duration=5.0)
    assert {Path(e.path).name for e in short.bad()} == {n for n, e in names.items() if e.info.duration < 5.0}
    assert all(e.status == "too_short" for e in short.bad())

