"""Tar shards in the WebDataset layout: a data set as a few large files that every rank streams on its own.

Layout written by `write_shards` (`uptal data shard SOURCE --out DIR`):

    DIR/shard-000000.tar, shard-000001.tar, ...   one record per usable video, two members with one key:
        <key>.<ext>    the video file's bytes, unchanged (ext: its original extension, lower-case)
        <key>.json     metadata: key, path (the original file), label, duration, fps, num_frames, width,
                       height, codec, pix_fmt, has_audio, header_frames, stray_packets, size (bytes), ext
    DIR/shards.json    the manifest: format, version, total, and for every shard its name, num_records,
                       num_bytes and its records' metadata (so indexing a shard set reads no tar file)

Keys are "<8-digit record number>_<file stem, characters other than [A-Za-z0-9_-] replaced by _>": unique,
readable and dot-free (WebDataset cuts the key at the first dot of a member name). Members carry mtime 0,
mode 0444 and no owner, so the same input gives byte-identical shards. A shard closes before it would
exceed `max_size` bytes (or holds `per_shard` records); a single video larger than `max_size` gets a shard
of its own.

Writing is atomic: each shard is written under a temporary name, then renamed, and the manifest is written
last, so readers never see a half-written set. Writing again into the same folder replaces the manifest;
shard files it no longer lists are left on disk and ignored.

Reading, without scanning or probing anything:
- `load_index(DIR)` / `load_index(DIR/shards.json)` gives entries with path "<shard path>#<key>" and their
  info from the manifest; `open_entry_source(entry)` reads such an entry's video bytes from its tar (random
  access: one header scan per shard and process, then a seek) as a `BytesSource` that `probe` and
  `decode_window` accept, so a map-style loader decodes shard entries like files.
- `iter_shard_records(DIR, rank=, world_size=, epoch=, seed=)` streams whole shards sequentially: the shard
  order is shuffled per (seed, epoch) and shard i of that order goes to rank i % world_size, so ranks read
  disjoint shards. Every rank needs at least one shard: fewer shards than ranks is an error. When the
  number of shards is not a multiple of world_size, ranks get different numbers of shards (and records);
  a DDP training loop must then agree on a common number of steps.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
from tqdm import tqdm

from ..files import write_text_atomically
from .decode import BytesSource, VideoError, VideoInfo
from .index import OK, IndexEntry, VideoIndex, apply_min_duration, info_from_meta, info_to_meta, load_index

__all__ = [
    "DEFAULT_MAX_SIZE",
    "MANIFEST_NAME",
    "ShardInfo",
    "ShardRecord",
    "ShardSet",
    "index_from_manifest",
    "iter_shard_records",
    "open_entry_source",
    "parse_size",
    "read_manifest",
    "shards_for_rank",
    "write_shards",
]

log = logging.getLogger("uptal.data")

MANIFEST_NAME = "shards.json"
MANIFEST_FORMAT = "uptal-shards"
MANIFEST_VERSION = 1
DEFAULT_MAX_SIZE = 1_000_000_000   # bytes per shard when neither max_size nor per_shard is given

_SHARD_NAME = re.compile(r"shard-\d{6}\.tar")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_RECORD_NUMBER = re.compile(r"^\d{8}_?")     # the number part of a key this module wrote
_STEM_CHARS = 64                   # keys stay short enough for plain tar headers
_SIZE_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
               "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclass(frozen=True)
class ShardRecord:
    """One streamed record: its key, the video file's bytes, its metadata and the VideoInfo rebuilt from it."""

    key: str
    data: bytes
    meta: dict[str, Any]
    info: VideoInfo


