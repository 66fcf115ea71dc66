"""Re-encode a data set once at the training size, so that every later epoch decodes it cheaply.

Training decodes every sampled window again, each epoch, from its nearest earlier keyframe, at the file's own
resolution: a 720p H.264 file with keyframes seconds apart costs far more per window than the 128-pixel frames
the loader keeps. `transcode` (`uptal data transcode SOURCE --out DIR`) writes each usable video once as

    DIR/<its path relative to the source, extension .mp4>   H.264 (libx264, yuv420p, tune fastdecode), the
        short side scaled down to `short_side` (never up; sizes even), a keyframe every `gop_seconds`, no audio,
        every frame kept with its presentation time (variable frame rates stay variable), upright (frames
        turned as the source's display matrix says; the copy has none)
    DIR/videos.csv                                          path,label of every written video: a source for
        `load_index` / `data.source` that keeps the labels of a CSV or TXT source

Frames carry the times the loader itself reads from the source (`decode._timed_frames`), so a window decoded
from the copy shows the same source frames as one decoded from the original, resized twice instead of once.
bench/bench_decode.py measures the windows of ../shared/data/videos before and after.

Each video is written under a temporary name and renamed when complete, so a crash loses at most the files in
flight, and a second run keeps the videos already there (`force=True` writes them again). A file that fails
(unreadable since indexing, no frame decodable) is reported and skipped; the rest go on. Paths that are not
below the source's folder (a list naming files elsewhere) go to DIR/external/<number>_<name>.mp4.
"""
from __future__ import annotations

import csv
import io
import itertools
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..files import write_atomically, write_text_atomically
from .decode import VideoError, _decoded_frames, _import_av, _Media, _open, _timed_frames, _video_stream
from .index import VideoIndex, load_index
from .orientation import Orientation, frame_orientation
from .shards import MANIFEST_NAME, _split_shard_path, open_entry_source

__all__ = ["LIST_NAME", "TranscodeResult", "TranscodeSettings", "TranscodedVideo", "output_size", "transcode"]

#: The list of written videos in the output folder.
LIST_NAME = "videos.csv"
_TIME_BASE = Fraction(1, 90000)   # output ticks for a source stream that names no time base


@dataclass(frozen=True)
class TranscodeSettings:
    """How the copies are encoded (the defaults suit the default data config's 128 x 171 frames)."""

    short_side: int = 128        # the short side of the written frames (sources never grow)
    gop_seconds: float = 1.0     # a keyframe at least this often
    crf: int = 23                # x264 constant rate factor (lower: better and bigger)
    preset: str = "veryfast"     # x264 preset (speed of writing; decoding speed comes from tune=fastdecode)

    def __post_init__(self) -> None:
        if isinstance(self.short_side, bool) or not isinstance(self.short_side, int) or self.short_side < 2:
            raise ValueError(f"short_side must be an int >= 2, got {self.short_side!r}")
        if not (isinstance(self.gop_seconds, (int, float)) and math.isfinite(self.gop_seconds)
                and self.gop_seconds > 0):
            raise ValueError(f"gop_seconds must be a number > 0, got {self.gop_seconds!r}")
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be an int in [0, 51], got {self.crf!r}")


@dataclass(frozen=True)
class TranscodedVideo:
    """What happened to one usable video: status "written", "kept" (already there) or "failed"."""

    source: str
    out: Path                    # path relative to the output folder
    label: str | None
    status: str
    detail: str = ""
    frames: int = 0
    seconds: float = 0.0         # wall time spent on it


