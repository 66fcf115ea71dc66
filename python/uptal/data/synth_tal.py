"""A synthetic temporal action localization (TAL) benchmark: untrimmed videos with known action instances.

`uptal data synth-tal --out DIR` writes

    DIR/videos/<video_id>.mp4    H.264 yuv420p, one per video
    DIR/annotations.json         ActivityNet-format ground truth (version "synth-tal-1"); the test split is the
                                 "validation" subset, the one `uptal evaluate` reads by default
    DIR/classes.txt              one class name per line, in class-index order

so that the whole chain (pre-train -> extract -> TAD probe -> mAP) runs on any machine without a data set.

Every video has the demo videos' backgrounds (two drifting gratings and two bouncing blobs, then a scene cut
to a new background; see `uptal.data.demo`) and 1 to 3 non-overlapping action instances, each 1 to 4 s long.
A class is a motion pattern, not a colour: every instance draws its position, size, colour and speed at random
within ranges that belong to its class, so a detector must learn the motion.

    circle_clockwise  a textured disc orbiting a point clockwise
    bounce_vertical   a textured disc bouncing up and down, its column fixed
    blink_square      a textured square at a fixed place, switching on and off a few times per second
    sweep_bar         a tall textured bar sweeping left and right, its rows fixed
    breathe_disc      a textured disc at a fixed place whose radius grows and shrinks

Everything is drawn from the seed: video i's timing and look depend only on (seed, i), the split and the class
order on the seed and the number of videos, so the same arguments give the same annotations and the same
pixels before encoding (pure torch float32 on the CPU, as the demo videos).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..files import write_text_atomically
from .demo import _bounce, _color, _encode, _even, _render_scene, _Scene, _scene

__all__ = [
    "CLASS_NAMES",
    "SynthInstance",
    "SynthTalSet",
    "SynthVideoSpec",
    "annotations_dict",
    "instance_mask",
    "synth_tal_frames",
    "synth_tal_specs",
    "write_synth_tal",
]

VERSION = "synth-tal-1"
CLASS_NAMES = ("circle_clockwise", "bounce_vertical", "blink_square", "sweep_bar", "breathe_disc")
MIN_INSTANCE_SEC, MAX_INSTANCE_SEC = 1.0, 4.0
MAX_INSTANCES = 3
MIN_GAP_SEC = 0.5    # between two instances, so two instances of one class never read as one
MIN_FPS = 5.0        # the fastest pattern (blinking at 2 Hz) needs >= 2.5 frames per period to be seen
DARK_INK = 13.0      # the dark squares of the checker texture (in 1/255 units plus 0.5, as demo's images)
CHECKER_CELL = 4.0   # pixels: the side of one checker square of the texture


@dataclass(frozen=True)
class SynthInstance:
    """One action instance: its class, frames [start, end) and the look drawn for it.

    `place` is (y, x) as fractions of the frame; `size` a fraction of the frame height; `speed` in cycles
    (turns, bounces, blinks, sweeps, breaths) per second; `extent` a class-specific second range (see
    `_PATTERNS`); `phase` in cycles.
    """

    label: int
    start: int
    end: int
    place: tuple[float, float]
    size: float
    speed: float
    extent: tuple[float, float]
    phase: float
    color: tuple[float, float, float]


@dataclass(frozen=True)
class SynthVideoSpec:
    """Everything that defines one synthetic video; its instances are its ground truth."""

    video_id: str
    subset: str               # "training" or "validation" (the test split)
    num_frames: int
    fps: float
    height: int
    width: int
    cut_frame: int            # first frame of the second scene
    scenes: tuple[_Scene, _Scene]
    instances: tuple[SynthInstance, ...]

    @property
    def duration(self) -> float:
        """Seconds: num_frames periods of 1 / fps."""
        return self.num_frames / self.fps


@dataclass(frozen=True)
class SynthTalSet:
    """What `write_synth_tal` wrote."""

    directory: Path
    annotations: Path
    classes: Path
    videos: tuple[Path, ...]
    num_training: int
    num_validation: int
    num_instances: int


# ---------------------------------------------------------------------------------------------- the classes
# Each pattern: draw(rng) -> (place, size, speed, extent, phase) within the class's ranges, and
# shape(instance, t, ys, xs, height, width) -> (mask [T, H, W'], texture centre y [T], x [T], texture cell
# size in pixels [T]) at seconds t since the instance began. Phases are chosen so the object is visible on
# the instance's first frame.

def _draw_circle(rng):
    place = (float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.3, 0.7)))
    orbit = (float(rng.uniform(0.14, 0.22)), 0.0)      # orbit radius, fraction of the height
    return place, float(rng.uniform(0.09, 0.13)), float(rng.uniform(0.7, 1.4)), orbit, float(rng.uniform(0, 1))


def _draw_bounce(rng):
    place = (0.5, float(rng.uniform(0.2, 0.8)))
    rows = (float(rng.uniform(0.15, 0.3)), float(rng.uniform(0.7, 0.85)))  # top and bottom of the bounce
    return place, float(rng.uniform(0.09, 0.13)), float(rng.uniform(0.8, 1.5)), rows, float(rng.uniform(0, 1))


def _draw_blink(rng):
    place = (float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.25, 0.75)))
    return place, float(rng.uniform(0.1, 0.16)), float(rng.uniform(1.0, 2.0)), (0.0, 0.0), 0.0  # on at start


def _draw_sweep(rng):
    rows = (float(rng.uniform(0.05, 0.25)), float(rng.uniform(0.75, 0.95)))  # the bar's top and bottom
    place = (0.5, 0.0)
    columns = (float(rng.uniform(0.1, 0.25)), float(rng.uniform(0.75, 0.9)))
    return (place, float(rng.uniform(0.04, 0.07)), float(rng.uniform(0.4, 0.8)),
            rows + columns, float(rng.uniform(0, 1)))


def _draw_breathe(rng):
    place = (float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.3, 0.7)))
    return place, float(rng.uniform(0.15, 0.22)), float(rng.uniform(0.8, 1.5)), (0.0, 0.0), 0.0  # largest at start


def _disc(cy, cx, radius, ys, xs):
    """Mask of discs centred (cy, cx) [T] with radius [T] or a number: [T, H, W']."""
    radius = torch.as_tensor(radius, dtype=torch.float32).expand(cy.shape[0])
    dy, dx = ys[None] - cy[:, None], xs[None] - cx[:, None]                        # [T, H], [T, W']
    return dy[:, :, None] ** 2 + dx[:, None, :] ** 2 < (radius ** 2)[:, None, None]


def _box(cy, cx, half_h, half_w, ys, xs):
    """Mask of axis-aligned boxes centred (cy, cx) [T] with half sizes in pixels: [T, H, W']."""
    inside_rows = (ys[None] - cy[:, None]).abs() <= half_h                          # [T, H]
    inside_cols = (xs[None] - cx[:, None]).abs() <= half_w                          # [T, W']
    return inside_rows[:, :, None] & inside_cols[:, None, :]


def _cells(t: torch.Tensor) -> torch.Tensor:
    """The usual checker cell size at every time: [T]."""
    return torch.full_like(t, CHECKER_CELL)


def _shape_circle(inst, t, ys, xs, height, width):
    # angle grows with time; with y pointing down, (cos, sin) then turns clockwise on screen
    angle = 2 * math.pi * (inst.phase + inst.speed * t)                              # [T]
    cy = inst.place[0] * (height - 1) + inst.extent[0] * height * torch.sin(angle)
    cx = inst.place[1] * (width - 1) + inst.extent[0] * height * torch.cos(angle)
    return _disc(cy, cx, inst.size * height, ys, xs), cy, cx, _cells(t)


def _shape_bounce(inst, t, ys, xs, height, width):
    top, bottom = inst.extent
    cy = (top + (bottom - top) * _bounce(2 * (inst.phase + inst.speed * t))) * (height - 1)   # [T]
    cx = torch.full_like(t, inst.place[1] * (width - 1))
    return _disc(cy, cx, inst.size * height, ys, xs), cy, cx, _cells(t)


def _shape_blink(inst, t, ys, xs, height, width):
    on = torch.remainder(inst.phase + inst.speed * t, 1.0) < 0.5                     # [T]: half of each period
    cy = torch.full_like(t, inst.place[0] * (height - 1))
    cx = torch.full_like(t, inst.place[1] * (width - 1))
    half = inst.size * height
    return _box(cy, cx, half, half, ys, xs) & on[:, None, None], cy, cx, _cells(t)


def _shape_sweep(inst, t, ys, xs, height, width):
    top, bottom, left, right = inst.extent
    cx = (left + (right - left) * _bounce(2 * (inst.phase + inst.speed * t))) * (width - 1)   # [T]
    cy = torch.full_like(t, (top + bottom) / 2 * (height - 1))
    half_h = (bottom - top) / 2 * (height - 1)
    return _box(cy, cx, half_h, inst.size * height, ys, xs), cy, cx, _cells(t)


def _shape_breathe(inst, t, ys, xs, height, width):
    # between 0.4 and 1.0 of its size: small enough to read as shrinking, large enough to stay visible
    scale = 0.7 + 0.3 * torch.cos(2 * math.pi * inst.speed * t)                             # [T]
    cy = torch.full_like(t, inst.place[0] * (height - 1))
    cx = torch.full_like(t, inst.place[1] * (width - 1))
    # the texture zooms with the disc: a fixed one would stand still inside it, and only the rim would move
    return _disc(cy, cx, inst.size * height * scale, ys, xs), cy, cx, CHECKER_CELL * scale


_Shape = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
_PATTERNS: tuple[tuple[Callable, _Shape], ...] = (
    (_draw_circle, _shape_circle),
    (_draw_bounce, _shape_bounce),
    (_draw_blink, _shape_blink),
    (_draw_sweep, _shape_sweep),
    (_draw_breathe, _shape_breathe),
)


# ------------------------------------------------------------------------------------------------ the specs
def _check_arguments(videos, classes, duration_range, fps, height, width, test_fraction) -> tuple[float, float]:
    """Raise ValueError naming the first bad argument; return duration_range as two floats."""
    if not isinstance(videos, int) or videos < 2:
        raise ValueError(f"videos must be an integer >= 2 (a training and a test video), got {videos!r}")
    if not isinstance(classes, int) or not 1 <= classes <= len(CLASS_NAMES):
        raise ValueError(f"classes must be an integer in [1, {len(CLASS_NAMES)}], got {classes!r}")
    if len(duration_range) != 2:
        raise ValueError(f"duration_range must be (shortest, longest) seconds, got {duration_range!r}")
    shortest, longest = (float(d) for d in duration_range)
    if not (2 * MIN_INSTANCE_SEC <= shortest <= longest < math.inf):
        raise ValueError(f"duration_range must satisfy {2 * MIN_INSTANCE_SEC:g} <= shortest <= longest "
                         f"(finite seconds), got {duration_range!r}")
    if not (MIN_FPS <= fps < math.inf):
        raise ValueError(f"fps must be >= {MIN_FPS:g} (the fastest pattern blinks at 2 Hz), got {fps!r}")
    if not isinstance(height, int) or height < 16:
        raise ValueError(f"height must be an integer >= 16, got {height!r}")
    if not isinstance(width, int) or width < 16:
        raise ValueError(f"width must be an integer >= 16, got {width!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    return shortest, longest


def _instance_frames(rng: np.random.Generator, num_frames: int, fps: float) -> list[tuple[int, int]]:
    """1 to 3 non-overlapping [start, end) frame ranges of 1 to 4 s each, at least MIN_GAP_SEC apart."""
    duration = num_frames / fps
    count = int(rng.integers(1, MAX_INSTANCES + 1))
    longest = min(MAX_INSTANCE_SEC, duration / 2)   # one instance always fits: duration >= 2 s
    lengths = [max(1, round(rng.uniform(MIN_INSTANCE_SEC, longest) * fps)) for _ in range(count)]
    gap = math.ceil(MIN_GAP_SEC * fps)
    while sum(lengths) + gap * (len(lengths) - 1) > num_frames:   # too many for this video: drop the last
        lengths.pop()
    slack = num_frames - sum(lengths) - gap * (len(lengths) - 1)
    offsets = np.sort(rng.integers(0, slack + 1, len(lengths)))   # where the slack goes, in order
    ranges, used = [], 0
    for k, (offset, length) in enumerate(zip(offsets, lengths)):
        start = int(offset) + used + gap * k
        ranges.append((start, start + length))
        used += length
    return ranges


def _split(videos: int, classes: int, test_fraction: float, seed: int) -> list[str]:
    """The subset of every video: a seeded choice of round(videos * test_fraction) test ("validation") videos.

    When videos >= 2 * classes both splits get at least `classes` videos, so that every class can be in both.
    """
    num_test = round(videos * test_fraction)
    if videos >= 2 * classes:
        num_test = min(max(num_test, classes), videos - classes)
    num_test = min(max(num_test, 1), videos - 1)
    test = set(np.random.default_rng([seed, videos, 1]).permutation(videos)[:num_test].tolist())
    return ["validation" if i in test else "training" for i in range(videos)]


def synth_tal_specs(videos: int = 40, classes: int = 4, seed: int = 0, duration_range=(8.0, 16.0),
                    fps: float = 10.0, height: int = 64, width: int = 85,
                    test_fraction: float = 0.25) -> list[SynthVideoSpec]:
    """The parameters of every video of the benchmark; see the module docstring.

    Classes are dealt round-robin (in a seeded class order per split) over the instances of each split, in
    video then time order, so each split's classes are balanced and every class is in a split that holds at
    least `classes` instances (always so for both splits when videos >= 2 * classes).
    """
    shortest, longest = _check_arguments(videos, classes, duration_range, fps, height, width, test_fraction)
    subsets = _split(videos, classes, test_fraction, seed)
    dealers = {subset: (np.random.default_rng([seed, videos, 2, k]).permutation(classes).tolist(), [0])
               for k, subset in enumerate(("training", "validation"))}
    specs = []
    for i, subset in enumerate(subsets):
        rng = np.random.default_rng([seed, i])
        num_frames = max(round(rng.uniform(shortest, longest) * fps), round(shortest * fps))
        cut = int(rng.integers(num_frames * 3 // 10, num_frames * 7 // 10 + 1))
        scenes = (_scene(rng), _scene(rng))
        order, dealt = dealers[subset]
        instances = []
        for k, (start, end) in enumerate(_instance_frames(rng, num_frames, fps)):
            label = order[dealt[0] % classes]
            dealt[0] += 1
            # the look comes from its own generator, so it does not depend on which class was dealt before
            look = np.random.default_rng([seed, i, 3, k])
            place, size, speed, extent, phase = _PATTERNS[label][0](look)
            instances.append(SynthInstance(label=label, start=start, end=end, place=place, size=size,
                                           speed=speed, extent=extent, phase=phase, color=_color(look)))
        specs.append(SynthVideoSpec(video_id=f"synth_{i:04d}", subset=subset, num_frames=num_frames,
                                    fps=float(fps), height=height, width=width, cut_frame=cut, scenes=scenes,
                                    instances=tuple(instances)))
    return specs


# -------------------------------------------------------------------------------------------------- pixels
def instance_mask(spec: SynthVideoSpec, instance: SynthInstance, width: int | None = None) -> torch.Tensor:
    """Where the instance is drawn on each of its frames: bool [end - start, H, W'] (W' = width or spec.width)."""
    ys = torch.arange(spec.height, dtype=torch.float32)                                 # [H]
    xs = torch.arange(width or spec.width, dtype=torch.float32)                         # [W']
    t = torch.arange(instance.end - instance.start, dtype=torch.float32) / spec.fps     # [T] s since start
    mask, _, _, _ = _PATTERNS[instance.label][1](instance, t, ys, xs, spec.height, spec.width)
    return mask


def _paint_instance(spec: SynthVideoSpec, instance: SynthInstance, img: torch.Tensor, ys: torch.Tensor,
                    xs: torch.Tensor) -> None:
    """Draw the instance into img ([end - start, H, W', 3], demo's 1/255 + 0.5 units) in place.

    The object carries a checker texture that moves (or zooms) with it, so its motion shows inside it too, not
    only at its edges. mask: [T, H, W'].
    """
    t = torch.arange(img.shape[0], dtype=torch.float32) / spec.fps                       # [T]
    mask, cy, cx, cell = _PATTERNS[instance.label][1](instance, t, ys, xs, spec.height, spec.width)
    dy = torch.floor((ys[None] - cy[:, None]) / cell[:, None]).to(torch.int64)             # [T, H]
    dx = torch.floor((xs[None] - cx[:, None]) / cell[:, None]).to(torch.int64)             # [T, W']
    checker = ((dy[:, :, None] + dx[:, None, :]) % 2 == 1)[..., None]                     # [T, H, W', 1]
    ink = torch.where(checker, 255 * torch.tensor(instance.color) + 0.5, torch.tensor(DARK_INK))
    img.copy_(torch.where(mask[..., None], ink, img))


def synth_tal_frames(spec: SynthVideoSpec, width: int | None = None, draw_instances: bool = True) -> torch.Tensor:
    """uint8 RGB of the whole video: [num_frames, H, W', 3] (W' = width or spec.width).

    draw_instances=False gives the background alone (what the instances are drawn over).
    """
    width = width or spec.width
    ys = torch.arange(spec.height, dtype=torch.float32)                                   # [H]
    xs = torch.arange(width, dtype=torch.float32)                                         # [W']
    t = torch.arange(spec.num_frames, dtype=torch.float32) / spec.fps                     # [T] seconds
    img = torch.empty(spec.num_frames, spec.height, width, 3)                             # [T, H, W', 3]
    for scene, lo, hi in ((spec.scenes[0], 0, spec.cut_frame), (spec.scenes[1], spec.cut_frame, spec.num_frames)):
        img[lo:hi] = _render_scene(scene, t[lo:hi], ys, xs, spec.height, spec.width)
    if draw_instances:
        for instance in spec.instances:
            _paint_instance(spec, instance, img[instance.start:instance.end], ys, xs)
    return img.clamp_(0, 255).to(torch.uint8)  # truncation of value + 0.5 = rounding


# ------------------------------------------------------------------------------------------------- writing
def annotations_dict(specs: list[SynthVideoSpec], classes: int) -> dict:
    """ActivityNet-format ground truth of the videos (segments in seconds, [start, end))."""
    names = CLASS_NAMES[:classes]
    database = {}
    for spec in specs:
        database[spec.video_id] = {
            "subset": spec.subset,
            "duration": round(spec.duration, 6),
            "fps": spec.fps,
            "num_frames": spec.num_frames,
            "resolution": f"{spec.width}x{spec.height}",
            "annotations": [{"segment": [round(inst.start / spec.fps, 6), round(inst.end / spec.fps, 6)],
                             "label": names[inst.label]} for inst in spec.instances],
        }
    taxonomy = [{"nodeId": k, "nodeName": name, "parentId": None, "parentName": None}
                for k, name in enumerate(names)]
    return {"version": VERSION, "taxonomy": taxonomy, "database": database}


def _write_video(path: Path, spec: SynthVideoSpec, crf: int) -> None:
    """Encode one video; 4:2:0 needs even sizes, so an odd size is stored one pixel larger (as the demo's)."""
    video = synth_tal_frames(spec, width=_even(spec.width))     # [T, H, W_even, 3]: the scene extends right
    if spec.height % 2:
        video = torch.cat([video, video[:, -1:]], dim=1)        # [T, H_even, W_even, 3]: last row repeated
    partial = path.with_name(path.stem + ".partial.mp4")        # PyAV picks the muxer from the suffix
    _encode(partial, video, spec.fps, crf, gop=max(1, round(2 * spec.fps)))
    os.replace(partial, path)


def write_synth_tal(out: str | os.PathLike, videos: int = 40, classes: int = 4, seed: int = 0,
                    duration_range=(8.0, 16.0), fps: float = 10.0, height: int = 64, width: int = 85,
                    test_fraction: float = 0.25, *, crf: int = 18) -> SynthTalSet:
    """Write the benchmark to `out` (videos/, annotations.json, classes.txt); see the module docstring.

    The annotations are written last, so a folder with annotations.json holds every video it names.
    """
    specs = synth_tal_specs(videos, classes, seed, duration_range, fps, height, width, test_fraction)
    directory = Path(out)
    (directory / "videos").mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in specs:
        path = directory / "videos" / f"{spec.video_id}.mp4"
        _write_video(path, spec, crf)
        paths.append(path)
    write_text_atomically(directory / "classes.txt", "".join(f"{name}\n" for name in CLASS_NAMES[:classes]))
    write_text_atomically(directory / "annotations.json", json.dumps(annotations_dict(specs, classes), indent=1) + "\n")
    num_validation = sum(spec.subset == "validation" for spec in specs)
    return SynthTalSet(directory=directory, annotations=directory / "annotations.json",
                       classes=directory / "classes.txt", videos=tuple(paths),
                       num_training=len(specs) - num_validation, num_validation=num_validation,
                       num_instances=sum(len(spec.instances) for spec in specs))
