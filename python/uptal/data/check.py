"""What `uptal data check` reports: every file's status, warnings for odd but usable files, and a summary.

`check_index(index)` turns a `VideoIndex` into one `CheckRecord` per file; `summarize` counts them;
`format_report` renders the human table (bad and odd files only) plus the summary. Nothing here decodes:
all facts come from the index's probe results.

Odd files keep status "ok" and get warnings, because training can use them but a person should look:
- a frame rate below `LOW_FPS` (a slideshow, or a broken timestamp);
- a short side below `TINY_SIDE` pixels (upscaled to the working size, mostly blur);
- a header frame count far from the frames actually stored (the header is wrong: tree.avi says 444, has 68);
- a duration given by a CSV list far from the probed one (the list and the file disagree).
The summary also counts the usable files stored much larger than training reads them (short side over
`LARGE_SIDE`): each epoch decodes their pixels only to resize them away, which `uptal data transcode` does once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from ..config import DataConfig
from .decode import VideoInfo
from .index import INDEX_STATUSES, OK, VideoIndex

__all__ = ["LARGE_SIDE", "LOW_FPS", "TINY_SIDE", "CheckRecord", "CheckSummary", "check_index", "file_warnings",
           "format_report", "summarize"]

LOW_FPS = 5.0
TINY_SIDE = 64
LARGE_SIDE = 2 * DataConfig().height   # twice the working short side (data.height, 128 by default)
# "Far": a count or duration off by more than this fraction, and by more than the absolute slack (rounding).
_RELATIVE_SLACK = 0.1
_FRAME_SLACK = 2
_SECONDS_SLACK = 1.0


@dataclass(frozen=True)
class CheckRecord:
    """One file of the data set as `uptal data check` reports it (info fields are None when unreadable)."""

    path: str
    status: str
    detail: str
    warnings: tuple[str, ...]
    label: str | None
    duration: float | None
    fps: float | None
    num_frames: int | None
    width: int | None
    height: int | None
    codec: str | None

    def to_json(self) -> dict[str, Any]:
        """The --json line of this file."""
        return {"path": self.path, "status": self.status, "detail": self.detail, "warnings": list(self.warnings),
                "label": self.label, "duration": self.duration, "fps": self.fps, "num_frames": self.num_frames,
                "width": self.width, "height": self.height, "codec": self.codec}


@dataclass(frozen=True)
class CheckSummary:
    """Counts over a checked data set; duration and frames are totals over the usable files."""

    counts: dict[str, int]
    total: int
    usable: int
    usable_duration: float
    usable_frames: int
    with_warnings: int
    large: int           # usable files with a short side over LARGE_SIDE
    large_frames: int    # their frames


def _far(a: float, b: float, slack: float) -> bool:
    return abs(a - b) > max(slack, _RELATIVE_SLACK * max(a, b))


def file_warnings(info: VideoInfo, listed_duration: float | None = None) -> list[str]:
    """Why a readable file looks odd (empty when it does not)."""
    warnings = []
    if info.fps < LOW_FPS:
        warnings.append(f"low frame rate: {info.fps:.3g} fps (< {LOW_FPS:g})")
    if min(info.width, info.height) < TINY_SIDE:
        warnings.append(f"tiny frames: {info.width}x{info.height} (short side < {TINY_SIDE} px)")
    if info.header_frames and _far(info.header_frames, info.num_frames, _FRAME_SLACK):
        warnings.append(f"header says {info.header_frames} frames, the file holds {info.num_frames}")
    if info.stray_packets:
        warnings.append(f"{info.stray_packets} packets timed far outside the header's duration (damaged timestamps?): "
                        f"left out, the video lasts {info.duration:.3g} s")
    if listed_duration is not None and _far(listed_duration, info.duration, _SECONDS_SLACK):
        warnings.append(f"the list says {listed_duration:g} s, the file lasts {info.duration:.3g} s")
    return warnings


def check_index(index: VideoIndex) -> list[CheckRecord]:
    """One record per index entry, in index order."""
    records = []
    for entry in index.entries:
        info = entry.info
        warnings = tuple(file_warnings(info, index.listed_durations.get(entry.path))) if info is not None else ()
        records.append(CheckRecord(
            path=entry.path, status=entry.status, detail=entry.detail, warnings=warnings, label=entry.label,
            duration=info.duration if info else None, fps=info.fps if info else None,
            num_frames=info.num_frames if info else None, width=info.width if info else None,
            height=info.height if info else None, codec=info.codec if info else None))
    return records


def summarize(records: Sequence[CheckRecord]) -> CheckSummary:
    """Counts per status, and what the usable files add up to."""
    usable = [r for r in records if r.status == OK]
    large = [r for r in usable if min(r.width or 0, r.height or 0) > LARGE_SIDE]
    counts = {status: sum(r.status == status for r in records) for status in INDEX_STATUSES}
    return CheckSummary(
        counts={status: n for status, n in counts.items() if n}, total=len(records), usable=len(usable),
        usable_duration=sum(r.duration or 0.0 for r in usable), usable_frames=sum(r.num_frames or 0 for r in usable),
        with_warnings=sum(bool(r.warnings) for r in usable), large=len(large),
        large_frames=sum(r.num_frames or 0 for r in large))


def _clock(seconds: float) -> str:
    """h:mm:ss.s"""
    tenths = round(seconds * 10)
    hours, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    return f"{hours}:{minutes:02d}:{rest / 10:04.1f}"


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _table(rows: list[tuple[str, str, str]]) -> list[str]:
    """Aligned STATUS / PATH / DETAIL lines (paths past 70 characters push their detail right)."""
    rows = [("STATUS", "PATH", "DETAIL")] + rows
    status_width = max(len(r[0]) for r in rows)
    path_width = min(70, max(len(r[1]) for r in rows))
    return [f"{s:<{status_width}}  {p:<{path_width}}  {d}".rstrip() for s, p, d in rows]


def format_report(records: Sequence[CheckRecord], summary: CheckSummary) -> str:
    """The table of bad and odd files (bad first, by status), then the summary lines."""
    order = {status: i for i, status in enumerate(INDEX_STATUSES)}
    bad = sorted((r for r in records if r.status != OK), key=lambda r: (order.get(r.status, math.inf), r.path))
    rows = [(r.status, r.path, r.detail) for r in bad]
    rows += [("ok (odd)", r.path, "; ".join(r.warnings)) for r in records if r.status == OK and r.warnings]
    lines = _table(rows) + [""] if rows else ["no bad or odd files", ""]
    counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items())
    lines.append(f"{_files(summary.total)}: {counts or 'none found'}")
    lines.append(f"usable: {_files(summary.usable)}, {_clock(summary.usable_duration)} "
                 f"({summary.usable_duration:.1f} s), {summary.usable_frames} frames"
                 + (f"; {summary.with_warnings} of them odd (see above)" if summary.with_warnings else ""))
    if summary.large:
        lines.append(f"{_files(summary.large)} ({summary.large_frames} of the {summary.usable_frames} frames) stored "
                     f"with a short side over {LARGE_SIDE} px: every epoch decodes their pixels only to resize them "
                     f"away;\n`uptal data transcode SOURCE --out DIR` writes copies at the working size once")
    return "\n".join(lines)
