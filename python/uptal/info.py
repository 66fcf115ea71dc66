"""`uptal info` / `python -m uptal.info`: versions, native modules, CUDA status, and the implementation every
op uses on every device (and why)."""
from __future__ import annotations

import platform
import sys

import torch

import uptal
from uptal.ops import _native
from uptal.ops.synthesize import implementation_for

OPS = {"synthesize": implementation_for}


def collect() -> dict:
    """Everything `uptal info` prints, as a dict (also used by benchmarks to stamp their results)."""
    native = {}
    for module in (_native.CPU, _native.CUDA):
        entry = {"loaded": module.loaded, "reason": module.reason}
        if module.loaded and module is _native.CPU:
            entry["openmp"] = bool(module.module.openmp)
            entry["max_threads"] = int(module.module.max_threads())
            entry["cpu_variant"] = module.module.cpu_variant()
        if module.loaded and module is _native.CUDA:
            entry["compiled_archs"] = module.module.compiled_archs
            entry["runtime"] = dict(module.module.runtime_info())
        native[f"uptal.{module.name}"] = entry
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return {
        "uptal": uptal.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "torch_threads": torch.get_num_threads(),
        "native": native,
        "ops": {op: {device: dict(zip(("implementation", "why"), choose(device))) for device in ("cpu", "cuda")}
                for op, choose in OPS.items()},
        "devices_present": devices,
    }


def render(info: dict) -> str:
    lines = [f"uptal {info['uptal']}  python {info['python']}  torch {info['torch']} "
             f"(CUDA build: {info['torch_cuda_build'] or 'none'})",
             f"platform: {info['platform']}",
             f"CUDA devices: {', '.join(info['cuda_devices']) or 'none'}; torch threads: {info['torch_threads']}",
             "native modules:"]
    for name, entry in info["native"].items():
        if entry["loaded"]:
            extra = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("loaded", "reason"))
            lines.append(f"  {name:14s} loaded ({extra})")
        else:
            lines.append(f"  {name:14s} not loaded: {entry['reason']}")
    lines.append("ops (implementation per device):")
    for op, per_device in info["ops"].items():
        for device, choice in per_device.items():
            present = "" if device in info["devices_present"] else " [no such device here]"
            lines.append(f"  {op:12s} {device:5s} {choice['implementation']:10s} {choice['why']}{present}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import json
    args = sys.argv[1:] if argv is None else argv
    info = collect()
    print(json.dumps(info, indent=2) if "--json" in args else render(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
