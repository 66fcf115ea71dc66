"""The video index: which videos a data set has and what each one is, probed once and cached beside the data.

Sources `load_index` understands:

- a folder: every file below it (recursively) whose extension is in `VIDEO_EXTENSIONS`. Names starting with
  "." are skipped: hidden files, macOS "._clip.mp4" resource forks (not videos) and uptal's own cache. A
  folder named like a video ("x.mp4") is listed too, and reported as not a video.
- a TXT list (.txt, .lst): one path per line, optionally followed by whitespace and a label. The label is the
  last whitespace-separated word, so a path containing spaces needs the CSV form. Blank lines and lines
  starting with "#" are skipped.
- a CSV list (.csv): a header row with a "path" column and optional "label" and "duration" (seconds)
  columns. A listed duration is kept in `VideoIndex.listed_durations` (`uptal data check` compares it with
  the probed one); the file is probed all the same.
- a tar shard set written by `uptal data shard` (its folder, or its shards.json): entries come from the
  manifest, nothing is scanned or probed (see `uptal.data.shards`).

Relative paths in a list resolve against the list file's folder. Entry paths are absolute.

Every file is probed once (`uptal.data.decode.probe`, in a thread pool, with a progress bar) and the outcome,
good or bad, is cached in a JSON file keyed by path, size and modification time, so a second run probes only
new or changed files. The cache lives beside the data (`<folder>/.uptal_index.json`,
`<list>.uptal_index.json`); where that cannot be written (a read-only data set, or a folder without write
bits, left alone even for root) it goes to
`$XDG_CACHE_HOME/uptal` (default ~/.cache/uptal) under a name made from a hash of the source path. Caches
written by another PyAV version or cache format are ignored, since FFmpeg's verdict may differ.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import stat
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from tqdm import tqdm

from ..files import write_text_atomically
from .decode import VIDEO_ERROR_REASONS, VideoError, VideoInfo, probe

__all__ = [
    "INDEX_STATUSES",
    "OK",
    "TOO_SHORT",
    "VIDEO_EXTENSIONS",
    "IndexEntry",
    "VideoIndex",
    "apply_min_duration",
    "info_from_meta",
    "info_to_meta",
    "load_index",
]

log = logging.getLogger("uptal.data")

#: File extensions a folder scan picks up (compared lower-case): the containers video data sets ship in, phone
#: and camcorder formats (.3gp, AVCHD .mts/.m2ts), DVD (.vob) and broadcast (.ts, .mxf) captures. Still-image
#: formats such as .gif are left out (a folder of thumbnails would count as bad videos); list them in a TXT/CSV.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts",
                    ".m2ts", ".mts", ".3gp", ".3g2", ".ogv", ".vob", ".asf", ".mxf")

OK = "ok"
#: Readable, but shorter than load_index's `min_duration`.
TOO_SHORT = "too_short"
#: Every `IndexEntry.status`, in report order.
INDEX_STATUSES = (OK, *VIDEO_ERROR_REASONS, TOO_SHORT)

CACHE_NAME = ".uptal_index.json"
_CACHE_FORMAT = "uptal-index-cache"
_CACHE_VERSION = 3            # bump whenever probing or the record layout changes: old caches are then ignored
_TXT_SUFFIXES = (".txt", ".lst")
_MANIFEST_NAME = "shards.json"


@dataclass(frozen=True)
class IndexEntry:
    """One video of the index.

    path: absolute file path (for a tar-shard record: "<shard path>#<key>").
    label: the label given by a list (None for folders and unlabelled lines).
    info: what probing found; None when the file cannot be read (status is a VideoError reason). A
        "too_short" entry keeps its info, so reports can say how long it is.
    status: "ok", one of VIDEO_ERROR_REASONS, or "too_short".
    detail: human-readable detail for a bad status.
    """

    path: str
    label: str | None
    info: VideoInfo | None
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Usable for training."""
        return self.status == OK


