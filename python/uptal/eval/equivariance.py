"""Equivariance probe (the paper's Figure 3): does an encoder see an action as the same thing at other speeds?

The test sequence. Take the annotated action [start, end) of a video (A frames at the probe's fps) and the
video's frames outside it (the background, at most `background_seconds` of them, the nearest to the action).
Split the background in three nearly equal parts B1, B2, B3 and build, in memory:

    B1 | action down-sampled 2x (frames 0, 2, 4, ...: twice as fast) | B2 | action up-sampled 2x (every frame
    twice: half speed) | B3

so the fast copy (ceil(A / 2) frames) comes earlier and the slow copy (2A frames) later, both at known
positions. Each encoder turns the sequence into sliding clip features exactly as `uptal extract` does
(`ClipSampling`: clip i covers sequence frames [i * clip_stride, i * clip_stride + span)).

Which clips belong to a copy. A clip is *inside* a copy when at least half of its span frames lie in it, and
*outside* when none of its frames lie in either copy; clips that only graze a copy are neither (they mix
action and background, so they would blur both means).

The number per encoder, `standout`:

    standout = mean cos(x_i, x_j) over pairs of distinct inside clips (both copies pooled)
             - mean cos(x_i, y_k) over inside clips i and outside clips k

1 when the action's clips are identical to each other and orthogonal to the background, about 0 when the
action looks like everything else; negative when the action's clips differ more from each other than from
the background. `cross_copy` (the mean over fast-copy x slow-copy pairs only) says how much the two speeds
agree, the equivariance the figure is about; it is reported beside it.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.decode import decode_window, probe
from ..features.extract import ClipSampling, Encoder, Preprocessing, _encode, load_encoder

__all__ = [
    "ProbeSequence", "EncoderScore", "EquivarianceReport", "build_probe_sequence", "parse_encoder_spec",
    "load_encoder_spec", "clip_regions", "cosine_similarity_matrix", "standout_scores", "sequence_features",
    "plot_similarity_maps", "run_equivariance_probe", "format_scores", "PANEL_INCHES", "FIGURE_DPI",
    "SCORE_DEFINITION",
]

PANEL_INCHES = 4.0        # width and height of one encoder's map
TITLE_INCHES = 0.6        # room above the maps for titles
FIGURE_DPI = 100
SCORE_DEFINITION = ("standout = mean cosine similarity over pairs of distinct clips inside the two inserted copies "
                    "- mean cosine similarity between inside and outside clips; inside = at least half of the "
                    "clip's frames in a copy, outside = no frame in either copy")


# ----------------------------------------------------------------------------------------------------------
# The test sequence
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSequence:
    """Which source frame each sequence frame shows, and where the two inserted copies are.

    source_indices: int64 [N], the index (into the decoded frames) shown at each sequence frame.
    fast_copy, slow_copy: [start, end) sequence-frame ranges of the 2x down-sampled and 2x up-sampled copies.
    """

    source_indices: np.ndarray
    fast_copy: tuple[int, int]
    slow_copy: tuple[int, int]

    @property
    def num_frames(self) -> int:
        return int(self.source_indices.shape[0])

    def frames(self, decoded: torch.Tensor) -> torch.Tensor:
        """The sequence's frames [N, H, W, 3] from the decoded frames [M, H, W, 3]."""
        return decoded[torch.from_numpy(self.source_indices)]


