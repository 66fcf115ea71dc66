"""Where the C++ synthesis op's time goes: the installed build on the default batch with its plan as drawn and
with parts of the plan switched off, calls alternating (with a memcpy of the default batch's bytes among them).

Plans, all drawn from the same seed on the same videos:
  default         PalConfig() as in bench_synthesis.py
  no blur         blur_p = 0
  no colour       jitter_p = 0 and grayscale_p = 0
  no paste        paste = "none" (every frame is the background alone)
  resize only     all of the above: crop, resize, flip, normalise and store

Each plan's time against the default plan's says what that part costs; "resize only" is a floor for this batch
with this build: the op can get no faster than that without touching the sampling or the store. The last line
is the time the default plan would need for the bandwidth target of bench_synthesis.py (0.3x memcpy).

    python bench/synthesis_breakdown.py                 # 1 thread, 11 rounds
    python bench/synthesis_breakdown.py --threads 2 --rounds 21
    python bench/synthesis_breakdown.py --smoke         # tiny batch, 3 rounds (CI)
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from bench_synthesis import TARGETS, bytes_moved, make_batch, make_copy  # noqa: E402
from common import alternating_seconds, table, write_result  # noqa: E402
from uptal.config import PalConfig  # noqa: E402
from uptal.ops import _native  # noqa: E402
from uptal.ops.synthesize import _pointer_args, check_synthesis_inputs  # noqa: E402

PARTS_OFF = {
    "default": {},
    "no blur": {"blur_p": 0.0},
    "no colour": {"jitter_p": 0.0, "grayscale_p": 0.0},
    "no paste": {"paste": "none"},
    "resize only": {"blur_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0, "paste": "none"},
}


def op_call(config: PalConfig, shape: tuple[int, int, int, int], threads: int):
    """The C++ op on the batch that `config` plans (videos from the same seed every time), as a call with its
    inputs checked and its output allocated once; and the bytes it moves."""
    videos, lengths, plan = make_batch(*shape, config)
    checked = check_synthesis_inputs(videos, lengths, *plan.packed(), plan.size, torch.float32)
    out = torch.empty((plan.num_outputs, 3, plan.clips * plan.frames, plan.size, plan.size))
    args = _pointer_args(*checked, plan.size, out)   # raw pointers: the call must keep the tensors alive

    def call(keep_alive=(checked, out)):
        return _native.CPU.module.synthesize(*args, threads)
    return call, bytes_moved(plan, torch.float32)


def run(args) -> dict:
    base = PalConfig(clips=2, frames=4, size=32, max_region_clips=2) if args.smoke else PalConfig()
    shape = (3, 40, 48, 64) if args.smoke else (args.videos, args.frames, args.height, args.width)
    calls, num_bytes = {}, {}
    for name, changes in PARTS_OFF.items():
        calls[name], num_bytes[name] = op_call(dataclasses.replace(base, **changes), shape, args.threads)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)   # the copy with the op's thread count
    calls["memcpy"] = make_copy(num_bytes["default"], "cpu")
    try:   # the warm-up round touches the outputs first and starts the OpenMP threads
        seconds = alternating_seconds(calls, args.rounds)
    finally:
        torch.set_num_threads(saved_threads)
    default_s = statistics.median(seconds["default"])
    rows = [{"plan": name, "min_ms": min(times) * 1e3, "median_ms": statistics.median(times) * 1e3,
             "vs_default": statistics.median(times) / default_s, "MB": num_bytes.get(name, num_bytes["default"]) / 1e6}
            for name, times in seconds.items()]
    copy_s = statistics.median(seconds["memcpy"])
    return {"rows": rows, "threads": args.threads, "rounds": args.rounds, "smoke": args.smoke,
            "target_vs_copy": TARGETS["cpp_vs_copy"], "default_budget_ms": copy_s / TARGETS["cpp_vs_copy"] * 1e3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--smoke", action="store_true", help="tiny batch, 3 rounds (CI)")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=171)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/<device>/")
    args = parser.parse_args(argv)
    if not _native.CPU.loaded:
        raise SystemExit(f"synthesis_breakdown: uptal._C is not loaded ({_native.CPU.reason})")
    if args.smoke:
        args.rounds = 3
    result = run(args)
    print(f"{args.threads} thread(s), {args.rounds} rounds, calls alternating; "
          f"instruction-set build: {_native.CPU.module.cpu_variant()}")
    print(table(result["rows"], [("plan", "plan", "s"), ("min_ms", "min ms", ".1f"),
                                 ("median_ms", "median ms", ".1f"), ("vs_default", "x default", ".3f"),
                                 ("MB", "MB moved", ".1f")]))
    print(f"the default plan at {result['target_vs_copy']}x memcpy bandwidth: at most "
          f"{result['default_budget_ms']:.1f} ms")
    if not args.no_save and not args.smoke:
        print(f"wrote {write_result(f'synthesis_breakdown_{args.threads}thread', 'cpu', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
