"""uptal::synthesize: the native implementations against the reference, the reference against hand-made
expectations, validation of bad input, and torch.library integration."""
from __future__ import annotations

import ctypes
import dataclasses
import itertools
import math
import mmap
import sys
import zlib

import pytest
import torch

from uptal.config import PalConfig
from uptal.ops import _native, implementation_for, synthesize, synthesize_packed, synthesize_ref
from uptal.ops.synthesize_layout import COLUMN_NAMES, NUM_FIXED_COLUMNS, Col
from uptal.ops.synthesize_ref import _hue as synthesize_ref_hue
from uptal.pal import build_plan, gaussian_taps
from uptal.pal.plan import BLUR_DROPPED_WEIGHT

DTYPES = [torch.uint8, torch.float32, torch.bfloat16]
SMALL = PalConfig(clips=3, frames=4, size=24, max_region_clips=2, blur_kernel=5)
NO_AUGMENT = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                  blur_p=0.0)


def make_batch(num_videos=4, frames=40, height=30, width=36, config=SMALL, seed=0, lengths=None):
    g = torch.Generator().manual_seed(seed)
    videos = torch.randint(0, 256, (num_videos, frames, height, width, 3), dtype=torch.uint8, generator=g)
    lengths = lengths or [frames - 3 * i for i in range(num_videos)]
    return videos, lengths, build_plan(g, lengths, height, width, config)


def native_devices():
    devices = []
    if implementation_for("cpu")[0] == "cpp":
        devices.append("cpu")
    if torch.cuda.is_available() and implementation_for("cuda")[0] == "cuda":
        devices.append("cuda")
    return devices


def assert_same_as_reference(videos, lengths, plan, device, out_dtype):
    packed = plan.packed()
    expected = synthesize_ref(videos, *packed, plan.size, out_dtype)
    actual = synthesize(videos.to(device), lengths, plan, out_dtype=out_dtype).cpu()
    assert actual.dtype == out_dtype and actual.shape == expected.shape
    mismatch = (actual != expected).nonzero()
    assert mismatch.numel() == 0, f"{len(mismatch)} elements differ, first at {mismatch[0].tolist()}"


# --- the native implementations reproduce the reference bit for bit ------------------------------------

CONFIGS = {
    "paper": PalConfig(clips=4, frames=4, size=28, max_region_clips=3),
    "all augmentations": dataclasses.replace(SMALL, jitter_p=1.0, grayscale_p=0.5, blur_p=1.0, flip_p=0.5),
    "same background": dataclasses.replace(SMALL, paste="same"),
    "no paste": dataclasses.replace(SMALL, paste="none"),
    "not dense, fixed stride": dataclasses.replace(SMALL, dense=False, scale=False),
    "hard paste": dataclasses.replace(SMALL, beta=(1.0, 1.0)),
    "odd sizes": PalConfig(clips=2, frames=3, size=13, max_region_clips=2, blur_kernel=7, jitter_p=1.0, blur_p=1.0),
    "moco baseline": PalConfig(clips=1, frames=4, size=16, dense=False, scale=False, paste="none",
                               max_region_clips=1),
    # CUDA runs a frame of S <= 128 in one block with the whole frame in shared memory: at the largest such
    # size (every lane of a row's warp holds 4 blurred outputs), with rows padded by their reflection; at that
    # size with R = 11, whose padded rows overflow an H100's or H200's shared memory but unpadded ones do not;
    # and with a blur radius close to the frame size (reflection on both sides of every pixel)
    "one block per frame, largest": PalConfig(clips=1, frames=2, size=128, max_region_clips=1, blur_kernel=11,
                                              jitter_p=1.0, grayscale_p=0.3, blur_p=0.5, dense=False),
    "one block per frame, rows not padded": PalConfig(clips=1, frames=2, size=128, max_region_clips=1,
                                                      blur_kernel=23, jitter_p=1.0, grayscale_p=0.3, blur_p=1.0,
                                                      dense=False),
    "blur radius near the frame size": PalConfig(clips=1, frames=2, size=70, max_region_clips=1, blur_kernel=121,
                                                 blur_p=1.0, dense=False),
    # CUDA with S > 128: several 32 x 32 tiles per frame (halos across tile edges, a partial edge tile); and a
    # blur radius (47) whose tile halo overflows the shared memory of an A100, H100 or H200, so the tile
    # kernel's fallback without shared memory runs: (2r + 1)^2 pipeline evaluations per pixel (r: the radius
    # of the frame's non-zero taps, up to 47 for a hand-made plan), so the smallest such case (S = 129, 8 frames)
    "several tiles": PalConfig(clips=2, frames=2, size=150, max_region_clips=1, blur_kernel=11, jitter_p=1.0,
                               grayscale_p=0.3, blur_p=0.5),
    "huge blur": PalConfig(clips=1, frames=1, size=129, max_region_clips=1, blur_kernel=95, blur_p=1.0,
                           dense=False),
}