def _split_in_three(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first, second = len(indices) // 3, 2 * len(indices) // 3
    return indices[:first], indices[first:second], indices[second:]


def build_probe_sequence(num_frames: int, action_start: int, action_end: int,
                         max_background: int | None = None) -> ProbeSequence:
    """The probe sequence over decoded frames 0..num_frames-1 whose action is frames [action_start, action_end).

    The background is every other frame, or, with `max_background`, that many of them nearest the action
    (those far from it are dropped first, so the background is the action's own context).
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 2:
        raise ValueError(f"num_frames must be an int >= 2, got {num_frames!r}")
    if not 0 <= action_start < action_end <= num_frames:
        raise ValueError(f"segment must satisfy 0 <= start < end <= {num_frames} (frames), "
                         f"got [{action_start}, {action_end})")
    action = np.arange(action_start, action_end, dtype=np.int64)
    background = np.concatenate([np.arange(0, action_start), np.arange(action_end, num_frames)]).astype(np.int64)
    if len(background) == 0:
        raise ValueError("segment covers the whole video: the probe needs background frames outside it")
    if max_background is not None:
        if max_background < 1:
            raise ValueError(f"max_background must be >= 1, got {max_background}")
        distance = np.where(background < action_start, action_start - background, background - action_end + 1)
        keep = np.sort(np.argsort(distance, kind="stable")[:max_background])
        background = background[keep]
    fast = action[::2]                    # every other frame: the action twice as fast
    slow = np.repeat(action, 2)           # every frame twice: the action at half speed
    lead, middle, tail = _split_in_three(background)
    fast_start = len(lead)
    slow_start = fast_start + len(fast) + len(middle)
    indices = np.concatenate([lead, fast, middle, slow, tail])
    return ProbeSequence(indices, (fast_start, fast_start + len(fast)), (slow_start, slow_start + len(slow)))


# ----------------------------------------------------------------------------------------------------------
# Clips, similarities and the score
# ----------------------------------------------------------------------------------------------------------


def _overlap(clip: tuple[int, int], region: tuple[int, int]) -> int:
    return max(0, min(clip[1], region[1]) - max(clip[0], region[0]))


def clip_regions(sequence: ProbeSequence, sampling: ClipSampling) -> dict[str, list[int]]:
    """Clip indices inside the fast copy, inside the slow copy, and outside both (see the module docstring)."""
    num_clips = sampling.num_features(sequence.num_frames)
    regions: dict[str, list[int]] = {"fast": [], "slow": [], "outside": []}
    for i in range(num_clips):
        clip = (i * sampling.clip_stride, i * sampling.clip_stride + sampling.span)
        fast, slow = _overlap(clip, sequence.fast_copy), _overlap(clip, sequence.slow_copy)
        if 2 * fast >= sampling.span:
            regions["fast"].append(i)
        elif 2 * slow >= sampling.span:
            regions["slow"].append(i)
        elif fast == 0 and slow == 0:
            regions["outside"].append(i)
    return regions


def cosine_similarity_matrix(features: np.ndarray) -> np.ndarray:
    """[T, C] -> [T, T] cosine similarities (a zero feature has similarity 0 with everything)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 1:
        raise ValueError(f"features must be [T, C] with T >= 1, got shape {features.shape}")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)
    return unit @ unit.T


def standout_scores(similarity: np.ndarray, regions: dict[str, list[int]]) -> dict[str, float]:
    """`standout` and its parts from a [T, T] similarity matrix and the clip regions (NaN when a part is empty)."""
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be a square [T, T] matrix, got shape {similarity.shape}")
    inside = np.array(regions["fast"] + regions["slow"], dtype=np.int64)
    outside = np.array(regions["outside"], dtype=np.int64)
    fast, slow = np.array(regions["fast"], dtype=np.int64), np.array(regions["slow"], dtype=np.int64)
    within = similarity[np.ix_(inside, inside)]
    distinct_pairs = ~np.eye(len(inside), dtype=bool)   # a clip's similarity with itself is always 1
    within_action = _mean(within[distinct_pairs])
    inside_outside = _mean(similarity[np.ix_(inside, outside)])
    return {"standout": within_action - inside_outside, "within_action": within_action,
            "cross_copy": _mean(similarity[np.ix_(fast, slow)]), "inside_outside": inside_outside}


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


# ----------------------------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------------------------


def parse_encoder_spec(spec: str) -> dict[str, str]:
    """'checkpoint:PATH' | 'i3d-k400' | 'backbone:NAME' -> the keyword arguments of `load_encoder`."""
    if not isinstance(spec, str):
        raise ValueError(f"encoder must be a string, got {type(spec).__name__}")
    if spec == "i3d-k400":
        return {"weights": "i3d-k400"}
    kind, _, value = spec.partition(":")
    if kind in ("checkpoint", "backbone") and value:
        return {kind: value}
    raise ValueError(f"encoder must be 'checkpoint:PATH', 'i3d-k400' or 'backbone:NAME', got {spec!r}")


def load_encoder_spec(spec: str) -> Encoder:
    return load_encoder(**parse_encoder_spec(spec))


