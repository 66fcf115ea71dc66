"""Typed configuration: dataclass defaults <- YAML file <- dotted command-line overrides.

Every section is a frozen dataclass. Unknown keys and values of the wrong type are errors that name the
key (``pal.beta: expected a pair of floats, got 'x'``), never silently ignored.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml


class ConfigError(ValueError):
    """A configuration key is unknown or its value is invalid; the message names the key."""


def _check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: {rule}, got {value!r}")


WORKER_PRIORITIES = ("auto", "low", "normal")
PREFETCH_BUDGET_BYTES = 512 * 2**20   # frames each worker may queue ahead when data.prefetch is 0 (auto)
PREFETCH_RANGE = (2, 8)               # the auto queue depth's bounds, in batches per worker


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


@dataclass(frozen=True)
class DataConfig:
    """Where the training videos come from and how each is decoded once per batch (DESIGN.md, "The data path").

    Every source video of a batch is decoded once, as one window of `window_frames` frames at `fps`, resized to
    `height` x `width`; the PAL plan then takes the action region and the background frames from that window.
    """

    source: str = ""                # folder, CSV/TXT list, tar-shard folder or manifest; "demo": the demo videos
    demo_videos: int = 48           # how many demo videos `source: demo` writes into the run folder
    fps: float = 25.0               # frames are sampled by presentation time at this rate
    height: int = 128               # working frame size (decoded, resized inside FFmpeg)
    width: int = 171
    window_frames: int = 0          # frames decoded per source video; 0: just what the PAL config can use
    min_frames: int = 8             # a decoded window shorter than this is "too_short" (skipped and replaced)
    workers: int = 2                # DataLoader worker processes (0: decode in the main process)
    prefetch: int = 0               # batches each worker queues ahead; 0: auto (`prefetch_batches`)
    worker_priority: str = "auto"   # "low": workers run at nice +10, so the training process wins the CPU;
                                    # "normal"; "auto": low when batches go to a GPU (pinned), else normal
    max_bad_batch_fraction: float = 0.5   # more bad files than this while filling one batch: stop
    max_bad_fraction: float = 0.1   # more bad files than this over the data set (index or epoch): stop

    def __post_init__(self) -> None:
        _check(self.demo_videos >= 1, "data.demo_videos", "must be >= 1", self.demo_videos)
        _check(self.fps > 0, "data.fps", "must be > 0", self.fps)
        _check(self.height >= 1 and self.width >= 1, "data.height", "height and width must be >= 1",
               (self.height, self.width))
        _check(self.window_frames >= 0, "data.window_frames", "must be >= 0 (0: automatic)", self.window_frames)
        _check(self.min_frames >= 1, "data.min_frames", "must be >= 1", self.min_frames)
        _check(self.workers >= 0, "data.workers", "must be >= 0", self.workers)
        _check(self.prefetch >= 0, "data.prefetch", "must be >= 0 (0: automatic)", self.prefetch)
        _check(self.worker_priority in WORKER_PRIORITIES, "data.worker_priority",
               f"must be one of {', '.join(WORKER_PRIORITIES)}", self.worker_priority)
        for name in ("max_bad_batch_fraction", "max_bad_fraction"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"data.{name}", "must be a fraction in [0, 1]", value)

    def prefetch_batches(self, pal: PalConfig, batch_size: int) -> int:
        """Batches each worker queues ahead: `prefetch`, or (0) as many as fit PREFETCH_BUDGET_BYTES of frames,
        within PREFETCH_RANGE.

        The DataLoader hands batches over in order, and a batch's decoding time varies with its videos (one
        720p file costs as much as several small ones): a worker whose queue is full waits while another
        finishes a slow batch. Small batches vary the most and cost the least memory to queue deeper; the
        paper's batch (B = 32, ~400 MB of frames at most) keeps 2, PyTorch's default. Measured on
        shared/data/videos at B = 4 with 2 workers: the workers were busy 90% of the time with 2, 98% with 4.
        """
        if self.prefetch:
            return self.prefetch
        batch_bytes = batch_size * self.frames_to_decode(pal) * self.height * self.width * 3   # uint8 RGB
        low, high = PREFETCH_RANGE
        return max(low, min(high, PREFETCH_BUDGET_BYTES // max(batch_bytes, 1)))

    def frames_to_decode(self, pal: PalConfig) -> int:
        """Frames per source window: `window_frames`, or (0) the longest run the PAL config can ask for:
        a whole background at its stride, or the longest region at the largest stride."""
        if self.window_frames:
            return self.window_frames
        jf = pal.frames_per_video
        max_stride = pal.stride_range[1] if pal.scale else pal.fixed_stride
        region_frames = (pal.max_region_clips if pal.dense else 1) * pal.frames
        background = (jf - 1) * pal.background_stride + 1
        region = (region_frames - 1) * max_stride + 1
        if pal.paste == "none":
            return (jf - 1) * max_stride + 1
        return max(background, region)


BACKBONES = ("i3d", "r2plus1d_18", "r3d_18", "s3d", "tiny")


@dataclass(frozen=True)
class ModelConfig:
    """The encoder (backbone -> projection -> temporal head -> L2 norm) and the MoCo machinery around it."""

    backbone: str = "i3d"
    init: str = ""                  # "" (random), "i3d-k400" (DeepMind's Kinetics-400 weights), or a .pt path
    dim: int = 128                  # D: feature size after the projection head
    temporal_layers: int = 2        # Conv1d(k=3) layers of the temporal embedding head across the J clips
    queue_size: int = 16384         # K: negative keys
    momentum: float = 0.999         # m: key encoder <- m * key + (1 - m) * query
    temperature: float = 0.07       # tau of the InfoNCE
    shuffle_bn: str = "auto"        # "auto" (ddp across ranks, split on one process), "ddp", "split", "off"
    split_bn_groups: int = 2        # sub-batches of the single-process shuffle-BN emulation
    sync_bn: bool = True            # SyncBatchNorm in the query encoder under DDP on CUDA (BatchNorm elsewhere)

    def __post_init__(self) -> None:
        _check(self.backbone in BACKBONES, "model.backbone", f"must be one of {BACKBONES}", self.backbone)
        _check(self.dim >= 1, "model.dim", "must be >= 1", self.dim)
        _check(0 <= self.temporal_layers <= 3, "model.temporal_layers", "must be in [0, 3]", self.temporal_layers)
        _check(self.queue_size >= 1, "model.queue_size", "must be >= 1", self.queue_size)
        _check(0.0 <= self.momentum < 1.0, "model.momentum", "must be in [0, 1)", self.momentum)
        _check(self.temperature > 0, "model.temperature", "must be > 0", self.temperature)
        _check(self.shuffle_bn in ("auto", "ddp", "split", "off"), "model.shuffle_bn",
               "must be one of 'auto', 'ddp', 'split', 'off'", self.shuffle_bn)
        _check(self.split_bn_groups >= 1, "model.split_bn_groups", "must be >= 1", self.split_bn_groups)


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation, its schedule, checkpoints and logging of `uptal pretrain`.

    `batch_size` is GLOBAL: query/key pairs (= source videos) per optimizer step over all ranks. Each of W
    ranks takes batch_size / W (it must divide). DDP averages gradients over ranks, so one step over the
    global batch is the same optimisation whatever W is, and `lr` is the rate for that global batch; with
    `lr_reference_batch` > 0 the rate is scaled linearly: lr * batch_size / lr_reference_batch.
    """

    out: str = "runs/pal"           # run folder: config.yaml, log.jsonl, events (TensorBoard), checkpoints/
    epochs: int = 200
    batch_size: int = 512
    lr: float = 1e-4
    lr_reference_batch: int = 0     # 0: no scaling
    warmup_steps: int = 0           # linear warm-up of the rate over the first steps (set every iteration)
    weight_decay: float = 1e-5
    plateau_patience: int = 3       # epochs without a better validation loss before lr /= 1 / plateau_factor
    plateau_factor: float = 0.1
    grad_clip: float = 0.0          # max gradient norm; 0: off
    amp: str = "auto"               # "auto": bf16 autocast on CUDA, fp32 on CPU; "bf16"; "off"
    compile: bool = False           # torch.compile the encoder step
    channels_last: bool = False     # channels_last_3d memory format (CUDA)
    seed: int = 0
    val_fraction: float = 0.05      # videos held out for the validation loss (at least one batch of them)
    val_batches: int = 8            # validation batches per epoch, at most
    steps_per_epoch: int = 0        # 0: one pass over the data; > 0: at most that many steps per epoch
    max_steps: int = 0              # > 0: stop (with a checkpoint) once this many steps are done in all
    checkpoint_every: int = 500     # steps; 0: only at the end of every epoch
    keep_last: int = 3              # checkpoints kept
    log_every: int = 10             # steps between log lines (JSON lines + TensorBoard)
    image_every: int = 500          # steps between pictures of synthetic samples; 0: never
    resume: str = ""                # "", "auto" (newest checkpoint of `out`, if any) or a checkpoint path
    tensorboard: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "val_batches", "keep_last", "log_every"):
            _check(getattr(self, name) >= 1, f"train.{name}", "must be >= 1", getattr(self, name))
        for name in ("lr_reference_batch", "warmup_steps", "steps_per_epoch", "max_steps", "checkpoint_every",
                     "image_every"):
            _check(getattr(self, name) >= 0, f"train.{name}", "must be >= 0", getattr(self, name))
        _check(self.lr > 0, "train.lr", "must be > 0", self.lr)
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0", self.weight_decay)
        _check(self.plateau_patience >= 0, "train.plateau_patience", "must be >= 0", self.plateau_patience)
        _check(0.0 < self.plateau_factor < 1.0, "train.plateau_factor", "must be in (0, 1)", self.plateau_factor)
        _check(self.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0: off)", self.grad_clip)
        _check(self.amp in ("auto", "bf16", "off"), "train.amp", "must be one of 'auto', 'bf16', 'off'", self.amp)
        _check(0.0 <= self.val_fraction < 1.0, "train.val_fraction", "must be in [0, 1)", self.val_fraction)
        _check(bool(self.out), "train.out", "must name a folder", self.out)

    @property
    def effective_lr(self) -> float:
        if self.lr_reference_batch:
            return self.lr * self.batch_size / self.lr_reference_batch
        return self.lr


