"""Tar shards (WebDataset layout): writing, indexing without probing, random access, streaming per rank,
and in-memory decoding."""
from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path

import pytest
import torch
from broken import MIN_DURATION
from datahelpers import read_ids

from uptal.cli import main
from uptal.data import (
    BytesSource,
    ShardRecord,
    VideoError,
    decode_window,
    iter_shard_records,
    load_index,
    open_entry_source,
    probe,
    read_manifest,
    write_shards,
)
from uptal.data import index as index_module
from uptal.data.shards import parse_size, shards_for_rank

USABLE = ["good.avi", "good.mp4", "slow.mp4", "sub/nested.mkv"]   # the broken data set's usable files, sorted


@pytest.fixture(scope="module")
def shard_dir(broken_dataset, tmp_path_factory) -> Path:
    """The broken data set's 4 usable videos, 1 per shard."""
    out = tmp_path_factory.mktemp("shards")
    write_shards(broken_dataset.folder, out, per_shard=1, min_duration=MIN_DURATION, progress=False)
    return out


def test_layout_manifest_and_members(shard_dir, broken_dataset):
    manifest = json.loads((shard_dir / "shards.json").read_text())
    assert manifest["format"] == "uptal-shards" and manifest["total"] == 4
    assert [s["name"] for s in manifest["shards"]] == [f"shard-{i:06d}.tar" for i in range(4)]
    assert [s["num_records"] for s in manifest["shards"]] == [1, 1, 1, 1]
    assert sorted(p.name for p in shard_dir.iterdir()) == ["shard-000000.tar", "shard-000001.tar",
                                                            "shard-000002.tar", "shard-000003.tar", "shards.json"]
    sources = []
    for shard in manifest["shards"]:
        path = shard_dir / shard["name"]
        assert shard["num_bytes"] == path.stat().st_size
        with tarfile.open(path) as tar:
            video, meta_member = tar.getmembers()
            key, ext = video.name.split(".")          # WebDataset: one dot-free key, then the extension
            assert meta_member.name == f"{key}.json" and "." not in key
            meta = json.loads(tar.extractfile(meta_member).read())
            assert meta == shard["records"][0] and meta["key"] == key and meta["ext"] == ext
            source = Path(meta["path"])
            assert ext == source.suffix[1:] and tar.extractfile(video).read() == source.read_bytes()
            assert meta["label"] is None and meta["size"] == source.stat().st_size
            info = probe(source)
            assert (meta["duration"], meta["fps"], meta["num_frames"], meta["width"], meta["height"],
                    meta["codec"]) == (info.duration, info.fps, info.num_frames, info.width, info.height, info.codec)
            sources.append(str(source.relative_to(broken_dataset.folder)))
    assert sources == USABLE     # only usable files (too_short and broken ones left out), in index order


def test_index_of_a_shard_set_needs_no_probing(shard_dir, broken_dataset, monkeypatch):
    def no_probe(path):
        raise AssertionError(f"probed {path}")

    monkeypatch.setattr(index_module, "probe", no_probe)
    for source in (shard_dir, shard_dir / "shards.json"):
        index = load_index(source, progress=False)
        assert index.counts() == {"ok": 4} and index.source == str(shard_dir / "shards.json")
        for entry in index.entries:
            shard, key = entry.path.split("#")
            assert Path(shard).parent == shard_dir and Path(shard).is_file() and key[:8].isdigit()
            assert str(entry.info.path) == entry.path
    monkeypatch.undo()
    by_name = {Path(e.path).name: e for e in load_index(broken_dataset.folder, progress=False, cache=False).entries}
    for entry in index.entries:
        meta = next(r for s in read_manifest(shard_dir).shards for r in s.records if entry.path.endswith(r["key"]))
        assert entry.info.num_frames == by_name[Path(meta["path"]).name].info.num_frames
    too_short = load_index(shard_dir, min_duration=1.0)
    assert too_short.counts() == {"ok": 1, "too_short": 3}         # only slow.mp4 (2 s) lasts 1 s


def test_shard_entries_decode_like_the_files(shard_dir):
    for entry in load_index(shard_dir).entries:
        source = open_entry_source(entry)
        assert isinstance(source, BytesSource) and source.name == entry.path
        original_path = json.loads(source_meta(entry.path))["path"]
        assert source.data == Path(original_path).read_bytes()
        from_bytes = probe(source)
        assert from_bytes == entry.info                           # same facts, named by the entry path
        a = decode_window(source, 0.1, 5, 10.0, 32, 48)
        b = decode_window(original_path, 0.1, 5, 10.0, 32, 48)
        assert a.length == b.length > 0 and torch.equal(a.frames, b.frames) and torch.equal(a.timestamps, b.timestamps)
    plain = "/some/file#1.mp4"
    assert open_entry_source(plain) == plain                       # not a shard path


def source_meta(entry_path: str) -> bytes:
    shard, key = entry_path.split("#")
    with tarfile.open(shard) as tar:
        return tar.extractfile(f"{key}.json").read()


