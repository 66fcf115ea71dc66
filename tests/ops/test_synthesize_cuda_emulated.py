"""The CUDA synthesis kernels (csrc/synth_cuda.cu) run on the CPU through csrc/cuda_emulation.h.

uptal._C_cuda_emulated is synth_cuda.cu compiled as C++ against an emulation of the CUDA runtime: each block's
threads are fibers that run until they reach a barrier, with shared memory, warp shuffles and the launch limits
of a GPU. It is built with UPTAL_CUDA_EMULATION=ON (as .ci/run builds it), so that the kernels' indexing,
barriers, shared-memory layouts and halos are tested on every CI run, not only on the sessions that have a GPU.
The emulated device reports the opt-in shared memory per block that a test gives it, which picks the path a GPU
with that much takes: the one-block-per-frame kernel with padded rows (an H100's 227 KiB), without (an A100's
163 KiB), or the tile kernels (less than a frame needs).
"""
from __future__ import annotations

import dataclasses
import importlib
import zlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_synthesize import CONFIGS, DTYPES, make_batch
from test_synthesize_fuzz import EXAMPLES, batches
from uptal.ops.synthesize import _pointer_args, check_synthesis_inputs
from uptal.ops.synthesize_ref import synthesize_ref
from uptal.pal import gaussian_taps

try:
    EMULATED = importlib.import_module("uptal._C_cuda_emulated")
except ImportError:
    EMULATED = None
pytestmark = [
    pytest.mark.skipif(EMULATED is None, reason="uptal._C_cuda_emulated is built only with UPTAL_CUDA_EMULATION=ON"),
    pytest.mark.filterwarnings("ignore:pal.paste='different' needs at least 3 videos"),
]

H100_SHARED = 227 * 1024   # cudaDevAttrMaxSharedMemoryPerBlockOptin of an H100 / H200
A100_SHARED = 163 * 1024
TILES_SHARED = 4096        # smaller than any frame: the tile kernels


def emulated_synthesize(videos, lengths, plan, out_dtype, optin_shared_bytes):
    checked = check_synthesis_inputs(videos, lengths, *plan.packed(), plan.size, out_dtype)
    out = torch.empty((plan.num_outputs, 3, plan.clips * plan.frames, plan.size, plan.size), dtype=out_dtype)
    EMULATED.synthesize(*_pointer_args(*checked, plan.size, out), optin_shared_bytes)
    return out


def assert_emulated_matches_reference(videos, lengths, plan, optin_shared_bytes, out_dtypes=DTYPES):
    for out_dtype in out_dtypes:
        expected = synthesize_ref(videos, *plan.packed(), plan.size, out_dtype)
        actual = emulated_synthesize(videos, lengths, plan, out_dtype, optin_shared_bytes)
        mismatch = (actual != expected).nonzero()
        assert mismatch.numel() == 0, f"{out_dtype}: {len(mismatch)} elements differ, first at {mismatch[0].tolist()}"


@pytest.mark.parametrize("optin_shared_bytes", [H100_SHARED, A100_SHARED, TILES_SHARED],
                         ids=["frame kernel, padded", "frame kernel, unpadded", "tile kernels"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_emulated_cuda_kernels_match_reference(name, optin_shared_bytes):
    seed = zlib.crc32(name.encode()) % 1000
    videos, lengths, plan = make_batch(config=CONFIGS[name], seed=seed)
    assert_emulated_matches_reference(videos, lengths, plan, optin_shared_bytes)


@pytest.mark.parametrize("optin_shared_bytes", [H100_SHARED, TILES_SHARED], ids=["frame kernel", "tile kernels"])
def test_emulated_cuda_blur_over_non_zero_taps_only(optin_shared_bytes):
    """The kernels blur over the radius of a frame's non-zero taps (nonzero_radius in synth_math.h) and skip a
    blur whose only non-zero tap is a centre 1: sigmas from the centre tap alone up to every tap, and hand-made
    taps (zeros inside the kept range, a centre tap of 1 beside non-zero ones, all zero) still give the
    reference's values."""
    config = dataclasses.replace(CONFIGS["all augmentations"], size=40, blur_kernel=11)
    videos, lengths, plan = make_batch(num_videos=6, frames=20, height=50, width=61, config=config, seed=5)
    plan.blur_on[:] = True
    hand_made = [
        [0, 0, 0, 0.25, 0, 0.5, 0, 0.25, 0, 0, 0],    # a zero inside the kept range
        [0, 0, 0, 0, 0.125, 1, 0.125, 0, 0, 0, 0],    # a centre 1 with neighbours: blurred
        [0] * 11,                                     # all zero: a black frame
        [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],            # the identity
    ]
    sigmas = [0.1, 0.3, 0.5, 0.8, 1.2, 2.0, 4.0]
    rows = [gaussian_taps(sigma, 11) for sigma in sigmas] + [torch.tensor(t, dtype=torch.float32) for t in hand_made]
    assert plan.num_outputs >= len(rows)
    for m in range(plan.num_outputs):
        plan.blur_weights[m] = rows[m % len(rows)]
    assert_emulated_matches_reference(videos, lengths, plan, optin_shared_bytes, out_dtypes=[torch.float32])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.sampled_from(DTYPES), st.sampled_from([H100_SHARED, A100_SHARED, TILES_SHARED]))
def test_emulated_cuda_kernels_match_reference_on_random_plans(batch, out_dtype, optin_shared_bytes):
    """The random plans and shapes of test_synthesize_fuzz.py (sources of 1..12 pixels a side, outputs of 1..9,
    every plan setting; UPTAL_FUZZ_EXAMPLES of them), each on one of the three kernel paths."""
    videos, lengths, plan = batch
    assert_emulated_matches_reference(videos, lengths, plan, optin_shared_bytes, out_dtypes=[out_dtype])
