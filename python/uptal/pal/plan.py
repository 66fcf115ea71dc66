"""The PAL plan: what is pasted where, and how each synthetic video is augmented.

`build_plan` is a pure function of (seeded generator, batch geometry, config). Every decoded video of a batch
is the action source of one pair of synthetic videos and a background of others, so each source video is
decoded once per batch:

    row i       (i < B): query view of source i: region 1 of video i pasted onto background n(i)
    row B + i            key view of source i:   region 2 of video i pasted onto background m(i) != n(i)

The plan is plain tensors (a dataclass): it can be saved, printed and replayed, and the same seed gives the
same plan. `packed()` turns it into the tensors the synthesis kernels read (see uptal/ops/synthesize_layout.py).

Short videos are used within their length, never padded: a run of n frames at stride r needs (n-1)*r + 1
frames; when a video is shorter, the largest stride that fits is used, and when even stride 1 does not fit,
the run is spread evenly over the whole video (frame k = floor(k * length / n), so frames repeat).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..config import PalConfig
from ..ops.synthesize_layout import NUM_FIXED_COLUMNS, Col

# Uniform random numbers drawn per synthetic video, one column each, in this order.
_U = {name: k for k, name in enumerate([
    "region_clips", "stride", "region_start", "paste_position", "background_start", "beta", "flip",
    "jitter_apply", "brightness", "contrast", "saturation", "hue", "grayscale", "blur_apply", "blur_sigma"])}
_CROP_ATTEMPTS = 10


@dataclass
class PalPlan:
    """One batch of M = 2B synthetic videos of J clips x F frames at S x S (row i: query, row B + i: key)."""

    background: torch.Tensor         # [M] int64   source video under the whole synthetic video
    action: torch.Tensor             # [M] int64   source video of the pasted region
    background_frames: torch.Tensor  # [M, J*F] int64  frame of `background` shown at each output frame
    action_frames: torch.Tensor      # [M, J*F] int64  frame of `action` pasted there, -1 outside the region
    region: torch.Tensor             # [M, 2] int64  first and last clip of the region (inclusive): the ground truth
    stride: torch.Tensor             # [M] float32  frame stride of the region (< 1 when a short video was spread)
    beta: torch.Tensor               # [M] float32  paste weight: beta * action + (1 - beta) * background
    crop: torch.Tensor               # [M, 4] float32  y0, x0, height, width in source pixels
    flip: torch.Tensor               # [M] bool
    jitter_on: torch.Tensor          # [M] bool
    jitter: torch.Tensor             # [M, 4] float32  brightness, contrast, saturation factors; hue shift
    jitter_order: torch.Tensor       # [M, 4] int64  order of (0 brightness, 1 contrast, 2 saturation, 3 hue)
    grayscale: torch.Tensor          # [M] bool
    blur_on: torch.Tensor            # [M] bool
    blur_weights: torch.Tensor       # [M, K] float32  normalised Gaussian taps (K = blur_kernel)
    mean: torch.Tensor               # [3] float32  normalisation mean, [0, 1] units
    std: torch.Tensor                # [3] float32
    clips: int
    frames: int
    size: int
    height: int                      # source frame height and width the crops refer to
    width: int

    # --- geometry -------------------------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        return self.background.shape[0]

    @property
    def num_sources(self) -> int:
        """B: source videos, each the action of one query/key pair."""
        return self.num_outputs // 2

    @property
    def query_rows(self) -> torch.Tensor:
        return torch.arange(self.num_sources)

    @property
    def key_rows(self) -> torch.Tensor:
        return torch.arange(self.num_sources, self.num_outputs)

    # --- checks and packing ---------------------------------------------------------------------------
    def check(self) -> None:
        """Internal consistency (shapes, region inside the clip grid, action frames exactly inside the
        region). Raises ValueError naming the field; index ranges against real videos are checked by
        `uptal.ops.synthesize`, which knows the videos."""
        m, jf = self.num_outputs, self.clips * self.frames
        shapes = {"background": (m,), "action": (m,), "background_frames": (m, jf), "action_frames": (m, jf),
                  "region": (m, 2), "stride": (m,), "beta": (m,), "crop": (m, 4), "flip": (m,),
                  "jitter_on": (m,), "jitter": (m, 4), "jitter_order": (m, 4), "grayscale": (m,),
                  "blur_on": (m,), "mean": (3,), "std": (3,)}
        if m < 1:
            raise ValueError("plan: empty plan (no synthetic videos)")
        for name, shape in shapes.items():
            actual = tuple(getattr(self, name).shape)
            if actual != shape:
                raise ValueError(f"plan.{name}: expected shape {list(shape)}, got {list(actual)}")
        if self.blur_weights.dim() != 2 or self.blur_weights.shape[0] != m or self.blur_weights.shape[1] % 2 == 0:
            raise ValueError(f"plan.blur_weights: expected shape [{m}, odd K], got {list(self.blur_weights.shape)}")
        start, end = self.region[:, 0], self.region[:, 1]
        bad = ((start < 0) | (end < start) | (end >= self.clips)).nonzero().flatten()
        if bad.numel():
            i = int(bad[0])
            raise ValueError(f"plan.region[{i}] = {self.region[i].tolist()} is outside the clip grid "
                             f"[0, {self.clips - 1}] (or ends before it starts)")
        clip_of_frame = torch.arange(jf) // self.frames                           # [JF]
        inside = (clip_of_frame >= start[:, None]) & (clip_of_frame <= end[:, None])  # [M, JF]
        pasted = self.action_frames >= 0
        mismatch = (pasted & ~inside).nonzero()
        if mismatch.numel():
            i, t = mismatch[0].tolist()
            raise ValueError(f"plan.action_frames[{i}, {t}] pastes a frame outside plan.region[{i}] = "
                             f"{self.region[i].tolist()}")
        if bool((self.std <= 0).any()):
            raise ValueError(f"plan.std: must be positive, got {self.std.tolist()}")

    def packed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sources [M, 2] int32, frames [M, 2, J*F] int32, params [M, P] float32, norm [2, 3] float32)."""
        self.check()
        m = self.num_outputs
        sources = torch.stack([self.background, self.action], dim=1).to(torch.int32)
        frames = torch.stack([self.background_frames, self.action_frames], dim=1).to(torch.int32)
        params = torch.zeros(m, NUM_FIXED_COLUMNS + self.blur_weights.shape[1], dtype=torch.float32)
        params[:, Col.BETA] = self.beta
        params[:, Col.CROP_Y0] = self.crop[:, 0]
        params[:, Col.CROP_X0] = self.crop[:, 1]
        params[:, Col.SCALE_Y] = self.crop[:, 2] / self.size
        params[:, Col.SCALE_X] = self.crop[:, 3] / self.size
        params[:, Col.FLIP] = self.flip.float()
        params[:, Col.JITTER_ON] = self.jitter_on.float()
        params[:, Col.BRIGHTNESS:Col.HUE + 1] = self.jitter
        params[:, Col.ORDER0:Col.ORDER0 + 4] = self.jitter_order.float()
        params[:, Col.GRAYSCALE] = self.grayscale.float()
        params[:, Col.BLUR_ON] = self.blur_on.float()
        params[:, Col.BLUR0:] = self.blur_weights
        std64, mean64 = self.std.double(), self.mean.double()
        norm = torch.stack([1.0 / (255.0 * std64), -mean64 / std64]).float()
        return sources, frames, params, norm

    # --- persistence and display ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def save(self, path: str | Path) -> None:
        torch.save(self.to_dict(), Path(path))

    @classmethod
    def load(cls, path: str | Path) -> "PalPlan":
        data = torch.load(Path(path), weights_only=True)
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) != names:
            raise ValueError(f"{path}: not a PalPlan (fields {sorted(set(data) ^ names)} differ)")
        plan = cls(**data)
        plan.check()
        return plan

    def __str__(self) -> str:
        return self.describe()

    def describe(self, max_rows: int = 8) -> str:
        """A table: one synthetic video a line."""
        lines = [f"PalPlan: {self.num_outputs} synthetic videos ({self.num_sources} pairs) of {self.clips} clips x "
                 f"{self.frames} frames at {self.size}x{self.size}, from {self.height}x{self.width} sources",
                 "  row view  action->bg  region   stride  beta  crop(y0,x0,h,w)        flip jitter gray blur"]
        for i in range(min(self.num_outputs, max_rows)):
            view = "query" if i < self.num_sources else "key"
            crop = ",".join(f"{v:.0f}" for v in self.crop[i].tolist())
            lines.append(
                f"  {i:3d} {view:5s} {int(self.action[i]):4d}->{int(self.background[i]):<4d}  "
                f"[{int(self.region[i, 0])},{int(self.region[i, 1])}]    {float(self.stride[i]):5.2f}  "
                f"{float(self.beta[i]):.2f}  ({crop}){' ' * max(0, 20 - len(crop))} {_yes(self.flip[i])}  "
                f"{_yes(self.jitter_on[i])}     {_yes(self.grayscale[i])}  {_yes(self.blur_on[i])}")
        if self.num_outputs > max_rows:
            lines.append(f"  ... {self.num_outputs - max_rows} more")
        return "\n".join(lines)


