"""bench/common.py's alternating timer: the calls it compares must interleave, or their ratio measures the drift
of a shared machine between two blocks of calls."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import common  # noqa: E402


def test_alternating_medians_interleaves_calls_and_times_each():
    calls = []
    fns = {"copy": lambda: calls.append("copy"), "op": lambda: calls.append("op")}
    medians = common.alternating_medians(fns, repeats=3, warmup=1)
    assert calls == ["copy", "op"] * 4   # one warm-up round, then three timed rounds
    assert set(medians) == {"copy", "op"}
    assert all(seconds >= 0.0 for seconds in medians.values())