@dataclass(frozen=True)
class TranscodeResult:
    out: Path
    videos: tuple[TranscodedVideo, ...]
    not_usable: tuple[tuple[str, str], ...]   # (path, status) of the source entries that were not usable

    def count(self, status: str) -> int:
        return sum(video.status == status for video in self.videos)


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side scaled to `short_side` when it is longer, aspect kept, both even."""
    scale = min(1.0, short_side / min(width, height))
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def transcode(source: VideoIndex | str | os.PathLike, out: str | os.PathLike, *,
              settings: TranscodeSettings = TranscodeSettings(), workers: int | None = None, force: bool = False,
              min_duration: float = 0.0, progress: bool = True) -> TranscodeResult:
    """Write every usable video of `source` (an index, or what `load_index` reads) re-encoded into `out`.

    workers: processes writing videos in parallel (default: the CPU count). force: write again the videos
    already in `out` (otherwise they are kept, whatever settings wrote them). min_duration: passed to
    load_index when `source` is not an index yet.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int or None (automatic), got {workers!r}")
    index = source if isinstance(source, VideoIndex) else load_index(
        source, min_duration=min_duration, progress=progress)
    out = Path(os.path.abspath(os.fspath(out)))
    _check_out(Path(index.source), out)
    usable = index.usable()
    targets = _relative_outputs(index)
    outcomes: dict[str, tuple[str, str, int, float]] = {}
    todo = []
    for entry in usable:
        destination = out / targets[entry.path]
        if not force and destination.is_file():
            outcomes[entry.path] = ("kept", "", 0, 0.0)
        else:
            todo.append((entry.path, str(destination), settings))
    out.mkdir(parents=True, exist_ok=True)
    for path, outcome in _run(todo, workers or os.cpu_count() or 1, progress):
        outcomes[path] = outcome
    videos = tuple(TranscodedVideo(entry.path, targets[entry.path], entry.label, *outcomes[entry.path])
                   for entry in usable)
    _write_list(out, [video for video in videos if video.status != "failed"])
    not_usable = tuple((entry.path, entry.status) for entry in index.bad())
    return TranscodeResult(out, videos, not_usable)


def _check_out(source: Path, out: Path) -> None:
    """Writing into a source folder would add the copies to it at its next scan."""
    if source.is_dir() and not (source / MANIFEST_NAME).is_file() and (out == source or source in out.parents):
        raise ValueError(f"out {out} is inside the source folder {source}: write to a folder outside it")


def _relative_outputs(index: VideoIndex) -> dict[str, Path]:
    """Output path (relative to the output folder) of every usable entry: its path below the source's folder
    with the extension .mp4. Sources named .mp4 keep their names; another whose name would clash with one
    keeps its extension too (clip.avi -> clip.avi.mp4 beside clip.mp4)."""
    source = Path(index.source)
    base = source if source.is_dir() else source.parent
    wanted = {}
    for number, entry in enumerate(index.usable()):
        shard = _split_shard_path(entry.path)
        if shard is not None:
            wanted[entry.path] = Path(shard[1] + ".mp4")         # the record's key: unique in the set
            continue
        path = Path(entry.path)
        try:
            relative = path.relative_to(base)
        except ValueError:                                         # a list naming a file elsewhere
            relative = Path("external") / f"{number:06d}_{path.name}"
        wanted[entry.path] = relative.with_suffix(".mp4")
    targets: dict[str, Path] = {}
    taken: set[Path] = set()
    for path in sorted(wanted, key=lambda p: Path(p).suffix.lower() != ".mp4"):   # .mp4 names first
        relative = wanted[path]
        if relative in taken:
            relative = relative.with_name(Path(path).name + ".mp4")
        copy = 1
        while relative in taken:
            relative, copy = wanted[path].with_name(f"{wanted[path].stem}_{copy}.mp4"), copy + 1
        taken.add(relative)
        targets[path] = relative
    return targets


def _run(tasks: list, workers: int, progress: bool):
    """(source path, (status, detail, frames, seconds)) for every task, in the order they finish."""
    bar = tqdm(total=len(tasks), desc="transcoding", unit="video", disable=not progress)
    try:
        if workers == 1 or len(tasks) <= 1:
            for task in tasks:
                yield task[0], _transcode_one(*task)
                bar.update()
            return
        # spawn: the parent may hold torch's thread pools, which a forked child must not inherit
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_transcode_one, *task): task[0] for task in tasks}
            for future in as_completed(futures):
                yield futures[future], future.result()
                bar.update()
    finally:
        bar.close()


def _transcode_one(path: str, destination: str, settings: TranscodeSettings) -> tuple[str, str, int, float]:
    """Write one video; ("written", "", frames, seconds) or ("failed", why, 0, seconds). Never raises for a
    bad video, so one file cannot stop the others."""
    av = _import_av()
    start = time.perf_counter()
    try:
        frames = _encode(_Media(open_entry_source(path)), Path(destination), settings)
    except (VideoError, OSError, av.FFmpegError) as error:
        return "failed", str(error), 0, time.perf_counter() - start
    return "written", "", frames, time.perf_counter() - start