def test_streams_give_ranks_disjoint_whole_shards(shard_dir):
    all_keys = {r["key"] for s in read_manifest(shard_dir).shards for r in s.records}
    orders = set()
    for epoch in range(4):
        per_rank = [[r.key for r in iter_shard_records(shard_dir, rank=rank, world_size=2, epoch=epoch, seed=3)]
                    for rank in (0, 1)]
        assert len(per_rank[0]) == len(per_rank[1]) == 2
        assert set(per_rank[0]).isdisjoint(per_rank[1]) and set(per_rank[0]) | set(per_rank[1]) == all_keys
        again = [r.key for r in iter_shard_records(shard_dir, rank=0, world_size=2, epoch=epoch, seed=3)]
        assert again == per_rank[0]
        orders.add(tuple(per_rank[0] + per_rank[1]))
    assert len(orders) > 1                                         # epochs reshuffle the shards
    record = next(iter_shard_records(shard_dir))
    assert isinstance(record, ShardRecord)
    assert record.data == Path(record.meta["path"]).read_bytes()
    assert record.info.num_frames == record.meta["num_frames"] and str(record.info.path).endswith("#" + record.key)


def test_shards_for_rank_rules():
    assert sorted(shards_for_rank(5)) == list(range(5))
    assert shards_for_rank(50, epoch=0) != shards_for_rank(50, epoch=1) != shards_for_rank(50, epoch=1, seed=1)
    shares = [shards_for_rank(7, rank=r, world_size=3, epoch=2, seed=1) for r in range(3)]
    assert sorted(sum(shares, [])) == list(range(7)) and [len(s) for s in shares] == [3, 2, 2]
    order = shards_for_rank(7, world_size=1, epoch=2, seed=1)
    assert shares[1] == order[1::3]                               # shard i of the order goes to rank i % W
    with pytest.raises(ValueError, match="2 shard.* cannot feed 3 ranks"):
        shards_for_rank(2, rank=0, world_size=3)
    for kwargs, name in ((dict(rank=2, world_size=2), "rank"), (dict(world_size=0), "world_size"),
                         (dict(epoch=-1), "epoch"), (dict(seed=1.5), "seed")):
        with pytest.raises(ValueError, match=name):
            shards_for_rank(4, **kwargs)


def test_fewer_shards_than_ranks_is_an_error(broken_dataset, tmp_path):
    write_shards(broken_dataset.folder, tmp_path, per_shard=10, progress=False)
    assert len(read_manifest(tmp_path).shards) == 1
    with pytest.raises(ValueError, match="1 shard.* cannot feed 2 ranks"):
        next(iter_shard_records(tmp_path, rank=0, world_size=2))


def test_max_size_bounds_every_shard(broken_dataset, tmp_path):
    sizes = {e.path: e.info for e in load_index(broken_dataset.folder, progress=False, cache=False).usable()}
    largest = max(Path(p).stat().st_size for p in sizes)
    limit = 2 * largest + 8192
    shard_set = write_shards(broken_dataset.folder, tmp_path, max_size=limit, progress=False)
    assert shard_set.total == 5 and len(shard_set.shards) >= 2        # min_duration 0: two_frames.mp4 is in
    for shard in shard_set.shards:
        assert (tmp_path / shard.name).stat().st_size <= limit
    tiny = write_shards(broken_dataset.folder, tmp_path / "tiny", max_size="1KB", progress=False)
    assert [s.num_records for s in tiny.shards] == [1] * 5          # a record larger than the limit: alone


def test_same_input_same_bytes_and_resharding(shard_dir, tmp_path, broken_dataset):
    write_shards(broken_dataset.folder, tmp_path / "again", per_shard=1, min_duration=MIN_DURATION, progress=False)
    for path in shard_dir.iterdir():
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes(), path.name
    merged = write_shards(shard_dir, tmp_path / "merged", per_shard=3, progress=False)
    assert [s.num_records for s in merged.shards] == [3, 1]
    old = sorted(r.data for r in iter_shard_records(shard_dir))
    assert sorted(r.data for r in iter_shard_records(tmp_path / "merged")) == old
    assert [r.key for r in iter_shard_records(tmp_path / "merged")][0][8:] == \
        read_manifest(shard_dir).shards[0].records[0]["key"][8:]   # the name part of the key survives
    with pytest.raises(ValueError, match="holds the shard set being read"):
        write_shards(shard_dir, shard_dir, progress=False)


