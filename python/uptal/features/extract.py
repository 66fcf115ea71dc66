"""Clip features of untrimmed videos: sliding clips -> a frozen backbone -> one [T, C] float32 array per video.

Sampling (all counts in *sampled* frames, i.e. frames taken at the target `fps`, sampled frame j shown at
time j / fps from the start of the video stream):

- a clip is `clip_frames` (F) frames `frame_stride` apart, so it spans ``span = (F - 1) * frame_stride + 1``
  sampled frames; clip i starts at sampled frame ``i * clip_stride``;
- a video of N sampled frames (N = the frames shown at 0, 1/fps, ... before the video ends) gets
  ``T = 1 + max(0, ceil((N - span) / clip_stride))`` features: clips are taken until one reaches the last
  frame, so every frame is seen and only the last clip can run past the end;
- the last partial window: its positions at or past N repeat the last frame (frame N - 1); how many clip frames
  were repeated is recorded as ``last_window_padded`` in the metadata (0 when the last clip fits);
- feature i stands for the time interval ``[i * clip_stride / fps, (i * clip_stride + span) / fps)``; its
  centre, ``(i * clip_stride + span / 2) / fps`` seconds, is stored for every feature (``timestamps``). This is
  ActionFormer's convention with feat_stride = clip_stride and num_frames = span.

Frames are decoded piecewise (`chunk_frames` sampled frames at a time, resized inside FFmpeg so the short side
is `short_side`, then centre-cropped to size x size), so a long video never sits in memory whole.

With `decode_workers` > 0, threads decode the next videos while the model runs on the current one (PyAV
releases the GIL while it decodes); each video's clips wait in a bounded queue, in order, so the features are
the same as decoding in the main thread.

Outputs in `out`: ``<prefix><video>.npy`` [T, C] float32 and ``metadata/<video>.json``, each written to a
temporary name and renamed (never a partial file under a final name). A rerun skips a video whose .npy opens
with the shape its metadata promises and whose metadata was made with the same settings.
"""
from __future__ import annotations

import json
import math
import os
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..files import write_atomically, write_json_atomically
from ..data.decode import decode_window, probe
from ..data.index import VIDEO_EXTENSIONS
from ..models import build_backbone

__all__ = [
    "PRESETS", "ClipSampling", "Preprocessing", "Encoder", "ExtractionResult",
    "load_encoder", "find_videos", "shard_for_rank", "stream_clips", "ClipPrefetcher", "extract_video",
    "extract_videos", "default_decode_workers", "video_is_done", "metadata_path", "feature_path",
]

#: Named sampling settings; explicit command-line values override them.
PRESETS: dict[str, dict[str, Any]] = {
    # TSP (Alwassel et al.): 16 frames at 15 fps, one clip every 16 frames.
    "tsp": {"fps": 15.0, "clip_frames": 16, "frame_stride": 1, "clip_stride": 16},
}


# mean / std in [0, 1] units that map RGB to [-1, 1] (DeepMind's I3D input range).
MINUS_ONE_TO_ONE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
# What a randomly initialised backbone gets: PAL's default normalisation (uptal.config.PalConfig).
PAL_DEFAULT_NORMALISATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
RANDOM_INIT_SEED = 0   # weights of a backbone extracted without checkpoint (tests, baselines)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ClipSampling:
    """Where the clips of a video are (see the module docstring for the formulas)."""

    fps: float = 25.0
    clip_frames: int = 8
    frame_stride: int = 1
    clip_stride: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not math.isfinite(self.fps) \
                or self.fps <= 0:
            raise ValueError(f"fps must be a finite number > 0, got {self.fps!r}")
        for name in ("clip_frames", "frame_stride", "clip_stride"):
            _positive_int(getattr(self, name), name)

    @property
    def span(self) -> int:
        """Sampled frames from the first to the last frame of a clip, both included."""
        return (self.clip_frames - 1) * self.frame_stride + 1

    def num_features(self, num_sampled_frames: int) -> int:
        """T for a video of N sampled frames: clips until one reaches frame N - 1."""
        if num_sampled_frames < 1:
            raise ValueError(f"num_sampled_frames must be >= 1, got {num_sampled_frames}")
        return 1 + max(0, math.ceil((num_sampled_frames - self.span) / self.clip_stride))

    def clip_positions(self, index: int, num_sampled_frames: int | None = None) -> list[int]:
        """Sampled-frame numbers of clip `index`; with N given, positions past the end repeat frame N - 1."""
        start = index * self.clip_stride
        positions = [start + k * self.frame_stride for k in range(self.clip_frames)]
        if num_sampled_frames is None:
            return positions
        return [min(p, num_sampled_frames - 1) for p in positions]

    def padded_frames(self, num_sampled_frames: int) -> int:
        """Clip frames of the last clip that lie past the end (and repeat the last frame)."""
        last = self.num_features(num_sampled_frames) - 1
        return sum(p >= num_sampled_frames for p in self.clip_positions(last))

    def centre_seconds(self, num_features: int) -> list[float]:
        """Centre time of every feature: the middle of [start, start + span) / fps."""
        return [(i * self.clip_stride + self.span / 2) / self.fps for i in range(num_features)]