@torch.no_grad()
def sequence_features(frames: torch.Tensor, encoder: Encoder, sampling: ClipSampling, prep: Preprocessing, *,
                      batch_size: int = 16, device: torch.device | str = "cpu") -> np.ndarray:
    """Clip features [T, C] of in-memory frames [N, size, size, 3] uint8, clips placed as `uptal extract` does."""
    num_frames = frames.shape[0]
    clips = [frames[sampling.clip_positions(i, num_frames)] for i in range(sampling.num_features(num_frames))]
    encoder.backbone.to(device).eval()
    parts = [_encode(encoder, prep, clips[i:i + batch_size], torch.device(device))
             for i in range(0, len(clips), batch_size)]
    return np.concatenate(parts).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------------------
# The picture
# ----------------------------------------------------------------------------------------------------------


def _clip_coordinate(frame: float, sampling: ClipSampling) -> float:
    """Where sequence frame `frame` falls on a clip axis (clip i is drawn centred on i)."""
    return (frame - sampling.span / 2) / sampling.clip_stride


def plot_similarity_maps(similarities: Sequence[np.ndarray], titles: Sequence[str], sequence: ProbeSequence,
                         sampling: ClipSampling, path: str | os.PathLike, dpi: int = FIGURE_DPI) -> Path:
    """One PNG: each encoder's [T, T] map side by side, the two copies marked by lines on both axes.

    The image is (PANEL_INCHES * n) x (PANEL_INCHES + TITLE_INCHES) inches at `dpi`.
    """
    if len(similarities) < 1 or len(similarities) != len(titles):
        raise ValueError(f"similarities and titles must be non-empty and of equal length, "
                         f"got {len(similarities)} and {len(titles)}")
    import matplotlib
    matplotlib.use("Agg")   # no display on servers and CI
    import matplotlib.pyplot as plt

    count = len(similarities)
    figure, axes = plt.subplots(1, count, figsize=(PANEL_INCHES * count, PANEL_INCHES + TITLE_INCHES),
                                dpi=dpi, squeeze=False, layout="constrained")  # colour bars never overlap
    copies = (("2x fast", sequence.fast_copy, "tab:orange"), ("2x slow", sequence.slow_copy, "tab:cyan"))
    for axis, similarity, title in zip(axes[0], similarities, titles):
        # Each panel has its own colour range: random networks give similarities all near 1.
        image = axis.imshow(similarity, cmap="viridis", interpolation="nearest")
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
        for label, (start, end), colour in copies:
            low = _clip_coordinate(start, sampling)
            high = _clip_coordinate(end, sampling)
            for edge in (low, high):
                axis.axvline(edge, color=colour, linestyle="--", linewidth=1)
                axis.axhline(edge, color=colour, linestyle="--", linewidth=1)
            axis.text((low + high) / 2, -0.5, label, color=colour, ha="center", va="bottom", fontsize=7)
        axis.set_title(title, fontsize=9, pad=12)
        axis.set_xlabel("clip")
        axis.set_ylabel("clip")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)   # no bbox_inches="tight": the size stays what the docstring promises
    plt.close(figure)
    return path


# ----------------------------------------------------------------------------------------------------------
# The whole probe
# ----------------------------------------------------------------------------------------------------------


@dataclass
class EncoderScore:
    spec: str
    backbone: str
    source: str
    sha256: str | None
    feature_dim: int
    num_clips: int
    standout: float
    within_action: float
    cross_copy: float
    inside_outside: float


@dataclass
class EquivarianceReport:
    scores: list[EncoderScore]
    json_path: Path
    figure_path: Path


def _decode_context(video: Path, segment: tuple[float, float], sampling: ClipSampling, prep: Preprocessing,
                    background_seconds: float) -> tuple[torch.Tensor, float, int, int]:
    """Decoded, centre-cropped frames [M, S, S, 3] around the action, their first time, and the action's frames."""
    start, end = segment
    info = probe(video)
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise ValueError(f"segment END must be > START, got [{start}, {end}]")
    if start < 0 or end > info.duration + 1e-6:
        raise ValueError(f"segment [{start}, {end}] lies outside the video (0 to {info.duration:.3f} s)")
    first = max(0.0, start - background_seconds)
    last = min(info.duration, end + background_seconds)
    height, width = prep.resized_size(info.height, info.width)
    window = decode_window(video, first, math.ceil((last - first) * sampling.fps - 1e-6), sampling.fps,
                           height, width)
    frames = prep.centre_crop(window.frames[:window.length])
    action_start = round((start - first) * sampling.fps)
    action_end = min(window.length, round((end - first) * sampling.fps))
    if action_end <= action_start:
        raise ValueError(f"segment [{start}, {end}] holds no frame at {sampling.fps} fps")
    return frames, first, action_start, action_end


