"""PAL synthesis benchmark: every implementation of `uptal::synthesize` on the same plan and batch, side by side.

Providers: reference (eager torch), torch.compile(reference), C++ CPU with 1 thread and with all threads,
CUDA when a GPU is present. Reports median time, the ratio to the eager reference at the same thread count,
and achieved bandwidth against a copy of the same number of bytes measured in the same run (memcpy on the
CPU, its calls alternating with the C++ op's at the same thread count; device-to-device copy on the GPU).

Bytes counted: for every output frame, the source pixels inside the crop box of its background frame and,
where something is pasted, of its action frame (uint8 RGB), plus the output written. That is the least any
implementation must move; the copy baseline moves the same number of bytes (half read, half written).

    python bench/bench_synthesis.py            # default batch: 16 videos of 256x128x171 -> 32 x 64 x 112^2
    python bench/bench_synthesis.py --smoke    # tiny batch, seconds; what CI runs
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (alternating_medians, cuda_kernel_seconds, cuda_seconds, median_seconds, table,  # noqa: E402
                    write_result)

from uptal.config import PalConfig  # noqa: E402
from uptal.ops import implementation_for, synthesize_ref  # noqa: E402
from uptal.ops.synthesize import synthesize_packed  # noqa: E402
from uptal.pal import build_plan  # noqa: E402

TARGETS = {"cpp_vs_eager": 20.0, "cpp_vs_copy": 0.3, "cuda_vs_copy": 0.6, "cuda_vs_eager": 20.0,
           "cuda_vs_compile": 3.0}


def make_batch(num_videos, frames, height, width, config, seed=0):
    g = torch.Generator().manual_seed(seed)
    videos = torch.randint(0, 256, (num_videos, frames, height, width, 3), dtype=torch.uint8, generator=g)
    lengths = [frames] * num_videos
    plan = build_plan(g, lengths, height, width, config)
    return videos, lengths, plan


def bytes_moved(plan, out_dtype) -> int:
    crop_area = (plan.crop[:, 2] * plan.crop[:, 3]).double()                       # [M]
    frames_read = plan.clips * plan.frames + (plan.action_frames >= 0).sum(dim=1)  # [M]
    read = int((crop_area * frames_read * 3).sum())
    written = plan.num_outputs * 3 * plan.clips * plan.frames * plan.size ** 2 * torch.finfo(out_dtype).bits // 8 \
        if out_dtype.is_floating_point else plan.num_outputs * 3 * plan.clips * plan.frames * plan.size ** 2
    return read + written


def make_copy(num_bytes, device):
    """A copy that reads num_bytes/2 and writes num_bytes/2 (both buffers touched first)."""
    src = torch.empty(num_bytes // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    src.fill_(1)
    dst.fill_(0)
    return lambda: dst.copy_(src)


class threads_set:
    def __init__(self, threads):
        self.threads, self.saved = threads, torch.get_num_threads()

    def __enter__(self):
        if self.threads:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def run(args) -> dict:
    config = PalConfig()
    if args.smoke:
        videos, lengths, plan = make_batch(3, 40, 48, 64, PalConfig(clips=2, frames=4, size=32, max_region_clips=2))
    else:
        videos, lengths, plan = make_batch(args.videos, args.frames, args.height, args.width, config)
    out_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "uint8": torch.uint8}[args.dtype]
    packed = plan.packed()
    num_bytes = bytes_moved(plan, out_dtype)
    all_threads = torch.get_num_threads()
    repeats = 3 if args.smoke else args.repeats
    rows = []

    def add(provider, threads, seconds, copy_s, eager_s=None, compile_s=None):
        rows.append({"provider": provider, "threads": threads, "median_s": seconds,
                     "vs_eager": None if eager_s is None else eager_s / seconds,
                     "vs_compile": None if compile_s is None else compile_s / seconds,
                     "GB_s": num_bytes / seconds / 1e9, "copy_GB_s": num_bytes / copy_s / 1e9,
                     "vs_copy": copy_s / seconds})

    def ref():
        return synthesize_ref(videos, *packed, plan.size, out_dtype)

    cpu_out = torch.empty((plan.num_outputs, 3, plan.clips * plan.frames, plan.size, plan.size), dtype=out_dtype)

    def cpp():
        return synthesize_packed(videos, lengths, *packed, plan.size, out_dtype, out=cpu_out)

    eager = {}
    cpu_copy = None if args.gpu_only else make_copy(num_bytes, "cpu")
    for threads in [] if args.gpu_only else sorted({1, all_threads}):
        with threads_set(threads):
            eager[threads] = median_seconds(ref, max(1, repeats // 2), warmup=0 if not args.smoke else 1)
            # the op and the copy it is compared with alternate, so that both see the same machine
            timed = {"copy": cpu_copy}
            if implementation_for("cpu")[0] == "cpp":
                timed["cpp"] = cpp
            medians = alternating_medians(timed, repeats)
        add("reference (eager)", threads, eager[threads], medians["copy"], eager[threads])
        if "cpp" in medians:
            add("C++ CPU", threads, medians["cpp"], medians["copy"], eager[threads])
    if not args.smoke and not args.no_compile and not args.gpu_only:
        compiled = torch.compile(synthesize_ref, dynamic=False)
        with threads_set(all_threads):
            compile_s = median_seconds(lambda: compiled(videos, *packed, plan.size, out_dtype), 2, warmup=1)
            copy_s = median_seconds(cpu_copy, repeats)
        add("torch.compile(reference)", all_threads, compile_s, copy_s, eager[all_threads])
        rows[-1]["vs_compile"] = 1.0

    if torch.cuda.is_available():
        gpu_videos = videos.cuda()
        gpu_packed = [t.cuda() for t in packed]
        gpu_out = torch.empty(cpu_out.shape, dtype=out_dtype, device="cuda")
        copy_s = cuda_seconds(make_copy(num_bytes, "cuda"), repeats)
        eager_gpu = cuda_seconds(lambda: synthesize_ref(gpu_videos, *gpu_packed, plan.size, out_dtype), 3, 1)
        add("reference (eager)", "gpu", eager_gpu, copy_s, eager_gpu)
        compile_gpu = None
        if not args.smoke and not args.no_compile:
            compiled_gpu = torch.compile(synthesize_ref, dynamic=False)
            compile_gpu = cuda_seconds(lambda: compiled_gpu(gpu_videos, *gpu_packed, plan.size, out_dtype), 3, 1)
            add("torch.compile(reference)", "gpu", compile_gpu, copy_s, eager_gpu, compile_gpu)
        if implementation_for("cuda")[0] == "cuda":
            def cuda_op():   # the plan on the CPU, as training hands it over (validated there without a sync)
                return synthesize_packed(gpu_videos, lengths, *packed, plan.size, out_dtype, out=gpu_out)

            add("CUDA", "gpu", cuda_seconds(cuda_op, repeats), copy_s, eager_gpu, compile_gpu)
            _, kernels = cuda_kernel_seconds(cuda_op, repeats)   # where the time goes, kernel by kernel
            rows[-1]["top_kernels_us"] = [[name[:80], seconds * 1e6] for name, seconds in kernels[:6]]

    return {"rows": rows, "bytes": num_bytes, "dtype": args.dtype, "smoke": args.smoke,
            "batch": {"videos": list(videos.shape), "outputs": [plan.num_outputs, 3, plan.clips * plan.frames,
                                                                 plan.size, plan.size]}}


def profile_calls(args) -> None:
    videos, lengths, plan = make_batch(args.videos, args.frames, args.height, args.width, PalConfig())
    out_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "uint8": torch.uint8}[args.dtype]
    gpu_videos = videos.cuda()
    for _ in range(args.profile_calls):
        synthesize_packed(gpu_videos, lengths, *plan.packed(), plan.size, out_dtype)
    torch.cuda.synchronize()


def verdicts(result) -> list[str]:
    lines = []
    for row in result["rows"]:
        if row["provider"] == "C++ CPU":
            lines.append(f"C++ CPU {row['threads']} thread(s): {row['vs_eager']:.1f}x eager "
                         f"(target {TARGETS['cpp_vs_eager']:.0f}x), {row['vs_copy']:.2f}x memcpy bandwidth "
                         f"(target {TARGETS['cpp_vs_copy']}x)")
        if row["provider"] == "CUDA":
            compile_part = "" if row["vs_compile"] is None else \
                f", {row['vs_compile']:.1f}x torch.compile (target {TARGETS['cuda_vs_compile']:.0f}x)"
            lines.append(f"CUDA: {row['vs_eager']:.1f}x eager (target {TARGETS['cuda_vs_eager']:.0f}x){compile_part}, "
                         f"{row['vs_copy']:.2f}x device copy bandwidth (target {TARGETS['cuda_vs_copy']}x)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny batch, a few seconds (CI)")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=171)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "uint8"], default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile on a CPU)")
    parser.add_argument("--gpu-only", action="store_true",
                        help="only the CUDA rows (the CPU rows come from a run on the CPU machine)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/<device>/")
    parser.add_argument("--profile-calls", type=int, default=0, metavar="N",
                        help="only call the CUDA op N times on the default batch, nothing else (under a profiler "
                             "such as Nsight Compute)")
    args = parser.parse_args(argv)
    if (args.gpu_only or args.profile_calls) and not torch.cuda.is_available():
        parser.error("--gpu-only and --profile-calls need a CUDA device")
    if args.profile_calls:
        profile_calls(args)
        return 0
    result = run(args)
    print(table(result["rows"], [("provider", "provider", "s"), ("threads", "threads", ""),
                                 ("median_s", "median s", ".4f"), ("vs_eager", "x eager", ".1f"),
                                 ("vs_compile", "x compile", ".2f"), ("GB_s", "GB/s", ".2f"),
                                 ("copy_GB_s", "copy GB/s", ".2f"), ("vs_copy", "x copy", ".3f")]))
    print(f"bytes moved per call: {result['bytes'] / 1e6:.1f} MB ({result['dtype']} output)")
    for line in verdicts(result):
        print(line)
    for row in result["rows"]:
        for name, microseconds in row.get("top_kernels_us", []):
            print(f"  {row['provider']} kernel {microseconds:9.1f} us  {name}")
    if not args.no_save and not args.smoke:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"wrote {write_result('bench_synthesis', device, result)}")
    elif args.smoke:
        print(json.dumps({"smoke_rows": len(result["rows"])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
