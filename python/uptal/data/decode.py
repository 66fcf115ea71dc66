"""Probe videos and decode time windows of them at a fixed frame rate and size (PyAV / FFmpeg).

Two questions, one per function:

- `probe(path) -> VideoInfo`: what is this file (duration, frame rate, size, codec), and is it usable?
  Bad files raise `VideoError(path, reason)` with `reason` one of `VIDEO_ERROR_REASONS`.
- `decode_window(path, start_sec, num_frames, fps, height, width) -> DecodedWindow`: the frames shown at
  times ``start_sec + k / fps`` (k = 0 .. num_frames - 1), as uint8 RGB [T, H, W, 3].

Both read a file path, or a video held in memory (`bytes`, or a `BytesSource` that also names it, e.g. a
member of a tar shard): the same checks and the same frames, without touching the filesystem.

Sampling is by presentation time, never by frame index: for each target time the frame shown is the latest
frame whose timestamp is <= that time (a frame stays on screen until the next one starts). This is what makes
variable frame rate files, files whose header frame count is wrong, and files with dropped / held frames come
out right. Timestamps stored in coarse ticks are rounded, so a frame that starts at most `_tolerance` after a
target (half a time-base tick, and never more than 5% of a frame period) counts as shown at it. Target times
before the first frame take the first frame; targets at or after the end of the last frame get nothing: the
window is then shorter, and `DecodedWindow.length` says by how much (no padding).

Time 0 is the video stream's start time, so ``0 <= t < VideoInfo.duration`` covers the whole video.

Frames come out as displayed: turned and mirrored as the container's display matrix says (a portrait phone
video, stored as landscape frames, comes out upright; `orientation`).

Every call opens its own container and always closes it, so calls are independent and safe to run from
several threads or DataLoader workers at once. `av` is imported on first use, not when this module is.
"""
from __future__ import annotations

import bisect
import collections
import io
import itertools
import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence, Union, runtime_checkable

import numpy as np
import torch

from ..ops.planes_to_rgb import planes_to_rgb
from .orientation import UPRIGHT, Orientation, frame_orientation

if TYPE_CHECKING:  # pragma: no cover - typing only
    import av

__all__ = [
    "VIDEO_ERROR_REASONS",
    "VideoError",
    "VideoInfo",
    "BytesSource",
    "VideoSource",
    "DecodedWindow",
    "Decoder",
    "PyAVDecoder",
    "probe",
    "decode_window",
]

#: Why a file cannot be used, as `VideoError.reason`:
#: - "missing": no such file (or it is not a regular file).
#: - "empty": the file has zero bytes.
#: - "not_a_video": FFmpeg cannot read it as a container, or it holds no video stream (audio only, an image).
#: - "undecodable": a video container, but not a single video frame decodes (unknown codec, corrupt data,
#:   or a recognised container FFmpeg cannot parse, e.g. an MP4 whose index was never written).
#: - "truncated": the file is cut short: its own structure (MP4 box sizes, AVI RIFF size) promises more bytes
#:   than it has, or reading stops with an error after some frames were read.
VIDEO_ERROR_REASONS = ("missing", "empty", "not_a_video", "undecodable", "truncated")

# Containers whose packet timestamps are presentation times (AVI's are decoding times, for one; MPEG-TS
# timestamps may jump back at a splice) and decoders that read skip_frame for every picture (libdav1d, for
# one, reads it once when opened): where `_UnshownFrames` may drop frames.
_PTS_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
_PICTURE_SKIPPING_DECODERS = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4"})

# Demuxer names of single-image formats: FFmpeg opens a PNG or JPEG as a one-frame "video".
_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe")

# swscale algorithms PyAV knows by name (PyAVDecoder's `interpolation`).
_INTERPOLATIONS = ("FAST_BILINEAR", "BILINEAR", "BICUBIC", "X", "POINT", "AREA", "BICUBLIN", "GAUSS", "SINC",
                   "LANCZOS", "SPLINE")


class VideoError(ValueError):
    """A video file cannot be used; `path` names it and `reason` (one of `VIDEO_ERROR_REASONS`) says why."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = "") -> None:
        if reason not in VIDEO_ERROR_REASONS:
            raise ValueError(f"VideoError reason must be one of {VIDEO_ERROR_REASONS}, got {reason!r}")
        self.path = Path(path)
        self.reason = reason
        self.detail = detail
        message = f"{self.path}: {reason}" + (f" ({detail})" if detail else "")
        super().__init__(message)

    def __reduce__(self):  # keep path/reason/detail when pickled across processes
        return (type(self), (str(self.path), self.reason, self.detail))


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns about a video file.

    duration: seconds from the video stream's start to the end of its last frame, measured from the packets
        actually in the file (not the header).
    fps: the video stream's average frame rate (the container's nominal rate).
    num_frames: frames stored in the file (non-empty video packets, counted by demuxing, never taken from the
        header: tree.avi's header says 444 frames and 68 decode). A file may hold a frame for several periods
        (dropped-frame AVIs, variable frame rate), so duration * fps can exceed num_frames.
    height, width: size of the decoded frames as displayed: turned as the container's display matrix says
        (a portrait phone video stored as landscape frames has height > width; see `orientation`).
    codec, pix_fmt: FFmpeg names of the video codec and of the decoded pixel format.
    has_audio: the container also has at least one audio stream.
    header_frames: the frame count the container header announces (0 when it announces none); it can be
        wrong, which is why num_frames is counted instead (`uptal data check` flags large differences).
    stray_packets: packets timed far outside the duration the header announces (damaged timestamps: a corrupt
        MP4 sample table can put frames hours after, or before, a 3 s clip); `duration` ends with the last
        packet timed within it, so that windows are drawn where the frames are. 0 for a sound file.
    """

    path: Path
    duration: float
    fps: float
    num_frames: int
    height: int
    width: int
    codec: str
    pix_fmt: str
    has_audio: bool
    header_frames: int = 0
    stray_packets: int = 0