@dataclass
class VideoIndex:
    """The videos of a data set, in source order (folders: sorted by path).

    listed_durations: path -> duration (s) given by a CSV list's "duration" column, for the files that had one.
    """

    entries: list[IndexEntry]
    source: str
    listed_durations: dict[str, float] = field(default_factory=dict)

    def usable(self) -> list[IndexEntry]:
        """Entries with status "ok"."""
        return [entry for entry in self.entries if entry.ok]

    def bad(self) -> list[IndexEntry]:
        """Entries that cannot be used (unreadable or too short)."""
        return [entry for entry in self.entries if not entry.ok]

    def counts(self) -> dict[str, int]:
        """status -> number of files, for the statuses present, in `INDEX_STATUSES` order."""
        counted = Counter(entry.status for entry in self.entries)
        return {status: counted[status] for status in INDEX_STATUSES if counted[status]}

    def __len__(self) -> int:
        return len(self.entries)


# ---------------------------------------------------------------------------------------------------------
# VideoInfo <-> JSON (the cache and the tar-shard metadata share this layout)


def info_to_meta(info: VideoInfo) -> dict[str, Any]:
    """The fields of a VideoInfo except its path, as JSON-ready values."""
    return {f.name: getattr(info, f.name) for f in fields(VideoInfo) if f.name != "path"}