def _yes(flag: torch.Tensor) -> str:
    return "y" if bool(flag) else "-"


# ---------------------------------------------------------------------------------------------------------
# Building a plan


def build_plan(generator: torch.Generator, lengths: Sequence[int] | torch.Tensor, height: int, width: int,
               config: PalConfig = PalConfig()) -> PalPlan:
    """Plan one batch: B decoded source videos with usable frame `lengths` (each >= 1) of `height` x `width`
    frames -> 2B synthetic videos. Deterministic given the generator's state."""
    lengths = [int(n) for n in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
    if not lengths:
        raise ValueError("lengths: empty batch (no source videos)")
    if min(lengths) < 1:
        raise ValueError(f"lengths: every video needs at least one frame, got {lengths}")
    if height < 1 or width < 1:
        raise ValueError(f"height, width: must be positive, got {height}x{width}")
    c = config
    num_sources = len(lengths)
    m = 2 * num_sources

    u = torch.rand(m, len(_U), generator=generator, dtype=torch.float64).tolist()
    crop_u = torch.rand(m, _CROP_ATTEMPTS + 1, 2, generator=generator, dtype=torch.float64).tolist()
    order = torch.argsort(torch.rand(m, 4, generator=generator), dim=1)           # [M, 4] random permutations
    backgrounds = _assign_backgrounds(torch.randperm(num_sources, generator=generator).tolist(), c.paste)

    rows = [_plan_row(i % num_sources, i // num_sources, u[i], lengths, backgrounds, c) for i in range(m)]
    crops = [_random_resized_crop(crop_u[i], height, width, c) for i in range(m)]

    def column(name, dtype):
        return torch.tensor([row[name] for row in rows], dtype=dtype)

    jitter_on = torch.tensor([ui[_U["jitter_apply"]] < c.jitter_p for ui in u])
    jitter = torch.tensor([_jitter_factors(ui, c) for ui in u], dtype=torch.float32)
    jitter[~jitter_on] = torch.tensor([1.0, 1.0, 1.0, 0.0])
    blur_on = torch.tensor([ui[_U["blur_apply"]] < c.blur_p for ui in u])
    sigmas = [c.blur_sigma[0] + ui[_U["blur_sigma"]] * (c.blur_sigma[1] - c.blur_sigma[0]) for ui in u]

    return PalPlan(
        background=column("background", torch.int64),
        action=column("action", torch.int64),
        background_frames=torch.tensor([row["background_frames"] for row in rows], dtype=torch.int64),
        action_frames=torch.tensor([row["action_frames"] for row in rows], dtype=torch.int64),
        region=torch.tensor([row["region"] for row in rows], dtype=torch.int64),
        stride=column("stride", torch.float32),
        beta=column("beta", torch.float32),
        crop=torch.tensor(crops, dtype=torch.float32),
        flip=torch.tensor([ui[_U["flip"]] < c.flip_p for ui in u]),
        jitter_on=jitter_on,
        jitter=jitter,
        jitter_order=order.long(),
        grayscale=torch.tensor([ui[_U["grayscale"]] < c.grayscale_p for ui in u]),
        blur_on=blur_on,
        blur_weights=torch.stack([gaussian_taps(s, c.blur_kernel) if on else _identity_taps(c.blur_kernel)
                                  for s, on in zip(sigmas, blur_on.tolist())]),
        mean=torch.tensor(c.mean, dtype=torch.float32),
        std=torch.tensor(c.std, dtype=torch.float32),
        clips=c.clips, frames=c.frames, size=c.size, height=height, width=width,
    )


def _assign_backgrounds(permutation: list[int], paste: str) -> tuple[list[int], list[int]]:
    """Background of the query and of the key view of every source video.

    Sources are placed on a random cycle; source at position j takes the next video as its query background
    and the one after as its key background (or the next again, for "same"). Every video is then the
    background of exactly one query and one key. With fewer than 3 videos there are not enough others:
    2 videos share the other one, 1 video is its own background (a warning says so)."""
    b = len(permutation)
    position = {video: j for j, video in enumerate(permutation)}
    query = [permutation[(position[i] + 1) % b] for i in range(b)]
    key_step = 1 if (paste == "same" or b == 2) else 2
    key = [permutation[(position[i] + key_step) % b] for i in range(b)]
    if paste == "different" and b < 3:
        warnings.warn(f"pal.paste='different' needs at least 3 videos per batch, got {b}: "
                      "the two views share a background", stacklevel=3)
    return query, key


def _plan_row(source: int, view: int, u: list[float], lengths: list[int],
              backgrounds: tuple[list[int], list[int]], c: PalConfig) -> dict:
    """Temporal layout of one synthetic video: which frames of which video appear at each output frame."""
    jf = c.clips * c.frames
    region_clips = _uniform_int(u[_U["region_clips"]], c.min_region_clips, c.max_region_clips) if c.dense else 1
    stride = _uniform_int(u[_U["stride"]], *c.stride_range) if c.scale else c.fixed_stride
    position = _uniform_int(u[_U["paste_position"]], 0, c.clips - region_clips)
    region = [position, position + region_clips - 1]
    first, last = position * c.frames, (position + region_clips) * c.frames

    if c.paste == "none":
        # The region stays in its own video: the whole synthetic video is one run of that video.
        frames, used_stride = frame_run(u[_U["region_start"]], lengths[source], jf, stride)
        return dict(background=source, action=source, background_frames=frames, action_frames=[-1] * jf,
                    region=region, stride=used_stride, beta=1.0)

    region_frames, used_stride = frame_run(u[_U["region_start"]], lengths[source], region_clips * c.frames, stride)
    background = backgrounds[view][source]
    background_frames, _ = frame_run(u[_U["background_start"]], lengths[background], jf, c.background_stride)
    action_frames = [-1] * first + region_frames + [-1] * (jf - last)
    beta = c.beta[0] + u[_U["beta"]] * (c.beta[1] - c.beta[0])
    return dict(background=background, action=source, background_frames=background_frames,
                action_frames=action_frames, region=region, stride=used_stride, beta=beta)


def frame_run(u: float, length: int, count: int, stride: int) -> tuple[list[int], float]:
    """`count` frame indices at `stride` from a random start (u in [0, 1)) inside a video of `length` frames.

    Returns (indices, stride actually used): a smaller stride when the video is too short, and
    length / count < 1 (frames spread evenly, some repeated) when even stride 1 does not fit."""
    if count > 1:
        stride = min(stride, (length - 1) // (count - 1))
    if stride < 1:
        return [k * length // count for k in range(count)], length / count
    span = (count - 1) * stride + 1
    start = _uniform_int(u, 0, length - span)
    return [start + k * stride for k in range(count)], float(stride)


def _uniform_int(u: float, low: int, high: int) -> int:
    """An integer uniform in [low, high] from u uniform in [0, 1)."""
    return low + min(int(u * (high - low + 1)), high - low)


def _random_resized_crop(u: list[list[float]], height: int, width: int, c: PalConfig) -> list[float]:
    """torchvision's RandomResizedCrop.get_params on pre-drawn uniforms: (y0, x0, h, w), integers."""
    area = height * width
    log_low, log_high = math.log(c.crop_ratio[0]), math.log(c.crop_ratio[1])
    for attempt in range(_CROP_ATTEMPTS):
        u_area, u_ratio = u[attempt]
        target = area * (c.crop_scale[0] + u_area * (c.crop_scale[1] - c.crop_scale[0]))
        ratio = math.exp(log_low + u_ratio * (log_high - log_low))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            u_y, u_x = u[_CROP_ATTEMPTS]
            return [float(_uniform_int(u_y, 0, height - h)), float(_uniform_int(u_x, 0, width - w)), float(h), float(w)]
    # Fallback: the largest centred crop with the ratio clamped into range (torchvision's rule).
    in_ratio = width / height
    if in_ratio < c.crop_ratio[0]:
        w, h = width, int(round(width / c.crop_ratio[0]))
    elif in_ratio > c.crop_ratio[1]:
        h, w = height, int(round(height * c.crop_ratio[1]))
    else:
        w, h = width, height
    h, w = max(1, min(h, height)), max(1, min(w, width))
    return [float((height - h) // 2), float((width - w) // 2), float(h), float(w)]


def _jitter_factors(u: list[float], c: PalConfig) -> list[float]:
    def factor(name: str, strength: float) -> float:
        return max(0.0, 1.0 - strength) + u[_U[name]] * 2 * strength if strength > 0 else 1.0
    hue = (2 * u[_U["hue"]] - 1) * c.hue
    return [factor("brightness", c.brightness), factor("contrast", c.contrast),
            factor("saturation", c.saturation), hue]


# The most weight the blur may drop from its kernel's tails: half an 8-bit level on the 0..255 scale.
BLUR_DROPPED_WEIGHT = 0.5 / 255


def gaussian_taps(sigma: float, kernel: int) -> torch.Tensor:
    """Normalised 1-D Gaussian of `kernel` taps (odd), float32, whose outer taps are exactly 0 as far in as the
    weight they carry together stays at most BLUR_DROPPED_WEIGHT (the kept taps renormalised).

    The C++ kernel skips zero taps, so the blur costs what sigma needs rather than what the kernel size allows
    (at sigma 1, 7 of the 11 taps; at 0.2, the centre only). Against the whole kernel, a blurred value moves
    by at most half an 8-bit level: with weights w summing to 1, values x in [0, 255] and dropped weight d,
    the truncated sum, sum_kept(w x) / (1 - d), differs from sum_all(w x) by
    d / (1 - d) * sum_kept(w x) - sum_dropped(w x), two terms each in [0, 255 d]. No kept tap is a float32
    subnormal either (those x86 processors multiply in microcode: a video blurred with two of them once took
    44.8 ms instead of 4.2 ms in the C++ kernel on an Intel Xeon)."""
    radius = kernel // 2
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-(x * x) / (2 * sigma * sigma))
    taps = taps / taps.sum()
    kept = radius                                                       # taps radius - kept .. radius + kept
    while kept > 0 and 2 * float(taps[:radius - kept + 1].sum()) <= BLUR_DROPPED_WEIGHT:
        kept -= 1
    taps[:radius - kept] = 0.0
    taps[radius + kept + 1:] = 0.0
    return (taps / taps.sum()).float()


def _identity_taps(kernel: int) -> torch.Tensor:
    taps = torch.zeros(kernel, dtype=torch.float32)
    taps[kernel // 2] = 1.0
    return taps