@dataclass(frozen=True)
class Preprocessing:
    """Resize (short side), centre crop, and normalisation `(rgb / 255 - mean) / std` of every clip."""

    size: int = 112
    short_side: int = 112
    mean: tuple[float, float, float] = PAL_DEFAULT_NORMALISATION[0]
    std: tuple[float, float, float] = PAL_DEFAULT_NORMALISATION[1]

    def __post_init__(self) -> None:
        _positive_int(self.size, "size")
        _positive_int(self.short_side, "short_side")
        if self.short_side < self.size:
            raise ValueError(f"short_side must be >= size={self.size} (a centre crop of size x size), "
                             f"got {self.short_side}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"mean and std must be 3 values, std > 0; got mean={self.mean}, std={self.std}")

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) with the short side `short_side` and the aspect ratio kept."""
        scale = self.short_side / min(height, width)
        return max(self.short_side, round(height * scale)), max(self.short_side, round(width * scale))

    def centre_crop(self, frames: torch.Tensor) -> torch.Tensor:
        """[T, H, W, 3] -> [T, size, size, 3] (a view)."""
        top = (frames.shape[1] - self.size) // 2
        left = (frames.shape[2] - self.size) // 2
        return frames[:, top:top + self.size, left:left + self.size]

    def normalise(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 clips [N, F, S, S, 3] -> float [N, 3, F, S, S], normalised like the backbone was trained."""
        mean = torch.tensor(self.mean, device=clips.device).view(1, 3, 1, 1, 1)
        std = torch.tensor(self.std, device=clips.device).view(1, 3, 1, 1, 1)
        x = clips.permute(0, 4, 1, 2, 3).float() / 255.0   # [N, 3, F, S, S]
        return (x - mean) / std

    def describe(self) -> dict[str, Any]:
        return {"short_side": self.short_side, "crop": "centre", "size": self.size, "mean": list(self.mean),
                "std": list(self.std), "formula": "(rgb / 255 - mean) / std", "channels": "RGB"}


@dataclass
class Encoder:
    """A frozen backbone and what its training says about its inputs."""

    backbone: nn.Module
    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str                      # "checkpoint", "i3d-k400" or "random(seed=0)"
    weights_path: str | None = None
    sha256: str | None = None
    # Settings the checkpoint was trained with (fps, clip_frames, size), the defaults of an extraction.
    trained_with: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_dim(self) -> int:
        return int(self.backbone.feature_dim)


def _file_sha256(path: str | os.PathLike) -> str:
    from ..models.weights import file_sha256
    return file_sha256(path)