@dataclass(frozen=True)
class PretrainConfig:
    """Everything `uptal pretrain` needs: one section per room."""

    pal: PalConfig = field(default_factory=PalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # DeepMind's Kinetics-400 I3D was trained on RGB in [-1, 1]: (x - 0.5) / 0.5 of [0, 1] pixels
        if self.model.init == "i3d-k400":
            _check(self.pal.mean == (0.5, 0.5, 0.5) and self.pal.std == (0.5, 0.5, 0.5), "pal.mean",
                   "model.init=i3d-k400 expects inputs in [-1, 1]: set pal.mean=[0.5,0.5,0.5] "
                   "pal.std=[0.5,0.5,0.5]", (self.pal.mean, self.pal.std))


def load_pretrain_config(path: str | Path | None = None, overrides: list[str] = ()) -> PretrainConfig:
    """Defaults <- YAML file (optional; a path, or the name of a shipped config such as "demo",
    "pal_paper" or "ablations/table5_beta_1") <- `section.key=value` overrides; errors name the key."""
    values = load_yaml(resolve_config_path(path)) if path else {}
    values = apply_overrides(values, list(overrides))
    return from_mapping(PretrainConfig, values, "")


# ---------------------------------------------------------------------------------------------------------
# Building dataclasses from plain mappings (YAML) and dotted overrides


def from_mapping(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass `cls` from `values`, converting types and naming the key of any error."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of sections, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"{_key(prefix, unknown[0])}: unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, raw in values.items():
        key = _key(prefix, name)
        kwargs[name] = _convert(hints[name], raw, key)
    return cls(**kwargs)


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


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


def _configs_folder() -> Path:
    """configs/ of the repository, installed as uptal/configs (an editable install maps it to the checkout)."""
    installed = Path(__file__).resolve().parent / "configs"
    if installed.is_dir():
        return installed
    import importlib.util
    spec = importlib.util.find_spec("uptal.configs")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the shipped configs (uptal/configs) are not installed; give a YAML file path")
    return Path(list(spec.submodule_search_locations)[0])


def shipped_configs() -> list[str]:
    """Names of the configs installed with uptal (configs/*.yaml of the repository)."""
    root = _configs_folder()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def resolve_config_path(path: str | Path) -> Path:
    """A YAML file as given, or else the shipped config of that name."""
    given = Path(path)
    if given.is_file():
        return given
    shipped = _configs_folder() / given.with_suffix(".yaml")
    if given.suffix in ("", ".yaml") and shipped.is_file():
        return shipped
    raise ConfigError(f"config file {path} does not exist (shipped configs: {', '.join(shipped_configs())})")


def load_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config as a nested dict. A top-level `base: other.yaml` (relative to this file) is loaded first
    and this file's keys are merged over it, section by section, so an ablation file names only what it changes."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path in _seen:
        raise ConfigError(f"{path}: 'base' files form a cycle: {' -> '.join(str(p) for p in _seen + (path,))}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be a file name, got {base!r}")
    return _merge(load_yaml(path.parent / base, _seen + (path,)), data)


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = _deep_copy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = _deep_copy(value) if isinstance(value, Mapping) else value
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-writable nested dict of a (nested) config dataclass; `from_mapping` reads it back."""
    return {f.name: to_dict(value) if dataclasses.is_dataclass(value := getattr(config, f.name)) else _plain(value)
            for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


__all__ = ["ConfigError", "PalConfig", "DataConfig", "ModelConfig", "TrainConfig", "PretrainConfig", "BACKBONES",
           "WORKER_PRIORITIES", "load_pretrain_config", "from_mapping", "apply_overrides", "load_yaml", "to_dict"]