@dataclass(frozen=True)
class BytesSource:
    """A video held in memory (e.g. a tar-shard member); `name` stands for it in errors and `VideoInfo.path`."""

    name: str
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"BytesSource name must be a str, got {type(self.name).__name__}")
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise ValueError(f"BytesSource data must be bytes, got {type(self.data).__name__}")


#: What `probe` and `decode_window` read: a file path, or a whole video file in memory.
VideoSource = Union[str, os.PathLike, bytes, BytesSource]


@dataclass(frozen=True)
class DecodedWindow:
    """Frames of one time window.

    frames: uint8 RGB [length, H, W, 3]; a view of the caller's `out` tensor when one was given.
    timestamps: float64 [length], presentation time in seconds of the source frame shown at each position
        (non-decreasing; equal neighbours mean the same source frame was shown twice).
    length: how many frames were decoded (<= num_frames; fewer when the video ends inside the window).
    """

    frames: torch.Tensor      # [length, H, W, 3] uint8
    timestamps: torch.Tensor  # [length] float64
    length: int


@runtime_checkable
class Decoder(Protocol):
    """A video backend: `PyAVDecoder` is the default; another backend implements these two methods."""

    def probe(self, path: VideoSource) -> VideoInfo:
        """Describe a file; raise `VideoError` for files that cannot be used."""
        ...

    def decode_window(
        self,
        path: VideoSource,
        start_sec: float,
        num_frames: int,
        fps: float,
        height: int | None = None,
        width: int | None = None,
        *,
        out: torch.Tensor | None = None,
        rows: Sequence[int] | None = None,
    ) -> DecodedWindow:
        """Decode the frames shown at start_sec + k / fps, k < num_frames (see the module docstring)."""
        ...


# ----------------------------------------------------------------------------------------------------------
# File checks that need no FFmpeg
# ----------------------------------------------------------------------------------------------------------


class _Media:
    """One video to read: a file on disk (`data` None) or bytes in memory; `path` names it in errors."""

    def __init__(self, source: VideoSource) -> None:
        if isinstance(source, BytesSource):
            self.path, self.data = Path(source.name), bytes(source.data)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self.path, self.data = Path("<bytes>"), bytes(source)
        elif isinstance(source, (str, os.PathLike)):
            self.path, self.data = Path(source), None
        else:
            raise ValueError(f"source must be a path, bytes or a BytesSource, got {type(source).__name__}")

    def check(self) -> None:
        """Raise VideoError 'missing' / 'empty' / 'not_a_video' for sources that cannot be a video."""
        if self.data is not None:
            if not self.data:
                raise VideoError(self.path, "empty", "0 bytes")
            return
        if not self.path.exists():
            raise VideoError(self.path, "missing", "no such file")
        if not self.path.is_file():
            raise VideoError(self.path, "not_a_video", "not a regular file")
        if self.path.stat().st_size == 0:
            raise VideoError(self.path, "empty", "0 bytes")

    def open_input(self) -> Any:
        """What av.open reads: the file name, or a fresh seekable stream over the bytes."""
        return str(self.path) if self.data is None else io.BytesIO(self.data)


def _iso_bmff_cut_short(head: bytes, read_at, size: int) -> bool | None:
    """Walk the top-level boxes of an MP4/MOV file; True when a box runs past the end of the file.

    Returns None when the file does not look like ISO-BMFF. `read_at(offset, n)` reads n bytes at offset.
    """
    if len(head) < 8 or head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"):
        return None
    offset = 0
    while offset < size:
        header = read_at(offset, 16)
        if len(header) < 8:
            return True
        box_size = int.from_bytes(header[:4], "big")
        if box_size == 1:  # 64-bit size follows the type
            if len(header) < 16:
                return True
            box_size = int.from_bytes(header[8:16], "big")
        elif box_size == 0:  # box extends to the end of the file
            return False
        if box_size < 8:
            return None  # not a sane box: let FFmpeg's verdict stand
        offset += box_size
    return offset > size