def load_encoder(checkpoint: str | os.PathLike | None = None, weights: str | None = None,
                 backbone: str | None = None) -> Encoder:
    """The backbone to extract with: from a `uptal pretrain` checkpoint, DeepMind's K400 I3D, or random."""
    if checkpoint is not None and weights is not None:
        raise ValueError("checkpoint and weights are exclusive: give one of them")
    if weights is not None:
        return _load_k400(weights, backbone)
    if checkpoint is not None:
        return _load_pretrain_checkpoint(Path(checkpoint), backbone)
    if backbone is None:
        raise ValueError("backbone is needed when neither checkpoint nor weights is given")
    # Seeded, so a rerun that resumes an extraction gets the same network for the videos still to do.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = build_backbone(backbone)
    mean, std = PAL_DEFAULT_NORMALISATION
    return Encoder(model.eval(), backbone, mean, std, source=f"random(seed={RANDOM_INIT_SEED})")


def _load_k400(weights: str, backbone: str | None) -> Encoder:
    if weights != "i3d-k400":
        raise ValueError(f"weights must be 'i3d-k400', got {weights!r}")
    if backbone not in (None, "i3d"):
        raise ValueError(f"weights i3d-k400 need backbone i3d, got backbone={backbone!r}")
    from ..models.weights import default_i3d_k400_path, load_i3d_k400
    model = build_backbone("i3d")
    load_i3d_k400(model)   # converts DeepMind's weights on first use
    path = default_i3d_k400_path()
    mean, std = MINUS_ONE_TO_ONE
    return Encoder(model.eval(), "i3d", mean, std, source="i3d-k400", weights_path=str(path),
                   sha256=_file_sha256(path))


def _load_pretrain_checkpoint(path: Path, backbone: str | None) -> Encoder:
    """A `uptal pretrain` checkpoint: the query encoder's backbone, and the normalisation it was trained with."""
    from ..train.checkpoint import load_checkpoint
    state = load_checkpoint(path)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"checkpoint {path} is not a `uptal pretrain` checkpoint (needs 'model' and 'config')")
    config = state["config"]
    name = config["model"]["backbone"]
    if backbone is not None and backbone != name:
        raise ValueError(f"backbone={backbone!r} but checkpoint {path} holds a {name!r} backbone")
    prefix = "encoder_q.backbone."   # the query encoder is the one trained by gradient
    weights = {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"checkpoint {path} has no '{prefix}*' weights")
    model = build_backbone(name)
    model.load_state_dict(weights, strict=True)
    pal = config.get("pal", {})
    trained_with = {"clip_frames": pal.get("frames"), "size": pal.get("size"),
                    "fps": config.get("data", {}).get("fps")}
    return Encoder(model.eval(), name, tuple(pal["mean"]), tuple(pal["std"]), source="checkpoint",
                   weights_path=str(path), sha256=_file_sha256(path),
                   trained_with={k: v for k, v in trained_with.items() if v is not None})


# ----------------------------------------------------------------------------------------------------------
# Which videos
# ----------------------------------------------------------------------------------------------------------


