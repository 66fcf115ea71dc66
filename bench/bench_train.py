"""Training-step benchmark: throughput, data wait and model FLOP utilisation of PAL pre-training.

Two runs of the same step, side by side, to separate data from compute:
- synthetic: clips made once in memory, so the step never waits for data (the compute ceiling);
- data path: the real loader (decode once per batch, plan, synthesis in the worker on CPU / on the device
  on GPU) feeding the same step, measuring the fraction of time the host waits for the next batch and, on
  CUDA, the fraction the GPU sits idle between steps (the <= 5% target is judged on the latter).
The data path is timed from an empty prefetch queue (the first wave of batches, workers x prefetch, is taken
untimed and not trained on), and the demo videos are listed as many times as one epoch of the timed steps needs
(a DataLoader drains its workers at each epoch's end).
Model FLOP utilisation = FLOPs of one step (counted by torch.utils.flop_counter: query encoder forward and
backward, key encoder forward, loss) / step time / the machine's matmul rate measured in the same run
(float32 on the CPU, bfloat16 on CUDA).

    python bench/bench_train.py                 # CPU: tiny backbone on the demo config; CUDA: I3D 8x112x112
    python bench/bench_train.py --backbone i3d --batch 16
    python bench/bench_train.py --smoke         # seconds (CI)
    python bench/bench_train.py --transcoded    # the demo videos through `uptal data transcode` first
                                                # (the recipe for real data; result bench_train_transcoded.json)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import first_wave, repeated_index, table, write_result  # noqa: E402

from uptal.config import WORKER_PRIORITIES, load_pretrain_config  # noqa: E402
from uptal.data import write_demo_videos  # noqa: E402
from uptal.data.index import load_index  # noqa: E402
from uptal.data.loader import PalLoader  # noqa: E402
from uptal.data.transcode import LIST_NAME, transcode  # noqa: E402
from uptal.pal import build_plan  # noqa: E402
from uptal.train.engine import PalStep, build_moco, compile_backbones  # noqa: E402
from uptal.train.gpu_idle import GpuIdle  # noqa: E402
from uptal.train.host_values import HostValues  # noqa: E402

TARGETS = {"data_wait_fraction_gpu": 0.05}


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """FLOP/s of a square matmul: the machine's ceiling for MFU."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    repeats = 10 if device.type == "cuda" else 3
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(config, device):
    """The trainer's step on one device, with the config's channels_last choice (CUDA)."""
    moco = build_moco(config.model).to(device)
    if device.type == "cuda" and config.train.channels_last:
        moco = moco.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(moco.encoder_q.parameters(), lr=config.train.lr)
    autocast = torch.bfloat16 if device.type == "cuda" else None
    return PalStep(moco, moco, optimizer, config.model.temperature, 0.0, autocast)


def synthetic_batch(config, batch: int, device: torch.device):
    pal, data = config.pal, config.data
    plan = build_plan(torch.Generator().manual_seed(0), [64] * batch, data.height, data.width, pal)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    clips = torch.randn(2 * batch, 3, pal.clips * pal.frames, pal.size, pal.size, device=device).to(dtype)
    return clips, plan


def step_flops(step: PalStep, clips, plan) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step.train_step(clips, plan)
    return counter.get_total_flops()


def time_synthetic(step: PalStep, clips, plan, steps: int, device) -> float:
    for _ in range(2):
        step.train_step(clips, plan)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        result = step.train_step(clips, plan)
    float(result.loss)
    _sync(device)
    return (time.perf_counter() - start) / steps


def time_data_path(step: PalStep, loader: PalLoader, steps: int, warmup: int,
                   device) -> tuple[float, float, float | None]:
    """Seconds per step, the fraction of wall time the host spent waiting for the next batch, and (CUDA) the
    fraction of the GPU's time that it sat idle between steps, over `steps` steps.

    As the trainer does, the host reads each step's loss only after it has queued the next step, so it may
    wait for a batch while the GPU still runs the previous step: the host's wait then overstates how long
    the GPU starved. The GPU's idle time is measured on the device instead (uptal.train.gpu_idle).

    First the `warmup` batches every worker made at once when the loader started are taken without training,
    so that timing starts with an empty prefetch queue: batches buffered while training ran would hide a loader
    slower than the step for as many steps as the queue holds (workers x prefetch). The step itself is warm
    (time_synthetic ran it on the same shapes)."""
    batches = _endless(loader)
    for _ in range(warmup):
        next(batches)
    _sync(device)
    idle = GpuIdle(device)
    waited, start, queued, marks = 0.0, time.perf_counter(), None, []
    for _ in range(steps):
        before = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - before
        begin = idle.mark()
        result = step.train_step(step.clips(batch, device), batch.plan)
        marks.append((begin, idle.mark()))
        if queued is not None:
            queued["loss"]         # read, as the trainer reads every loss (non-finite check), one step late
        queued = HostValues(result.scalars())
    queued["loss"]
    _sync(device)
    total = time.perf_counter() - start
    for begin, end in marks:
        idle.add(begin, end)
    return total / steps, waited / total, idle.fraction


def time_loader_alone(loader: PalLoader, batches: int, warmup: int) -> float:
    """Samples per second the loader delivers with nothing else running (after `warmup` batches)."""
    iterator = _endless(loader)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
    return batches * len(batch.paths) / (time.perf_counter() - start)


