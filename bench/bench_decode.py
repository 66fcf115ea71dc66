"""Decoding benchmarks: frame conversion (packed vs planar RGB), dropping unshown frames, and transcoded copies
vs the originals.

Every decoded frame that the loader keeps is resized to the working size and converted to RGB inside FFmpeg
(swscale). For the same scaling, swscale's packed rgb24 output is slower than its planar RGB (gbrp) output
plus an interleave in numpy, which is what `uptal.data.decode` does for a resized frame. Side by side, per
file (the demo videos and ../shared/data/videos), on the same decoded frames in one process, the two paths
alternating: median microseconds per frame, the ratio, and how far apart their pixels are (max and mean
absolute difference). Also the whole `decode_window` of 120 frames at the working size, for scale.

Dropping unshown frames (`PyAVDecoder(drop_unshown=...)`): per file, decoding with and without it, alternating
rounds, median seconds: the whole video at 15 fps in windows of 64 frames (feature extraction, TSP's rate), and
PAL windows (189 frames at 25 fps, 5 starts), on a demo video, a 60 fps one (phone-like, 640x360) and
../shared/data/videos; then `PalLoader` (2 workers, B = 4) over ../shared/data/videos with each, in turn
(--repeats times each), samples/s after the first wave.

Transcoded copies (`uptal data transcode`, default settings) of ../shared/data/videos against the originals:
per file, the size and the median time of `decode_window` for a PAL window (189 frames at 25 fps, 128 x 171)
at 5 starts spread over the video; then `PalLoader` (2 workers, B = 4, PAL defaults) over the originals and
over the copies, in turn (--repeats times each), samples/s after the first wave of batches.

    python bench/bench_decode.py                    # 128 x 171, BILINEAR (the data config's defaults)
    python bench/bench_decode.py --smoke            # one demo video, a few frames (CI)
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import timed_run  # noqa: E402
from common import first_wave, median_seconds, repeated_index, table, write_result  # noqa: E402

from uptal.config import DataConfig, PalConfig  # noqa: E402
from uptal.data import write_demo_videos  # noqa: E402
from uptal.data.decode import PyAVDecoder, _interleave_planar_rgb  # noqa: E402
from uptal.data.index import load_index  # noqa: E402
from uptal.data.loader import PalLoader  # noqa: E402
from uptal.data.transcode import transcode  # noqa: E402

SHARED_VIDEOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "videos"


def decoded_frames(path: Path, count: int) -> list:
    import av

    with av.open(str(path)) as container:
        return [frame for _, frame in zip(range(count), container.decode(video=0))]


def per_frame_seconds(convert, frames: list, rounds: int) -> list[float]:
    """Seconds per frame of `convert` over all frames, once per round."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for frame in frames:
            convert(frame)
        times.append((time.perf_counter() - start) / len(frames))
    return times


def bench_file(path: Path, height: int, width: int, interpolation: str, frames: int, rounds: int) -> dict:
    from av.video.reformatter import VideoReformatter

    decoded = decoded_frames(path, frames)
    packed_scaler, planar_scaler = VideoReformatter(), VideoReformatter()
    into = np.empty((height, width, 3), dtype=np.uint8)

    def packed(frame):
        return packed_scaler.reformat(frame, width=width, height=height, format="rgb24",
                                      interpolation=interpolation, threads=1).to_ndarray()

    def planar(frame, out=None):
        rgb = planar_scaler.reformat(frame, width=width, height=height, format="gbrp",
                                     interpolation=interpolation, threads=1)
        return _interleave_planar_rgb(rgb, out)

    packed_times, planar_times = [], []
    for _ in range(rounds):   # alternate, so that the machine's drift hits both alike
        packed_times += per_frame_seconds(packed, decoded, 1)
        planar_times += per_frame_seconds(lambda f: planar(f, into), decoded, 1)
    difference = np.stack([np.abs(packed(f).astype(np.int16) - planar(f).astype(np.int16)) for f in decoded])
    window = median_seconds(lambda: PyAVDecoder().decode_window(path, 0.0, 120, 25.0, height, width), repeats=3)
    first = decoded[0]
    return {"file": path.name, "source": f"{first.width}x{first.height} {first.format.name}", "frames": len(decoded),
            "packed_us": statistics.median(packed_times) * 1e6, "planar_us": statistics.median(planar_times) * 1e6,
            "speedup": statistics.median(packed_times) / statistics.median(planar_times),
            "max_abs_diff": int(difference.max()), "mean_abs_diff": float(difference.mean()),
            "window_ms": window * 1e3}