@pytest.mark.parametrize("device", native_devices())
@pytest.mark.parametrize("out_dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_native_matches_reference(device, out_dtype, name):
    seed = zlib.crc32(name.encode()) % 1000   # not hash(name): str hashes differ from process to process
    videos, lengths, plan = make_batch(config=CONFIGS[name], seed=seed)
    assert_same_as_reference(videos, lengths, plan, device, out_dtype)


@pytest.mark.parametrize("device", native_devices())
def test_native_matches_reference_tiny_frames_and_upsampling(device):
    """Frames smaller than the output (2x3 pixels -> 8x8) and a video of a single frame."""
    config = PalConfig(clips=2, frames=2, size=8, max_region_clips=1, blur_kernel=3, jitter_p=1.0, blur_p=1.0)
    videos, lengths, plan = make_batch(num_videos=3, frames=5, height=2, width=3, config=config, lengths=[5, 1, 3])
    for out_dtype in DTYPES:
        assert_same_as_reference(videos, lengths, plan, device, out_dtype)


@pytest.mark.parametrize("device", native_devices())
def test_threads_do_not_change_the_result(device):
    videos, lengths, plan = make_batch(config=CONFIGS["all augmentations"])
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = synthesize(videos.to(device), lengths, plan, out_dtype=torch.float32).cpu()
        torch.set_num_threads(max(2, saved))
        many = synthesize(videos.to(device), lengths, plan, out_dtype=torch.float32).cpu()
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(one, many)


@pytest.mark.parametrize("device", native_devices())
def test_video_after_video_with_other_taps_and_blur(device):
    """With one thread the CPU kernel runs the frames of one video after the other and keeps a video's sampling
    taps and blur until the first frame of the next: videos that alternate blurred and not blurred, with other
    crops and flips, still match the reference (a state kept one video too long would show in the next)."""
    videos, lengths, plan = make_batch(config=dataclasses.replace(CONFIGS["all augmentations"], flip_p=0.5))
    plan.blur_on[1::2] = False
    assert plan.blur_on.any() and not plan.blur_on.all() and plan.flip.any() and not plan.flip.all()
    assert len({tuple(crop.tolist()) for crop in plan.crop}) == plan.num_outputs
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert_same_as_reference(videos, lengths, plan, device, torch.float32)
    finally:
        torch.set_num_threads(saved)


@pytest.mark.skipif(not _native.CPU.loaded, reason="uptal._C is not loaded")
@pytest.mark.parametrize("variant", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("size, blur_kernel", [(3, 5), (13, 9), (45, 9), (112, 11), (125, 9)])
def test_each_cpu_build_matches_reference_through_every_loop(monkeypatch, variant, size, blur_kernel):
    """Each instruction-set build of the C++ kernels (UPTAL_CPU_VARIANT picks it; a build this processor
    cannot run is skipped) at sizes that run every loop of its blur: blocks of 7 registers with an overlapping
    last one (125; 45 in the SSE2 build), blocks of one register (13 and 45 in the AVX2 and AVX-512 builds, 13
    in SSE2) and the scalar loop (3; 13 in AVX-512); and at 112, the size each build has a copy of its
    per-frame code compiled for. The row sampling reads spans of many widths."""
    if variant not in _native.CPU.module.cpu_variants():
        pytest.skip(f"this processor does not run the {variant} build")
    monkeypatch.setenv("UPTAL_CPU_VARIANT", variant)
    config = dataclasses.replace(CONFIGS["all augmentations"], size=size, blur_kernel=blur_kernel, clips=2, frames=3)
    videos, lengths, plan = make_batch(num_videos=4, frames=20, height=50, width=61, config=config, seed=3)
    assert _native.CPU.module.cpu_variant() == variant
    assert bool(plan.blur_on.any()) and bool(plan.flip.any()) and not bool(plan.flip.all())
    for out_dtype in DTYPES:
        expected = synthesize_ref(videos, *plan.packed(), plan.size, out_dtype)
        assert torch.equal(synthesize(videos, lengths, plan, out_dtype=out_dtype), expected)


@pytest.mark.skipif(not _native.CPU.loaded, reason="uptal._C is not loaded")
@pytest.mark.parametrize("variant", ["baseline", "avx2", "avx512"])
def test_each_cpu_build_samples_narrow_and_wide_crops_like_the_reference(monkeypatch, variant):
    """Each build's row sampling over crops from a fraction of the output's width (upsampling) to 12 times it,
    flipped and not."""
    if variant not in _native.CPU.module.cpu_variants():
        pytest.skip(f"this processor does not run the {variant} build")
    monkeypatch.setenv("UPTAL_CPU_VARIANT", variant)
    config = dataclasses.replace(CONFIGS["all augmentations"], size=24, crop_scale=(0.01, 1.0),
                                 crop_ratio=(0.3, 3.0), clips=2, frames=2)
    videos, lengths, plan = make_batch(num_videos=6, frames=20, height=40, width=300, config=config, seed=5)
    widths = plan.crop[:, 3] / plan.size                                 # [M] crop width / output width
    assert bool((widths < 1.5).any()) and bool((widths > 2.5).any()), widths
    assert bool(plan.flip.any()) and not bool(plan.flip.all())
    for out_dtype in DTYPES:
        expected = synthesize_ref(videos, *plan.packed(), plan.size, out_dtype)
        assert torch.equal(synthesize(videos, lengths, plan, out_dtype=out_dtype), expected)


@pytest.mark.skipif(not _native.CPU.loaded, reason="uptal._C is not loaded")
@pytest.mark.parametrize("variant", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("hue_first", [True, False])
def test_each_cpu_build_rotates_hue_at_the_sector_edges_like_the_reference(monkeypatch, variant, hue_first):
    """The kernels' hue rebuilds each channel's weight without the reference's mod 6 (synth_math.h,
    hue_weight_red), and after another jitter op, which leaves every channel in [0, 255], without the clamp at
    255 and the grey pixels' select (hue_rebuild). Pixels whose hue h6 lands on and next to the integers (where
    the weights change piece), grey pixels among them, rotated by shifts of whole sixths and a little off them,
    with the hue first and after brightness (factor 1)."""
    if variant not in _native.CPU.module.cpu_variants():
        pytest.skip(f"this processor does not run the {variant} build")
    monkeypatch.setenv("UPTAL_CPU_VARIANT", variant)
    levels = torch.tensor([0, 1, 2, 100, 101, 199, 200, 254, 255])
    pixels = torch.cartesian_prod(levels, levels, levels).to(torch.uint8)          # [729, 3]
    sixths = torch.arange(-3, 4) / 6                                              # whole sixths in [-1/2, 1/2]
    shifts = torch.cat([sixths, sixths[1:-1] + 1e-7, sixths[1:-1] - 1e-7, torch.tensor([0.1, -0.23])])
    size = 28                                                                     # 784 pixels per frame
    videos, lengths, plan = identity_plan(num_videos=2, frames=20, size=size, paste="none", blur_kernel=1)
    frame = torch.cat([pixels, pixels[: size * size - len(pixels)]])
    videos[:] = frame.view(size, size, 3)
    m = plan.num_outputs
    order = [3, 0, 1, 2] if hue_first else [0, 3, 1, 2]                            # 3: hue, 0: brightness
    for first in range(0, len(shifts), m):
        shift = shifts[first:first + m].repeat(m)[:m]
        jittered = dataclasses.replace(plan, jitter_on=torch.ones(m, dtype=torch.bool),
                                       jitter=torch.stack([torch.ones(m), torch.ones(m), torch.ones(m), shift], 1),
                                       jitter_order=torch.tensor([order] * m))
        for out_dtype in (torch.uint8, torch.float32):
            expected = synthesize_ref(videos, *jittered.packed(), jittered.size, out_dtype)
            assert torch.equal(synthesize(videos, lengths, jittered, out_dtype=out_dtype), expected), shift


@pytest.mark.skipif(not _native.CPU.loaded, reason="uptal._C is not loaded")
@pytest.mark.parametrize("variant", ["baseline", "avx2", "avx512"])
def test_each_cpu_build_clamps_a_first_hue_above_255_like_the_reference(monkeypatch, variant):
    """A hue that runs first gets the sampled values, which can exceed 255: its rebuilt channels clamp at 255,
    which the kernels skip only after another jitter op. Red frames pasted onto red frames with a beta for
    which beta * 255 + (1 - beta) * 255 rounds to 255 + 2^-16; shift 0 leaves red the max, rebuilt as it was;
    then a brightness that takes 255 to 126.5 exactly (126 in uint8, ties to even) takes an unclamped red above
    it (127)."""
    if variant not in _native.CPU.module.cpu_variants():
        pytest.skip(f"this processor does not run the {variant} build")
    monkeypatch.setenv("UPTAL_CPU_VARIANT", variant)
    beta, brightness = torch.tensor(0.44037715), torch.tensor(126.5 / 255)
    above = beta * 255 + (1 - beta) * 255
    assert float(above) > 255 and float(brightness * 255) == 126.5 and float(above * brightness) > 126.5
    videos, lengths, plan = identity_plan(num_videos=3, frames=20, size=8, blur_kernel=1)
    videos[:] = torch.tensor([255, 0, 0], dtype=torch.uint8)
    m = plan.num_outputs
    assert bool((plan.action_frames >= 0).any())
    plan = dataclasses.replace(plan, beta=beta.repeat(m), jitter_on=torch.ones(m, dtype=torch.bool),
                               jitter=torch.tensor([[float(brightness), 1.0, 1.0, 0.0]] * m),
                               jitter_order=torch.tensor([[3, 0, 1, 2]] * m))
    for out_dtype in (torch.uint8, torch.float32):
        expected = synthesize_ref(videos, *plan.packed(), plan.size, out_dtype)
        assert torch.equal(synthesize(videos, lengths, plan, out_dtype=out_dtype), expected)


@pytest.mark.skipif(not _native.CPU.loaded, reason="uptal._C is not loaded")
@pytest.mark.parametrize("variant", ["baseline", "avx2", "avx512"])
def test_each_cpu_build_takes_zero_factors_and_negative_clamps_like_the_reference(monkeypatch, variant):
    """The AVX2 build's max_of / min_of compare float bits as signed integers (synth_cpu.cpp), which is exact
    only where no -0 meets a +0 and where both operands being negative does not matter. Factors of +0 and -0
    (a -0 brightness makes every channel -0; the plan checks accept -0 as >= 0), contrast and saturation
    factors that drive values below 0 before their clamp, hue shifts of +-0 and of a third of a turn, over
    pixels with every mix of 0, 1, 254 and 255, in all 24 jitter orders, then grayscale on half the videos."""
    if variant not in _native.CPU.module.cpu_variants():
        pytest.skip(f"this processor does not run the {variant} build")
    monkeypatch.setenv("UPTAL_CPU_VARIANT", variant)
    levels = torch.tensor([0, 1, 254, 255])
    size = 8
    pixels = torch.cartesian_prod(levels, levels, levels).to(torch.uint8)          # [64, 3]
    videos, lengths, plan = identity_plan(num_videos=2, frames=20, size=size, paste="none", blur_kernel=1)
    videos[:] = pixels.view(size, size, 3)
    m = plan.num_outputs
    orders = torch.tensor(list(itertools.permutations(range(4))))                  # [24, 4]
    factor_sets = [(-0.0, -0.0, -0.0, -0.0), (0.0, 0.0, 0.0, 0.0), (-0.0, 3.0, 3.0, 1 / 3),
                   (1.0, 3.0, -0.0, -1 / 3), (2.0, -0.0, 3.0, 0.0)]
    for factors in factor_sets:
        for first in range(0, len(orders), m):
            order = orders[first:first + m].repeat(m, 1)[:m]
            jittered = dataclasses.replace(plan, jitter_on=torch.ones(m, dtype=torch.bool),
                                           jitter=torch.tensor([factors] * m), jitter_order=order,
                                           grayscale=torch.arange(m) % 2 == 1)
            for out_dtype in (torch.uint8, torch.float32):
                expected = synthesize_ref(videos, *jittered.packed(), jittered.size, out_dtype)
                assert torch.equal(synthesize(videos, lengths, jittered, out_dtype=out_dtype), expected), factors


PROT_NONE = 0   # mprotect: no access (Python's mmap module names PROT_READ and PROT_WRITE, not this)


def _videos_ending_at_a_guard_page(shape):
    """uint8 videos [N, T, H, W, 3] whose last byte is the last one before a page the process may not read: a
    kernel that reads past the videos crashes the test (SIGSEGV) instead of reading a neighbour's bytes.
    Returns the videos and the mapping that must outlive them."""
    num_bytes, page = math.prod(shape), mmap.PAGESIZE
    body = -(-num_bytes // page) * page
    mapping = mmap.mmap(-1, body + page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mapping))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mprotect(ctypes.c_void_p(base + body), ctypes.c_size_t(page), PROT_NONE) == 0, ctypes.get_errno()
    videos = torch.frombuffer(mapping, dtype=torch.uint8, count=num_bytes, offset=body - num_bytes).view(shape)
    return videos, mapping


@pytest.mark.skipif(not _native.CPU.loaded or not sys.platform.startswith("linux"),
                    reason="needs uptal._C and mprotect (Linux)")
@pytest.mark.parametrize("variant", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("width", [16, 17, 18, 19, 25])
def test_each_cpu_build_reads_nothing_past_the_last_pixel(monkeypatch, variant, width):
    """Full-frame crops of a one-frame video that ends at a guard page, so the last row the op samples is the
    last of the buffer: a row sampling that loads more bytes than the row has left must not. The AVX2 build
    samples widths 16 to 18 (at most 4/3 of the output's 16) by byte picks with one 16-byte load per 4 columns,
    19 with one per tap, and 25 through windows: there each 32-byte load of 8 pixels would pass the row's end
    by 5 bytes, so the last pixels go through a copy. Mutants checked (2026-11-28): byte picks whose 16 bytes
    are not moved back to end at the row's end die at widths 16 to 19; windows with the old tail condition
    (p + 8 > width) at width 25."""
    if variant not in _native.CPU.module.cpu_variants():
        pytest.skip(f"this processor does not run the {variant} build")
    monkeypatch.setenv("UPTAL_CPU_VARIANT", variant)
    config = PalConfig(clips=1, frames=1, size=16, max_region_clips=1, dense=False, scale=False, paste="none",
                      **NO_AUGMENT)
    videos, mapping = _videos_ending_at_a_guard_page((1, 1, width, width, 3))
    videos.copy_(torch.randint(0, 256, videos.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(7)))
    plan = build_plan(torch.Generator().manual_seed(7), [1], width, width, config)
    assert plan.crop[0].tolist() == [0, 0, width, width]
    for out_dtype in DTYPES:
        expected = synthesize_ref(videos, *plan.packed(), plan.size, out_dtype)
        assert torch.equal(synthesize(videos, [1], plan, out_dtype=out_dtype), expected)


@pytest.mark.skipif(not _native.CPU.loaded, reason="uptal._C is not loaded")
@pytest.mark.parametrize("variant", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("offset_floats", [0, 4, 8])
def test_each_cpu_build_writes_float32_rows_at_any_alignment(monkeypatch, variant, offset_floats):
    """S = 32: every float32 row is 128 bytes, so in an output that starts at a cache line (offset 0) every row
    covers whole lines and the AVX2 build writes it with non-temporal stores; at an offset of 4 floats (16
    bytes) or 8 (32 bytes, a register's alignment) no row does, and it writes with plain stores. Every build,
    every offset: the reference's values, and nothing written outside the output."""
    if variant not in _native.CPU.module.cpu_variants():
        pytest.skip(f"this processor does not run the {variant} build")
    monkeypatch.setenv("UPTAL_CPU_VARIANT", variant)
    config = dataclasses.replace(CONFIGS["all augmentations"], size=32, clips=2, frames=3)
    videos, lengths, plan = make_batch(num_videos=4, frames=20, height=50, width=61, config=config, seed=5)
    shape = (plan.num_outputs, 3, plan.clips * plan.frames, plan.size, plan.size)
    storage = torch.full((math.prod(shape) + 32,), -7.0)
    assert storage.data_ptr() % 64 == 0   # torch's CPU allocator aligns to 64 bytes
    out = storage[offset_floats:offset_floats + math.prod(shape)].view(shape)
    synthesize(videos, lengths, plan, out=out)
    assert torch.equal(out, synthesize_ref(videos, *plan.packed(), plan.size, torch.float32))
    assert bool((storage[:offset_floats] == -7.0).all()) and bool((storage[offset_floats + out.numel():] == -7.0).all())


def test_out_buffer_is_filled_and_returned():
    videos, lengths, plan = make_batch()
    pin = torch.cuda.is_available()
    out = torch.full((plan.num_outputs, 3, plan.clips * plan.frames, plan.size, plan.size), -7.0, pin_memory=pin)
    result = synthesize(videos, lengths, plan, out=out)
    assert result is out
    assert torch.equal(out, synthesize_ref(videos, *plan.packed(), plan.size, torch.float32))


def test_native_param_layout_matches_python():
    if not _native.CPU.loaded:
        pytest.skip(f"uptal._C not loaded: {_native.CPU.reason}")
    columns = _native.CPU.module.param_columns()
    for index, name in enumerate(COLUMN_NAMES):
        if not name.startswith("order") or name == "order0":
            assert columns[name] == index, name
    assert columns["blur0"] == NUM_FIXED_COLUMNS == Col.BLUR0


# --- the reference does what the method says ---------------------------------------------------------------

def identity_plan(num_videos=3, frames=20, size=16, **overrides):
    """Full-frame crops at the output size, no augmentation: output pixels are source pixels."""
    config = PalConfig(clips=2, frames=4, size=size, max_region_clips=2, **{**NO_AUGMENT, **overrides})
    g = torch.Generator().manual_seed(3)
    videos = torch.randint(0, 256, (num_videos, frames, size, size, 3), dtype=torch.uint8, generator=g)
    return videos, [frames] * num_videos, build_plan(g, [frames] * num_videos, size, size, config)


def test_identity_augmentation_reproduces_source_frames():
    videos, lengths, plan = identity_plan(paste="none")
    out = synthesize(videos, lengths, plan, out_dtype=torch.uint8)               # [M, 3, JF, S, S]
    for m in range(plan.num_outputs):
        expected = videos[plan.background[m], plan.background_frames[m]].permute(3, 0, 1, 2)
        assert torch.equal(out[m], expected)


def test_hard_paste_shows_action_inside_region_and_background_outside():
    videos, lengths, plan = identity_plan(beta=(1.0, 1.0))
    out = synthesize(videos, lengths, plan, out_dtype=torch.uint8)
    for m in range(plan.num_outputs):
        for t in range(plan.clips * plan.frames):
            action_frame = int(plan.action_frames[m, t])
            video, frame = (plan.action[m], action_frame) if action_frame >= 0 else \
                (plan.background[m], plan.background_frames[m, t])
            assert torch.equal(out[m, :, t], videos[video, frame].permute(2, 0, 1)), (m, t)
        clip_of_frame = torch.arange(plan.clips * plan.frames) // plan.frames
        s, e = plan.region[m].tolist()
        assert torch.equal(plan.action_frames[m] >= 0, (clip_of_frame >= s) & (clip_of_frame <= e))


def test_soft_paste_blends_with_beta():
    videos, lengths, plan = identity_plan(beta=(0.5, 0.5))
    out = synthesize(videos, lengths, plan, out_dtype=torch.float32)
    norm = plan.packed()[3]
    m = 0
    t = int((plan.action_frames[m] >= 0).nonzero()[0])
    action = videos[plan.action[m], plan.action_frames[m, t]].permute(2, 0, 1).float()
    background = videos[plan.background[m], plan.background_frames[m, t]].permute(2, 0, 1).float()
    blended = 0.5 * action + 0.5 * background
    expected = blended * norm[0].view(3, 1, 1) + norm[1].view(3, 1, 1)
    torch.testing.assert_close(out[m, :, t], expected, rtol=0, atol=1e-5)


def test_flip_mirrors_columns():
    videos, lengths, plan = identity_plan(paste="none")
    flipped = dataclasses.replace(plan, flip=torch.ones_like(plan.flip))
    plain = synthesize(videos, lengths, plan, out_dtype=torch.uint8)
    mirrored = synthesize(videos, lengths, flipped, out_dtype=torch.uint8)
    assert torch.equal(mirrored, plain.flip(-1))


def test_grayscale_makes_channels_equal_and_blur_keeps_constant_image():
    videos, lengths, plan = identity_plan(paste="none", grayscale_p=1.0)
    out = synthesize(videos, lengths, plan, out_dtype=torch.uint8)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    constant = torch.full_like(videos, 77)
    _, _, blurred_plan = identity_plan(paste="none", blur_p=1.0)
    blurred = synthesize(constant, lengths, blurred_plan, out_dtype=torch.uint8)
    assert bool((blurred == 77).all())


def test_brightness_scales_and_clamps():
    videos, lengths, plan = identity_plan(paste="none")
    jitter = torch.tensor([[1.5, 1.0, 1.0, 0.0]]).repeat(plan.num_outputs, 1)
    bright = dataclasses.replace(plan, jitter_on=torch.ones_like(plan.jitter_on), jitter=jitter)
    norm = plan.packed()[3].view(2, 1, 3, 1, 1, 1)
    out = (synthesize(videos, lengths, bright) - norm[1]) / norm[0]               # back to the 0..255 scale
    source = synthesize(videos, lengths, plan, out_dtype=torch.uint8).float()
    # the identity factors (contrast 1, saturation 1, hue 0) are exact up to float32 rounding
    torch.testing.assert_close(out, (source * 1.5).clamp(0, 255), rtol=0, atol=2e-3)


def test_hue_output_is_never_negative_without_a_clamp_at_zero():
    """The hue's rebuilt channels clamp at 255 only (synthesize_ref._hue_channel says why they cannot go
    below 0): pixels from the whole input range (up to the 255 + 2^-16 a bilinear sample can reach), with
    tiny and zero chroma, rotated by shifts across [-0.5, 0.5], come out in [0, 255]."""
    g = torch.Generator().manual_seed(0)
    top = 255 + 2.0 ** -16
    uniform = torch.rand(4000, 3, generator=g) * top
    whole = torch.randint(0, 256, (4000, 3), generator=g).float()
    near_grey = uniform[:, :1] + torch.randint(-2, 3, (4000, 3), generator=g) * 2.0 ** -12   # chroma 0 to 2^-10
    edges = torch.tensor([[0.0, 0.0, top], [top, 0.0, 0.0], [top, top, 0.0], [0.0, 2.0 ** -20, 0.0]])
    pixels = torch.cat([uniform, whole, near_grey.clamp(0, top), edges]).float()       # [P, 3]
    x = pixels.t().reshape(1, 3, 1, -1)                                                    # [T=1, 3, 1, P]
    for shift in torch.linspace(-0.5, 0.5, 41).tolist():
        p = torch.zeros(Col.BLUR0 + 1)
        p[Col.HUE] = shift
        out = synthesize_ref_hue(x, p)
        assert bool((out >= 0).all() & (out <= 255).all()), shift


def test_hue_rotation_by_a_third_permutes_pure_colours():
    """Rotating hue by 1/3 turn maps red -> green -> blue -> red."""
    videos = torch.zeros(1, 4, 2, 3, 3, dtype=torch.uint8)
    videos[..., 0, :, 0] = 200   # row 0 red
    videos[..., 1, :, 2] = 120   # row 1 blue
    config = PalConfig(clips=1, frames=4, size=2, max_region_clips=1, paste="none", blur_kernel=1,
                       **{**NO_AUGMENT, "crop_ratio": (0.5, 2.0)})
    plan = build_plan(torch.Generator().manual_seed(0), [4], 2, 3, config)
    plan = dataclasses.replace(plan, crop=torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 2),
                               jitter_on=torch.ones(2, dtype=torch.bool), jitter=torch.tensor([[1, 1, 1, 1 / 3]] * 2),
                               jitter_order=torch.tensor([[3, 0, 1, 2]] * 2))
    out = synthesize(videos, [4], plan, out_dtype=torch.uint8)[0, :, 0]          # [3, 2, 2]
    assert out[:, 0, 0].tolist() == [0, 200, 0]
    assert out[:, 1, 0].tolist() == [120, 0, 0]



@pytest.mark.parametrize("device", native_devices())
def test_blur_with_zero_taps_matches_the_reference(device):
    """Zero taps anywhere (the planner zeroes the outer ones; a hand-made plan may put them anywhere, the
    first included, or make them all zero): the C++ kernel skips them, which must change no bit. A centre
    tap of 1 alone changes no value, so the C++ kernel runs no blur then; with one more non-zero tap it must."""
    videos, lengths, plan = identity_plan(num_videos=4, frames=20, size=23, blur_kernel=7)
    m = plan.num_outputs                                                 # 8: every row of taps used
    taps = torch.tensor([[0.0, 0.1, 0.2, 0.4, 0.2, 0.1, 0.0], [0.05, 0.0, 0.3, 0.3, 0.3, 0.0, 0.05],
                         [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5],
                         [0.0] * 7,                                      # all zero: a black frame
                         [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.25], [0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0]])
    plan = dataclasses.replace(plan, blur_on=torch.ones(m, dtype=torch.bool), blur_weights=taps.repeat(m, 1)[:m])
    for out_dtype in (torch.uint8, torch.float32):
        assert_same_as_reference(videos, lengths, plan, device, out_dtype)


def test_gaussian_taps_drop_at_most_half_a_level_and_no_more_than_that():
    """The planner's taps: symmetric, summing to 1, no subnormal; the dropped outer taps carry at most
    BLUR_DROPPED_WEIGHT of the whole kernel's weight (so a value moves by at most half an 8-bit level) and
    dropping one more pair would carry more."""
    for sigma in torch.linspace(0.1, 2.0, 200).tolist():
        taps = gaussian_taps(sigma, 11)
        assert not bool(((taps > 0) & (taps < torch.finfo(torch.float32).tiny)).any()), sigma
        assert torch.equal(taps, taps.flip(0)) and abs(float(taps.sum()) - 1) < 1e-6, sigma
        kept = int((taps > 0).sum()) // 2                              # taps 5 - kept .. 5 + kept are kept
        assert bool((taps[5 - kept:6 + kept] > 0).all()), sigma
        x = torch.arange(-5, 6, dtype=torch.float64)
        whole = torch.exp(-x * x / (2 * sigma * sigma))
        whole = whole / whole.sum()
        dropped = float(whole.sum() - whole[5 - kept:6 + kept].sum())
        assert dropped <= BLUR_DROPPED_WEIGHT, sigma
        if kept > 0:
            assert dropped + 2 * float(whole[5 - kept]) > BLUR_DROPPED_WEIGHT, sigma
        worst = torch.where(torch.arange(11).sub(5).abs() <= kept, 255.0, 0.0)   # all the kept weight at 255
        assert abs(float((taps.double() * worst).sum() - (whole * worst).sum())) <= 0.5 + 1e-4, sigma
    assert [int((gaussian_taps(s, 11) > 0).sum()) for s in (0.2, 0.5, 1.0, 2.0)] == [1, 3, 7, 11]


@pytest.mark.parametrize("device", native_devices())
def test_hue_wraps_a_tiny_negative_hue_like_the_reference(device):
    """A hue h6 just below 0 wraps to h6 + 6, which rounds to exactly 6.0 in float32 and so wraps again, to 0.
    Red-max pixels with a small (g - b) / chroma, rotated by a shift that nearly cancels it, land there; the
    shifts and pixels were found by searching float32 values (the assertion on `edge` checks they still do)."""
    shifts_and_pixels = [(-0.007829999551177025, (149, 7, 0)), (-0.002044999971985817, (163, 2, 0)),
                         (0.0013549999566748738, (123, 0, 1)), (0.001999999862164259, (250, 0, 3))]
    shifts = torch.tensor([s for s, _ in shifts_and_pixels])
    pixels = torch.tensor([p for _, p in shifts_and_pixels], dtype=torch.float32)           # [4, 3]
    r, g, b = pixels.unbind(1)
    h6 = (g - b) / (r - torch.minimum(g, b)) + shifts * 6                               # one pixel per shift
    edge = (h6 < 0) & (h6 + 6 == 6)
    assert bool(edge.all()), h6

    videos, lengths, plan = identity_plan(num_videos=2, frames=20, size=4, paste="none", blur_kernel=1)
    m = plan.num_outputs
    videos[:] = pixels.to(torch.uint8).repeat(4, 1).view(4, 4, 3)   # every frame: the four pixels, four times
    plan = dataclasses.replace(plan, jitter_on=torch.ones(m, dtype=torch.bool),
                               jitter=torch.stack([torch.ones(m), torch.ones(m), torch.ones(m),
                                                   shifts.repeat(m)[:m]], dim=1),
                               jitter_order=torch.tensor([[3, 0, 1, 2]] * m))
    for out_dtype in (torch.uint8, torch.float32):
        assert_same_as_reference(videos, lengths, plan, device, out_dtype)

# --- bad input is a ValueError naming the argument ------------------------------------------------------

def _packed_batch():
    videos, lengths, plan = make_batch()
    return videos, lengths, plan, [t.clone() for t in plan.packed()]


def _call(videos, lengths, packed, size=SMALL.size, out_dtype=torch.float32, out=None):
    return synthesize_packed(videos, lengths, *packed, size, out_dtype, out)


BAD_INPUTS = {
    "videos dtype": (lambda v, l, p: (v.float(), l, p), "videos"),
    "videos rank": (lambda v, l, p: (v[0], l, p), "videos"),
    "videos channels": (lambda v, l, p: (v[..., :2], l, p), "videos"),
    "empty batch": (lambda v, l, p: (v[:0], [], p), "videos"),
    # a view that only claims the size (never read): frames past the kernels' 32-bit offsets
    "frames over 2 GB": (lambda v, l, p: (v[:, :, :1, :1].expand(-1, -1, 27_000, 27_000, -1), l, p), "32-bit"),
    "lengths count": (lambda v, l, p: (v, l[:-1], p), "lengths"),
    "lengths beyond T": (lambda v, l, p: (v, [v.shape[1] + 1] + l[1:], p), "lengths"),
    "lengths zero": (lambda v, l, p: (v, [0] + l[1:], p), "lengths"),
    "source index": (lambda v, l, p: (v, l, [p[0].fill_(99), *p[1:]]), "sources"),
    "negative source": (lambda v, l, p: (v, l, [p[0].fill_(-1), *p[1:]]), "sources"),
    "frame beyond length": (lambda v, l, p: (v, l, [p[0], p[1].fill_(10_000), *p[2:]]), "background_frames"),
    "action frame below -1": (lambda v, l, p: (v, l, [p[0], _set(p[1], (0, 1, 0), -2), *p[2:]]), "action_frames"),
    "frames shape": (lambda v, l, p: (v, l, [p[0], p[1][:, :1], *p[2:]]), "frames"),
    "empty plan": (lambda v, l, p: (v, l, [p[0][:0], p[1][:0], p[2][:0], p[3]]), "sources"),
    "beta above 1": (lambda v, l, p: (v, l, [*p[:2], _set(p[2], (0, Col.BETA), 1.5), p[3]]), "beta"),
    "crop outside": (lambda v, l, p: (v, l, [*p[:2], _set(p[2], (0, Col.CROP_X0), 1000.0), p[3]]), "crop left"),
    "negative crop": (lambda v, l, p: (v, l, [*p[:2], _set(p[2], (1, Col.CROP_Y0), -1.0), p[3]]), "crop top"),
    "zero crop": (lambda v, l, p: (v, l, [*p[:2], _set(p[2], (0, Col.SCALE_Y), 0.0), p[3]]), "crop height"),
    "nan param": (lambda v, l, p: (v, l, [*p[:2], _set(p[2], (0, Col.HUE), float("nan")), p[3]]), "params"),
    "flag not 0/1": (lambda v, l, p: (v, l, [*p[:2], _set(p[2], (0, Col.FLIP), 0.5), p[3]]), "flip"),
    "order not a permutation": (lambda v, l, p: (v, l, [*p[:2], _set(p[2], (0, Col.ORDER0), 1.0), p[3]]),
                                "jitter_order"),
    "hue too large": (lambda v, l, p: (v, l, [*p[:2], _set(p[2], (0, Col.HUE), 0.7), p[3]]), "hue"),
    "even blur taps": (lambda v, l, p: (v, l, [*p[:2], p[2][:, :-1], p[3]]), "params"),
    "params dtype": (lambda v, l, p: (v, l, [*p[:2], p[2].double(), p[3]]), "params"),
    "norm shape": (lambda v, l, p: (v, l, [*p[:3], p[3][:1]]), "norm"),
}


def _set(tensor, index, value):
    tensor[index] = value
    return tensor


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_raises_value_error_naming_it(name):
    videos, lengths, plan, packed = _packed_batch()
    mutate, expected = BAD_INPUTS[name]
    with pytest.raises(ValueError, match=expected):
        _call(*mutate(videos, lengths, packed))


def test_bad_size_dtype_and_out():
    videos, lengths, plan, packed = _packed_batch()
    with pytest.raises(ValueError, match="out_dtype"):
        _call(videos, lengths, packed, out_dtype=torch.float16)
    with pytest.raises(ValueError, match="size"):
        _call(videos, lengths, packed, size=0)
    with pytest.raises(ValueError, match="blur radius"):
        _call(videos, lengths, packed, size=2)
    with pytest.raises(ValueError, match="out"):
        _call(videos, lengths, packed, out=torch.empty(1))
    good_shape = (plan.num_outputs, 3, plan.clips * plan.frames, plan.size, plan.size)
    with pytest.raises(ValueError, match="out"):
        _call(videos, lengths, packed, out=torch.empty(good_shape, dtype=torch.bfloat16))


def test_out_overlapping_the_videos_is_an_error():
    """Writing into the memory the op reads would give garbage: refused, while a separate buffer is fine."""
    videos, lengths, plan, packed = _packed_batch()
    good_shape = (plan.num_outputs, 3, plan.clips * plan.frames, plan.size, plan.size)
    numel = math.prod(good_shape)
    uint8 = dict(out_dtype=torch.uint8)
    shared = torch.zeros(videos.numel() + numel, dtype=torch.uint8)
    shared[:videos.numel()] = videos.flatten()
    inside = shared[:videos.numel()].view(videos.shape)
    with pytest.raises(ValueError, match="out: must not overlap videos"):
        _call(inside, lengths, packed, out=shared[videos.numel() - 1:][:numel].view(good_shape), **uint8)
    beside = shared[videos.numel():].view(good_shape)   # same storage, disjoint bytes
    assert torch.equal(_call(inside, lengths, packed, out=beside, **uint8), _call(videos, lengths, packed, **uint8))


def test_short_video_is_an_error_not_a_wrap():
    """A plan built for longer videos than the batch holds must not read past a video's usable length."""
    videos, lengths, plan = make_batch(frames=40)
    short = [5] * len(lengths)
    with pytest.raises(ValueError, match="usable length"):
        synthesize(videos, short, plan)


# --- torch.library integration ---------------------------------------------------------------------------

def test_opcheck():
    videos, lengths, plan = make_batch(num_videos=3, frames=12, height=10, width=12,
                                       config=PalConfig(clips=2, frames=2, size=8, max_region_clips=1, blur_kernel=3))
    sources, frames, params, norm = plan.packed()
    for out_dtype in DTYPES:
        torch.library.opcheck(torch.ops.uptal.synthesize.default,
                              (videos, sources, frames, params, norm, plan.size, out_dtype))
    out = torch.empty(plan.num_outputs, 3, 4, 8, 8)
    torch.library.opcheck(torch.ops.uptal.synthesize_into.default, (videos, sources, frames, params, norm, 8, out))


@pytest.mark.slow
def test_torch_compile_calls_the_op():
    videos, lengths, plan = make_batch(num_videos=3, frames=12, height=10, width=12,
                                       config=PalConfig(clips=2, frames=2, size=8, max_region_clips=1, blur_kernel=3))
    packed = plan.packed()

    def step(videos, sources, frames, params, norm):
        clips = torch.ops.uptal.synthesize(videos, sources, frames, params, norm, 8, torch.float32)
        return clips.mean(dim=(2, 3, 4))                                         # [M, 3]

    compiled = torch.compile(step, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(videos, *packed), step(videos, *packed), rtol=0, atol=0)


@pytest.mark.gpu
def test_cuda_reads_device_videos_and_writes_on_the_current_stream():
    videos, lengths, plan = make_batch(config=CONFIGS["all augmentations"])
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out = synthesize(videos.cuda(), lengths, plan, out_dtype=torch.float32)
    stream.synchronize()
    assert out.device.type == "cuda"
    assert torch.equal(out.cpu(), synthesize_ref(videos, *plan.packed(), plan.size, torch.float32))