@dataclass(frozen=True)
class ShardInfo:
    """One shard of a manifest: file name, records, size in bytes, and each record's metadata."""

    name: str
    num_records: int
    num_bytes: int
    records: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ShardSet:
    """A shard folder and its shards, as the manifest lists them.

    skipped: files `write_shards` could not read while writing (path, why); not stored in the manifest.
    """

    directory: Path
    shards: tuple[ShardInfo, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def total(self) -> int:
        """Records in all shards."""
        return sum(shard.num_records for shard in self.shards)

    @property
    def num_bytes(self) -> int:
        """Bytes of all shard files."""
        return sum(shard.num_bytes for shard in self.shards)

    def manifest(self) -> dict[str, Any]:
        """The JSON document of shards.json."""
        return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "total": self.total,
                "shards": [{"name": s.name, "num_records": s.num_records, "num_bytes": s.num_bytes,
                            "records": list(s.records)} for s in self.shards]}


def parse_size(text: str | int) -> int:
    """Bytes from "1GB", "500MB", "1.5G", "64MiB" or a plain number (K/M/G/T are powers of 1000)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).upper() if match else None
        if unit not in _SIZE_UNITS:
            raise ValueError(f"max_size must be a size such as 1GB, 500MB, 64MiB or a number of bytes, got {text!r}")
        value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value < 1:
        raise ValueError(f"max_size must be at least 1 byte, got {text!r}")
    return value


# ---------------------------------------------------------------------------------------------------------
# Writing


def _key(number: int, entry: IndexEntry) -> str:
    """A unique, dot-free, readable record key (re-sharding keeps the old key's name part, not its number)."""
    split = _split_shard_path(entry.path)
    stem = _RECORD_NUMBER.sub("", split[1]) if split is not None else Path(entry.path).stem
    stem = _KEY_UNSAFE.sub("_", stem)[:_STEM_CHARS].strip("_")
    return f"{number:08d}_{stem}" if stem else f"{number:08d}"


def _tar_size(content_bytes: int) -> int:
    """Bytes of a tar file holding `content_bytes` of headers + padded data: end blocks, then block padding."""
    return math.ceil((content_bytes + 2 * tarfile.BLOCKSIZE) / tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _member_bytes(size: int) -> int:
    """Tar bytes of a member of `size` bytes (one header block + data padded to blocks)."""
    return tarfile.BLOCKSIZE + math.ceil(size / tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    """A member header that does not depend on who wrote the shard or when."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _ShardWriter:
    """Appends records to shard-NNNNNN.tar files in a folder, starting a new shard when the limits say so."""

    def __init__(self, directory: Path, max_size: int | None, per_shard: int | None) -> None:
        self.directory, self.max_size, self.per_shard = directory, max_size, per_shard
        self.shards: list[ShardInfo] = []
        self.count = 0                      # records added, in all shards
        self._tar: tarfile.TarFile | None = None
        self._name = self._temporary = ""
        self._records: list[dict[str, Any]] = []
        self._bytes = 0

    def add(self, key: str, video: BinaryIO, size: int, meta: dict[str, Any]) -> None:
        """Write `<key>.<ext>` (size bytes read from `video`) and `<key>.json`."""
        meta_bytes = json.dumps(meta, sort_keys=True).encode()
        record_bytes = _member_bytes(size) + _member_bytes(len(meta_bytes))
        if self._tar is not None and self._full(record_bytes):
            self._finish()
        if self._tar is None:
            self._start()
        self._tar.addfile(_tar_info(f"{key}.{meta['ext']}", size), video)
        self._tar.addfile(_tar_info(f"{key}.json", len(meta_bytes)), io.BytesIO(meta_bytes))
        self._records.append(meta)
        self._bytes += record_bytes
        self.count += 1

    def close(self) -> list[ShardInfo]:
        """Finish the last shard; the shards written."""
        if self._tar is not None:
            self._finish()
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (its temporary file)."""
        if self._tar is not None:
            self._tar.fileobj.close()
            self._tar = None
            os.unlink(self._temporary)

    def _full(self, record_bytes: int) -> bool:
        if self.per_shard is not None:
            return len(self._records) >= self.per_shard
        return _tar_size(self._bytes + record_bytes) > self.max_size

    def _start(self) -> None:
        self._name = f"shard-{len(self.shards):06d}.tar"
        fd, self._temporary = tempfile.mkstemp(dir=self.directory, prefix=f".{self._name}.", suffix=".tmp")
        self._tar = tarfile.open(fileobj=os.fdopen(fd, "wb"), mode="w", format=tarfile.PAX_FORMAT)
        self._records, self._bytes = [], 0

    def _finish(self) -> None:
        self._tar.close()
        self._tar.fileobj.close()  # tarfile leaves a caller's file object open
        self._tar = None
        os.chmod(self._temporary, 0o644)  # mkstemp makes it private; other users of the data set must read it
        final = self.directory / self._name
        os.replace(self._temporary, final)
        self.shards.append(ShardInfo(self._name, len(self._records), final.stat().st_size, tuple(self._records)))


def _extension(name: str) -> str:
    """A member extension from a file name: its suffix, lower-case, without the dot ("video" when none)."""
    suffix = Path(name).suffix.lower().lstrip(".")
    return _KEY_UNSAFE.sub("_", suffix) or "video"


def _open_payload(entry: IndexEntry) -> tuple[BinaryIO, int, str]:
    """(readable file object, byte size, extension) of an entry's video: a file, or a member of a shard."""
    split = _split_shard_path(entry.path)
    if split is not None:
        member_name, data = _read_member(entry.path, *split)
        return io.BytesIO(data), len(data), _extension(member_name)
    video = open(entry.path, "rb")
    return video, os.fstat(video.fileno()).st_size, _extension(entry.path)


def _record_meta(key: str, entry: IndexEntry, size: int, ext: str) -> dict[str, Any]:
    """The <key>.json metadata of one record."""
    return {"key": key, "path": entry.path, "label": entry.label, **info_to_meta(entry.info), "size": size,
            "ext": ext}


def _shard_limits(max_size: int | str | None, per_shard: int | None) -> tuple[int | None, int | None]:
    """(max bytes, max records) per shard: exactly one of them is set."""
    if max_size is not None and per_shard is not None:
        raise ValueError("give max_size or per_shard, not both")
    if per_shard is not None:
        if isinstance(per_shard, bool) or not isinstance(per_shard, int) or per_shard < 1:
            raise ValueError(f"per_shard must be a positive int, got {per_shard!r}")
        return None, per_shard
    return parse_size(max_size if max_size is not None else DEFAULT_MAX_SIZE), None


def write_shards(source: VideoIndex | str | os.PathLike, out: str | os.PathLike, *,
                 max_size: int | str | None = None, per_shard: int | None = None, min_duration: float = 0.0,
                 workers: int | None = None, progress: bool = True) -> ShardSet:
    """Write every usable video of `source` (an index, or what `load_index` reads) as tar shards in `out`.

    max_size: bytes per shard (an int or "1GB"-style text; default 1 GB); per_shard: records per shard
    instead. min_duration, workers: passed to load_index when `source` is not an index yet. A file that
    cannot be read any more is skipped with a warning and listed in the result's `skipped`.
    """
    max_bytes, per_shard = _shard_limits(max_size, per_shard)
    out = Path(os.path.abspath(os.fspath(out)))
    index = source if isinstance(source, VideoIndex) else load_index(
        source, min_duration=min_duration, workers=workers, progress=progress)
    if Path(index.source) in (out, out / MANIFEST_NAME):
        raise ValueError(f"out {out} holds the shard set being read: write the new shards to another folder")
    out.mkdir(parents=True, exist_ok=True)
    writer, skipped = _ShardWriter(out, max_bytes, per_shard), []
    try:
        for entry in tqdm(index.usable(), desc="writing shards", unit="video", disable=not progress):
            try:
                video, size, ext = _open_payload(entry)
            except (OSError, VideoError) as error:  # changed since it was indexed: skip it, keep the rest
                log.warning("not sharded: %s cannot be read any more (%s)", entry.path, error)
                skipped.append((entry.path, str(error)))
                continue
            key = _key(writer.count, entry)
            with video:
                writer.add(key, video, size, _record_meta(key, entry, size, ext))
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    shard_set = ShardSet(out, tuple(shards), tuple(skipped))
    write_text_atomically(out / MANIFEST_NAME, json.dumps(shard_set.manifest()))
    return shard_set


# ---------------------------------------------------------------------------------------------------------
# The manifest


def read_manifest(source: str | os.PathLike) -> ShardSet:
    """The shard set of a manifest file, or of a folder holding shards.json; ValueError naming the file."""
    path = Path(os.path.abspath(os.fspath(source)))
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{path}: cannot read the shard manifest: {error.strerror or error}") from error
    except ValueError as error:
        raise ValueError(f"{path}: the shard manifest is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: not a shard manifest written by `uptal data shard` "
                         f"(expected \"format\": \"{MANIFEST_FORMAT}\")")
    if document.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: shard manifest version {document.get('version')!r}, this uptal reads "
                         f"version {MANIFEST_VERSION}")
    try:
        shards = tuple(_shard_info(item) for item in document["shards"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: malformed shard list in the manifest: {error}") from error
    return ShardSet(path.parent, shards)


def _shard_info(item: dict[str, Any]) -> ShardInfo:
    """One manifest shard entry; its name must be a plain shard file name (never a path elsewhere)."""
    name = item["name"]
    if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name):
        raise ValueError(f"shard name {name!r} is not of the form shard-NNNNNN.tar")
    records = tuple(item["records"])
    if int(item["num_records"]) != len(records) or not all(isinstance(r, dict) and "key" in r for r in records):
        raise ValueError(f"{name}: num_records and the record list disagree")
    return ShardInfo(name, len(records), int(item["num_bytes"]), records)


def index_from_manifest(manifest: str | os.PathLike, *, min_duration: float = 0.0) -> VideoIndex:
    """A VideoIndex of a shard set, from its manifest alone: entries "<shard path>#<key>", info from metadata."""
    shard_set = read_manifest(manifest)
    entries = []
    for shard in shard_set.shards:
        for meta in shard.records:
            path = f"{shard_set.directory / shard.name}#{meta['key']}"
            entry = IndexEntry(path, meta.get("label"), info_from_meta(path, meta), OK)
            entries.append(apply_min_duration(entry, min_duration))
    return VideoIndex(entries, str(shard_set.directory / MANIFEST_NAME))


# ---------------------------------------------------------------------------------------------------------
# Random access: one record of a shard


def _split_shard_path(path: str) -> tuple[str, str] | None:
    """(shard path, key) of a "<shard>.tar#<key>" entry path; None for a plain file path."""
    shard, sep, key = path.rpartition("#")
    if not sep or not key or not shard.endswith(".tar") or os.path.isfile(path):  # a file may contain "#"
        return None
    return shard, key


@dataclass(frozen=True)
class _ShardTable:
    """Where each record's video lies in one shard file; `error` says why a header scan stopped early."""

    members: dict[str, tarfile.TarInfo]
    error: str


def _shard_table(shard: str) -> _ShardTable:
    """The member table of a shard as it is now on disk (cached per process by size and mtime)."""
    stat = os.stat(shard)
    return _scan_shard(shard, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _scan_shard(shard: str, size: int, mtime_ns: int) -> _ShardTable:
    """key -> video member of a shard, from one pass over its headers (tarfile seeks past the data)."""
    members: dict[str, tarfile.TarInfo] = {}
    error = ""
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar:
                key, _, ext = member.name.rpartition("/")[2].partition(".")
                if member.isfile() and ext != "json":
                    members.setdefault(key, member)
    except tarfile.TarError as caught:
        error = str(caught) or type(caught).__name__
    return _ShardTable(members, error)


def _read_member(entry_path: str, shard: str, key: str) -> tuple[str, bytes]:
    """(member name, bytes) of a record's video; VideoError (naming the entry) when it cannot be read."""
    try:
        table = _shard_table(shard)
        member = table.members.get(key)
        if member is None:
            reason, why = ("truncated", f"the shard ends early ({table.error})") if table.error else \
                ("missing", "the shard has no such record")
            raise VideoError(entry_path, reason, why)
        with open(shard, "rb") as f:
            f.seek(member.offset_data)
            data = f.read(member.size)
    except OSError as error:
        raise VideoError(entry_path, "missing", f"cannot read shard {shard}: {error.strerror or error}") from error
    if len(data) < member.size:
        raise VideoError(entry_path, "truncated", f"the shard ends inside {member.name}")
    return member.name, data


def open_entry_source(entry: IndexEntry | str | os.PathLike) -> str | BytesSource:
    """What `probe` / `decode_window` should read for an index entry (or entry path).

    A plain file entry gives its path. A "<shard>#<key>" entry gives a BytesSource (named by the entry path)
    holding that record's video, read from the tar by random access; VideoError when it cannot be read.
    """
    path = entry.path if isinstance(entry, IndexEntry) else os.fspath(entry)
    split = _split_shard_path(path)
    if split is None:
        return path
    return BytesSource(path, _read_member(path, *split)[1])


# ---------------------------------------------------------------------------------------------------------
# Streaming: whole shards per rank


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def shards_for_rank(num_shards: int, *, rank: int = 0, world_size: int = 1, epoch: int = 0,
                    seed: int = 0) -> list[int]:
    """Indices of the shards `rank` reads this epoch: shard order shuffled per (seed, epoch), i -> i % world_size.

    ValueError when there are fewer shards than ranks (a rank would get nothing to read).
    """
    _check_int("world_size", world_size, 1)
    _check_int("rank", rank, 0)
    _check_int("epoch", epoch, 0)
    _check_int("seed", seed, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size ({world_size}), got {rank}")
    if num_shards < world_size:
        raise ValueError(f"{num_shards} shard(s) cannot feed {world_size} ranks: every rank reads whole shards; "
                         f"write at least {world_size} shards (uptal data shard ... --per-shard N)")
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(num_shards)
    return [int(i) for i in order[rank::world_size]]


def iter_shard_records(manifest_or_dir: str | os.PathLike, *, rank: int = 0, world_size: int = 1, epoch: int = 0,
                       seed: int = 0) -> Iterator[ShardRecord]:
    """Stream the records of this rank's shards (see `shards_for_rank`), each shard read sequentially.

    Records come in their order within a shard. A shard that is missing or cut short is not fatal: what can
    be read is streamed and the rest is skipped with a warning on the "uptal.data" logger.
    """
    shard_set = read_manifest(manifest_or_dir)  # checked here, at the call, not at the first record
    mine = shards_for_rank(len(shard_set.shards), rank=rank, world_size=world_size, epoch=epoch, seed=seed)
    return _stream_shards([str(shard_set.directory / shard_set.shards[i].name) for i in mine])


def _stream_shards(shards: list[str]) -> Iterator[ShardRecord]:
    for shard in shards:
        yield from _stream_shard(shard)


def _stream_shard(shard: str) -> Iterator[ShardRecord]:
    """The complete records of one shard, in order (members of a record are adjacent, WebDataset-style)."""
    key, parts, streamed = None, {}, 0
    try:
        with tarfile.open(shard, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                member_key, _, ext = member.name.rpartition("/")[2].partition(".")
                if member_key != key:
                    record = _record(shard, key, parts)
                    if record is not None:
                        streamed += 1
                        yield record
                    key, parts = member_key, {}
                parts[ext] = tar.extractfile(member).read()
    except (OSError, tarfile.TarError) as error:
        log.warning("shard %s: reading stopped after %d records (%s); the rest of it is skipped", shard,
                    streamed, error)
        return
    record = _record(shard, key, parts)
    if record is not None:
        yield record


def _record(shard: str, key: str | None, parts: dict[str, bytes]) -> ShardRecord | None:
    """A ShardRecord from one key's members; None (with a warning) when the video or its metadata is missing."""
    if key is None:
        return None
    videos = [ext for ext in parts if ext != "json"]
    try:
        if "json" not in parts or not videos:
            raise ValueError("needs a video member and a .json member")
        meta = json.loads(parts["json"])
        info = info_from_meta(f"{shard}#{key}", meta)
    except ValueError as error:
        log.warning("shard %s: record %r skipped: %s", shard, key, error)
        return None
    return ShardRecord(key, parts[videos[0]], meta, info)
