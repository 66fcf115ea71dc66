"""Property-based fuzzing of uptal::synthesize: random shapes, configs and plans.

Valid plans: the native implementation equals the reference bit for bit (uint8, float32 and bfloat16 outputs).
Invalid plans (one field pushed out of range): a ValueError, never a crash or an out-of-bounds read.
UPTAL_FUZZ_EXAMPLES sets the number of examples per property (default 1000).
"""
from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uptal.config import PalConfig
from uptal.ops import implementation_for, synthesize_packed, synthesize_ref
from uptal.ops.synthesize_layout import Col
from uptal.pal import build_plan

EXAMPLES = int(os.environ.get("UPTAL_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.filterwarnings("ignore:pal.paste='different' needs at least 3 videos")


@st.composite
def batches(draw):
    """A random batch of videos and a valid plan for it (tiny sizes: the reference is slow)."""
    clips = draw(st.integers(1, 3))
    frames = draw(st.integers(1, 3))
    size = draw(st.integers(1, 9))
    blur_kernel = draw(st.sampled_from([k for k in (1, 3, 5, 7) if k // 2 < size]))
    paste = draw(st.sampled_from(["different", "same", "none"]))
    max_region = draw(st.integers(1, clips))
    low, high = sorted(draw(st.tuples(st.floats(0, 1), st.floats(0, 1))))
    config = PalConfig(clips=clips, frames=frames, size=size, blur_kernel=blur_kernel, paste=paste,
                       max_region_clips=max_region, dense=draw(st.booleans()), scale=draw(st.booleans()),
                       beta=(low, high), jitter_p=draw(st.sampled_from([0.0, 0.5, 1.0])),
                       grayscale_p=draw(st.sampled_from([0.0, 0.5])), blur_p=draw(st.sampled_from([0.0, 0.5, 1.0])),
                       flip_p=0.5)
    num_videos = draw(st.integers(1, 4))
    max_frames = draw(st.integers(1, 30))
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    lengths = draw(st.lists(st.integers(1, max_frames), min_size=num_videos, max_size=num_videos))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    videos = torch.randint(0, 256, (num_videos, max_frames, height, width, 3), dtype=torch.uint8, generator=g)
    plan = build_plan(g, lengths, height, width, config)
    return videos, lengths, plan


native = pytest.mark.skipif(implementation_for("cpu")[0] != "cpp", reason="uptal._C is not loaded")


@native
@FUZZ
@given(batches(), st.sampled_from([torch.uint8, torch.float32, torch.bfloat16]))
def test_valid_plans_match_the_reference(batch, out_dtype):
    videos, lengths, plan = batch
    packed = plan.packed()
    expected = synthesize_ref(videos, *packed, plan.size, out_dtype)
    actual = synthesize_packed(videos, lengths, *packed, plan.size, out_dtype)
    assert torch.equal(actual, expected)


# One way to break each part of a packed plan; applied to row `m` (or the first row).
CORRUPTIONS = {
    "background video": lambda s, f, p, n, m, lengths: s.__setitem__((m, 0), len(lengths) + 3),
    "action video": lambda s, f, p, n, m, lengths: s.__setitem__((m, 1), -2),
    "background frame": lambda s, f, p, n, m, lengths: f.__setitem__((m, 0, 0), lengths[int(s[m, 0])]),
    "action frame": lambda s, f, p, n, m, lengths: f.__setitem__((m, 1, 0), lengths[int(s[m, 1])] + 5),
    "beta": lambda s, f, p, n, m, lengths: p.__setitem__((m, Col.BETA), -0.1),
    "crop": lambda s, f, p, n, m, lengths: p.__setitem__((m, Col.SCALE_X), 1e3),
    "flag": lambda s, f, p, n, m, lengths: p.__setitem__((m, Col.BLUR_ON), 2.0),
    "order": lambda s, f, p, n, m, lengths: p.__setitem__((m, Col.ORDER0 + 1), 7.0),
    "infinite": lambda s, f, p, n, m, lengths: p.__setitem__((m, Col.BRIGHTNESS), float("inf")),
    "norm": lambda s, f, p, n, m, lengths: n.__setitem__((0, 1), 0.0),
}


@FUZZ
@given(batches(), st.sampled_from(sorted(CORRUPTIONS)), st.integers(0, 10**6))
def test_invalid_plans_raise_value_error(batch, corruption, row):
    videos, lengths, plan = batch
    sources, frames, params, norm = (t.clone() for t in plan.packed())
    m = row % plan.num_outputs
    CORRUPTIONS[corruption](sources, frames, params, norm, m, lengths)
    with pytest.raises(ValueError):
        synthesize_packed(videos, lengths, sources, frames, params, norm, plan.size)
