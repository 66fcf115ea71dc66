"""The PAL plan: determinism, every setting of the paper, lengths respected, persistence."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from uptal.config import PalConfig
from uptal.pal import PalPlan, build_plan, frame_run, gaussian_taps

H, W = 32, 40


def plan_for(lengths, seed=0, **config):
    return build_plan(torch.Generator().manual_seed(seed), lengths, H, W, PalConfig(**config))


def test_same_seed_same_plan_and_different_seed_different_plan():
    a, b, c = plan_for([200] * 6, seed=1), plan_for([200] * 6, seed=1), plan_for([200] * 6, seed=2)
    for field in dataclasses.fields(PalPlan):
        x, y = getattr(a, field.name), getattr(b, field.name)
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, field.name
    assert not torch.equal(a.background_frames, c.background_frames)


def test_layout_of_a_default_plan():
    lengths = [300, 250, 400, 200, 260]
    plan = plan_for(lengths)
    b, jf = len(lengths), 64
    assert plan.num_outputs == 2 * b and plan.num_sources == b
    assert plan.background_frames.shape == (2 * b, jf) and plan.action_frames.shape == (2 * b, jf)
    # each source is the action of its query row i and key row B + i
    assert torch.equal(plan.action, torch.arange(b).repeat(2))
    # different backgrounds: neither is the source, and the two views differ
    query_bg, key_bg = plan.background[:b], plan.background[b:]
    assert bool((query_bg != torch.arange(b)).all() and (key_bg != torch.arange(b)).all())
    assert bool((query_bg != key_bg).all())
    # every video is the background of exactly one query and one key: decoded once, used by all
    assert sorted(query_bg.tolist()) == list(range(b)) and sorted(key_bg.tolist()) == list(range(b))
    plan.check()


def test_regions_are_runs_of_whole_clips_at_the_drawn_stride():
    plan = plan_for([500] * 8, seed=3)
    lengths = (plan.region[:, 1] - plan.region[:, 0] + 1)
    assert bool((lengths >= 1).all() and (lengths <= 6).all())
    for m in range(plan.num_outputs):
        pasted = plan.action_frames[m][plan.action_frames[m] >= 0]
        assert pasted.numel() == int(lengths[m]) * 8
        steps = pasted.diff()
        stride = float(plan.stride[m])
        assert stride in (1.0, 2.0, 3.0, 4.0) and bool((steps == int(stride)).all())
        assert 0.6 <= float(plan.beta[m]) <= 1.0


def test_lengths_are_respected_and_short_videos_spread_not_padded():
    lengths = [500, 20, 3, 64]
    plan = plan_for(lengths, seed=5)
    limits = torch.tensor(lengths)
    assert bool((plan.background_frames < limits[plan.background][:, None]).all())
    assert bool((plan.background_frames >= 0).all())
    pasted = plan.action_frames >= 0
    assert bool((plan.action_frames[pasted] < limits[plan.action][:, None].expand_as(pasted)[pasted]).all())
    # a 3-frame video cannot fill 64 frames at stride 2: its frames are spread evenly (repeats, in order)
    rows = (plan.background == 2).nonzero().flatten()
    for m in rows.tolist():
        frames = plan.background_frames[m]
        assert set(frames.tolist()) == {0, 1, 2} and bool((frames.diff() >= 0).all())


def test_frame_run_rules():
    assert frame_run(0.0, 100, 4, 3) == ([0, 3, 6, 9], 3.0)
    indices, stride = frame_run(0.999, 10, 4, 4)            # 4 frames at stride 4 need 13: stride 3 fits
    assert stride == 3.0 and indices == [0, 3, 6, 9]
    indices, stride = frame_run(0.5, 3, 6, 1)               # too short even at stride 1: spread
    assert indices == [0, 0, 1, 1, 2, 2] and stride == 0.5
    assert frame_run(0.7, 1, 1, 4) == ([0], 4.0)


def test_same_background_and_no_paste_and_moco_baseline():
    same = plan_for([100] * 5, paste="same")
    assert torch.equal(same.background[:5], same.background[5:])
    none = plan_for([100] * 5, paste="none")
    assert torch.equal(none.background, none.action) and bool((none.action_frames == -1).all())
    moco = plan_for([100] * 5, paste="none", dense=False, scale=False, clips=1, max_region_clips=1)
    assert moco.background_frames.shape == (10, 8)
    assert bool((moco.region == 0).all()) and bool((moco.stride == 2.0).all())


def test_dense_off_scale_off_and_hard_paste():
    plan = plan_for([300] * 4, dense=False, scale=False, fixed_stride=3, beta=(1.0, 1.0))
    assert bool((plan.region[:, 0] == plan.region[:, 1]).all())
    assert bool((plan.stride == 3.0).all()) and bool((plan.beta == 1.0).all())


def test_small_batches_fall_back_with_a_warning():
    with pytest.warns(UserWarning, match="at least 3 videos"):
        two = plan_for([50, 60])
    assert two.background.tolist() == [1, 0, 1, 0]
    with pytest.warns(UserWarning):
        one = plan_for([50])
    assert one.background.tolist() == [0, 0]


def test_augmentation_parameters_are_in_range():
    plan = plan_for([100] * 16, seed=7)
    y0, x0, h, w = plan.crop.unbind(1)
    assert bool((y0 >= 0).all() and (x0 >= 0).all() and (y0 + h <= H).all() and (x0 + w <= W).all())
    assert bool(((h * w) >= 0.2 * H * W - H - W).all())
    on = plan.jitter_on
    assert bool((plan.jitter[on, :3] >= 0.6).all() and (plan.jitter[on, :3] <= 1.4).all())
    assert bool((plan.jitter[on, 3].abs() <= 0.1).all())
    assert torch.equal(plan.jitter[~on], torch.tensor([[1.0, 1.0, 1.0, 0.0]]).expand(int((~on).sum()), 4))
    assert bool((plan.jitter_order.sort(dim=1).values == torch.arange(4)).all())
    torch.testing.assert_close(plan.blur_weights.sum(dim=1), torch.ones(plan.num_outputs))
    assert 0 < int(plan.flip.sum()) < plan.num_outputs


def test_gaussian_taps_are_symmetric_and_normalised():
    taps = gaussian_taps(1.3, 11)
    assert torch.equal(taps, taps.flip(0))
    assert abs(float(taps.sum()) - 1.0) < 1e-6 and int(taps.argmax()) == 5


def test_save_load_replay_and_describe(tmp_path):
    plan = plan_for([120] * 4)
    path = tmp_path / "plan.pt"
    plan.save(path)
    loaded = PalPlan.load(path)
    for a, b in zip(plan.packed(), loaded.packed()):
        assert torch.equal(a, b)
    text = plan.describe()
    assert "8 synthetic videos" in text and "query" in text and "key" in text


def test_check_rejects_regions_outside_the_clip_grid():
    plan = plan_for([100] * 3)
    bad = dataclasses.replace(plan, region=plan.region.clone())
    bad.region[0] = torch.tensor([6, 9])
    with pytest.raises(ValueError, match="clip grid"):
        bad.packed()
    moved = dataclasses.replace(plan, region=plan.region.clone())
    moved.region[0] = torch.tensor([0, 0]) if int(plan.region[0, 0]) > 0 else torch.tensor([7, 7])
    with pytest.raises(ValueError, match="outside plan.region"):
        moved.packed()


def test_bad_geometry_is_an_error():
    with pytest.raises(ValueError, match="lengths"):
        plan_for([])
    with pytest.raises(ValueError, match="lengths"):
        plan_for([10, 0])
