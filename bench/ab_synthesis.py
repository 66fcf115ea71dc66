"""A/B of two builds of the synthesis kernels in one process, their calls alternating.

On a shared machine one build's time can move by more than the difference between two builds from one minute
to the next (up to 1.5x on this project's 2-core VM), and two GPU nodes of one kind differ too, so two runs of
bench_synthesis.py cannot compare them. This script loads two built `uptal._C` files (or, with --device cuda,
two `uptal._C_cuda` files) side by side, each under a module name of its own (their kernels have hidden
visibility, so the two share no symbols), runs both on the same batch and plan, alternating which goes first
in each round, and reports each build's min and median, the ratio of the medians (new / old: below 1 is
faster) and whether the two outputs are byte-identical. It prints each file's SHA-256 and says so when the two
are the same bytes (then the ratio is noise). CPU calls are timed on the host; CUDA calls with
events on the current stream.

    python bench/ab_synthesis.py OLD_C.so NEW_C.so           # default batch, 1 thread and all threads
    python bench/ab_synthesis.py OLD_C.so NEW_C.so --threads 1 --rounds 21
    python bench/ab_synthesis.py OLD_C_cuda.so NEW_C_cuda.so --device cuda --rounds 21
    python bench/ab_synthesis.py --smoke                     # the installed _C against itself, tiny batch (CI)

Keep a build for later with `cp build/<tag>/_C.cpython-*.so /tmp/old_C.so` before rebuilding. Both files must
come from the same Python (the module's ABI tag). UPTAL_CPU_VARIANT applies to both.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
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
MODULES = {"cpu": "uptal._C", "cuda": "uptal._C_cuda"}


def load_build(path: str, name: str, tag: str) -> ModuleType:
    """The module `name` (uptal._C or uptal._C_cuda) built into `path`, loaded beside the installed one as
    `uptal_ab_<tag>.<module>` (not put in sys.modules). The name must differ from build to build: Python hands
    back the module it already holds under a name (the installed uptal._C) whatever the file, which made every
    comparison before this fix one build against itself."""
    if not Path(path).is_file():
        raise SystemExit(f"ab_synthesis: no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"uptal_ab_{tag}.{name.split('.')[-1]}", path)
    if spec is None:
        file_name = name.split(".")[-1]
        raise SystemExit(f"ab_synthesis: {path} is not a Python extension module (a {file_name}.cpython-*.so file)")
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as error:
        raise SystemExit(f"ab_synthesis: cannot load {path}: {error}") from error
    if not hasattr(module, "synthesize"):
        raise SystemExit(f"ab_synthesis: {path} is not a build of {name} (no synthesize)")
    return module


def compare(builds: dict[str, ModuleType], videos, lengths, plan, out_dtype, threads: int, rounds: int) -> dict:
    """Alternating calls of each build on one batch (threads: OpenMP threads on the CPU, ignored on the GPU);
    per build the list of seconds, and whether the outputs match."""
    checked = check_synthesis_inputs(videos, lengths, *plan.packed(), plan.size, out_dtype)
    shape = (plan.num_outputs, 3, plan.clips * plan.frames, plan.size, plan.size)
    outputs = {name: torch.empty(shape, dtype=out_dtype, device=videos.device) for name in builds}
    if videos.is_cuda:
        workspace = torch.empty(shape[0] * shape[2], dtype=torch.int64, device=videos.device)
        extra = (workspace.data_ptr(), torch.cuda.current_stream().cuda_stream)
    else:
        extra = (threads,)
    calls = {name: functools.partial(module.synthesize, *_pointer_args(*checked, plan.size, outputs[name]), *extra)
             for name, module in builds.items()}
    seconds = {name: [] for name in builds}
    names = list(builds)
    for name in names:   # warm-up: first-touch of the output pages, OpenMP threads, module loading on the GPU
        calls[name]()
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            seconds[name].append(_seconds(calls[name], videos.is_cuda))
    identical = torch.equal(outputs[names[0]].view(torch.uint8), outputs[names[1]].view(torch.uint8))
    return {"seconds": seconds, "identical": identical}


def file_digest(path: str) -> str:
    """The first 12 hex digits of the file's SHA-256, printed with each build so that a run says what it
    compared."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def _seconds(call, on_gpu: bool) -> float:
    if not on_gpu:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", nargs="?", help="built _C (or _C_cuda) file (default: the installed one)")
    parser.add_argument("new", nargs="?", help="built _C (or _C_cuda) file (default: the installed one)")
    parser.add_argument("--device", choices=list(MODULES), default="cpu", help="CPU builds (_C) or CUDA (_C_cuda)")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--threads", default="1,all", help="comma-separated thread counts; 'all' = torch's")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--smoke", action="store_true", help="tiny batch, 3 rounds")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=171)
    args = parser.parse_args(argv)
    native = _native.CUDA if args.device == "cuda" else _native.CPU
    module_name = MODULES[args.device]
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("ab_synthesis: --device cuda needs a CUDA device (torch sees none)")
    if not native.loaded and not (args.old and args.new):
        raise SystemExit(f"ab_synthesis: give two built {module_name.split('.')[-1]} files (the installed "
                         f"{module_name} {native.reason})")
    installed = native.module.__file__ if native.loaded else None
    builds = {tag: load_build(path or installed, module_name, tag) for tag, path in (("old", args.old),
                                                                                   ("new", args.new))}
    if args.smoke:
        config = PalConfig(clips=2, frames=4, size=32, max_region_clips=2)
        videos, lengths, plan = make_batch(3, 40, 48, 64, config)
        rounds = 3
    else:
        videos, lengths, plan = make_batch(args.videos, args.frames, args.height, args.width, PalConfig())
        rounds = args.rounds
    if args.device == "cuda":
        videos = videos.cuda()
        thread_counts = ["gpu"]
    else:
        all_threads = torch.get_num_threads()
        thread_counts = sorted({all_threads if t.strip() == "all" else int(t) for t in args.threads.split(",")})

    rows = []
    for threads in thread_counts:
        result = compare(builds, videos, lengths, plan, DTYPES[args.dtype], threads, rounds)
        medians = {name: statistics.median(s) for name, s in result["seconds"].items()}
        for name, seconds in result["seconds"].items():
            rows.append({"build": name, "threads": threads, "min_ms": 1e3 * min(seconds),
                         "median_ms": 1e3 * medians[name],
                         "new_over_old": medians["new"] / medians["old"] if name == "new" else None,
                         "identical": result["identical"] if name == "new" else None})
    paths = {"old": args.old or installed, "new": args.new or installed}
    digests = {tag: file_digest(path) for tag, path in paths.items()}
    for tag, path in paths.items():
        print(f"{tag}: {path} (sha256 {digests[tag]})")
    if digests["old"] == digests["new"]:
        print("note: old and new are the same bytes, so new / old is this machine's noise, not a change (a build "
              "that did not replace the file it was copied from reads like this)")
    if args.device == "cuda":
        print(f"{rounds} rounds, calls alternating; {args.dtype} output; {torch.cuda.get_device_name()}")
    else:
        print(f"{rounds} rounds per thread count, calls alternating; {args.dtype} output; instruction-set build in "
              f"use: {builds['old'].cpu_variant()} / {builds['new'].cpu_variant()} (UPTAL_CPU_VARIANT applies to "
              "both)")
    print(table(rows, [("build", "build", ""), ("threads", "threads", ""), ("min_ms", "min ms", ".3f"),
                       ("median_ms", "median ms", ".3f"), ("new_over_old", "new / old", ".3f"),
                       ("identical", "same bytes", "")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
