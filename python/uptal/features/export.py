"""From one `uptal extract` folder to the layouts temporal-localization toolboxes read.

- actionformer / opentad: the per-video [T, C] .npy files, copied, plus ``feature_info.json`` with the
  ``feat_stride`` (= clip_stride), ``num_frames`` (= the clip span in sampled frames) and ``default_fps``
  (= the extraction fps) their configs need; feature i is then centred at
  ``(i * feat_stride + num_frames / 2) / default_fps`` seconds, exactly the extraction's timestamps.
  opentad also gets ``missing_files.txt``: videos of ``--annotations`` (ActivityNet JSON) without features.
- gtad / bmn: every video resampled to `length` steps [L, C] by linear interpolation along time only (each
  channel separately, never across channels): step j sits at ``t0 + j * (t_last - t0) / (L - 1)`` where t0 and
  t_last are the centres of the first and last feature, so a constant stays constant and a ramp stays a ramp.
- tsp-h5: one H5 file, one dataset [T, C] float32 per video (needs h5py).

Every file is written to a temporary name and renamed.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_atomically, write_json_atomically, write_text_atomically
from .extract import _save_npy

__all__ = ["TARGETS", "FeatureSet", "read_feature_set", "interpolate_time", "export_features", "write_tsp_h5"]

TARGETS = ("actionformer", "opentad", "gtad", "bmn", "tsp-h5")


class FeatureSet:
    """The videos of an extraction folder: name -> (.npy path, metadata)."""

    def __init__(self, folder: Path, videos: dict[str, tuple[Path, dict[str, Any]]]) -> None:
        self.folder = folder
        self.videos = videos

    def load(self, name: str) -> np.ndarray:
        return np.load(self.videos[name][0])   # [T, C] float32

    def metadata(self, name: str) -> dict[str, Any]:
        return self.videos[name][1]


def read_feature_set(folder: str | os.PathLike) -> FeatureSet:
    """Every video of `folder` whose metadata/<video>.json and .npy exist (what `uptal extract` wrote)."""
    folder = Path(folder)
    metadata_folder = folder / "metadata"
    if not metadata_folder.is_dir():
        raise ValueError(f"features_dir {folder} has no metadata/ folder: not written by `uptal extract`")
    videos = {}
    for path in sorted(metadata_folder.glob("*.json")):
        metadata = json.loads(path.read_text())
        features = folder / metadata["feature_file"]
        if features.is_file():
            videos[metadata["video"]] = (features, metadata)
    if not videos:
        raise ValueError(f"features_dir {folder} holds no finished video")
    settings = {(m["fps"], m["clip_stride"], m["clip_span_frames"]) for _, m in videos.values()}
    if len(settings) > 1:   # the sidecars describe one stride for all videos
        raise ValueError(f"features_dir {folder} mixes sampling settings (fps, clip_stride, span): {sorted(settings)}")
    return FeatureSet(folder, videos)


def interpolate_time(features: np.ndarray, length: int) -> np.ndarray:
    """[T, C] -> [length, C]: linear interpolation along axis 0 with both ends kept (align corners)."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"length must be an int >= 2, got {length!r}")
    if features.ndim != 2 or features.shape[0] < 1:
        raise ValueError(f"features must be [T >= 1, C], got shape {features.shape}")
    steps = features.shape[0]
    position = np.linspace(0.0, steps - 1, length)                   # [L] in source-index units
    left = np.clip(np.floor(position).astype(np.int64), 0, steps - 1)
    right = np.minimum(left + 1, steps - 1)
    weight = (position - left)[:, None]                              # [L, 1]: same for every channel
    out = (1.0 - weight) * features[left] + weight * features[right]  # [L, C]
    return out.astype(np.float32)


def _sidecar(feature_set: FeatureSet, **extra) -> dict[str, Any]:
    first = next(iter(feature_set.videos.values()))[1]
    return {
        "feat_stride": first["clip_stride"], "num_frames": first["clip_span_frames"],
        "default_fps": first["fps"], "feature_dim": first["feature_dim"], "backbone": first["backbone"],
        "checkpoint_sha256": first["checkpoint_sha256"], "source": str(feature_set.folder), **extra,
    }