def _endless(loader: PalLoader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def run(args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = load_pretrain_config(args.config, args.overrides)
    if args.backbone:
        config = replace(config, model=replace(config.model, backbone=args.backbone))
    batch = args.batch
    step = make_step(config, device)
    clips, plan = synthetic_batch(config, batch, device)
    flops = step_flops(step, clips, plan)
    if config.train.compile:   # after counting the FLOPs: the counter runs the eager modules
        compile_backbones(step.moco)
    synthetic_s = time_synthetic(step, clips, plan, args.steps, device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_rate(device, dtype, 8192 if device.type == "cuda" else 1024)

    rows = [{"input": "synthetic (in memory)", "s_per_step": synthetic_s, "samples_per_s": batch / synthetic_s,
             "data_wait": 0.0, "mfu": flops / synthetic_s / peak}]
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as copies:
        write_demo_videos(tmp, num_videos=max(3 * batch, args.videos), num_frames=args.frames,
                          height=max(config.data.height, 64), width=max(config.data.width, 85))
        videos = load_index(tmp, progress=False, cache=False)
        if args.transcoded:   # the loader reads the copies `uptal data transcode` writes, as users should
            transcode(videos, copies, progress=False)
            videos = load_index(Path(copies) / LIST_NAME, progress=False, cache=False)
        source = "demo videos, transcoded" if args.transcoded else "demo videos"
        for priority in args.worker_priority:   # side by side: the workers' CPU priority against the step's
            data = replace(config.data, workers=args.workers, worker_priority=priority)
            warmup = first_wave(data, config.pal, batch)
            loader = PalLoader(repeated_index(videos, warmup + args.steps + 2, batch), config.pal, data,
                               batch, synthesize=device.type == "cpu")
            real_s, wait, gpu_idle = time_data_path(step, loader, args.steps, warmup, device)
            rows.append({"input": f"{source} (data path)", "priority": priority, "s_per_step": real_s,
                         "samples_per_s": batch / real_s, "data_wait": wait, "gpu_idle": gpu_idle,
                         "mfu": flops / real_s / peak})
            del loader
        for workers in args.loader_workers:   # the loader's own ceiling, no training step
            alone_data = replace(config.data, workers=workers)
            warmup = first_wave(alone_data, config.pal, batch)
            alone = PalLoader(repeated_index(videos, warmup + args.steps + 2, batch), config.pal,
                              alone_data, batch, synthesize=device.type == "cpu")
            rows.append({"input": "loader alone", "workers": workers,
                         "samples_per_s": time_loader_alone(alone, args.steps, warmup)})
            del alone
    for row in rows:
        row.setdefault("workers", args.workers)
        row.update(backbone=config.model.backbone, batch=batch)
    return {"rows": rows, "flops_per_step": flops, "peak_flops": peak, "peak_dtype": str(dtype),
            "device": str(device), "config": args.config, "overrides": args.overrides, "targets": TARGETS,
            "transcoded": args.transcoded, "compiled": config.train.compile}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few tiny steps (CI)")
    parser.add_argument("--config", default=None, help="default: demo on CPU, pal_paper on CUDA")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--batch", type=int, default=None, help="source videos (query/key pairs) per step")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=160, help="frames of each demo video")
    parser.add_argument("--loader-workers", type=int, nargs="*", default=[],
                        help="also time the loader alone with these worker counts (its ceiling)")
    parser.add_argument("--worker-priority", nargs="+", default=["auto"], choices=WORKER_PRIORITIES,
                        help="time the data path with the workers at each of these priorities (data.worker_priority)")
    parser.add_argument("--transcoded", action="store_true",
                        help="read the demo videos through `uptal data transcode` copies (as real data should be)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    args.config = args.config or ("pal_paper" if cuda else "demo")
    args.batch = args.batch or (32 if cuda else 8)
    if args.smoke:
        args.config, args.backbone, args.batch, args.steps, args.workers, args.frames = "demo", "tiny", 3, 2, 1, 40
        args.overrides = args.overrides + ["pal.clips=4", "pal.max_region_clips=2", "pal.size=32"]
    result = run(args)
    print(table(result["rows"], [("input", "input", "s"), ("backbone", "backbone", "s"), ("batch", "B", ""),
                                 ("workers", "workers", ""), ("priority", "priority", "s"),
                                 ("s_per_step", "s/step", ".3f"),
                                 ("samples_per_s", "samples/s", ".1f"), ("data_wait", "data wait", ".1%"),
                                 ("gpu_idle", "GPU idle", ".1%"), ("mfu", "MFU", ".1%")]))
    print(f"FLOPs per step: {result['flops_per_step'] / 1e9:.1f} G; matmul ceiling "
          f"{result['peak_flops'] / 1e12:.2f} TFLOP/s ({result['peak_dtype']}) on {result['device']}")
    for row in result["rows"] if cuda else []:
        if "priority" in row:
            verdict = "met" if row["gpu_idle"] <= TARGETS["data_wait_fraction_gpu"] else "NOT met"
            print(f"{row['priority']} worker priority: the GPU idled {row['gpu_idle']:.1%} of its time between "
                  f"steps, the host waited for data {row['data_wait']:.1%} of the time "
                  f"(target: the step waits for data <= 5% of its time on a GPU): {verdict}")
    if args.smoke:
        print(json.dumps({"smoke_rows": len(result["rows"])}))
    elif not args.no_save:
        name = "bench_train" + ("_transcoded" if args.transcoded else "") + ("_compiled" if result["compiled"] else "")
        print(f"wrote {write_result(name, 'cuda' if cuda else 'cpu', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
