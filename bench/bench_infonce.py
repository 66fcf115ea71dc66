"""Region InfoNCE benchmark: eager reference vs torch.compile(reference) vs the Triton kernels, forward + backward.

Grid: B in {64, 256, 512}, J = 8, D = 128, K = 16384, float32 and bfloat16 inputs (the queue in the same dtype).
Per provider and size: the median time of one forward + backward, the peak memory it allocates beyond its inputs
(CUDA: torch.cuda.max_memory_allocated delta; not measured on the CPU, where the column is empty), on CUDA the
GPU time of its kernels alone (torch.profiler: no host time, no launch gaps), ratios to the
eager reference and to torch.compile, and bandwidth against the queue-read floor: forward and backward each read
the queue once, 2 K D bytes-per-element in all, which the device copies (read + write) in `floor_s`, measured in
the same run; `x floor` = floor_s / time (1.0 would mean the queue reads were the only cost).

    python bench/bench_infonce.py            # the full grid (meant for a GPU; writes bench/results/<device>/)
    python bench/bench_infonce.py --smoke    # seconds on a CPU: tiny sizes, reference and compile (Triton with CUDA)

Absolute times are only meaningful on a GPU; on the shared CPU machines quote ratios.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cuda_kernel_seconds, cuda_seconds, median_seconds, table, write_result  # noqa: E402

from uptal.ops import region_infonce, region_infonce_ref  # noqa: E402
from uptal.ops.region_infonce import implementation_for  # noqa: E402

TAU = 0.07
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
TARGETS = {"triton_vs_eager": 3.0, "triton_vs_compile": 1.5, "memory_fraction_of_eager": 1 / 20}


def make_inputs(batch, num_clips, dim, num_keys, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    clip_q = torch.randn(batch, num_clips, dim, generator=g)
    clip_k = clip_q + 0.5 * torch.randn(batch, num_clips, dim, generator=g)
    queue = F.normalize(torch.randn(num_keys, dim, generator=g), dim=1)
    first = torch.randint(0, num_clips, (batch,), generator=g)
    last = torch.minimum(first + torch.randint(0, 6, (batch,), generator=g), torch.tensor(num_clips - 1))
    regions = torch.stack([first, last], dim=1)
    # regions on the CPU, as the PAL plan hands them to the loss in training
    return (clip_q.to(device, dtype).requires_grad_(), clip_k.to(device, dtype), regions, regions.flip(0),
            queue.to(device, dtype))


def reference_loss(clip_q, clip_k, regions_q, regions_k, queue):
    device = clip_q.device   # the op validates CPU regions without a sync, then moves them; so does this
    return region_infonce_ref(clip_q, clip_k, regions_q.to(device), regions_k.to(device), queue, TAU)[0]


def op_loss(clip_q, clip_k, regions_q, regions_k, queue):
    return region_infonce(clip_q, clip_k, regions_q, regions_k, queue, TAU)[0]


def step_of(loss_function, inputs):
    def step():
        inputs[0].grad = None
        loss_function(*inputs).backward()
    return step


def peak_extra_bytes(step, device) -> int | None:
    """Peak memory one step allocates beyond what exists before it (None on the CPU)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def time_step(step, device, repeats) -> float:
    if device == "cuda":
        return cuda_seconds(step, repeats)
    return median_seconds(step, repeats)


def queue_floor_seconds(queue, device, repeats) -> float:
    """Copying the queue reads and writes 2 K D bytes-per-element: what forward + backward must at least read."""
    destination = torch.empty_like(queue)
    return time_step(lambda: destination.copy_(queue.detach()), device, repeats)


def providers(device):
    names = {"reference (eager)": reference_loss,
             "torch.compile(reference)": torch.compile(reference_loss, dynamic=False)}
    if device == "cuda" and implementation_for("cuda")[0] == "triton":
        names["triton"] = op_loss
    return names