def _riff_cut_short(head: bytes, size: int) -> bool | None:
    """True when an AVI's RIFF header declares more bytes than the file has; None when not a RIFF AVI."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] not in (b"AVI ", b"AVIX"):
        return None
    declared = int.from_bytes(head[4:8], "little")
    return declared > 0 and declared + 8 > size


def _structure_cut_short(read_at: Callable[[int, int], bytes], size: int) -> bool | None:
    """RIFF or ISO-BMFF structure check over `size` bytes read by read_at(offset, n)."""
    head = read_at(0, 16)
    riff = _riff_cut_short(head, size)
    return riff if riff is not None else _iso_bmff_cut_short(head, read_at, size)


def _container_cut_short(media: _Media) -> bool | None:
    """Does the container's own structure say the file is cut short? None: not a format we can check."""
    if media.data is not None:
        data = media.data
        return _structure_cut_short(lambda offset, n: data[offset:offset + n], len(data))
    size = media.path.stat().st_size
    with open(media.path, "rb") as f:

        def read_at(offset: int, n: int) -> bytes:
            f.seek(offset)
            return f.read(n)

        return _structure_cut_short(read_at, size)


# ----------------------------------------------------------------------------------------------------------
# Opening
# ----------------------------------------------------------------------------------------------------------


def _import_av():
    """Import PyAV on first use (importing uptal.data must stay light)."""
    import av

    return av


def _open(media: _Media) -> "av.container.InputContainer":
    """Open a container for reading, turning FFmpeg's refusal into a VideoError with a reason."""
    av = _import_av()
    path = media.path
    try:
        return av.open(media.open_input(), mode="r", metadata_errors="ignore")
    except av.FFmpegError as e:
        cut = _container_cut_short(media)
        if cut:
            raise VideoError(path, "truncated", f"the container ends early; FFmpeg: {e}") from e
        if cut is False:  # a recognised video container that FFmpeg cannot parse
            raise VideoError(path, "undecodable", f"FFmpeg cannot read the container: {e}") from e
        raise VideoError(path, "not_a_video", f"FFmpeg cannot read it: {e}") from e


def _video_stream(container, media: _Media, threads: int):
    """The video stream to read, set up for decoding with `threads` threads; VideoError when there is none.

    Among several video streams it is the one FFmpeg ranks best (`av_find_best_stream`: one with several
    frames before a single-picture one, then the higher bit rate), as ffplay picks it. A cover picture (an
    attached picture: album art of a music file, a thumbnail) is never a video: a file with nothing else is
    not a video, rather than a one-frame one."""
    av = _import_av()
    path = media.path
    if container.format.name in _IMAGE_FORMATS:
        raise VideoError(path, "not_a_video", f"a still image ({container.format.name})")
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        if _container_cut_short(media):  # e.g. an MP4 cut inside its index: the streams are not all there
            raise VideoError(path, "truncated", "no video stream, and the container ends early")
        if container.streams.video:
            raise VideoError(path, "not_a_video", "no video stream, only a cover picture (attached picture)")
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise VideoError(path, "not_a_video", f"no video stream (has {', '.join(kinds)})")
    best = container.streams.best("video")
    stream = best if best in streams else streams[0]
    if stream.codec_context is None:
        raise VideoError(path, "undecodable", "FFmpeg has no decoder for the video stream's codec")
    stream.codec_context.thread_count = threads
    stream.codec_context.thread_type = "AUTO" if threads != 1 else "SLICE"
    return stream


def _origin(stream) -> int:
    """Stream ticks that map to time 0 (the stream's start time)."""
    return stream.start_time if stream.start_time is not None else 0


def _nominal_period(stream) -> float:
    """Seconds per frame at the stream's nominal rate (used for frames that carry no duration)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return 1.0 / float(rate)
    return 1.0 / 25.0


# ----------------------------------------------------------------------------------------------------------
# Probe
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Scan:
    """What one demuxing pass over the video stream found."""

    packets: int = 0               # non-empty video packets
    end_ticks: int | None = None   # end of the last frame shown: its pts + its packet's duration
    strays: int = 0                # timed packets outside `_plausible_ticks` (damaged timestamps)
    end_within: int | None = None  # the latest end of a packet inside it
    first_frame: Any = None        # first decoded av.VideoFrame
    decode_errors: int = 0
    last_error: str = ""


def _scan_packets(container, stream, path: Path) -> _Scan:
    """Demux the whole video stream (cheap: no decoding) and decode until the first frame comes out."""
    av = _import_av()
    scan = _Scan()
    period_ticks = max(1, round(_nominal_period(stream) / float(stream.time_base)))
    plausible = _plausible_ticks(stream)
    last = None  # latest presentation timestamp seen
    try:
        for packet in container.demux(stream):
            if packet.size:
                scan.packets += 1
                ticks = packet.pts if packet.pts is not None else packet.dts
                if ticks is not None and (last is None or ticks >= last):
                    last, scan.end_ticks = ticks, ticks + (packet.duration or period_ticks)
                if ticks is not None and plausible is not None:
                    if plausible[0] <= ticks <= plausible[1]:
                        end = ticks + (packet.duration or period_ticks)
                        scan.end_within = end if scan.end_within is None else max(scan.end_within, end)
                    else:
                        scan.strays += 1
            if scan.first_frame is None:
                try:
                    frames = packet.decode()
                except av.FFmpegError as e:
                    scan.decode_errors += 1
                    scan.last_error = str(e)
                    continue
                if frames:
                    scan.first_frame = frames[0]
    except av.FFmpegError as e:
        reason = "truncated" if scan.packets else "undecodable"
        raise VideoError(path, reason, f"reading stopped after {scan.packets} packets: {e}") from e
    return scan


STRAY_SLACK = (0.5, 2.0)   # packets timed before -2 s or after header duration * (1 + 0.5) + 2 s are strays


def _plausible_ticks(stream) -> tuple[float, float] | None:
    """The range of packet times (ticks) a stream whose header announces its duration can hold, with slack;
    None when the header announces none (Matroska, MPEG-TS, fragmented MP4 often do not).

    Packets timed outside it are taken as damaged (a corrupt MP4 sample table can time frames hours away):
    legitimately long gaps between frames, as in motion-triggered recordings, lie inside the header's
    duration too."""
    if not stream.duration or stream.duration <= 0:
        return None
    relative, absolute = STRAY_SLACK
    origin, slack = _origin(stream), absolute / stream.time_base
    return origin - slack, origin + stream.duration * (1 + relative) + slack


def _probe_duration(container, stream, scan: _Scan) -> tuple[float, int]:
    """(seconds from the stream start to the end of the last packet, packets left out as strays); the
    header's word when packets lack times. With strays, the duration ends with the last packet within
    `_plausible_ticks`, so that windows are drawn where the frames are."""
    origin = _origin(stream)
    if scan.end_ticks is None:
        if stream.duration:
            return float(stream.duration * stream.time_base), 0
        return (container.duration / 1_000_000 if container.duration else 0.0), 0
    if scan.strays and scan.end_within is not None:
        return float((scan.end_within - origin) * stream.time_base), scan.strays
    return float((scan.end_ticks - origin) * stream.time_base), 0


def _probe_fps(stream, scan: _Scan, duration: float) -> float:
    """The stream's average frame rate, else another rate FFmpeg guessed, else frames per second counted."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return scan.packets / duration if duration > 0 else 0.0