def window_seconds(path: Path, duration: float, data: DataConfig, frames: int,
                   decoder: PyAVDecoder | None = None) -> float:
    """Median seconds of one `decode_window` of `frames` frames, over 5 starts spread over the video."""
    decoder = decoder or PyAVDecoder()
    span = frames / data.fps
    times = []
    for k in range(5):
        start = max(0.0, duration - span) * k / 4
        begin = time.perf_counter()
        decoder.decode_window(path, start, frames, data.fps, data.height, data.width)
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def extraction_seconds(path: Path, duration: float, data: DataConfig, decoder: PyAVDecoder, fps: float = 15.0,
                       chunk: int = 64) -> float:
    """Seconds to decode the whole video at `fps` in windows of `chunk` frames, as feature extraction does."""
    total, done = math.ceil(duration * fps), 0
    begin = time.perf_counter()
    while done < total:
        done += decoder.decode_window(path, done / fps, chunk, fps, data.height, data.width).length or total
    return time.perf_counter() - begin


def bench_dropping(files: list[Path], data: DataConfig, rounds: int, repeats: int, loader_source: Path | None
                   ) -> tuple[list[dict], dict | None]:
    """Per file: extraction and PAL-window seconds without / with dropping unshown frames; the loader's too."""
    keep_all, drop = PyAVDecoder(drop_unshown=False), PyAVDecoder(drop_unshown=True)
    window = data.frames_to_decode(PalConfig())
    rows = []
    for path in files:
        info = keep_all.probe(path)
        times = {key: [] for key in ("extract", "extract_drop", "window", "window_drop")}
        for _ in range(rounds):   # alternate, so that the machine's drift hits both alike
            times["extract"].append(extraction_seconds(path, info.duration, data, keep_all))
            times["extract_drop"].append(extraction_seconds(path, info.duration, data, drop))
            times["window"].append(window_seconds(path, info.duration, data, window, keep_all))
            times["window_drop"].append(window_seconds(path, info.duration, data, window, drop))
        median = {key: statistics.median(values) for key, values in times.items()}
        rows.append({"file": path.name, "source": f"{info.codec} {info.fps:.3g} fps",
                     "extract_ms": median["extract"] * 1e3, "extract_drop_ms": median["extract_drop"] * 1e3,
                     "extract_speedup": median["extract"] / median["extract_drop"],
                     "window_ms": median["window"] * 1e3, "window_drop_ms": median["window_drop"] * 1e3,
                     "window_speedup": median["window"] / median["window_drop"]})
    if loader_source is None:
        return rows, None
    loader = {"keep_all": [], "drop": []}
    for _ in range(repeats):
        loader["keep_all"].append(loader_samples_per_s(loader_source, data, 4, 12, keep_all))
        loader["drop"].append(loader_samples_per_s(loader_source, data, 4, 12, drop))
    loader["speedup"] = statistics.median(loader["drop"]) / statistics.median(loader["keep_all"])
    return rows, loader


def loader_samples_per_s(source: Path, data: DataConfig, batch_size: int, batches: int,
                         decoder: PyAVDecoder | None = None) -> float:
    """PalLoader samples/s over `source`, after its first wave of batches (a fresh loader)."""
    warmup = first_wave(data, PalConfig(), batch_size)
    index = repeated_index(load_index(source, progress=False, cache=False), batches + warmup + 2, batch_size)

    def make():
        loader = PalLoader(index, PalConfig(), data, batch_size, seed=0, decoder=decoder)
        return loader, iter(loader)

    run = timed_run(make, batches, warmup, lambda b: b.batch_size, lambda b: b.decodes,
                    lambda b: b.decoded_frames)
    return run["samples"] / run["seconds"]


