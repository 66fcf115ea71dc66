"""`uptal info` / `python -m uptal.info`: versions, native modules, CUDA status, and the implementation every
op uses on every device (and why); with --model NAME also the parameters and GFLOPs per clip of a backbone."""
from __future__ import annotations

import platform
import sys

import torch

import uptal
from uptal.ops import _native
from uptal.ops.planes_to_rgb import implementation_for as planes_to_rgb_implementation
from uptal.ops.region_infonce import implementation_for as region_infonce_implementation
from uptal.ops.synthesize import implementation_for

OPS = {"synthesize": implementation_for, "region_infonce": region_infonce_implementation,
       "planes_to_rgb": planes_to_rgb_implementation}


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
            lines.append(f"  {op:14s} {device:5s} {choice['implementation']:18s} {choice['why']}{present}")
    return "\n".join(lines)


def model_cost(name: str, frames: int = 8, size: int = 112) -> dict:
    """Parameters and FLOPs of backbone `name` for one [1, 3, frames, size, size] clip, measured with
    torch.utils.flop_counter.FlopCounterMode (eval mode, no grad).

    FlopCounterMode counts only matmuls and convolutions, and counts a multiply-add as 2 FLOPs (measured here,
    not assumed: `flops_per_multiply_add`). Papers (PAL's "3.6 GFLOPs per 8x112x112 clip" for I3D) and
    torchvision's model tables count multiply-adds and call them FLOPs, so the comparable number is
    `gmacs`. For I3D at 8x112x112 we measure 6.98 GFLOPs = 3.49 G multiply-adds; BatchNorm, ReLU and pooling,
    which the counter skips, add about 0.02 G by our own count, so they do not explain the rest of the paper's
    3.6, and the paper does not say how it counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from uptal.models import build_backbone

    if frames < 1 or size < 1:
        raise ValueError(f"frames and size must be >= 1, got frames={frames}, size={size}")
    model = build_backbone(name).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, frames, size, size))
    flops = counter.get_total_flops()
    per_mac = flops_per_multiply_add()
    return {
        "model": name,
        "input": [1, 3, frames, size, size],
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "feature_dim": model.feature_dim,
        "gflops": flops / 1e9,
        "flops_per_multiply_add": per_mac,
        "gmacs": flops / per_mac / 1e9,
    }


def flops_per_multiply_add() -> int:
    """How many FLOPs FlopCounterMode counts for one multiply-add (a 1x1 by 1x1 matrix product)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        torch.mm(torch.ones(1, 1), torch.ones(1, 1))
    return counter.get_total_flops()


def render_model_cost(cost: dict) -> str:
    shape = "x".join(str(d) for d in cost["input"][2:])
    frozen = cost["parameters"] - cost["trainable_parameters"]
    return "\n".join([
        f"model {cost['model']}: {cost['parameters']:,} parameters"
        + (f" ({frozen} frozen: BatchNorm scales fixed at 1)" if frozen else "")
        + f", features [N, {cost['feature_dim']}]",
        f"per {shape} clip: {cost['gflops']:.3f} GFLOPs (torch.utils.flop_counter, convolutions and matmuls, "
        f"{cost['flops_per_multiply_add']} FLOPs per multiply-add) = {cost['gmacs']:.3f} G multiply-adds",
        "papers and torchvision quote multiply-adds as 'FLOPs' (PAL: 3.6 for I3D at 8x112x112): "
        "compare them with the multiply-adds",
    ])


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="uptal info", description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    parser.add_argument("--model", help="also report parameters and GFLOPs per clip of this backbone")
    parser.add_argument("--frames", type=int, default=8, help="clip length for --model (default: 8)")
    parser.add_argument("--size", type=int, default=112, help="clip height and width for --model (default: 112)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    info = collect()
    if args.model:
        try:
            info["model"] = model_cost(args.model, args.frames, args.size)
        except ValueError as e:
            print(f"uptal info: error: {e}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(render(info) + ("\n" + render_model_cost(info["model"]) if args.model else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