def info_from_meta(path: str | os.PathLike, meta: Mapping[str, Any]) -> VideoInfo:
    """Rebuild a VideoInfo from `info_to_meta` output (or shard metadata); ValueError when a field is wrong."""
    try:
        return VideoInfo(
            path=Path(path), duration=float(meta["duration"]), fps=float(meta["fps"]),
            num_frames=int(meta["num_frames"]), height=int(meta["height"]), width=int(meta["width"]),
            codec=str(meta["codec"]), pix_fmt=str(meta.get("pix_fmt", "")),
            has_audio=bool(meta.get("has_audio", False)), header_frames=int(meta.get("header_frames", 0)),
            stray_packets=int(meta.get("stray_packets", 0)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: video metadata lacks or garbles {error}") from error


# ---------------------------------------------------------------------------------------------------------
# Listing the source


@dataclass(frozen=True)
class _Listed:
    """A path named by the source, with what the source says about it."""

    path: str
    label: str | None = None
    duration: float | None = None


def _absolute(base: Path, text: str) -> str:
    """An absolute, normalised path: `text` relative to `base` unless it is absolute already."""
    return os.path.normpath(os.path.join(base, os.path.expanduser(text)))


def _list_folder(folder: Path) -> list[_Listed]:
    """Files and folders below `folder` named like videos, sorted by path."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files + dirs:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                found.append(os.path.join(root, name))
    return [_Listed(path) for path in sorted(found)]


def _read_txt_list(list_file: Path) -> list[_Listed]:
    """One `path [label]` per line."""
    listed = []
    for line in list_file.read_text(encoding="utf-8-sig").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.rsplit(None, 1)
        listed.append(_Listed(_absolute(list_file.parent, parts[0]), parts[1] if len(parts) == 2 else None))
    return listed


def _read_csv_list(list_file: Path) -> list[_Listed]:
    """A CSV with a header row: path[,label][,duration]."""
    with open(list_file, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets often write a BOM
        reader = csv.DictReader(f)
        columns = [name.strip().lower() for name in reader.fieldnames or []]
        if "path" not in columns:
            raise ValueError(f"{list_file}: a CSV list needs a header row with a 'path' column "
                             f"(and optional 'label', 'duration'); got columns {columns}")
        reader.fieldnames = columns
        return [_csv_row(list_file, row, line) for line, row in enumerate(reader, start=2)]


def _csv_row(list_file: Path, row: dict[str, str | None], line: int) -> _Listed:
    """One CSV data row; ValueError naming the file and line when a cell is wrong."""
    path = (row.get("path") or "").strip()
    if not path:
        raise ValueError(f"{list_file}, line {line}: empty 'path'")
    label = (row.get("label") or "").strip() or None
    text = (row.get("duration") or "").strip()
    duration = None
    if text:
        try:
            duration = float(text)
        except ValueError:
            duration = math.nan
        if not (math.isfinite(duration) and duration >= 0):
            raise ValueError(f"{list_file}, line {line}: 'duration' must be a number of seconds >= 0, got {text!r}")
    return _Listed(_absolute(list_file.parent, path), label, duration)


def _list_source(source: Path) -> list[_Listed]:
    """The paths a folder or list names."""
    if source.is_dir():
        return _list_folder(source)
    suffix = source.suffix.lower()
    if suffix == ".csv":
        return _read_csv_list(source)
    if suffix in _TXT_SUFFIXES:
        return _read_txt_list(source)
    raise ValueError(f"source {source}: expected a folder, a .csv or .txt list, or a shard set "
                     f"(its folder or {_MANIFEST_NAME}); got a {suffix or 'extension-less'} file")


def _shard_manifest(source: Path) -> Path | None:
    """The shard manifest a source names (a shard folder or the manifest itself), or None."""
    if source.is_dir():
        manifest = source / _MANIFEST_NAME
        return manifest if manifest.is_file() else None
    return source if source.suffix.lower() == ".json" else None


# ---------------------------------------------------------------------------------------------------------
# Probing


@dataclass(frozen=True)
class _Probed:
    """What probing one file found (before min_duration is applied, so it can be cached)."""

    status: str
    detail: str = ""
    info: VideoInfo | None = None


def _probe_one(path: str) -> _Probed:
    """Probe a file, turning every way it can be bad into a status."""
    try:
        return _Probed(OK, info=probe(path))
    except VideoError as error:
        return _Probed(error.reason, error.detail)
    except OSError as error:  # it exists but cannot be read (permissions, I/O error): unusable, like missing
        return _Probed("missing", f"cannot be read: {error.strerror or error}")


def _probe_many(paths: list[str], workers: int, progress: bool) -> dict[str, _Probed]:
    """Probe files in a thread pool (FFmpeg works outside the GIL); a tqdm bar counts finished files."""
    results: dict[str, _Probed] = {}
    if not paths:
        return results
    with tqdm(total=len(paths), desc="probing videos", unit="file", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=min(workers, len(paths))) as pool:
        futures = {pool.submit(_probe_one, path): path for path in paths}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update()
    return results


# ---------------------------------------------------------------------------------------------------------
# The probe cache


def _file_key(path: str) -> tuple[int, int] | None:
    """(size, mtime in ns): what must be unchanged for a cached outcome to stand; None when stat fails."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _av_version() -> str:
    try:
        return metadata.version("av")
    except metadata.PackageNotFoundError:
        return "unknown"


class _ProbeCache:
    """Cached probe outcomes of one source: beside the data, or in the user cache when that is not writable."""

    def __init__(self, source: Path) -> None:
        beside = source / CACHE_NAME if source.is_dir() else source.with_name(source.name + CACHE_NAME)
        user_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uptal"
        digest = hashlib.sha256(str(source).encode()).hexdigest()[:16]
        self.source = source
        self.locations = [beside, user_dir / f"index-{digest}.json"]
        # Both locations are read: a data set that was writable once may hold a stale cache beside it.
        self.known = [self._read(location) for location in self.locations]

    def _read(self, location: Path) -> dict[str, Any]:
        """path -> record of one cache file; empty when absent, unreadable, corrupt or from another version."""
        try:
            document = json.loads(location.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        header = (document.get("format"), document.get("version"), document.get("av")) \
            if isinstance(document, dict) else None
        if header != (_CACHE_FORMAT, _CACHE_VERSION, _av_version()) or not isinstance(document.get("files"), dict):
            return {}
        return document["files"]

    def lookup(self, path: str, key: tuple[int, int] | None) -> _Probed | None:
        """The cached outcome for this file as it is now (same size and mtime), or None."""
        for files in self.known:
            record = files.get(path)
            if key is None or not isinstance(record, dict) or (record.get("size"), record.get("mtime_ns")) != key:
                continue
            with contextlib.suppress(KeyError, TypeError, ValueError):  # a garbled record: probe again
                info = info_from_meta(path, record["info"]) if record["info"] is not None else None
                return _Probed(str(record["status"]), str(record["detail"]), info)
        return None

    def holds_exactly(self, paths: list[str]) -> bool:
        """Does one cache file hold records for exactly these paths (so rewriting it would change nothing)?"""
        wanted = set(paths)
        return any(files.keys() == wanted for files in self.known)

    def save(self, outcomes: dict[str, tuple[tuple[int, int], _Probed]]) -> None:
        """Replace the cache by these outcomes (path -> (file key, outcome)); a failure is only logged."""
        files = {path: {"size": key[0], "mtime_ns": key[1], "status": outcome.status, "detail": outcome.detail,
                        "info": info_to_meta(outcome.info) if outcome.info is not None else None}
                 for path, (key, outcome) in outcomes.items()}
        text = json.dumps({"format": _CACHE_FORMAT, "version": _CACHE_VERSION, "av": _av_version(),
                           "source": str(self.source), "files": files})
        errors = []
        for location in self.locations:
            if location == self.locations[0] and not _may_write_in(location.parent):
                continue
            try:
                write_text_atomically(location, text)
                return
            except OSError as error:
                errors.append(f"{location}: {error.strerror or error}")
        log.warning("could not write the probe cache (%s); the next run probes again", "; ".join(errors))


def _may_write_in(folder: Path) -> bool:
    """May uptal add a file to this folder? Not when its mode has no write bit at all: a data set made
    read-only on purpose stays untouched even for root, whom the permission check would let through."""
    try:
        return bool(stat.S_IMODE(folder.stat().st_mode) & 0o222) and os.access(folder, os.W_OK)
    except OSError:
        return False


def _probe_with_cache(paths: list[str], cache: _ProbeCache | None, workers: int,
                      progress: bool) -> dict[str, _Probed]:
    """path -> probe outcome for every distinct path, probing only what the cache does not hold."""
    unique = list(dict.fromkeys(paths))
    # stat before probing: a file that changes while being probed gets a new key, so it is probed again next time
    keys = {path: _file_key(path) for path in unique}
    outcomes: dict[str, _Probed] = {}
    if cache is not None:
        for path in unique:
            cached = cache.lookup(path, keys[path])
            if cached is not None:
                outcomes[path] = cached
    todo = [path for path in unique if path not in outcomes]
    outcomes.update(_probe_many(todo, workers, progress))
    with_keys = [path for path in unique if keys[path] is not None]
    probed_files = any(keys[path] is not None for path in todo)
    if cache is not None and (probed_files or not cache.holds_exactly(with_keys)):  # no needless rewrite
        cache.save({path: (keys[path], outcomes[path]) for path in with_keys})
    return outcomes


# ---------------------------------------------------------------------------------------------------------
# load_index


def _check_options(min_duration: float, workers: int | None) -> None:
    if isinstance(min_duration, bool) or not isinstance(min_duration, (int, float)) \
            or not math.isfinite(min_duration) or min_duration < 0:
        raise ValueError(f"min_duration must be a finite number of seconds >= 0, got {min_duration!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int or None (automatic), got {workers!r}")


def apply_min_duration(entry: IndexEntry, min_duration: float) -> IndexEntry:
    """The entry, marked "too_short" when it is usable but shorter than min_duration seconds."""
    if not entry.ok or entry.info is None or entry.info.duration >= min_duration:
        return entry
    detail = f"{entry.info.duration:.3g} s long, needs at least {min_duration:g} s"
    return IndexEntry(entry.path, entry.label, entry.info, TOO_SHORT, detail)


def load_index(source: str | os.PathLike, *, min_duration: float = 0.0, workers: int | None = None,
               progress: bool = True, cache: bool = True) -> VideoIndex:
    """Index a folder, a CSV/TXT list or a tar shard set (see the module docstring).

    min_duration: usable files shorter than this many seconds get status "too_short".
    workers: probing threads (default: min(8, CPU count)).
    progress: show a tqdm progress bar (on stderr) while probing.
    cache: read and write the probe cache (False: probe everything, write nothing).
    ValueError when the source does not exist or a list is malformed.
    """
    _check_options(min_duration, workers)
    root = Path(os.path.abspath(os.path.expanduser(os.fspath(source))))
    if not root.exists():
        raise ValueError(f"source {os.fspath(source)!r}: no such file or folder")
    manifest = _shard_manifest(root)
    if manifest is not None:
        from .shards import index_from_manifest  # shards imports this module, so not at the top
        return index_from_manifest(manifest, min_duration=min_duration)
    listed = _list_source(root)
    probe_cache = _ProbeCache(root) if cache else None
    outcomes = _probe_with_cache([item.path for item in listed], probe_cache,
                                 workers or min(8, os.cpu_count() or 1), progress)
    entries = []
    for item in listed:
        outcome = outcomes[item.path]
        entry = IndexEntry(item.path, item.label, outcome.info, outcome.status, outcome.detail)
        entries.append(apply_min_duration(entry, min_duration))
    durations = {item.path: item.duration for item in listed if item.duration is not None}
    return VideoIndex(entries, str(root), durations)