def _copy(source: Path, target: Path) -> None:
    write_atomically(target, lambda temporary: shutil.copyfile(source, temporary))


def _annotation_ids(path: str | os.PathLike) -> list[str]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise ValueError(f"annotations {path} is not ActivityNet JSON (no 'database' object)")
    return sorted(data["database"])


def _missing_videos(feature_set: FeatureSet, annotation_ids: list[str]) -> list[str]:
    """Annotated ids without features; `v_xxx` and `xxx` name the same ActivityNet video."""
    have = set(feature_set.videos) | {name[2:] for name in feature_set.videos if name.startswith("v_")}
    return [vid for vid in annotation_ids if vid not in have and f"v_{vid}" not in have]


def _export_per_video(feature_set: FeatureSet, out: Path, target: str, annotations) -> None:
    files = {}
    for name, (path, _) in feature_set.videos.items():
        _copy(path, out / path.name)
        files[name] = path.name
    write_json_atomically(out / "feature_info.json", _sidecar(feature_set, format=target, files=files))
    if target == "opentad" or annotations is not None:
        missing = _missing_videos(feature_set, _annotation_ids(annotations)) if annotations is not None else []
        write_text_atomically(out / "missing_files.txt", "".join(f"{vid}\n" for vid in missing))


def _export_fixed_length(feature_set: FeatureSet, out: Path, target: str, length: int) -> None:
    timestamps = {}
    for name, (path, metadata) in feature_set.videos.items():
        _save_npy(out / path.name, interpolate_time(feature_set.load(name), length))
        first, last = metadata["timestamps"][0], metadata["timestamps"][-1]
        timestamps[name] = np.linspace(first, last, length).tolist()
    write_json_atomically(out / "feature_info.json",
               _sidecar(feature_set, format=target, length=length, timestamps=timestamps,
                        interpolation="linear along time (align corners), channels untouched"))


def _require_h5py():
    try:
        import h5py
    except ImportError as error:
        raise RuntimeError("H5 output needs h5py: pip install h5py") from error
    return h5py


def write_tsp_h5(feature_set: FeatureSet, path: Path) -> Path:
    """One dataset [T, C] float32 per video, named like the video; attributes carry the sampling."""
    h5py = _require_h5py()
    info = _sidecar(feature_set)

    def write(temporary: Path) -> None:
        with h5py.File(temporary, "w") as h5:
            for key, value in info.items():
                h5.attrs[key] = value if value is not None else ""
            for name in feature_set.videos:
                dataset = h5.create_dataset(name, data=feature_set.load(name))
                dataset.attrs["timestamps"] = np.asarray(feature_set.metadata(name)["timestamps"])

    write_atomically(path, write)
    return path


def export_features(features_dir: str | os.PathLike, target: str, out: str | os.PathLike, *, length: int = 100,
                    annotations: str | os.PathLike | None = None) -> Path:
    """Write `features_dir` in the layout of `target` (one of TARGETS) into `out`; returns `out`."""
    if target not in TARGETS:
        raise ValueError(f"to must be one of {TARGETS}, got {target!r}")
    if target in ("gtad", "bmn") and (isinstance(length, bool) or not isinstance(length, int) or length < 2):
        raise ValueError(f"length must be an int >= 2 (G-TAD / BMN use 100 or 128), got {length!r}")
    if annotations is not None and not Path(annotations).is_file():
        raise ValueError(f"annotations {annotations} does not exist")
    if target == "tsp-h5":
        _require_h5py()   # fail before reading anything
    feature_set = read_feature_set(features_dir)
    out = Path(out)
    if out.resolve() == feature_set.folder.resolve():
        raise ValueError("out must differ from features_dir (the export would overwrite its input)")
    out.mkdir(parents=True, exist_ok=True)
    if target in ("actionformer", "opentad"):
        _export_per_video(feature_set, out, target, annotations)
    elif target in ("gtad", "bmn"):
        _export_fixed_length(feature_set, out, target, length)
    else:
        write_tsp_h5(feature_set, out / "features.h5")
    return out
