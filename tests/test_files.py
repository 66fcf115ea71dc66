"""Atomic writes: the real name holds the old file or the whole new one, never a part, and nothing is left over."""
from __future__ import annotations

import json

import pytest

from uptal.files import write_atomically, write_json_atomically, write_text_atomically


def test_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_json_atomically(target, {"x": 1})
    write_text_atomically(target.with_name("b.txt"), "hello")
    assert json.loads(target.read_text()) == {"x": 1} and (tmp_path / "sub" / "b.txt").read_text() == "hello"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.json", "b.txt"]


def test_a_failing_writer_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    write_text_atomically(target, "old")

    def half_then_crash(temporary):
        temporary.write_text("ne")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, half_then_crash)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