def run(args) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.smoke:  # one size and one dtype: torch.compile compiles once per shape and dtype (~15 s on a CPU)
        batches, num_clips, dim, num_keys, repeats, dtypes = [5], 4, 16, 37, 5, ["float32"]
    else:
        batches, num_clips, dim, num_keys, repeats = args.batches, args.clips, args.dim, args.keys, args.repeats
        dtypes = args.dtypes
    functions = providers(device)
    rows = []
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for batch in batches:
            inputs = make_inputs(batch, num_clips, dim, num_keys, dtype, device)
            floor_s = queue_floor_seconds(inputs[4], device, repeats)
            queue_bytes = 2 * inputs[4].numel() * inputs[4].element_size()
            group = []
            for provider, loss_function in functions.items():
                step = step_of(loss_function, inputs)
                step()  # compile / warm up before measuring memory
                row = {"provider": provider, "dtype": dtype_name, "B": batch,
                       "extra_MB": _megabytes(peak_extra_bytes(step, device)),
                       "median_s": time_step(step, device, repeats)}
                if device == "cuda":
                    row["gpu_s"], kernels = cuda_kernel_seconds(step, repeats)
                    row["top_kernels_us"] = [[name[:80], seconds * 1e6] for name, seconds in kernels[:6]]
                group.append(row)
            _add_ratios(group, floor_s, queue_bytes)
            rows += group
    return {"rows": rows, "device_kind": device, "smoke": args.smoke,
            "sizes": {"B": batches, "J": num_clips, "D": dim, "K": num_keys}, "tau": TAU,
            "memory_note": None if device == "cuda" else "peak memory is measured on CUDA only",
            "implementation": dict(zip(("implementation", "why"), implementation_for(device)))}


def _megabytes(num_bytes):
    return None if num_bytes is None else num_bytes / 2**20


def _add_ratios(group, floor_s, queue_bytes):
    eager = group[0]
    compiled = group[1]
    for row in group:
        row["vs_eager"] = eager["median_s"] / row["median_s"]
        row["vs_compile"] = compiled["median_s"] / row["median_s"]
        if row.get("gpu_s") and eager.get("gpu_s") and compiled.get("gpu_s"):
            row["gpu_vs_eager"] = eager["gpu_s"] / row["gpu_s"]
            row["gpu_vs_compile"] = compiled["gpu_s"] / row["gpu_s"]
        row["memory_vs_eager"] = None if row["extra_MB"] is None or not eager["extra_MB"] else \
            row["extra_MB"] / eager["extra_MB"]
        row["queue_GB_s"] = queue_bytes / row["median_s"] / 1e9
        row["floor_s"] = floor_s
        row["vs_floor"] = floor_s / row["median_s"]


def verdicts(result) -> list[str]:
    lines = []
    for row in result["rows"]:
        if row["provider"] != "triton":
            continue
        memory = "" if row["memory_vs_eager"] is None else (
            f", {row['memory_vs_eager']:.3f} of eager's extra memory "
            f"(target <= {TARGETS['memory_fraction_of_eager']:.2f} at B = 512)")
        lines.append(f"triton {row['dtype']} B={row['B']}: {row['vs_eager']:.1f}x eager (target "
                     f"{TARGETS['triton_vs_eager']:.0f}x), {row['vs_compile']:.2f}x compile (target "
                     f"{TARGETS['triton_vs_compile']}x){memory}, {row['vs_floor']:.2f}x the queue-read floor"
                     + ("" if row.get("gpu_vs_eager") is None else
                        f"; GPU time alone: {row['gpu_vs_eager']:.1f}x eager, {row['gpu_vs_compile']:.2f}x compile"))
    if not lines:
        lines.append("no Triton row: the kernels run on CUDA only (this run: "
                     f"{result['implementation']['implementation']}, {result['implementation']['why']})")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds on a CPU (CI)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--keys", type=int, default=16384)
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/<device>/")
    args = parser.parse_args(argv)
    result = run(args)
    print(table(result["rows"], [("provider", "provider", "s"), ("dtype", "dtype", "s"), ("B", "B", "d"),
                                 ("median_s", "median s", ".2e"), ("vs_eager", "x eager", ".2f"),
                                 ("vs_compile", "x compile", ".2f"), ("extra_MB", "extra MB", ".1f"),
                                 ("memory_vs_eager", "mem / eager", ".3f"), ("queue_GB_s", "queue GB/s", ".1f"),
                                 ("vs_floor", "x floor", ".3f"), ("gpu_s", "GPU s", ".2e"),
                                 ("gpu_vs_eager", "GPU x eager", ".2f"), ("gpu_vs_compile", "GPU x compile", ".2f")]))
    if result["memory_note"]:
        print(result["memory_note"])
    for line in verdicts(result):
        print(line)
    if args.smoke:   # like every bench: a smoke run prints, and never writes over measured results
        print(json.dumps({"smoke_rows": len(result["rows"])}))
    elif not args.no_save:
        print(f"wrote {write_result('bench_infonce', result['device_kind'], result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