def run_equivariance_probe(video: str | os.PathLike, segment: tuple[float, float], encoder_specs: Sequence[str],
                           out: str | os.PathLike, *, sampling: ClipSampling | None = None, size: int = 112,
                           background_seconds: float = 8.0, batch_size: int = 16,
                           device: str | None = None) -> EquivarianceReport:
    """Build the sequence, extract features per encoder, write equivariance.png and equivariance.json to `out`."""
    if not encoder_specs:
        raise ValueError("encoder must be given at least once")
    if not background_seconds > 0:
        raise ValueError(f"background_seconds must be > 0, got {background_seconds}")
    specs = list(encoder_specs)
    for spec in specs:   # every spec checked before the slow work starts
        parse_encoder_spec(spec)
    sampling = sampling or ClipSampling(fps=25.0, clip_frames=8, frame_stride=1, clip_stride=4)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    video = Path(video)
    decoded, first, action_start, action_end = _decode_context(
        video, (float(segment[0]), float(segment[1])), sampling, Preprocessing(size=size, short_side=size),
        background_seconds)
    sequence = build_probe_sequence(decoded.shape[0], action_start, action_end,
                                    max_background=round(background_seconds * sampling.fps))
    frames = sequence.frames(decoded)            # [N, S, S, 3]
    regions = clip_regions(sequence, sampling)
    similarities, scores = [], []
    for spec in specs:
        encoder = load_encoder_spec(spec)
        prep = Preprocessing(size=size, short_side=size, mean=encoder.mean, std=encoder.std)
        features = sequence_features(frames, encoder, sampling, prep, batch_size=batch_size, device=device)
        similarity = cosine_similarity_matrix(features)
        similarities.append(similarity)
        scores.append(EncoderScore(spec, encoder.name, encoder.source, encoder.sha256, encoder.feature_dim,
                                   int(features.shape[0]), **standout_scores(similarity, regions)))
    out = Path(out)
    figure_path = plot_similarity_maps(similarities, [f"{s.spec}\nstandout {s.standout:.3f}" for s in scores],
                                       sequence, sampling, out / "equivariance.png")
    record = _record(video, segment, first, action_start, action_end, sequence, regions, sampling, size,
                     background_seconds, scores, figure_path)
    json_path = out / "equivariance.json"
    json_path.write_text(json.dumps(record, indent=1, allow_nan=True) + "\n")
    return EquivarianceReport(scores, json_path, figure_path)


def _record(video, segment, first, action_start, action_end, sequence, regions, sampling, size,
            background_seconds, scores, figure_path) -> dict[str, Any]:
    fps = sampling.fps
    return {
        "video": str(video), "segment_sec": [float(segment[0]), float(segment[1])],
        "action_source_frames": [action_start, action_end], "decoded_from_sec": first,
        "sequence": {
            "num_frames": sequence.num_frames, "fps": fps,
            "fast_copy_frames": list(sequence.fast_copy), "slow_copy_frames": list(sequence.slow_copy),
            "fast_copy_sec": [f / fps for f in sequence.fast_copy],
            "slow_copy_sec": [f / fps for f in sequence.slow_copy],
            "layout": "background 1/3 | action every other frame | background 1/3 | action each frame twice | "
                      "background 1/3",
        },
        "clip_regions": regions,
        "settings": {**asdict(sampling), "clip_span_frames": sampling.span, "size": size,
                     "background_seconds": background_seconds, "preprocessing": "short side = size, centre crop"},
        "score_definition": SCORE_DEFINITION,
        "encoders": [asdict(score) for score in scores],
        "figure": figure_path.name,
    }


def format_scores(scores: Sequence[EncoderScore]) -> str:
    """A plain table: one row per encoder."""
    header = f"{'encoder':<32} {'standout':>9} {'within':>9} {'cross':>9} {'in-out':>9}"
    rows = [f"{s.spec:<32} {s.standout:>9.4f} {s.within_action:>9.4f} {s.cross_copy:>9.4f} "
            f"{s.inside_outside:>9.4f}" for s in scores]
    return "\n".join([header, *rows])
