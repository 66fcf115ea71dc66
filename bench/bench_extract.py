"""Feature extraction throughput: decoding in the main thread vs `--decode-workers` threads ahead of the model.

`uptal extract` decodes each video in chunks, crops its clips and runs the backbone on batches of them. With
decode_workers = 0 the model waits while a chunk decodes; with N threads the next videos decode while the model
runs (PyAV releases the GIL while it decodes). Side by side in one run, alternating: `extract_videos` over
../shared/data/videos (or the demo videos) with --backbone (default `tiny`, so that decoding dominates, as on
a GPU node where the model is fast; random weights), TSP sampling (16 frames at 15 fps, clip stride 16, 112
crop of a 128 short side), batch 32, on --device: median wall seconds of --repeats runs per setting, clips/s
and the ratio to the first setting. The features are compared between settings: on the CPU they must be
identical; on CUDA the largest difference is reported (kernels may pick other algorithms from run to run).

    python bench/bench_extract.py                 # workers 0, 1, 2, 4
    python bench/bench_extract.py --smoke         # demo videos, workers 0 and 2, one run (CI)
    python bench/bench_extract.py --backbone i3d --device cuda --workers 0 4 8   # a GPU node (gpu_checks.sh)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_result  # noqa: E402

from uptal.data import write_demo_videos  # noqa: E402
from uptal.features.extract import ClipSampling, Preprocessing, extract_videos, load_encoder  # noqa: E402

SHARED_VIDEOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "videos"


def run(videos: list[Path], out: Path, workers: int, backbone: str, device: str
        ) -> tuple[float, dict[str, np.ndarray]]:
    """Wall seconds of one extraction into a fresh folder, and the features it wrote."""
    encoder = load_encoder(None, None, backbone)
    sampling = ClipSampling(fps=15.0, clip_frames=16, clip_stride=16)
    prep = Preprocessing(size=112, short_side=128)
    begin = time.perf_counter()
    result = extract_videos(videos, out, encoder, sampling, prep, batch_size=32, device=device,
                            decode_workers=workers)
    seconds = time.perf_counter() - begin
    if result.failed:
        raise RuntimeError(f"extraction failed: {result.failed}")
    return seconds, {name: np.load(out / f"{name}.npy") for name in result.done}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="demo videos, workers 0 and 2, one run (CI)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default="tiny", help="tiny (decoding dominates), or i3d etc. (random weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    settings, repeats = ([0, 2], 1) if args.smoke else (args.workers, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        if SHARED_VIDEOS.is_dir() and not args.smoke:
            videos, source = sorted(SHARED_VIDEOS.resolve().iterdir()), "shared/data/videos"
        else:
            videos, source = write_demo_videos(Path(tmp) / "demo", num_videos=4, num_frames=160), "demo videos"
        seconds: dict[int, list[float]] = {w: [] for w in settings}
        reference, clips, largest_difference = None, 0, 0.0
        run(videos[:1], Path(tmp) / "warm-up", 0, args.backbone, args.device)   # untimed: first CUDA/cuDNN calls
        for repeat in range(repeats):   # alternate, so that the machine's drift hits every setting alike
            for workers in settings:
                wall, features = run(videos, Path(tmp) / f"out-{workers}-{repeat}", workers, args.backbone,
                                     args.device)
                seconds[workers].append(wall)
                reference = reference or features
                clips = sum(f.shape[0] for f in reference.values())
                if features.keys() != reference.keys():
                    raise RuntimeError(f"decode_workers={workers} extracted other videos")
                difference = max(float(np.abs(features[k] - reference[k]).max()) for k in reference)
                if difference and args.device == "cpu":
                    raise RuntimeError(f"decode_workers={workers} changed the features (by {difference})")
                largest_difference = max(largest_difference, difference)
    base = statistics.median(seconds[settings[0]])
    rows = [{"decode_workers": w, "median_s": statistics.median(seconds[w]),
             "runs": ", ".join(f"{s:.2f}" for s in seconds[w]),
             "clips_per_s": clips / statistics.median(seconds[w]),
             "speedup": base / statistics.median(seconds[w])} for w in settings]
    same = "identical" if largest_difference == 0 else f"within {largest_difference:.3g}"
    print(f"extract_videos on {source} ({len(videos)} videos, {clips} clips of 16 frames at 15 fps, "
          f"{args.backbone} backbone, {args.device}): features {same} across settings")
    print(table(rows, [("decode_workers", "decode workers", "d"), ("median_s", "median s", ".2f"),
                       ("runs", "runs s", "s"), ("clips_per_s", "clips/s", ".1f"),
                       ("speedup", f"x vs {settings[0]}", ".2f")]))
    if not (args.smoke or args.no_save):
        payload = {"source": source, "videos": len(videos), "clips": clips, "backbone": args.backbone,
                   "largest_feature_difference": largest_difference, "rows": rows}
        print(f"wrote {write_result('bench_extract', args.device, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
