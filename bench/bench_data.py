"""Data-path benchmark: uptal's decode-once batch loader vs a naive per-sample loader, side by side.

Both deliver what the synthesis op needs for the same PAL samples (a sample = one query/key pair of
synthetic videos of J*F frames each), on the same files, with the same number of worker processes:

- uptal: `PalLoader`. Each video of a batch is decoded once, as one window long enough for every role it
  plays (action source of one pair, background of two other synthetic videos).
- naive: the way per-clip loaders work (TSP-style, one decode per clip request): every sample opens and
  decodes its three videos itself: the action region's window and the two background windows.

Reported per loader: samples/s, decode calls per sample, decoded frames per delivered frame (frames in the
decoded windows / 2*J*F frames per sample), and the per-core decode rate (decoded frames per second per
worker process). Each loader runs --repeats times (default 3), the two in turn so that the machine's drift hits
both alike; samples/s and the ratio are medians over the repeats. Every timed run has a fresh loader whose
workers exit after it, timed from its start (worker start-up included) to its last timed batch: nothing is
decoded before the clock starts, so batches a deep prefetch queue finished during an untimed warm-up cannot
count as free (both loaders queue `data.prefetch_batches` per worker). The files are listed as many times as
one epoch of the run needs (a DataLoader drains its workers at each epoch's end). On the real
files a run times 40 batches (`--shared-batches`), as a batch there takes about a second: timing 12, the
ratios of three runs were 1.51-1.78x, timing 40, 2.04x and 2.09x (each run draws other files, and one 720p file
costs as much as several others). The same comparison then runs on `uptal data transcode` copies of those
files (the README's recipe for real data sets). Targets
(issue 3): decodes per sample <= 1.1, decoded per delivered frame <= 1.5, and at least 2.5x the naive loader's
samples/s.

Also the loader's own ceiling: `PalLoader` on the paper's batch shape (B = 32 windows of 128x171 frames) with a
decoder that only writes the frames' rows (no decoding), with 0, 1 and 2 workers: what planning, filling the
batch buffers and handing them to the main process cost. A GPU step of I3D takes 0.17 s at B = 32 on an H200,
so the loader must deliver a batch in less than that.

    python bench/bench_data.py                 # demo videos + ../shared/data/videos (+ transcoded), 2 workers
    python bench/bench_data.py --smoke         # a few batches of small demo videos (CI)
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import first_wave, repeated_index, table, write_result  # noqa: E402

from uptal.config import DataConfig, PalConfig  # noqa: E402
from uptal.data import write_demo_videos  # noqa: E402
from uptal.data.decode import DecodedWindow, PyAVDecoder, VideoError  # noqa: E402
from uptal.data.index import load_index  # noqa: E402
from uptal.data.loader import PalLoader, batch_seed  # noqa: E402
from uptal.data.shards import open_entry_source  # noqa: E402
from uptal.data.transcode import LIST_NAME, transcode  # noqa: E402

SHARED_VIDEOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "videos"
TARGETS = {"decodes_per_sample": 1.1, "decoded_per_delivered": 1.5, "vs_naive": 2.5}


class NaivePalSamples(Dataset):
    """One PAL sample per item, decoding its action video and its two background videos separately."""

    def __init__(self, entries, pal: PalConfig, data: DataConfig, seed: int = 0) -> None:
        self.entries, self.pal, self.data, self.seed = list(entries), pal, data, seed
        self.decoder = PyAVDecoder(threads=1)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(batch_seed(self.seed, 0, 0, i))
        pal, n = self.pal, len(self.entries)
        others = [j for j in torch.randperm(n, generator=g).tolist() if j != i][:2]
        region_clips = int(torch.randint(pal.min_region_clips, pal.max_region_clips + 1, (1,), generator=g))
        stride = int(torch.randint(pal.stride_range[0], pal.stride_range[1] + 1, (1,), generator=g))
        region_span = (region_clips * pal.frames - 1) * stride + 1
        background_span = (pal.frames_per_video - 1) * pal.background_stride + 1
        windows = [self._decode(i, region_span, g)] + [self._decode(j, background_span, g) for j in others]
        return {"windows": windows, "decodes": 3, "decoded_frames": sum(w.shape[0] for w in windows)}

    def _decode(self, entry_id: int, frames: int, g: torch.Generator) -> torch.Tensor:
        entry = self.entries[entry_id]
        start = max(0.0, entry.info.duration - frames / self.data.fps) * float(torch.rand(1, generator=g))
        try:
            window = self.decoder.decode_window(open_entry_source(entry), start, frames, self.data.fps,
                                                self.data.height, self.data.width)
        except VideoError:
            return torch.empty(0, self.data.height, self.data.width, 3, dtype=torch.uint8)
        return window.frames


def endless(loader, set_epoch=None):
    """Batches over as many epochs as needed."""
    for epoch in itertools.count():
        if set_epoch is not None:
            set_epoch(epoch)
        yield from loader


def measure(batches, count: int, samples_of, decodes_of, frames_of, warmup: int) -> dict:
    """Time `count` batches, after `warmup` untimed ones."""
    for _ in range(warmup):
        next(batches)
    samples = decodes = frames = 0
    start = time.perf_counter()
    for batch in itertools.islice(batches, count):
        samples += samples_of(batch)
        decodes += decodes_of(batch)
        frames += frames_of(batch)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "samples": samples, "decodes": decodes, "decoded_frames": frames}


def timed_run(make_loader, count: int, warmup: int, samples_of, decodes_of, frames_of) -> dict:
    """`measure` on a fresh loader from `make_loader()` -> (loader, batches), then stop its workers."""
    loader, batches = make_loader()
    try:
        return measure(batches, count, samples_of, decodes_of, frames_of, warmup)
    finally:
        batches.close()
        del loader, batches
        gc.collect()   # the DataLoader's persistent workers exit with it


def _rate(run: dict) -> float:
    return run["samples"] / run["seconds"]


def _total(runs: list[dict]) -> dict:
    return {key: sum(run[key] for run in runs) for key in runs[0]}


def summarise(name: str, raw: dict, pal: PalConfig, workers: int) -> dict:
    delivered = raw["samples"] * 2 * pal.frames_per_video
    return {"loader": name, "workers": workers, "samples_per_s": raw["samples"] / raw["seconds"],
            "decodes_per_sample": raw["decodes"] / raw["samples"],
            "decoded_per_delivered": raw["decoded_frames"] / delivered,
            "decode_fps_per_core": raw["decoded_frames"] / raw["seconds"] / max(workers, 1), **raw}


def bench_dataset(label: str, source: Path, pal: PalConfig, data: DataConfig, batch_size: int,
                  batches: int, repeats: int) -> list[dict]:
    """Both loaders, `repeats` times in turn (so that the machine's drift hits both alike); samples/s and the
    ratio are medians over the repeats, the per-frame counts are totals. Every timed run has a fresh loader,
    timed from its start, whose workers exit after it, so the idle loader's workers never take cores from the
    timed one."""
    index = load_index(source, progress=False, cache=False)   # never write a cache into shared data
    files = len(index.usable())
    index = repeated_index(index, batches + 2, batch_size)   # one epoch per timed run
    usable = index.usable()
    prefetch = data.prefetch_batches(pal, batch_size)       # the same queue depth for both loaders

    def ours():
        loader = PalLoader(index, pal, data, batch_size, seed=0)
        return loader, endless(loader, loader.set_epoch)

    def naive():
        loader = DataLoader(NaivePalSamples(usable, pal, data), batch_size=batch_size, shuffle=True,
                            drop_last=True, num_workers=data.workers, persistent_workers=data.workers > 0,
                            prefetch_factor=prefetch if data.workers else None, collate_fn=list,
                            generator=torch.Generator().manual_seed(0))
        return loader, endless(loader)

    ours_runs, naive_runs = [], []
    for _ in range(repeats):
        ours_runs.append(timed_run(ours, batches, 0, lambda b: b.batch_size, lambda b: b.decodes,
                                   lambda b: b.decoded_frames))
        naive_runs.append(timed_run(naive, batches, 0, len, lambda b: sum(s["decodes"] for s in b),
                                    lambda b: sum(s["decoded_frames"] for s in b)))
    rows = [summarise("uptal (decode once)", _total(ours_runs), pal, data.workers),
            summarise("naive (per sample)", _total(naive_runs), pal, data.workers)]
    for row, runs in zip(rows, (ours_runs, naive_runs)):
        row["samples_per_s"] = statistics.median(_rate(run) for run in runs)
        row["samples_per_s_runs"] = [_rate(run) for run in runs]
    ratios = [_rate(o) / _rate(n) for o, n in zip(ours_runs, naive_runs)]
    rows[0]["vs_naive"], rows[0]["vs_naive_runs"] = statistics.median(ratios), ratios
    rows[1]["vs_naive"] = 1.0
    for row in rows:
        row.update(dataset=label, files=files, batch_size=batch_size)
    return rows


class NullDecoder(PyAVDecoder):
    """Probes like PyAV, but "decodes" a window by writing a constant into the rows it would convert."""

    def decode_window(self, path, start_sec, num_frames, fps, height=None, width=None, *, out=None, rows=None):
        for position, row in enumerate(rows):
            if row >= 0:
                out[row].fill_(position % 251)
        return DecodedWindow(out[:0], torch.zeros(0, dtype=torch.float64), num_frames)


def bench_overhead(source: Path, pal: PalConfig, data: DataConfig, batch_size: int, batches: int,
                   workers: list[int]) -> list[dict]:
    """Batches/s of PalLoader with the NullDecoder (after the first wave of batches), per worker count."""
    videos = load_index(source, progress=False, cache=False)
    rows = []
    for count in workers:
        counted = replace(data, workers=count)
        warmup = first_wave(counted, pal, batch_size)
        index = repeated_index(videos, batches + warmup + 2, batch_size)
        loader = PalLoader(index, pal, counted, batch_size, decoder=NullDecoder(), pin_memory=False)
        batches_seen = endless(loader, loader.set_epoch)
        for _ in range(warmup):
            first = next(batches_seen)
        start = time.perf_counter()
        for _ in range(batches):
            next(batches_seen)
        seconds = time.perf_counter() - start
        rows.append({"workers": count, "batch_size": batch_size, "batch_MB": first.videos.numel() / 1e6,
                     "batches_per_s": batches / seconds, "samples_per_s": batches * batch_size / seconds,
                     "GB_per_s": batches * first.videos.numel() / seconds / 1e9})
        del loader, batches_seen, first
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    lines = []
    for row in rows:
        if not row["loader"].startswith("uptal"):
            continue
        checks = [("decodes/sample", row["decodes_per_sample"], "<=", TARGETS["decodes_per_sample"]),
                  ("decoded/delivered frame", row["decoded_per_delivered"], "<=", TARGETS["decoded_per_delivered"]),
                  ("x naive samples/s", row["vs_naive"], ">=", TARGETS["vs_naive"])]
        for name, value, op, target in checks:
            ok = value <= target if op == "<=" else value >= target
            lines.append(f"{row['dataset']}: {name} {value:.2f} (target {op} {target}): {'met' if ok else 'NOT met'}")
        lines.append(f"{row['dataset']}: x naive per repeat: {', '.join(f'{r:.2f}' for r in row['vs_naive_runs'])}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few batches of small demo videos (CI)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="PAL samples (source videos) per batch")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per loader (after one warm-up)")
    parser.add_argument("--shared-batches", type=int, default=40,
                        help="timed batches per loader on ../shared/data/videos (B = 4; a batch takes about a second)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each loader, in turn (medians)")
    parser.add_argument("--demo-videos", type=int, default=24)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    pal = PalConfig()
    data = DataConfig(workers=args.workers)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            pal = PalConfig(clips=2, frames=4, max_region_clips=2, size=32, blur_kernel=5)
            data = replace(data, height=48, width=64)
            write_demo_videos(tmp, num_videos=6, num_frames=40, height=48, width=64)
            rows += bench_dataset("demo (smoke)", Path(tmp), pal, data, batch_size=3, batches=2, repeats=1)
            overhead = bench_overhead(Path(tmp), pal, data, batch_size=3, batches=2, workers=[0, 1])
        else:
            write_demo_videos(tmp, num_videos=args.demo_videos)
            rows += bench_dataset("demo videos", Path(tmp), pal, data, args.batch, args.batches, args.repeats)
            if SHARED_VIDEOS.is_dir():
                rows += bench_dataset("shared/data/videos", SHARED_VIDEOS.resolve(), pal, data,
                                      min(args.batch, 4), args.shared_batches, args.repeats)
                copies = transcode(load_index(SHARED_VIDEOS.resolve(), progress=False, cache=False),
                                   Path(tmp) / "transcoded", workers=args.workers, progress=False)
                rows += bench_dataset("shared/data/videos, transcoded", copies.out / LIST_NAME, pal, data,
                                      min(args.batch, 4), args.shared_batches, args.repeats)
            tiny = Path(tmp) / "tiny"   # indexed only: the null decoder writes frames of data.height x width
            write_demo_videos(tiny, num_videos=64, num_frames=160, height=32, width=40)
            overhead = bench_overhead(tiny, pal, data, batch_size=32, batches=args.batches, workers=[0, 1, 2])
    print(table(rows, [("dataset", "dataset", "s"), ("loader", "loader", "s"), ("workers", "workers", ""),
                       ("batch_size", "B", ""), ("samples_per_s", "samples/s", ".2f"), ("vs_naive", "x naive", ".2f"),
                       ("decodes_per_sample", "decodes/sample", ".2f"),
                       ("decoded_per_delivered", "decoded/delivered", ".2f"),
                       ("decode_fps_per_core", "frames/s/core", ".0f")]))
    for line in verdicts(rows):
        print(line)
    print("loader alone, null decoder (no decoding):")
    print(table(overhead, [("workers", "workers", ""), ("batch_size", "B", ""), ("batch_MB", "MB/batch", ".0f"),
                           ("batches_per_s", "batches/s", ".2f"), ("samples_per_s", "samples/s", ".0f"),
                           ("GB_per_s", "GB/s", ".2f")]))
    result = {"rows": rows, "overhead_rows": overhead, "targets": TARGETS, "pal": pal.__dict__,
              "data": data.__dict__}
    if args.smoke:
        print(json.dumps({"smoke_rows": len(rows)}))
    elif not args.no_save:
        print(f"wrote {write_result('bench_data', 'cpu', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
