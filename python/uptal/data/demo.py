"""Procedurally generated demo videos: textured, moving, with a scene cut and an "action" segment.

Each video is drawn from its own random parameters (seeded by (seed, video index), so video i is the same
whatever num_videos is):

- a background of two drifting sinusoidal gratings (random orientation, spatial frequency, speed, colours);
- two soft coloured blobs bouncing around at their own speeds;
- a scene cut at `cut_frame`: after it, a new background and new blobs;
- an action segment [action_start, action_end): a checkerboard-textured disc that circles quickly about a
  point, a temporal pattern seen nowhere else in the video.

`demo_frames` renders the pixels (uint8 [N, T, H, W, 3]) without touching any codec; `write_demo_videos`
encodes the same pixels to H.264 mp4 (yuv420p) with PyAV. Rendering is pure torch float32 on the CPU, so the
same seed gives the same pixels (on one machine and torch build; another BLAS may round a rare pixel the other
way). Motion is defined in seconds, so the same video at another fps shows the same content at other instants.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

__all__ = ["DemoVideoSpec", "demo_specs", "demo_frames", "write_demo_videos"]


@dataclass(frozen=True)
class _Scene:
    """Parameters of one scene: two gratings and two blobs (all motion in pixels or cycles per second)."""

    grating_angle: tuple[float, float]      # radians
    grating_freq: tuple[float, float]       # cycles per pixel
    grating_speed: tuple[float, float]      # cycles per second
    grating_color: tuple[tuple[float, float, float], tuple[float, float, float]]  # RGB in [0, 1]
    base_color: tuple[float, float, float]
    blob_start: tuple[tuple[float, float], tuple[float, float]]     # (y, x) as fractions of the frame
    blob_velocity: tuple[tuple[float, float], tuple[float, float]]  # frame heights / widths per second
    blob_radius: tuple[float, float]        # fraction of the frame height
    blob_color: tuple[tuple[float, float, float], tuple[float, float, float]]


@dataclass(frozen=True)
class DemoVideoSpec:
    """Everything that defines one demo video; `cut_frame` and the action segment are its ground truth."""

    index: int
    num_frames: int
    fps: float
    height: int
    width: int
    cut_frame: int            # first frame of the second scene
    action_start: int         # first frame of the action segment
    action_end: int           # one past its last frame
    action_center: tuple[float, float]   # (y, x) fractions of the frame
    action_radius: float      # orbit radius, fraction of the frame height
    action_speed: float       # turns per second
    action_color: tuple[float, float, float]
    scenes: tuple[_Scene, _Scene]

    @property
    def action_segment_sec(self) -> tuple[float, float]:
        """The action segment in seconds, [start, end)."""
        return self.action_start / self.fps, self.action_end / self.fps


def _color(rng: np.random.Generator) -> tuple[float, float, float]:
    """A saturated random colour."""
    c = rng.uniform(0.0, 1.0, 3)
    c[rng.integers(3)] = rng.uniform(0.8, 1.0)
    return tuple(float(v) for v in c)


def _pair(draw) -> tuple:
    """Two independent draws."""
    return (draw(), draw())


def _scene(rng: np.random.Generator) -> _Scene:
    """Random parameters of one scene."""
    return _Scene(
        grating_angle=_pair(lambda: float(rng.uniform(0, math.pi))),
        grating_freq=_pair(lambda: float(rng.uniform(0.02, 0.12))),
        grating_speed=_pair(lambda: float(rng.uniform(0.3, 2.0) * rng.choice([-1, 1]))),
        grating_color=_pair(lambda: _color(rng)),
        base_color=tuple(float(v) for v in rng.uniform(0.08, 0.35, 3)),  # > the action ink (0.05)
        blob_start=_pair(lambda: (float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8)))),
        blob_velocity=_pair(lambda: (float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.6, 0.6)))),
        blob_radius=_pair(lambda: float(rng.uniform(0.08, 0.2))),
        blob_color=_pair(lambda: _color(rng)),
    )


def demo_specs(num_videos: int = 8, seed: int = 0, num_frames: int = 160, fps: float = 25,
               height: int = 128, width: int = 171) -> list[DemoVideoSpec]:
    """The parameters of each demo video (video i depends only on seed, i and the sizes)."""
    if num_videos < 1 or num_frames < 2 or height < 8 or width < 8 or not fps > 0:
        raise ValueError(f"need num_videos >= 1, num_frames >= 2, height, width >= 8, fps > 0; got "
                         f"{num_videos}, {num_frames}, {height}, {width}, {fps}")
    specs = []
    for i in range(num_videos):
        rng = np.random.default_rng([seed, i])
        cut = int(rng.integers(num_frames * 3 // 10, num_frames * 7 // 10 + 1))
        length = max(1, int(num_frames * rng.uniform(0.15, 0.3)))
        start = int(rng.integers(0, num_frames - length + 1))
        specs.append(DemoVideoSpec(
            index=i, num_frames=num_frames, fps=float(fps), height=height, width=width,
            cut_frame=cut, action_start=start, action_end=start + length,
            action_center=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65))),
            action_radius=float(rng.uniform(0.15, 0.25)),
            action_speed=float(rng.uniform(1.0, 2.0) * rng.choice([-1, 1])),
            action_color=_color(rng),
            scenes=(_scene(rng), _scene(rng)),
        ))
    return specs


def _bounce(x: torch.Tensor) -> torch.Tensor:
    """Reflect positions into [0, 1] (a triangle wave), so blobs bounce off the frame edges."""
    x = torch.remainder(x, 2.0)
    return torch.where(x > 1.0, 2.0 - x, x)


def _scene_factors(scene: _Scene, t: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, height: int, width: int):
    """Separable factors of one scene: image[t, y, x, c] = base[c] + sum_k rows[t, y, k] cols[t, x, k] colors[k, c].

    t: [T] seconds; ys: [H] and xs: [W'] pixel coordinates; height, width: the video's nominal size (positions
    scale with it, not with the grid rendered). Each grating sin(u(x) + v(t, y)) splits into two separable
    terms; each Gaussian blob is a product of a row and a column Gaussian.
    Returns base [3], rows [T, H, K], cols [T, W', K], colors [K, 3].
    """
    rows, cols, colors = [], [], []
    base = torch.tensor(scene.base_color)
    for angle, freq, speed, color in zip(scene.grating_angle, scene.grating_freq, scene.grating_speed,
                                         scene.grating_color):
        u = 2 * math.pi * freq * math.cos(angle) * xs                                                # [W']
        v = 2 * math.pi * (freq * math.sin(angle) * ys[None] - speed * t[:, None])                # [T, H]
        half = 0.175 * torch.tensor(color)   # 0.35 * (0.5 + 0.5 sin(u + v)) * color
        base = base + half
        rows += [torch.cos(v), torch.sin(v)]
        cols += [torch.sin(u).expand(t.shape[0], -1), torch.cos(u).expand(t.shape[0], -1)]
        colors += [half, half]
    for start, velocity, radius, color in zip(scene.blob_start, scene.blob_velocity, scene.blob_radius,
                                              scene.blob_color):
        cy = _bounce(start[0] + velocity[0] * t) * (height - 1)                                   # [T]
        cx = _bounce(start[1] + velocity[1] * t) * (width - 1)                                    # [T]
        two_var = 2 * (radius * height) ** 2
        rows.append(torch.exp(-((ys[None] - cy[:, None]) ** 2) / two_var))                        # [T, H]
        cols.append(torch.exp(-((xs[None] - cx[:, None]) ** 2) / two_var))                        # [T, W']
        colors.append(0.7 * torch.tensor(color))
    return base, torch.stack(rows, -1), torch.stack(cols, -1), torch.stack(colors)


def _render_scene(scene: _Scene, t: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, height: int,
                  width: int) -> torch.Tensor:
    """RGB of one scene at times t (seconds, [T]) in units of 1/255 plus 0.5: [T, H, W', 3] float32.

    One batched matrix product: image[t] = base + rows[t] @ (cols[t] x colors). The 255 scale and the +0.5
    (rounding) are folded into base and colors, so converting to uint8 is a clamp and a truncation.
    """
    base, rows, cols, colors = _scene_factors(scene, t, ys, xs, height, width)
    n, k = t.shape[0], colors.shape[0]
    right = cols.transpose(1, 2)[..., None] * (255 * colors)[None, :, None, :]  # [T, K, W', 3]
    offset = (255 * base + 0.5).repeat(xs.shape[0])                            # [W'*3]
    img = torch.baddbmm(offset.expand(n, ys.shape[0], -1), rows, right.reshape(n, k, -1))  # [T, H, W'*3]
    return img.view(n, ys.shape[0], xs.shape[0], 3)  # [T, H, W', 3]


def _render_action(spec: DemoVideoSpec, img: torch.Tensor, t: torch.Tensor, ys: torch.Tensor,
                   xs: torch.Tensor) -> None:
    """Draw the action (a checkerboard disc circling fast) into img ([T, H, W', 3], scaled as _render_scene)."""
    h = spec.height
    angle = 2 * math.pi * spec.action_speed * t                                           # [T]
    cy = spec.action_center[0] * (h - 1) + spec.action_radius * h * torch.sin(angle)      # [T]
    cx = spec.action_center[1] * (spec.width - 1) + spec.action_radius * h * torch.cos(angle)
    dy, dx = ys[None] - cy[:, None], xs[None] - cx[:, None]                               # [T, H], [T, W']
    disc = dy[:, :, None] ** 2 + dx[:, None, :] ** 2 < (0.14 * h) ** 2                    # [T, H, W']
    parity = torch.floor(dy / 4).to(torch.int64)[:, :, None] + torch.floor(dx / 4).to(torch.int64)[:, None, :]
    checker = (parity % 2 == 1)[..., None]                                                # [T, H, W', 1]
    ink = torch.where(checker, 255 * torch.tensor(spec.action_color) + 0.5, torch.tensor(13.0))  # [T, H, W', 3]
    img.copy_(torch.where(disc[..., None], ink, img))


def _render(spec: DemoVideoSpec, frames: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """uint8 RGB of one video at consecutive frame indices `frames` ([T]): [T, H, W', 3].

    width: columns to render (W' = spec.width by default; more extends the scene to the right).
    """
    width = width or spec.width
    ys = torch.arange(spec.height, dtype=torch.float32)                                  # [H]
    xs = torch.arange(width, dtype=torch.float32)                                        # [W']
    t = frames.to(torch.float32) / spec.fps                                              # [T] seconds
    out = torch.empty(frames.shape[0], spec.height, width, 3, dtype=torch.uint8)         # [T, H, W', 3]
    cut = int((frames < spec.cut_frame).sum())
    action = (frames >= spec.action_start) & (frames < spec.action_end)                  # [T]
    for scene, lo, hi in ((spec.scenes[0], 0, cut), (spec.scenes[1], cut, frames.shape[0])):
        if hi <= lo:
            continue
        img = _render_scene(scene, t[lo:hi], ys, xs, spec.height, spec.width)          # [hi-lo, H, W', 3]
        active = action[lo:hi].nonzero().flatten()
        if active.numel():
            a, b = int(active[0]), int(active[-1]) + 1
            _render_action(spec, img[a:b], t[lo + a:lo + b], ys, xs)
        out[lo:hi] = img.clamp_(0, 255)  # truncation of value + 0.5 = rounding
    return out


def demo_frames(num_videos: int = 8, seed: int = 0, num_frames: int = 160, fps: float = 25,
                height: int = 128, width: int = 171) -> torch.Tensor:
    """The demo videos as uint8 RGB [num_videos, num_frames, height, width, 3], no encoding involved."""
    specs = demo_specs(num_videos, seed, num_frames, fps, height, width)
    frames = torch.arange(num_frames)
    return torch.stack([_render(spec, frames) for spec in specs])  # [N, T, H, W, 3]


def _even(n: int) -> int:
    """4:2:0 chroma needs even sizes: round up."""
    return n + (n % 2)


def _encode(path: Path, video: torch.Tensor, fps: float, crf: int, gop: int) -> None:
    """Write uint8 RGB [T, H, W, 3] (H, W even) as H.264 yuv420p mp4."""
    import av
    from av.video.reformatter import VideoReformatter

    rate = Fraction(fps).limit_denominator(1001)
    to_yuv = VideoReformatter()  # one scaler for the whole video, single-threaded
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = 1
        stream.codec_context.options = {"preset": "veryfast", "crf": str(crf)}
        for i, rgb in enumerate(video.numpy()):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")  # [H, W, 3]
            frame.pts = i
            frame.time_base = 1 / rate
            container.mux(stream.encode(to_yuv.reformat(frame, format="yuv420p", threads=1)))
        container.mux(stream.encode(None))


def write_demo_videos(folder: str | os.PathLike, num_videos: int = 8, seed: int = 0, num_frames: int = 160,
                      fps: float = 25, height: int = 128, width: int = 171, *, crf: int = 18) -> list[Path]:
    """Write the demo videos as `folder/demo_000.mp4`, ... (H.264, yuv420p, keyframe every ~2 s).

    The pixels are those of `demo_frames` with the same arguments. 4:2:0 needs even sizes, so an odd
    height or width is stored one pixel larger (the scene simply extends by one row / column);
    `decode_window(path, ..., height, width)` returns the requested size.
    The encoded bytes are not reproducible: libx264 was seen to encode the same frames differently now and
    then, depending on the state of memory it did not initialise (README, below the two commands). Runs that must
    train on the same videos share the files, not the seed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = demo_specs(num_videos, seed, num_frames, fps, height, width)
    frames = torch.arange(num_frames)
    gop = max(1, round(2 * fps))
    paths = []
    for spec in specs:
        video = _render(spec, frames, width=_even(width))   # [T, H, W_even, 3]
        if height % 2:  # one extra row: repeat the last one
            video = torch.cat([video, video[:, -1:]], dim=1)  # [T, H_even, W_even, 3]
        path = folder / f"demo_{spec.index:03d}.mp4"
        _encode(path, video, fps, crf, gop)
        paths.append(path)
    return paths