def find_videos(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Video files from paths that are videos, folders (their video files, sorted) or .txt lists (one path a
    line, relative to the list's folder; blank lines and '#' comments skipped)."""
    if not inputs:
        raise ValueError("videos must name at least one video, folder or .txt list")
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
        elif item.suffix.lower() == ".txt":
            if not item.is_file():
                raise ValueError(f"videos: list {item} does not exist")
            lines = (line.strip() for line in item.read_text().splitlines())
            found += [item.parent / line for line in lines if line and not line.startswith("#")]
        else:
            found.append(item)   # a missing file is reported as that video's failure
    names = [p.stem for p in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"videos: several files share the name(s) {duplicates}; outputs are named by file stem")
    return found


def shard_for_rank(videos: Sequence[Path], rank: int, world_size: int) -> list[Path]:
    """Rank r of W takes videos r, r + W, r + 2W, ..."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got rank={rank}")
    return list(videos[rank::world_size])


def rank_from_environment() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) set by torchrun, else (0, 1)."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as error:
        raise ValueError(f"RANK / WORLD_SIZE must be integers: {error}") from error


# ----------------------------------------------------------------------------------------------------------
# Streaming clips out of a video
# ----------------------------------------------------------------------------------------------------------


@dataclass
class StreamStats:
    num_sampled_frames: int = 0
    duration: float = 0.0
    source_fps: float = 0.0


def stream_clips(path: str | os.PathLike, sampling: ClipSampling, prep: Preprocessing,
                 chunk_frames: int = 256, stats: StreamStats | None = None) -> Iterator[torch.Tensor]:
    """Yield the clips of a video in order, uint8 [F, size, size, 3] each, decoding `chunk_frames` sampled
    frames at a time; only the frames that later clips still need are kept between chunks.

    `stats`, when given, receives the number of sampled frames once the video has ended.
    """
    chunk_frames = _positive_int(chunk_frames, "chunk_frames")
    info = probe(path)
    height, width = prep.resized_size(info.height, info.width)
    stats = stats if stats is not None else StreamStats()
    stats.duration, stats.source_fps = info.duration, info.fps
    kept = torch.empty((0, prep.size, prep.size, 3), dtype=torch.uint8)  # [n, S, S, 3]
    kept_from = 0       # sampled-frame number of kept[0]
    decoded = 0         # sampled frames decoded so far
    next_clip = 0
    ended = False
    while not ended:
        window = decode_window(path, decoded / sampling.fps, chunk_frames, sampling.fps, height, width)
        ended = window.length < chunk_frames
        kept = torch.cat([kept, prep.centre_crop(window.frames[:window.length])])
        decoded += window.length
        if ended and decoded == 0:
            raise ValueError(f"{path}: no frame decodes at {sampling.fps} fps")
        total = decoded if ended else None
        last_clip = sampling.num_features(decoded) - 1 if ended else None
        # Emit every clip whose frames are all decoded (or, at the end, every remaining clip, padded).
        while True:
            positions = sampling.clip_positions(next_clip, total)
            if ended and next_clip > last_clip:
                break
            if not ended and positions[-1] >= decoded:
                break
            yield kept[[p - kept_from for p in positions]]   # [F, S, S, 3]
            next_clip += 1
        drop = min(next_clip * sampling.clip_stride, decoded) - kept_from
        kept, kept_from = kept[drop:], kept_from + drop
    stats.num_sampled_frames = decoded


class _End:
    """Queued after a video's last clip."""


@dataclass
class _Failed:
    """Queued instead of the remaining clips when streaming a video raised."""
    error: BaseException


class ClipPrefetcher:
    """Streams the clips of `paths` in `workers` background threads, in order of `paths`, at most `workers`
    videos ahead of the consumer; each video's clips wait in a queue of at most `depth` clips, so memory stays
    at about workers x depth clips. `clips(i)` yields video i's clips (raising what streaming it raised) and
    `stats[i]` is its `StreamStats`. Use as a context manager: leaving it stops the threads."""

    def __init__(self, paths: Sequence[Path], sampling: ClipSampling, prep: Preprocessing, chunk_frames: int,
                 workers: int, depth: int) -> None:
        self.stats = [StreamStats() for _ in paths]
        self._queues: list[queue.Queue] = [queue.Queue(maxsize=max(1, depth)) for _ in paths]
        self._left = [threading.Event() for _ in paths]   # the consumer stopped reading video i
        self._stop = threading.Event()
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="uptal-decode")
        for i, path in enumerate(paths):   # the pool starts them in this order
            self._executor.submit(self._produce, i, path, sampling, prep, chunk_frames)

    def _produce(self, i: int, path: Path, sampling, prep, chunk_frames) -> None:
        if self._stop.is_set():
            return
        try:
            for clip in stream_clips(path, sampling, prep, chunk_frames, self.stats[i]):
                if not self._put(i, clip):
                    return
            self._put(i, _End())
        except Exception as error:  # noqa: BLE001 - handed to the consumer, which reports the video
            self._put(i, _Failed(error))

    def _put(self, i: int, item) -> bool:
        """Queue an item for video i, waiting for room; False when no one will read it any more."""
        while not (self._stop.is_set() or self._left[i].is_set()):
            try:
                self._queues[i].put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def clips(self, i: int) -> Iterator[torch.Tensor]:
        """Video i's clips; closing this iterator early lets its thread move on to the next video."""
        try:
            while True:
                item = self._queues[i].get()
                if isinstance(item, _End):
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            self._left[i].set()

    def close(self) -> None:
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "ClipPrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------------
# One video
# ----------------------------------------------------------------------------------------------------------


def feature_path(out: Path, name: str, prefix: str = "") -> Path:
    return out / f"{prefix}{name}.npy"


def metadata_path(out: Path, name: str) -> Path:
    return out / "metadata" / f"{name}.json"


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:   # a file object, so np.save adds no second ".npy"
            np.save(handle, array)
            handle.flush()
            os.fsync(handle.fileno())
    write_atomically(path, write)


def settings_record(sampling: ClipSampling, prep: Preprocessing, encoder: Encoder) -> dict[str, Any]:
    """What must match for a finished video to be reused by a rerun."""
    return {**asdict(sampling), "clip_span_frames": sampling.span, "backbone": encoder.name,
            "weights": encoder.source, "checkpoint": encoder.weights_path, "checkpoint_sha256": encoder.sha256,
            "preprocessing": prep.describe(), "feature_dim": encoder.feature_dim}


def video_is_done(out: Path, name: str, prefix: str, settings: dict[str, Any]) -> bool:
    """Its metadata was written with these settings and its .npy opens with the promised [T, C] shape."""
    try:
        metadata = json.loads(metadata_path(out, name).read_text())
        if any(metadata.get(key) != value for key, value in settings.items()):
            return False
        features = np.load(feature_path(out, name, prefix), mmap_mode="r")
        return features.shape == (metadata["num_features"], metadata["feature_dim"]) and features.dtype == np.float32
    except (OSError, ValueError, KeyError, TypeError):
        return False


@torch.no_grad()
def _encode(encoder: Encoder, prep: Preprocessing, clips: list[torch.Tensor], device: torch.device) -> np.ndarray:
    batch = torch.stack(clips).to(device, non_blocking=True)           # [N, F, S, S, 3] uint8
    inputs = prep.normalise(batch)                                     # [N, 3, F, S, S]
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        features = encoder.backbone(inputs)                            # [N, C]
    return features.float().cpu().numpy()


def extract_video(path: Path, encoder: Encoder, sampling: ClipSampling, prep: Preprocessing, *,
                  batch_size: int = 32, device: torch.device | str = "cpu", chunk_frames: int = 256,
                  progress=None, clips: Iterator[torch.Tensor] | None = None,
                  stats: StreamStats | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Features [T, C] float32 of one video and its metadata (without writing anything).

    clips, stats: the video's clips already being streamed (`ClipPrefetcher`) and the stats they fill;
    by default the video is streamed here."""
    device = torch.device(device)
    if clips is None:
        stats = StreamStats()
        clips = stream_clips(path, sampling, prep, chunk_frames, stats)
    pending: list[torch.Tensor] = []
    parts: list[np.ndarray] = []
    for clip in clips:
        if progress is not None and progress.total is None:   # the probe has run: estimate the clip count
            progress.total = sampling.num_features(max(1, math.ceil(stats.duration * sampling.fps - 1e-6)))
            progress.refresh()
        pending.append(clip)
        if len(pending) == batch_size:
            parts.append(_encode(encoder, prep, pending, device))
            pending = []
            if progress is not None:
                progress.update(batch_size)
    if pending:
        parts.append(_encode(encoder, prep, pending, device))
        if progress is not None:
            progress.update(len(pending))
    features = np.concatenate(parts).astype(np.float32, copy=False)   # [T, C]
    expected = sampling.num_features(stats.num_sampled_frames)
    if features.shape[0] != expected:   # a broken invariant of stream_clips, never silently saved
        raise RuntimeError(f"{path}: {features.shape[0]} clips, expected {expected}")
    metadata = {
        "video": path.stem, "source": str(path), "duration": stats.duration, "source_fps": stats.source_fps,
        "num_sampled_frames": stats.num_sampled_frames, "num_features": int(features.shape[0]),
        "last_window_padded": sampling.padded_frames(stats.num_sampled_frames),
        "timestamps": sampling.centre_seconds(features.shape[0]),
        "timestamps_are": "centre (s) of [i * clip_stride, i * clip_stride + clip_span_frames) / fps",
        **settings_record(sampling, prep, encoder), "uptal_version": __version__,
    }
    return features, metadata


# ----------------------------------------------------------------------------------------------------------
# Many videos
# ----------------------------------------------------------------------------------------------------------


@dataclass
class ExtractionResult:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)      # finished by an earlier run
    failed: dict[str, str] = field(default_factory=dict)  # video name -> why

    def summary(self) -> str:
        lines = [f"{len(self.done)} extracted, {len(self.skipped)} already done, {len(self.failed)} failed"]
        lines += [f"  FAILED {name}: {why}" for name, why in self.failed.items()]
        return "\n".join(lines)


def _progress(total: int, unit: str, enabled: bool, leave: bool = True):
    from tqdm import tqdm
    return tqdm(total=total, unit=unit, disable=not enabled, leave=leave, file=sys.stderr, dynamic_ncols=True)


def default_decode_workers() -> int:
    """Decoding threads per process by default: the cores this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        cores = os.cpu_count() or 1
    return min(4, cores)


def extract_videos(videos: Sequence[Path], out: str | os.PathLike, encoder: Encoder, sampling: ClipSampling,
                   prep: Preprocessing, *, prefix: str = "", batch_size: int = 32,
                   device: torch.device | str | None = None, chunk_frames: int = 256,
                   show_progress: bool = False, decode_workers: int | None = None) -> ExtractionResult:
    """Extract every video not already done into `out`; a failing video is recorded and the rest go on.

    decode_workers: threads that decode the next videos while the model runs (0: decode in this thread;
    None: `default_decode_workers()`); up to decode_workers x 2 batches of clips wait decoded."""
    batch_size = _positive_int(batch_size, "batch_size")
    decode_workers = default_decode_workers() if decode_workers is None else decode_workers
    if isinstance(decode_workers, bool) or not isinstance(decode_workers, int) or decode_workers < 0:
        raise ValueError(f"decode_workers must be an int >= 0, got {decode_workers!r}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder.backbone.to(device).eval()
    out = Path(out)
    settings = settings_record(sampling, prep, encoder)
    result = ExtractionResult()
    with _progress(len(videos), "video", show_progress) as bar:
        todo = [path for path in videos if not video_is_done(out, path.stem, prefix, settings)]
        waiting = set(todo)
        result.skipped += [path.stem for path in videos if path not in waiting]
        bar.update(len(videos) - len(todo))
        run = dict(out=out, encoder=encoder, sampling=sampling, prep=prep, prefix=prefix, batch_size=batch_size,
                   device=device, chunk_frames=chunk_frames, show_progress=show_progress, result=result)
        if decode_workers == 0:
            for path in todo:
                bar.set_postfix_str(path.stem)
                _extract_one(path, **run)
                bar.update(1)
        else:
            with ClipPrefetcher(todo, sampling, prep, chunk_frames, decode_workers, 2 * batch_size) as ahead:
                for i, path in enumerate(todo):
                    bar.set_postfix_str(path.stem)
                    _extract_one(path, **run, clips=ahead.clips(i), stats=ahead.stats[i])
                    bar.update(1)
    return result


def _extract_one(path, out, encoder, sampling, prep, prefix, batch_size, device, chunk_frames, show_progress,
                 result: ExtractionResult, clips=None, stats=None) -> None:
    name = path.stem
    try:
        with _progress(None, "clip", show_progress, leave=False) as clips_bar:
            features, metadata = extract_video(path, encoder, sampling, prep, batch_size=batch_size,
                                               device=device, chunk_frames=chunk_frames, progress=clips_bar,
                                               clips=clips, stats=stats)
        metadata["feature_file"] = feature_path(out, name, prefix).name
        # Features first, metadata last: metadata present means the .npy beside it is complete.
        _save_npy(feature_path(out, name, prefix), features)
        write_json_atomically(metadata_path(out, name), metadata)
        result.done.append(name)
    except Exception as error:  # noqa: BLE001 - one bad video must not stop the others; reported at the end
        result.failed[name] = f"{type(error).__name__}: {error}"
    finally:
        if clips is not None:
            clips.close()   # after a failure half-way, its decoding thread moves on