def bench_transcoded(folder: Path, copies: Path, data: DataConfig, repeats: int) -> tuple[list[dict], dict]:
    """Windows per file and the loader's samples/s: originals vs their transcoded copies."""
    index = load_index(folder, progress=False, cache=False)   # never write a cache into shared data
    result = transcode(index, copies, progress=False)
    window = data.frames_to_decode(PalConfig())   # 189 frames with PAL's defaults
    durations = {e.path: e.info.duration for e in index.usable()}
    rows = []
    for video in result.videos:
        original, copy, duration = Path(video.source), copies / video.out, durations[video.source]
        before, after = window_seconds(original, duration, data, window), window_seconds(copy, duration, data, window)
        rows.append({"file": original.name, "MB": original.stat().st_size / 1e6, "copy_MB": copy.stat().st_size / 1e6,
                     "window_ms": before * 1e3, "copy_window_ms": after * 1e3, "speedup": before / after})
    loader = {"originals": [], "copies": []}
    for _ in range(repeats):
        loader["originals"].append(loader_samples_per_s(folder, data, 4, 12))
        loader["copies"].append(loader_samples_per_s(copies, data, 4, 12))
    loader["speedup"] = statistics.median(loader["copies"]) / statistics.median(loader["originals"])
    return rows, loader


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one demo video, a few frames (CI)")
    parser.add_argument("--frames", type=int, default=60, help="decoded frames per file")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds per path")
    parser.add_argument("--repeats", type=int, default=2, help="loader runs over originals and copies, in turn")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    data = DataConfig()
    frames, rounds = (8, 1) if args.smoke else (args.frames, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_videos(tmp, num_videos=1 if args.smoke else 2, num_frames=48 if args.smoke else 160)
        files = sorted(Path(tmp).glob("*.mp4"))
        if SHARED_VIDEOS.is_dir() and not args.smoke:
            files += sorted(SHARED_VIDEOS.resolve().iterdir())
        rows = [bench_file(f, data.height, data.width, "BILINEAR", frames, rounds) for f in files]
    print(f"frame conversion to {data.height}x{data.width} RGB, BILINEAR, 1 thread (median us per frame):")
    print(table(rows, [("file", "file", "s"), ("source", "source", "s"), ("packed_us", "rgb24 us", ".0f"),
                       ("planar_us", "gbrp+interleave us", ".0f"), ("speedup", "x faster", ".2f"),
                       ("max_abs_diff", "max|diff|", "d"), ("mean_abs_diff", "mean|diff|", ".3f"),
                       ("window_ms", "decode_window(120) ms", ".0f")]))
    print(f"median speedup over files: {statistics.median(r['speedup'] for r in rows):.2f}x")
    result = {"rows": rows, "height": data.height, "width": data.width}
    shared = SHARED_VIDEOS.resolve() if SHARED_VIDEOS.is_dir() and not args.smoke else None
    with tempfile.TemporaryDirectory() as tmp:
        files = write_demo_videos(tmp, num_videos=1, num_frames=48 if args.smoke else 160)
        if not args.smoke:   # phone-like: 60 fps, 640x360, H.264 with B-frames
            (phone,) = write_demo_videos(Path(tmp) / "60fps", num_videos=1, num_frames=480, fps=60, height=360,
                                         width=640)
            files.append(phone.rename(Path(tmp) / "demo_60fps.mp4"))
        files += sorted(shared.iterdir()) if shared else []
        dropping, dropping_loader = bench_dropping(files, data, rounds, args.repeats, shared)
    print("dropping unshown frames (PyAVDecoder drop_unshown), median ms, 1 thread: the whole video at 15 fps "
          f"in windows of 64 frames; PAL windows of {data.frames_to_decode(PalConfig())} frames at 25 fps:")
    print(table(dropping, [("file", "file", "s"), ("source", "source", "s"),
                           ("extract_ms", "15 fps ms", ".0f"), ("extract_drop_ms", "dropping ms", ".0f"),
                           ("extract_speedup", "x faster", ".2f"), ("window_ms", "window ms", ".0f"),
                           ("window_drop_ms", "dropping ms", ".0f"), ("window_speedup", "x faster", ".2f")]))
    result["dropping"] = dropping
    if dropping_loader is not None:
        runs = {key: ", ".join(f"{v:.2f}" for v in dropping_loader[key]) for key in ("keep_all", "drop")}
        print(f"PalLoader, 2 workers, B = 4, samples/s: decoding everything {runs['keep_all']}; dropping "
              f"{runs['drop']}: {dropping_loader['speedup']:.2f}x")
        result["dropping_loader"] = dropping_loader
    if SHARED_VIDEOS.is_dir() and not args.smoke:
        with tempfile.TemporaryDirectory() as copies:
            transcoded, loader = bench_transcoded(SHARED_VIDEOS.resolve(), Path(copies), data, args.repeats)
        print(f"transcoded copies (uptal data transcode, defaults) vs originals: decode_window of "
              f"{data.frames_to_decode(PalConfig())} frames at {data.height}x{data.width}, median of 5 starts:")
        print(table(transcoded, [("file", "file", "s"), ("MB", "MB", ".2f"), ("copy_MB", "copy MB", ".2f"),
                                 ("window_ms", "window ms", ".0f"), ("copy_window_ms", "copy window ms", ".0f"),
                                 ("speedup", "x faster", ".1f")]))
        runs = {key: ", ".join(f"{v:.2f}" for v in loader[key]) for key in ("originals", "copies")}
        print(f"PalLoader, 2 workers, B = 4, samples/s: originals {runs['originals']}; copies {runs['copies']}: "
              f"{loader['speedup']:.2f}x")
        result.update(transcoded=transcoded, loader=loader)
    if not (args.smoke or args.no_save):
        print(f"wrote {write_result('bench_decode', 'cpu', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