def test_cut_or_missing_shards(shard_dir, tmp_path, caplog):
    copy = tmp_path / "set"
    copy.mkdir()
    manifest = read_manifest(shard_dir)
    (copy / "shards.json").write_text((shard_dir / "shards.json").read_text())
    for shard in manifest.shards[1:]:
        (copy / shard.name).write_bytes((shard_dir / shard.name).read_bytes())
    # shard 0 is gone; shard 1 is cut in the middle of its video
    second = shard_dir / manifest.shards[1].name
    with tarfile.open(second) as tar:
        video = tar.getmembers()[0]
    (copy / second.name).write_bytes(second.read_bytes()[:video.offset_data + video.size // 2])
    entries = load_index(copy).entries
    with pytest.raises(VideoError) as missing:
        open_entry_source(entries[0])
    assert missing.value.reason == "missing" and str(missing.value.path) == entries[0].path
    with pytest.raises(VideoError) as truncated:
        open_entry_source(entries[1])
    assert truncated.value.reason == "truncated"
    assert open_entry_source(entries[2]).data                       # the intact shards still work
    with caplog.at_level(logging.WARNING, logger="uptal.data"):
        keys = [r.key for r in iter_shard_records(copy)]
    assert sorted(keys) == sorted(e.path.split("#")[1] for e in entries[2:])
    assert sum("reading stopped" in r.message for r in caplog.records) == 2


def test_bad_manifests(tmp_path, shard_dir):
    (tmp_path / "shards.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a shard manifest"):
        load_index(tmp_path)
    document = json.loads((shard_dir / "shards.json").read_text())
    document["shards"][0]["name"] = "../../etc/passwd"
    (tmp_path / "shards.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="shard-NNNNNN.tar"):
        read_manifest(tmp_path / "shards.json")
    (tmp_path / "shards.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        iter_shard_records(tmp_path).__next__()


def test_parse_size():
    assert parse_size("1GB") == 10**9 and parse_size("500MB") == 5 * 10**8 and parse_size("64MiB") == 64 * 2**20
    assert parse_size("1.5g") == 1_500_000_000 and parse_size(" 2048 ") == 2048 and parse_size(4096) == 4096
    for bad in ("", "1XB", "-5MB", "0", "GB"):
        with pytest.raises(ValueError, match="max_size"):
            parse_size(bad)


def test_write_arguments(broken_dataset, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        write_shards(broken_dataset.folder, tmp_path, max_size="1GB", per_shard=2, progress=False)
    with pytest.raises(ValueError, match="per_shard"):
        write_shards(broken_dataset.folder, tmp_path, per_shard=0, progress=False)


# ---------------------------------------------------------------------------------------------- the command


def test_shard_command_then_check_the_shards(broken_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["data", "shard", str(broken_dataset.folder), "--out", str(out), "--per-shard", "3",
                 "--min-duration", str(MIN_DURATION), "--no-progress"])
    stdout, _ = capsys.readouterr()
    assert code == 0
    assert stdout.startswith("wrote 4 videos in 2 shards (") and "left out 13 unusable files" in stdout
    assert [s.num_records for s in read_manifest(out).shards] == [3, 1]
    assert main(["data", "check", str(out), "--json", "--no-progress"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in records] == ["ok"] * 4 and all("#" in r["path"] for r in records)
    with pytest.raises(SystemExit):                                  # argparse: one limit at most
        main(["data", "shard", str(broken_dataset.folder), "--out", str(out), "--per-shard", "3",
              "--max-size", "1GB"])
    capsys.readouterr()
    assert main(["data", "shard", str(broken_dataset.folder), "--out", str(out), "--max-size", "lots",
                 "--no-progress"]) == 2
    assert "max_size must be a size" in capsys.readouterr().err


def test_shard_command_with_nothing_usable(tmp_path, capsys):
    (tmp_path / "bad.mp4").write_text("no")
    code = main(["data", "shard", str(tmp_path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 1 and "no usable video" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- in memory


def test_bytes_sources_are_classified_like_files(broken_dataset):
    folder = broken_dataset.folder
    for name, reason in (("empty.mp4", "empty"), ("text.mp4", "not_a_video"), ("image.mp4", "not_a_video"),
                         ("audio_only.mp4", "not_a_video"), ("half.mp4", "truncated"),
                         ("sub/half.avi", "truncated"), ("zeroed.mp4", "undecodable"),
                         ("no_moov.mp4", "undecodable")):
        with pytest.raises(VideoError) as caught:
            probe(BytesSource(f"mem/{name}", (folder / name).read_bytes()))
        assert caught.value.reason == reason and str(caught.value.path) == f"mem/{name}", name
    with pytest.raises(VideoError, match="<bytes>: empty"):
        decode_window(b"", 0.0, 2, 10.0)


def test_bytes_decode_matches_the_file(cfr_video):
    data = cfr_video.read_bytes()
    assert probe(data).num_frames == probe(cfr_video).num_frames == 60
    for start in (0.0, 1.1):      # from the start, and after a seek
        a = decode_window(BytesSource("x", data), start, 12, 25.0)
        b = decode_window(cfr_video, start, 12, 25.0)
        assert torch.equal(a.frames, b.frames) and read_ids(a.frames) == read_ids(b.frames)


def test_bytes_source_arguments():
    with pytest.raises(ValueError, match="data"):
        BytesSource("x", "not bytes")
    with pytest.raises(ValueError, match="name"):
        BytesSource(3, b"x")
    with pytest.raises(ValueError, match="source"):
        probe(3.5)
