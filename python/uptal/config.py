"""Typed configuration: dataclass defaults <- YAML file <- dotted command-line overrides.

Every section is a frozen dataclass. Unknown keys and values of the wrong type are errors that name the
key (``pal.beta: expected a pair of floats, got 'x'``), never silently ignored.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml


class ConfigError(ValueError):
    """A configuration key is unknown or its value is invalid; the message names the key."""


@dataclass(frozen=True)
class PalConfig:
    """What a PAL synthetic video is made of (paper sections 3 and 4.1) and how it is augmented.

    A synthetic video has `clips` clips of `frames` frames at `size` x `size`. One temporal region of
    an action video (a run of whole clips) is pasted onto a background video with
    out = beta * action + (1 - beta) * background.
    """

    clips: int = 8                      # J: clips per synthetic video
    frames: int = 8                     # F: frames per clip
    size: int = 112                     # S: output height and width

    dense: bool = True                  # region of 1..max_region_clips clips (False: one clip)
    min_region_clips: int = 1
    max_region_clips: int = 6
    scale: bool = True                  # scale-aware sampling: frame stride drawn from stride_range
    stride_range: tuple[int, int] = (1, 4)
    fixed_stride: int = 2               # action frame stride when scale is off
    background_stride: int = 2          # frame stride of the background video
    paste: str = "different"            # "different" | "same" background for the two views | "none"
    beta: tuple[float, float] = (0.6, 1.0)  # soft-paste weight range; (1, 1) is a hard paste

    crop_scale: tuple[float, float] = (0.2, 1.0)    # RandomResizedCrop area fraction
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # RandomResizedCrop aspect ratio
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int = 11               # odd; the blur is separable with reflect padding

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # normalisation, in [0, 1] units
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        _check(self.clips >= 1, "pal.clips", "must be >= 1", self.clips)
        _check(self.frames >= 1, "pal.frames", "must be >= 1", self.frames)
        _check(1 <= self.size <= 2048, "pal.size", "must be in [1, 2048]", self.size)
        _check(1 <= self.min_region_clips <= self.max_region_clips, "pal.min_region_clips",
               "must be in [1, max_region_clips]", self.min_region_clips)
        _check(self.max_region_clips <= self.clips, "pal.max_region_clips",
               "must be <= pal.clips", self.max_region_clips)
        _check(1 <= self.stride_range[0] <= self.stride_range[1], "pal.stride_range",
               "must be an increasing pair of strides >= 1", self.stride_range)
        _check(self.fixed_stride >= 1, "pal.fixed_stride", "must be >= 1", self.fixed_stride)
        _check(self.background_stride >= 1, "pal.background_stride", "must be >= 1", self.background_stride)
        _check(self.paste in ("different", "same", "none"), "pal.paste",
               "must be one of 'different', 'same', 'none'", self.paste)
        _check(0.0 <= self.beta[0] <= self.beta[1] <= 1.0, "pal.beta",
               "must be a pair 0 <= lo <= hi <= 1", self.beta)
        _check(0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0, "pal.crop_scale",
               "must be a pair 0 < lo <= hi <= 1", self.crop_scale)
        _check(0.0 < self.crop_ratio[0] <= self.crop_ratio[1], "pal.crop_ratio",
               "must be a pair 0 < lo <= hi", self.crop_ratio)
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"pal.{name}", "must be a probability in [0, 1]", value)
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            _check(0.0 <= value < 1.0, f"pal.{name}", "must be in [0, 1)", value)
        _check(0.0 <= self.hue <= 0.5, "pal.hue", "must be in [0, 0.5]", self.hue)
        _check(0.0 < self.blur_sigma[0] <= self.blur_sigma[1], "pal.blur_sigma",
               "must be an increasing pair of positive sigmas", self.blur_sigma)
        _check(self.blur_kernel >= 1 and self.blur_kernel % 2 == 1, "pal.blur_kernel",
               "must be a positive odd number", self.blur_kernel)
        _check(self.blur_kernel // 2 < self.size, "pal.blur_kernel",
               "radius must be smaller than pal.size (reflect padding)", self.blur_kernel)
        _check(all(s > 0 for s in self.std), "pal.std", "must be positive", self.std)

    @property
    def frames_per_video(self) -> int:
        return self.clips * self.frames


def _check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: {rule}, got {value!r}")


# ---------------------------------------------------------------------------------------------------------
# Building dataclasses from plain mappings (YAML) and dotted overrides


def from_mapping(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass `cls` from `values`, converting types and naming the key of any error."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, raw in values.items():
        key = f"{prefix}.{name}"
        kwargs[name] = _convert(hints[name], raw, key)
    return cls(**kwargs)


def _convert(hint: Any, raw: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, raw, key)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(raw, (list, tuple)) or len(raw) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {raw!r}")
        return tuple(_convert(a, v, key) for a, v in zip(args, raw))
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0", "yes", "no"):
            return raw.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {raw!r}")
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise ConfigError(f"{key}: expected an integer, got {raw!r}")
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {raw!r}") from None
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise ConfigError(f"{key}: expected a number, got {raw!r}")
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {raw!r}") from None
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{key}: expected a string, got {raw!r}")
        return raw
    raise ConfigError(f"{key}: unsupported type {hint!r}")


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings (values parsed as YAML) to a nested dict, in order."""
    out = _deep_copy(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{item}: an override must look like section.key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(text)
    return out


def _deep_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-writable dict of a config dataclass (tuples become lists)."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value
    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


__all__ = ["ConfigError", "PalConfig", "from_mapping", "apply_overrides", "load_yaml", "to_dict"]
