"""`uptal data check`: the table, the JSON lines, exit codes, and the odd-file warnings."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from broken import MIN_DURATION

from uptal.cli import main
from uptal.data import check_index, load_index, probe, summarize
from uptal.data.check import file_warnings, format_report


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_lists_every_bad_and_odd_file_with_its_reason(broken_dataset, capsys):
    code, out, err = run(capsys, str(broken_dataset.folder), "--min-duration", str(MIN_DURATION), "--no-progress",
                         "--no-cache")
    assert code == 0 and err == ""
    table, summary = out.split("\n\n")
    rows = table.splitlines()[1:]
    assert table.splitlines()[0].split() == ["STATUS", "PATH", "DETAIL"]
    by_path = {}
    for row in rows:
        status = "ok (odd)" if row.startswith("ok (odd)") else row.split()[0]
        path = row[len(status):].split()[0]
        by_path[path] = (status, row)
    bad = {p: s for p, s in broken_dataset.expected.items() if s != "ok"}
    assert {p: s for p, (s, _) in by_path.items() if s != "ok (odd)"} == bad
    # details say why: a few spot checks
    folder = broken_dataset.folder
    assert "0 bytes" in by_path[str(folder / "empty.mp4")][1]
    assert "no video stream (has audio)" in by_path[str(folder / "audio_only.mp4")][1]
    assert "still image" in by_path[str(folder / "image.mp4")][1]
    assert "only a cover picture" in by_path[str(folder / "music.mp4")][1]
    assert "0.08 s long, needs at least 0.5 s" in by_path[str(folder / "two_frames.mp4")][1]
    # good files are not listed; the odd one is, with both of its warnings
    assert str(folder / "good.mp4") not in by_path
    odd_status, odd_row = by_path[str(folder / "slow.mp4")]
    assert odd_status == "ok (odd)" and "low frame rate: 2 fps" in odd_row and "tiny frames: 96x48" in odd_row
    # rows come bad-first in status order
    assert [s for s, _ in by_path.values()] == sorted((s for s, _ in by_path.values()),
                                                      key=["missing", "empty", "not_a_video", "undecodable",
                                                           "truncated", "too_short", "ok (odd)"].index)
    lines = summary.splitlines()
    assert lines[0] == ("17 files: 4 ok, 1 missing, 1 empty, 6 not_a_video, 2 undecodable, 2 truncated, "
                        "1 too_short")
    assert lines[1].startswith("usable: 4 files, 0:00:") and lines[1].endswith("1 of them odd (see above)")


def test_json_lines_one_record_per_file(broken_dataset, capsys):
    code, out, _ = run(capsys, str(broken_dataset.txt_list), "--min-duration", str(MIN_DURATION), "--json",
                       "--no-progress", "--no-cache")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    expected = {**broken_dataset.expected, broken_dataset.missing_in_list: "missing"}
    assert {r["path"]: r["status"] for r in records} == expected
    keys = {"path", "status", "detail", "warnings", "label", "duration", "fps", "num_frames", "width", "height",
            "codec"}
    for record in records:
        assert set(record) == keys
        assert record["label"] == broken_dataset.labels[record["path"]]
        if record["status"] in ("ok", "too_short"):
            assert record["duration"] > 0 and record["num_frames"] >= 2 and record["codec"] in ("h264", "mpeg4")
        else:
            assert record["detail"] and record["duration"] is None and record["codec"] is None
    good = next(r for r in records if r["path"].endswith("/good.mp4"))
    assert (good["width"], good["height"], good["num_frames"], good["fps"], good["warnings"]) == (96, 64, 20, 25.0, [])
    slow = next(r for r in records if r["path"].endswith("/slow.mp4"))
    assert len(slow["warnings"]) == 2


def test_no_usable_file_exits_1_and_a_bad_source_exits_2(tmp_path, capsys):
    (tmp_path / "a.mp4").write_text("not a video")
    code, out, err = run(capsys, str(tmp_path), "--no-progress", "--no-cache")
    assert code == 1 and "1 file: 1 not_a_video" in out and "no usable video" in err
    code, out, err = run(capsys, str(tmp_path / "nowhere"), "--no-progress")
    assert code == 2 and out == "" and err.startswith("uptal data check: error:") and "nowhere" in err
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    code, out, _ = run(capsys, str(empty), "--no-progress")
    assert code == 1 and "0 files: none found" in out


def test_progress_bar_unless_disabled(tmp_path, capsys, broken_dataset):
    listing = tmp_path / "one.txt"
    listing.write_text(f"{broken_dataset.folder / 'good.mp4'}\n")
    code, _, err = run(capsys, str(listing), "--no-cache")
    assert code == 0 and "probing videos" in err


def test_warnings_for_odd_files(broken_dataset):
    info = probe(broken_dataset.folder / "good.mp4")        # 96x64, 25 fps, 20 frames, 0.8 s
    assert file_warnings(info) == []
    assert file_warnings(replace(info, fps=4.9)) == ["low frame rate: 4.9 fps (< 5)"]
    assert file_warnings(replace(info, width=63)) == ["tiny frames: 63x64 (short side < 64 px)"]
    # header counts: a rounding difference is fine, a header promising far more frames is not
    assert file_warnings(replace(info, header_frames=22)) == []
    assert file_warnings(replace(info, header_frames=0)) == []              # no count in the header
    assert file_warnings(replace(info, header_frames=444)) == ["header says 444 frames, the file holds 20"]
    # a CSV duration far from the file's
    assert file_warnings(info, listed_duration=1.5) == []
    assert file_warnings(info, listed_duration=12.0) == ["the list says 12 s, the file lasts 0.8 s"]


def test_listed_duration_mismatch_is_reported(broken_dataset, tmp_path):
    listing = tmp_path / "with_durations.csv"
    listing.write_text(f"path,duration\n{broken_dataset.folder / 'good.mp4'},30\n"
                       f"{broken_dataset.folder / 'good.avi'},0.8\n")
    records = check_index(load_index(listing, progress=False, cache=False))
    assert [r.warnings for r in records] == [("the list says 30 s, the file lasts 0.8 s",), ()]
    assert [r.status for r in records] == ["ok", "ok"]


def test_summary_totals(broken_dataset):
    index = load_index(broken_dataset.folder, min_duration=MIN_DURATION, progress=False, cache=False)
    records = check_index(index)
    summary = summarize(records)
    usable = index.usable()
    assert summary.usable == 4 and summary.total == 17 and summary.with_warnings == 1
    assert summary.usable_duration == pytest.approx(sum(e.info.duration for e in usable))
    assert summary.usable_frames == sum(e.info.num_frames for e in usable) == 20 + 20 + 15 + 4
    assert summary.counts == index.counts()
    assert summary.large == 0 and "transcode" not in format_report(records, summary)   # small test videos
    assert "0:00:" in format_report(records, summary)


def test_shared_videos_only_tree_avi_is_odd(shared_videos, capsys):
    code, out, _ = run(capsys, str(shared_videos), "--no-progress", "--no-cache")
    assert code == 0
    table, summary = out.split("\n\n")
    rows = table.splitlines()[1:]
    assert len(rows) == 1 and rows[0].startswith("ok (odd)") and Path(rows[0].split()[2]).name == "tree.avi"
    assert "header says 444 frames, the file holds 68" in rows[0]
    assert summary.splitlines()[0] == "10 files: 10 ok"
    # bigbuckbunny and cockatoo (1280x720), vtest (768x576), bikes (640x272); arm_wrestling's 256 is not over
    assert summary.splitlines()[2].startswith("4 files (1457 of the 2425 frames) stored with a short side over 256 px")
    assert summary.splitlines()[3].startswith("`uptal data transcode SOURCE --out DIR`")


def test_default_minimum_is_what_the_default_config_trains_on(broken_dataset, capsys):
    """Without --min-duration, files shorter than the default data config's min_frames at its fps are too_short."""
    code, out, _ = run(capsys, str(broken_dataset.folder), "--no-progress", "--no-cache")
    assert code == 0
    row = next(line for line in out.splitlines() if "two_frames.mp4" in line)
    assert row.startswith("too_short") and "0.08 s long, needs at least 0.32 s" in row