def _encode(media: _Media, destination: Path, settings: TranscodeSettings) -> int:
    """Decode `media` and write it to `destination` (atomically); the number of frames written."""
    media.check()
    written = 0

    def write(temporary: Path) -> None:
        nonlocal written
        av = _import_av()
        with _open(media) as container:
            stream = _video_stream(container, media, threads=1)   # the parallelism is one file per process
            time_base = stream.time_base or _TIME_BASE
            frames = _timed_frames(_decoded_frames(container, stream, media.path, []), stream)
            first = next(frames, None)
            if first is None:
                raise VideoError(media.path, "undecodable", "no frame decoded")
            orientation = frame_orientation(first.frame)
            with av.open(str(temporary), mode="w", format="mp4", options=_mp4_options(time_base)) as output:
                encoder = _add_encoder(output, stream, first.frame, orientation, settings, time_base)
                written = _copy_frames(itertools.chain([first], frames), output, encoder, orientation, time_base)

    write_atomically(destination, write)
    return written


def _mp4_options(time_base: Fraction) -> dict[str, str]:
    """Keep the source's ticks (1/N s) as the MP4 track's: frame times stay exact, and so does the decoder's
    rounding tolerance, which follows the time base (`decode._tolerance`)."""
    return {"video_track_timescale": str(time_base.denominator)} if time_base.numerator == 1 else {}


def _add_encoder(output, stream, first_frame, orientation: Orientation, settings: TranscodeSettings,
                 time_base: Fraction):
    """An H.264 stream for the copy of `stream`: upright (as displayed), short side scaled down, yuv420p, tune
    fastdecode."""
    height, width = orientation.displayed_size(first_frame.height, first_frame.width)
    width, height = output_size(width, height, settings.short_side)
    rate = _frame_rate(stream)
    encoder = output.add_stream("libx264", rate=rate, options={
        "preset": settings.preset, "crf": str(settings.crf), "tune": "fastdecode"})
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = encoder.codec_context.time_base = time_base   # not 1 / rate: variable rates stay
    encoder.codec_context.gop_size = max(1, round(float(rate) * settings.gop_seconds))
    return encoder


def _copy_frames(frames, output, encoder, orientation: Orientation, time_base: Fraction) -> int:
    """Encode every decoded frame (`_Timed`) at its time (the copy starts at the first frame), turned upright
    when the source's display matrix asks for it; how many."""
    written, first = 0, None
    stored_height, stored_width = orientation.displayed_size(encoder.height, encoder.width)
    for timed in frames:
        first = timed.time if first is None else first
        frame = timed.frame.reformat(width=stored_width, height=stored_height, format="yuv420p",
                                     interpolation="AREA")
        if not orientation.upright:
            frame = _turned_yuv420p(frame, orientation)
        frame.pts, frame.time_base = round((timed.time - first) / time_base), time_base
        output.mux(encoder.encode(frame))
        written += 1
    output.mux(encoder.encode(None))
    return written


def _turned_yuv420p(frame, orientation: Orientation):
    """A new yuv420p av.VideoFrame with the planes of `frame` (even sizes) as displayed: the copy is upright
    and carries no display matrix, so every tool shows it the same way."""
    av = _import_av()
    height, width = orientation.displayed_size(frame.height, frame.width)
    turned = av.VideoFrame(width=width, height=height, format="yuv420p")
    for source, target in zip(frame.planes, turned.planes):
        rows = np.frombuffer(source, dtype=np.uint8).reshape(-1, source.line_size)        # [h, line_size]
        into = np.frombuffer(target, dtype=np.uint8).reshape(-1, target.line_size)        # [h', line_size']
        into[:target.height, :target.width] = orientation.apply(rows[:source.height, :source.width])
    return turned


def _frame_rate(stream) -> Fraction:
    """The stream's nominal frame rate (25 when it names none), for the encoder's rate control."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < float(rate) < 1000:
            return Fraction(rate).limit_denominator(1001)
    return Fraction(25)


def _write_list(out: Path, videos: list[TranscodedVideo]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "label"])
    for video in videos:
        writer.writerow([video.out, video.label or ""])
    write_text_atomically(out / LIST_NAME, text.getvalue())