def _probe(media: _Media, threads: int) -> VideoInfo:
    """`PyAVDecoder.probe` body."""
    path = media.path
    media.check()
    cut = _container_cut_short(media)
    with _open(media) as container:
        stream = _video_stream(container, media, threads)
        if cut:
            raise VideoError(path, "truncated", "the container declares more bytes than the file has")
        scan = _scan_packets(container, stream, path)
        if scan.first_frame is None:
            detail = f"{scan.packets} packets, no frame decoded, {scan.decode_errors} decode errors"
            raise VideoError(path, "undecodable", detail + (f"; last: {scan.last_error}" if scan.last_error else ""))
        duration, stray_packets = _probe_duration(container, stream, scan)
        first = scan.first_frame
        height, width = frame_orientation(first).displayed_size(first.height, first.width)
        return VideoInfo(
            path=path,
            duration=duration,
            fps=_probe_fps(stream, scan, duration),
            num_frames=scan.packets,
            height=height,
            width=width,
            codec=stream.codec_context.name,
            pix_fmt=first.format.name,
            has_audio=len(container.streams.audio) > 0,
            header_frames=max(0, stream.frames or 0),
            stray_packets=stray_packets,
        )


# ----------------------------------------------------------------------------------------------------------
# Decode: timestamps, selection, conversion
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Timed:
    """A decoded frame with its presentation time and how long it stays on screen (seconds)."""

    time: float
    duration: float
    frame: Any  # av.VideoFrame


class _UnshownFrames:
    """Finds the packets whose frame no wanted position shows, so that the decoder may drop them unseen.

    The frame shown at time T is the latest one with time <= T + eps (`_select`). A frame at time t is
    therefore shown at no wanted position when, for the first wanted T >= t - eps, another frame lies in
    (t, T + eps]: that one (or a later one) is shown instead. Such a packet is decoded with skip_frame =
    NONREF: if it is a non-reference frame (most B-frames: nothing is predicted from them), the decoder drops
    it without decoding; a reference frame is decoded as always, so every frame that is shown comes out
    exactly as without dropping. Proof of the later frame comes from the timestamps of packets already
    demuxed and of up to `LOOKAHEAD` packets ahead (B-frames arrive after the later frames they are
    predicted from); without proof the packet is decoded.

    Used only where packet timestamps are presentation times (`_PTS_CONTAINERS`) and the decoder checks
    skip_frame for every picture it decodes (`_PICTURE_SKIPPING_DECODERS`), with one decoding thread.
    """

    LOOKAHEAD = 16

    def __init__(self, stream, wanted: list[float], eps: float) -> None:
        self.time_base, self.origin, self.eps = stream.time_base, _origin(stream), eps
        self.wanted = sorted(wanted)   # times of the positions whose frames are used
        self.seen: list[int] = []      # sorted pts of every packet demuxed so far
        self.repeated_pts = False      # two packets with one pts: `_timed_frames` re-times one of them, so the
                                       # packets' pts no longer prove anything: stop dropping

    @staticmethod
    def applies(container, stream) -> bool:
        context = stream.codec_context   # frame threads would pick up a skip_frame change late
        return (context.thread_count == 1 and container.format.name in _PTS_CONTAINERS
                and context.name in _PICTURE_SKIPPING_DECODERS)

    def marked(self, packets: Iterator[Any]) -> Iterator[tuple[Any, bool]]:
        """(packet, its frame is shown at no wanted position) for each packet, in demuxing order."""
        ahead: collections.deque = collections.deque()
        stopped = None
        try:
            for packet in packets:
                self._note(packet)
                ahead.append(packet)
                if len(ahead) > self.LOOKAHEAD:
                    head = ahead.popleft()
                    yield head, self._unshown(head)
        except _import_av().FFmpegError as error:   # a damaged file: the packets read before it still count
            stopped = error
        while ahead:
            head = ahead.popleft()
            yield head, self._unshown(head)
        if stopped is not None:
            raise stopped

    def _note(self, packet) -> None:
        if packet.pts is not None and packet.size:
            at = bisect.bisect_left(self.seen, packet.pts)
            self.repeated_pts |= at < len(self.seen) and self.seen[at] == packet.pts
            self.seen.insert(at, packet.pts)

    def _seconds(self, ticks: int) -> float:
        return _ticks_to_seconds(ticks - self.origin, self.time_base)

    def _unshown(self, packet) -> bool:
        if packet.pts is None or not packet.size or packet.pts == self.seen[0] or self.repeated_pts:
            return False   # the earliest frame so far may be the first one: it also shows at earlier positions
        time = self._seconds(packet.pts)
        first_wanted = bisect.bisect_left(self.wanted, time - self.eps)
        if first_wanted == len(self.wanted):
            return False   # past the last wanted position: decoding stops there anyway
        later = bisect.bisect_right(self.seen, packet.pts)   # the next frame in display order, if demuxed
        # the same comparison as _select's: a frame at time w is at or before T unless T < w - eps
        return later < len(self.seen) and self.wanted[first_wanted] >= self._seconds(self.seen[later]) - self.eps


