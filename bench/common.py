"""Shared benchmark plumbing: timing, device naming, result stamping, tables."""
from __future__ import annotations

import json
import math
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1, sync: Callable[[], None] = lambda: None
                   ) -> float:
    """Median wall time of `fn` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternating_seconds(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
                        ) -> dict[str, list[float]]:
    """Wall times of each of `fns` over `repeats` rounds, their calls alternating round by round. On a machine
    whose speed drifts (a shared VM: up to 1.5x from one minute to the next on this project's CI machine) the
    ratio of two medians taken one after the other is mostly the drift; alternating, both see the same machine."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def alternating_medians(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median of each of `fns`' alternating_seconds."""
    return {name: statistics.median(values) for name, values in alternating_seconds(fns, repeats, warmup).items()}


def cuda_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median time of `fn` on the current CUDA stream, measured with events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def cuda_kernel_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2
                        ) -> tuple[float | None, list[tuple[str, float]]]:
    """GPU time of the kernels (and copies) `fn` launches, per call, from torch.profiler: what the device works,
    without the host's time or the gaps between launches; and the same split by kernel name, largest first.
    (None, []) when the profiler recorded no device activity."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profiler:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    per_kernel: dict[str, float] = {}
    for event in profiler.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            per_kernel[event.name] = per_kernel.get(event.name, 0.0) + event.time_range.elapsed_us() / 1e6 / repeats
    if not per_kernel:
        return None, []
    return sum(per_kernel.values()), sorted(per_kernel.items(), key=lambda item: -item[1])


def first_wave(data, pal, batch_size: int) -> int:
    """Batches a PalLoader's workers make at once when it starts (workers x prefetch, of a DataConfig at this
    PAL config and batch size): a benchmark takes them untimed, so that timing starts with an empty prefetch
    queue."""
    return max(1, data.workers * data.prefetch_batches(pal, batch_size))


def repeated_index(index, batches: int, batch_size: int):
    """`index` with its usable files listed as many times as one epoch of `batches` batches of `batch_size`
    needs. A DataLoader drains its workers at the end of every epoch, so on a small benchmark set (a few
    batches per epoch) most workers would sit idle at each epoch's end and the loader would look slower than it
    is on a real data set of thousands of batches per epoch."""
    from uptal.data.index import VideoIndex
    usable = index.usable()
    copies = max(1, math.ceil(batches * batch_size / max(len(usable), 1)))
    return VideoIndex(usable * copies, index.source)


def device_name(device: str) -> str:
    """A folder name for results: the GPU name, or the CPU model and core count."""
    if device == "cuda":
        return torch.cuda.get_device_name().lower().replace(" ", "-")
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = torch.get_num_threads()
    model = re.sub(r"\((r|tm)\)", "", model.lower())          # "Intel(R) Xeon(R)" -> "intel xeon"
    return f"cpu-{re.sub(r'[^a-z0-9.]+', '-', model).strip('-')}-{cores}t"


def git_sha() -> str:
    """The commit measured, with "-dirty" where the measured code differs from it: uncommitted changes to
    tracked files outside bench/results (a benchmark run rewrites those JSONs itself, which marked every run
    after the first of a session dirty)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent,
                              check=True).stdout.strip()
    try:
        sha = git("rev-parse", "--short=7", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude,top)bench/results")
        return f"{sha}-dirty" if changed else sha
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def stamp(device: str) -> dict:
    from uptal.info import collect
    return {"device": device_name(device), "git_sha": git_sha(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "environment": collect()}


def write_result(name: str, device: str, payload: dict) -> Path:
    folder = RESULTS / device_name(device)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({**stamp(device), **payload}, indent=2) + "\n")
    return path


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table; columns are (key, header, format)."""
    header = [h for _, h, _ in columns]
    body = [[("-" if row.get(k) is None else format(row[k], f)) for k, _, f in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(lines)
