"""A/B of two builds of the C++ synthesis kernel in one process, their calls alternating.

On a shared machine one build's time can move by more than the difference between two builds from one minute
to the next (up to 1.5x on this project's 2-core VM), so two runs of bench_synthesis.py cannot compare them.
This script loads two built `uptal._C` files side by side (their kernels have hidden visibility, so the two
share no symbols), runs both on the same batch and plan, alternating which goes first in each round, and
reports each build's min and median, the ratio of the medians (new / old: below 1 is faster) and whether the
two outputs are byte-identical.

    python bench/ab_synthesis.py OLD_C.so NEW_C.so           # default batch, 1 thread and all threads
    python bench/ab_synthesis.py OLD_C.so NEW_C.so --threads 1 --rounds 21
    python bench/ab_synthesis.py --smoke                     # the installed _C against itself, tiny batch (CI)

Keep a build for later with `cp build/<tag>/_C.cpython-*.so /tmp/old_C.so` before rebuilding. Both files must
come from the same Python (the module's ABI tag). UPTAL_CPU_VARIANT applies to both.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from bench_synthesis import make_batch  # noqa: E402
from common import table  # noqa: E402
from uptal.config import PalConfig  # noqa: E402
from uptal.ops import _native  # noqa: E402
from uptal.ops.synthesize import _pointer_args, check_synthesis_inputs  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "uint8": torch.uint8}


def load_build(path: str) -> ModuleType:
    """The `uptal._C` module built into `path`, loaded beside the installed one (not put in sys.modules)."""
    if not Path(path).is_file():
        raise SystemExit(f"ab_synthesis: no such file: {path}")
    spec = importlib.util.spec_from_file_location("uptal._C", path)
    if spec is None:
        raise SystemExit(f"ab_synthesis: {path} is not a Python extension module (a _C.cpython-*.so file)")
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as error:
        raise SystemExit(f"ab_synthesis: cannot load {path}: {error}") from error
    if not hasattr(module, "synthesize"):
        raise SystemExit(f"ab_synthesis: {path} is not a build of uptal._C (no synthesize)")
    return module


def compare(builds: dict[str, ModuleType], videos, lengths, plan, out_dtype, threads: int, rounds: int) -> dict:
    """Alternating calls of each build on one batch; per build the list of seconds, and whether outputs match."""
    checked = check_synthesis_inputs(videos, lengths, *plan.packed(), plan.size, out_dtype)
    shape = (plan.num_outputs, 3, plan.clips * plan.frames, plan.size, plan.size)
    outputs = {name: torch.empty(shape, dtype=out_dtype) for name in builds}
    calls = {name: (module.synthesize, _pointer_args(*checked, plan.size, outputs[name]))
             for name, module in builds.items()}
    seconds = {name: [] for name in builds}
    names = list(builds)
    for name in names:   # warm-up: first-touch of the output pages, OpenMP threads
        function, args = calls[name]
        function(*args, threads)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            function, args = calls[name]
            start = time.perf_counter()
            function(*args, threads)
            seconds[name].append(time.perf_counter() - start)
    identical = torch.equal(outputs[names[0]].view(torch.uint8), outputs[names[1]].view(torch.uint8))
    return {"seconds": seconds, "identical": identical}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", nargs="?", help="built _C file (default: the installed one)")
    parser.add_argument("new", nargs="?", help="built _C file (default: the installed one)")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--threads", default="1,all", help="comma-separated thread counts; 'all' = torch's")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--smoke", action="store_true", help="tiny batch, 3 rounds")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=171)
    args = parser.parse_args(argv)
    if not _native.CPU.loaded and not (args.old and args.new):
        raise SystemExit(f"ab_synthesis: give two built _C files (the installed uptal._C {_native.CPU.reason})")
    installed = _native.CPU.module.__file__ if _native.CPU.loaded else None
    builds = {"old": load_build(args.old or installed), "new": load_build(args.new or installed)}
    if args.smoke:
        config = PalConfig(clips=2, frames=4, size=32, max_region_clips=2)
        videos, lengths, plan = make_batch(3, 40, 48, 64, config)
        rounds = 3
    else:
        videos, lengths, plan = make_batch(args.videos, args.frames, args.height, args.width, PalConfig())
        rounds = args.rounds
    all_threads = torch.get_num_threads()
    thread_counts = sorted({all_threads if t.strip() == "all" else int(t) for t in args.threads.split(",")})

    rows = []
    for threads in thread_counts:
        result = compare(builds, videos, lengths, plan, DTYPES[args.dtype], threads, rounds)
        medians = {name: statistics.median(s) for name, s in result["seconds"].items()}
        for name, seconds in result["seconds"].items():
            rows.append({"build": name, "threads": threads, "min_s": min(seconds), "median_s": medians[name],
                         "new_over_old": medians["new"] / medians["old"] if name == "new" else None,
                         "identical": result["identical"] if name == "new" else None})
    print(f"old: {args.old or installed}\nnew: {args.new or installed}")
    print(f"{rounds} rounds per thread count, calls alternating; {args.dtype} output; instruction-set build in use: "
          f"{builds['old'].cpu_variant()} / {builds['new'].cpu_variant()} (UPTAL_CPU_VARIANT applies to both)")
    print(table(rows, [("build", "build", ""), ("threads", "threads", ""), ("min_s", "min s", ".4f"),
                       ("median_s", "median s", ".4f"), ("new_over_old", "new / old", ".3f"),
                       ("identical", "same bytes", "")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