def _decoded_frames(container, stream, path: Path, errors: list[str],
                    unshown: _UnshownFrames | None = None) -> Iterator[Any]:
    """Decode the video stream from the current position; packets that fail to decode are skipped and noted.
    With `unshown`, non-reference frames that no wanted position shows are dropped undecoded."""
    av = _import_av()
    decoded = 0
    context = stream.codec_context
    packets = container.demux(stream)
    marked = unshown.marked(packets) if unshown is not None else ((packet, False) for packet in packets)
    try:
        for packet, skippable in marked:
            if unshown is not None:
                context.skip_frame = "NONREF" if skippable else "DEFAULT"
            try:
                frames = packet.decode()
            except av.FFmpegError as e:  # corrupt packet: skip it, as the ffmpeg tool does
                errors.append(str(e))
                continue
            decoded += len(frames)
            yield from frames
    except av.FFmpegError as e:
        reason = "truncated" if decoded else "undecodable"
        raise VideoError(path, reason, f"reading stopped after {decoded} frames: {e}") from e


def _ticks_to_seconds(ticks: int, time_base: Fraction) -> float:
    """int / int is correctly rounded: float(ticks * time_base) without building a Fraction."""
    return ticks * time_base.numerator / time_base.denominator


def _timed_frames(frames: Iterator[Any], stream) -> Iterator[_Timed]:
    """Attach presentation times (seconds from the stream start) to decoded frames, strictly increasing.

    Frames leave the decoder in display order, so their times must increase. Timestamps are the frames'
    pts unless those go backwards (packed B-frames in AVI give out-of-order pts while dts is right): from
    then on dts is used, and the frame held back one step is re-timed by its dts as well. A frame without a
    usable timestamp, or with the same one as the frame before it (a muxer's rounding of variable-rate
    times), is placed one frame duration after the previous one; a repeated pts is not a reason to switch to
    dts, which in MP4/Matroska with B-frames are decode times, earlier than the frames' own.
    """
    tb, origin = stream.time_base, _origin(stream)
    period_ticks = max(1, round(_nominal_period(stream) / float(tb)))
    use_dts, last_pts = False, None
    held: list = []  # [ticks, frame] of the frame not yet yielded (one frame of look-ahead)

    def duration_ticks(frame) -> int:
        return frame.duration if frame.duration and frame.duration > 0 else period_ticks

    def seconds(ticks: int) -> float:
        return _ticks_to_seconds(ticks, tb)

    def emit(ticks: int, frame) -> _Timed:
        return _Timed(seconds(ticks - origin), seconds(duration_ticks(frame)), frame)

    for frame in frames:
        pts = frame.pts
        if not use_dts and pts is not None and last_pts is not None and pts < last_pts and frame.dts is not None:
            use_dts = True
            if held and held[1].dts is not None:
                held[0] = held[1].dts
        last_pts = pts if pts is not None else last_pts
        ticks = frame.dts if use_dts else pts
        if ticks is None:
            ticks = pts if pts is not None else frame.dts
        if held:
            prev_end = held[0] + duration_ticks(held[1])
            if ticks is None or ticks <= held[0]:
                ticks = prev_end
            yield emit(*held)
        elif ticks is None:
            ticks = origin
        held = [ticks, frame]
    if held:
        yield emit(*held)


def _select(timed: Iterator[_Timed], targets: list[float], eps: float) -> Iterator[tuple[int, _Timed]]:
    """For each target time, in order, yield (k, frame shown at targets[k]).

    The frame shown is the latest one with time <= target (+ eps for timestamp rounding); targets before the
    first frame take the first frame; targets at or after the end of the last frame are not yielded.
    """
    k, n = 0, len(targets)
    prev: _Timed | None = None
    for cur in timed:
        while k < n and targets[k] < cur.time - eps:
            yield k, prev if prev is not None else cur
            k += 1
        if k >= n:
            return
        prev = cur
    if prev is not None:
        end = prev.time + prev.duration
        while k < n and targets[k] < end - eps:
            yield k, prev
            k += 1


def _assume_encoder_version(container, stream) -> None:
    """Before a seek, tell FFmpeg's H.264 decoder which x264 wrote the stream.

    x264 records its version in an SEI message of the first frame only; FFmpeg uses it to undo old x264
    bugs (builds < 151 wrote 4:4:4 streams, e.g. cockatoo.mp4, that decode to green garbage without the fix).
    A decode that starts at a later keyframe never sees that SEI, so read it here and pass it as the
    decoder's `x264_build` option.
    """
    if stream.codec_context.name != "h264":
        return
    av = _import_av()
    try:
        first = next((p for p in container.demux(stream) if p.size), None)
    except av.FFmpegError:
        return
    match = re.search(rb"x264 - core (\d+)", bytes(first)) if first is not None else None
    if match and int(match.group(1)) > 0:
        stream.codec_context.options = {**stream.codec_context.options, "x264_build": match.group(1).decode()}


def _tolerance(stream) -> float:
    """Seconds by which a frame may start after a target time and still count as shown at it.

    Covers timestamps rounded to the stream's time base (half a tick: e.g. 29.97 fps stored in milliseconds),
    but never more than 5% of a frame period (when one tick is one frame, timestamps are exact).
    """
    return min(0.5 * float(stream.time_base), 0.05 * _nominal_period(stream)) + 1e-6


def _seek_schedule(start_sec: float) -> list[float | None]:
    """Where to seek before decoding, tried in order (None: decode from the start, no seek)."""
    if start_sec <= 0:
        return [None]
    return [start_sec] + ([start_sec - 3.0] if start_sec > 3.0 else []) + [None]


class _Converter:
    """Resize + convert to RGB inside FFmpeg (swscale), one frame at a time, reusing one scaler per call, and
    turn the frames as their display matrix says (`orientation`: a portrait phone video comes out upright).

    swscale scales in the stored orientation (to the output size swapped for a quarter turn); the turn is a
    strided copy into the output. A frame that must be resized is scaled into planar RGB (gbrp) and
    interleaved here: swscale's planar output path is 1.3-2.4x faster than its packed rgb24 one for the same
    scaling (bench/bench_decode.py measures both). At 128 x 171 the two gave the same pixels on every test
    file; at other scales they differ by rounding (<= 1), and at exactly half size by more, where the planar
    path is the nearer to the source (tests/data/test_decode.py). A frame kept at its own size takes
    swscale's unscaled rgb24 converter, the fastest there.
    """

    def __init__(self, height: int | None, width: int | None, interpolation: str, threads: int) -> None:
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()
        self.height, self.width = height, width
        self.interpolation, self.threads = interpolation, threads
        self.orientation: Orientation | None = None   # read from the first frame

    def __call__(self, frame, into: np.ndarray | None = None) -> np.ndarray:
        """[H, W, 3] uint8 RGB of one av.VideoFrame as displayed (the first frame fixes H, W when they were not
        given), written into `into` when given (and returned), else into a new array."""
        if self.orientation is None:
            self.orientation = frame_orientation(frame)
        shown_height, shown_width = self.orientation.displayed_size(frame.height, frame.width)
        self.height = self.height or shown_height
        self.width = self.width or shown_width
        height, width = self.orientation.displayed_size(self.height, self.width)   # in the stored orientation
        resized = (frame.height, frame.width) != (height, width)
        rgb = self._reformatter.reformat(
            frame, width=width, height=height, format="gbrp" if resized else "rgb24",
            interpolation=self.interpolation, threads=self.threads,
        )
        if resized:
            return _interleave_planar_rgb(rgb, into, self.orientation)
        if into is None and self.orientation.upright:
            return rgb.to_ndarray()  # [H, W, 3]
        if into is None:
            into = np.empty((self.height, self.width, 3), dtype=np.uint8)
        into[...] = self.orientation.apply(rgb.to_ndarray())
        return into


def _interleave_planar_rgb(frame, into: np.ndarray | None, orientation: Orientation = UPRIGHT) -> np.ndarray:
    """[H, W, 3] uint8 RGB as displayed of a gbrp frame, whose planes are G, B, R (FFmpeg's order)."""
    height, width = frame.height, frame.width
    green, blue, red = frame.planes
    if orientation.upright:
        rgb = np.empty((height, width, 3), dtype=np.uint8) if into is None else into
        return planes_to_rgb((red, green, blue), height, width, rgb)
    stored = planes_to_rgb((red, green, blue), height, width, np.empty((height, width, 3), dtype=np.uint8))
    rgb = np.empty((*orientation.displayed_size(height, width), 3), dtype=np.uint8) if into is None else into
    rgb[...] = orientation.apply(stored)
    return rgb


def _validate_window_args(start_sec, num_frames, fps, height, width, out, out_rows: int | None = None
                          ) -> tuple[int | None, int | None]:
    """Check decode_window's arguments (ValueError naming the argument); return the output height, width."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if not isinstance(start_sec, (int, float, Fraction, np.number)) or not math.isfinite(start_sec) or start_sec < 0:
        raise ValueError(f"start_sec must be a finite number >= 0, got {start_sec!r}")
    if not isinstance(fps, (int, float, Fraction, np.number)) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    for name, value in (("height", height), ("width", width)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive int or None (native size), got {value!r}")
    if out is None:
        return height, width
    if not isinstance(out, torch.Tensor) or out.dtype != torch.uint8 or out.device.type != "cpu":
        raise ValueError("out must be a CPU uint8 torch.Tensor [>= num_frames, H, W, 3]")
    need = num_frames if out_rows is None else out_rows
    if out.dim() != 4 or out.shape[0] < need or out.shape[3] != 3 or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous [>= {need}, H, W, 3] tensor, got shape {tuple(out.shape)}")
    height = out.shape[1] if height is None else height
    width = out.shape[2] if width is None else width
    if (out.shape[1], out.shape[2]) != (height, width):
        raise ValueError(f"out has H, W = {tuple(out.shape[1:3])}, but height, width = ({height}, {width})")
    return height, width


def _validate_rows(rows, num_frames: int, out) -> None:
    if rows is None:
        return
    if out is None:
        raise ValueError("rows needs out: rows are row numbers of out")
    if len(rows) != num_frames:
        raise ValueError(f"rows must have num_frames={num_frames} entries, got {len(rows)}")
    if any(r >= out.shape[0] for r in rows):
        raise ValueError(f"rows must be < out.shape[0]={out.shape[0]}, got {max(rows)}")


def _seek(container, stream, seek_sec: float | None) -> bool:
    """Position the demuxer at the last keyframe at or before seek_sec (None: stay at the start)."""
    if seek_sec is None:
        return True
    av = _import_av()
    _assume_encoder_version(container, stream)
    try:
        container.seek(_origin(stream) + math.floor(seek_sec / stream.time_base), stream=stream, backward=True)
    except av.FFmpegError:
        return False
    return True


def _decode_pass(container, stream, path, seek_sec, targets, eps, convert, sink, destination,
                 rows=None, drop_unshown: bool = False) -> int | None:
    """Decode the targets after seeking to seek_sec; frames go to sink(k, array, time). Returns how many.

    Returns None when the seek failed, found nothing, or landed after the first target (the caller then
    retries from earlier).
    """
    if not _seek(container, stream, seek_sec):
        return None
    errors: list[str] = []
    unshown = None
    if drop_unshown and _UnshownFrames.applies(container, stream):
        wanted = targets if rows is None else [t for t, row in zip(targets, rows) if row >= 0]
        unshown = _UnshownFrames(stream, wanted, eps)
    decoded = _decoded_frames(container, stream, path, errors, unshown)
    timed = _timed_frames(decoded, stream)
    try:
        first = next(timed, None)
        if first is None:
            if seek_sec is not None:
                return None  # nothing after the seek point: make sure, from the start
            if errors:
                raise VideoError(path, "undecodable", f"no frame decoded; last error: {errors[-1]}")
            return 0
        if seek_sec is not None and first.time > targets[0] + eps:
            return None  # the seek overshot the window start
        return _fill(itertools.chain([first], timed), targets, eps, convert, sink, destination, rows)
    finally:  # stop decoding before the container closes
        timed.close()
        decoded.close()


def _fill(timed: Iterator[_Timed], targets: list[float], eps: float, convert, sink, destination,
          rows=None) -> int:
    """Send the frame shown at each target to sink(k, rgb array, time), converting each source frame once,
    into destination(k) (an array, or None for a new one) for the first position that shows it;
    positions that `rows` leaves out (row < 0) get sink(k, None, time) and cost no conversion, and decoding
    stops after the last position with a row."""
    last = len(targets) - 1 if rows is None else max((k for k, row in enumerate(rows) if row >= 0), default=-1)
    length, shown, array = 0, None, None
    for k, item in _select(timed, targets, eps):
        if k > last:
            break
        if rows is None or rows[k] >= 0:
            if item is not shown:
                shown, array = item, convert(item.frame, destination(k))  # [H, W, 3]
            sink(k, array, item.time)
        else:
            sink(k, None, item.time)
        length = k + 1
    return length


class PyAVDecoder:
    """The default `Decoder`: PyAV (FFmpeg) demuxing, decoding and swscale resizing.

    threads: decoder and scaler threads per call (1 suits DataLoader workers; 0 lets FFmpeg choose).
    interpolation: swscale algorithm name ("BILINEAR", "AREA", "BICUBIC", ...).
    drop_unshown: let the decoder drop frames that no wanted position shows (the lead-in from the keyframe,
        frames between the sampled times, positions left out by `rows`) when nothing is predicted from them
        (non-reference frames: most B-frames). The frames delivered are exactly those of decoding everything;
        it applies with one thread, in MP4/MOV/Matroska files (whose timestamps are presentation times) of
        H.264, HEVC and MPEG-1/2/4 video (see `_UnshownFrames`).
    """

    def __init__(self, threads: int = 1, interpolation: str = "BILINEAR", drop_unshown: bool = True) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be an int >= 0, got {threads!r}")
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
        if not isinstance(drop_unshown, bool):
            raise ValueError(f"drop_unshown must be a bool, got {drop_unshown!r}")
        self.threads = threads
        self.interpolation = interpolation
        self.drop_unshown = drop_unshown

    def probe(self, path: VideoSource) -> VideoInfo:
        """Describe a video file or in-memory video (see `VideoInfo`); raise `VideoError` when unusable."""
        return _probe(_Media(path), self.threads)

    def decode_window(
        self,
        path: VideoSource,
        start_sec: float,
        num_frames: int,
        fps: float,
        height: int | None = None,
        width: int | None = None,
        *,
        out: torch.Tensor | None = None,
        rows: Sequence[int] | None = None,
    ) -> DecodedWindow:
        """Decode the frames shown at start_sec + k / fps for k < num_frames, resized to height x width.

        path: a file path, or the whole file in memory (bytes, or a BytesSource that names it).
        height / width None keep the video's own size. out: optional uint8 [>= num_frames, H, W, 3] tensor
        (e.g. pinned memory) that receives the frames; rows past `length` are left untouched.
        rows: optional [num_frames] row numbers of `out`, for callers that know which frames they use: position
        k goes to out[rows[k]], and positions with a negative row are not converted (RGB + resize, about half
        the cost of decoding) nor written; decoding stops after the last position with a row. `length` then
        counts positions up to that last one at most, and `frames` is `out` itself. A position left out gets
        the time of the latest frame decoded at or before it, which can be an earlier frame than the one shown
        there (see `drop_unshown`).
        """
        media = _Media(path)
        out_rows = None if rows is None else max(max(rows, default=-1) + 1, 0)
        height, width = _validate_window_args(start_sec, num_frames, fps, height, width, out, out_rows)
        _validate_rows(rows, num_frames, out)
        media.check()
        targets = [float(start_sec) + k / float(fps) for k in range(int(num_frames))]
        convert = _Converter(height, width, self.interpolation, self.threads)
        arrays: list[np.ndarray] = []
        times = np.zeros(len(targets), dtype=np.float64)  # [num_frames]
        out_array = None if out is None else out.numpy()   # [T, H, W, 3], shares out's memory

        def destination(k: int) -> np.ndarray | None:   # frames are converted straight into their row of out
            return None if out_array is None else out_array[k if rows is None else rows[k]]

        def sink(k: int, array: np.ndarray | None, time: float) -> None:
            times[k] = time
            if array is None:
                return
            if out_array is not None:
                row = out_array[k if rows is None else rows[k]]
                if row.ctypes.data != array.ctypes.data:   # a frame shown again: copy it from its first row
                    row[...] = array
            else:
                arrays.append(array)

        for seek_sec in _seek_schedule(float(start_sec)):
            arrays.clear()
            with _open(media) as container:
                stream = _video_stream(container, media, self.threads)
                eps = _tolerance(stream)
                length = _decode_pass(container, stream, media.path, seek_sec, targets, eps, convert, sink,
                                      destination, rows, self.drop_unshown)
                native = (stream.codec_context.height, stream.codec_context.width)
            if length is not None:
                break
        return _window(arrays, times, length, out if rows is None else None, convert, native,
                       rows_out=None if rows is None else out)

    def __repr__(self) -> str:
        return (f"PyAVDecoder(threads={self.threads}, interpolation={self.interpolation!r}, "
                f"drop_unshown={self.drop_unshown})")


def _window(arrays, times, length, out, convert: _Converter, native, rows_out=None) -> DecodedWindow:
    """Package the decoded frames as a DecodedWindow (a view of `out` when given; `rows_out` itself when the
    caller chose the rows)."""
    timestamps = torch.from_numpy(times[:length].copy())  # [length] float64
    if rows_out is not None:
        frames = rows_out
    elif out is not None:
        frames = out[:length]
    elif arrays:
        frames = torch.from_numpy(np.stack(arrays))  # [length, H, W, 3]
    else:
        height, width = convert.height or native[0], convert.width or native[1]
        frames = torch.empty((0, height, width, 3), dtype=torch.uint8)
    return DecodedWindow(frames=frames, timestamps=timestamps, length=length)


_DEFAULT = PyAVDecoder()


def probe(path: VideoSource, *, decoder: Decoder | None = None) -> VideoInfo:
    """Describe a video file (or bytes) with `decoder` (default: PyAVDecoder()); see `VideoInfo`, `VideoError`."""
    return (decoder or _DEFAULT).probe(path)


def decode_window(
    path: VideoSource,
    start_sec: float,
    num_frames: int,
    fps: float,
    height: int | None = None,
    width: int | None = None,
    *,
    out: torch.Tensor | None = None,
    rows: Sequence[int] | None = None,
    decoder: Decoder | None = None,
) -> DecodedWindow:
    """Decode the frames shown at start_sec + k / fps (k < num_frames) as uint8 RGB [T, H, W, 3].

    See the module docstring for the sampling rule; `decoder` defaults to PyAVDecoder().
    """
    return (decoder or _DEFAULT).decode_window(path, start_sec, num_frames, fps, height, width, out=out, rows=rows)
