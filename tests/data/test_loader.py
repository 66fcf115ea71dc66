"""The PAL batch loader: decode once per batch, determinism, DDP sharding, bad files replaced and reported."""
from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from uptal.config import DataConfig, PalConfig
from uptal.data import decode_window, write_demo_videos
from uptal.data.index import load_index
from uptal.data.loader import (LOW_PRIORITY_NICE, DataError, EpochSampler, PalLoader, SourceWindows,
                               lower_worker_priority)
from uptal.pal import synthesize_batch

PAL = PalConfig(clips=2, frames=4, size=24, max_region_clips=2, crop_scale=(0.5, 1.0), blur_kernel=5)
DATA = DataConfig(fps=10.0, height=32, width=40, min_frames=4, workers=0)
NUM_VIDEOS = 10


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    """Ten 3.2 s demo videos at 10 fps (32 frames), 40x32."""
    folder = tmp_path_factory.mktemp("loader_videos")
    write_demo_videos(folder, num_videos=NUM_VIDEOS, seed=3, num_frames=32, fps=10, height=32, width=40)
    return folder


def make_loader(source, batch_size=3, seed=0, rank=0, world_size=1, data=DATA, **kwargs) -> PalLoader:
    index = load_index(source, progress=False, cache=False)
    return PalLoader(index, PAL, data, batch_size, seed=seed, rank=rank, world_size=world_size, **kwargs)


def epoch_batches(loader: PalLoader, epoch: int) -> list:
    loader.set_epoch(epoch)
    return list(loader)


def same_batches(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.paths == y.paths and torch.equal(x.videos, y.videos) and torch.equal(x.lengths, y.lengths)
        and torch.equal(x.plan.background_frames, y.plan.background_frames)
        and torch.equal(x.plan.crop, y.plan.crop) for x, y in zip(a, b))


def test_window_frames_follow_the_pal_config():
    # background: 63 frames at stride 2 -> 127; region: 6 clips of 8 at stride 4 -> 189
    assert DataConfig().frames_to_decode(PalConfig()) == 189
    assert DataConfig().frames_to_decode(PalConfig(scale=False, fixed_stride=2)) == 127
    assert DataConfig(window_frames=50).frames_to_decode(PalConfig()) == 50
    # with these test configs: background (8 - 1) * 2 + 1 = 15, region (8 - 1) * 4 + 1 = 29
    assert DATA.frames_to_decode(PAL) == 29


def test_auto_prefetch_queues_small_batches_deeper_within_its_memory_budget():
    auto = DataConfig()                    # 128 x 171 frames, 189 per window
    batch_mb = lambda b: b * 189 * 128 * 171 * 3 / 2**20   # noqa: E731
    assert int(512 // batch_mb(32)) == 1 and auto.prefetch_batches(PalConfig(), 32) == 2   # the paper: the floor
    assert auto.prefetch_batches(PalConfig(), 8) == int(512 // batch_mb(8)) == 5
    assert auto.prefetch_batches(PalConfig(), 4) == 8                           # 47 MB: the ceiling
    assert replace(auto, prefetch=3).prefetch_batches(PalConfig(), 4) == 3      # set: used as it is
    with pytest.raises(ValueError, match=r"data\.prefetch"):
        DataConfig(prefetch=-1)


def test_loader_queues_the_resolved_prefetch(video_folder):
    loader = make_loader(video_folder, batch_size=3, data=replace(DATA, workers=1))
    assert loader.prefetch == loader.loader.prefetch_factor == 8     # tiny batches: the ceiling
    loader = make_loader(video_folder, batch_size=3, data=replace(DATA, workers=1, prefetch=3))
    assert loader.prefetch == loader.loader.prefetch_factor == 3
    assert make_loader(video_folder, batch_size=3).prefetch == 0     # no workers: nothing queued


def test_batch_holds_each_video_once_with_its_plan(video_folder):
    loader = make_loader(video_folder, batch_size=4)
    assert len(loader) == NUM_VIDEOS // 4
    batch = epoch_batches(loader, 0)[0]
    assert batch.videos.dtype == torch.uint8 and batch.videos.shape[0] == 4
    assert batch.videos.shape[2:] == (32, 40, 3) and batch.videos.shape[1] <= 29
    assert len(set(batch.paths)) == 4                      # four different videos, each decoded once
    assert batch.decodes == 4 and batch.bad == []
    assert batch.window_lengths == [29] * 4                # 3.2 s videos hold a 2.9 s window
    # each window is decoded up to the last frame the plan reads, only those are converted and shipped
    assert batch.converted_frames == int(batch.lengths.sum()) < batch.decoded_frames <= 4 * 29
    plan = batch.plan
    assert plan.num_sources == 4 and (plan.height, plan.width) == (32, 40)
    assert sorted(plan.action[:4].tolist()) == [0, 1, 2, 3]          # every video is an action source
    assert sorted(plan.background.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]   # and background of two others
    assert batch.videos.float().std() > 10                  # real pixels, not zeros


def test_frames_the_plan_reads_are_the_decoded_frames(video_folder):
    batch = epoch_batches(make_loader(video_folder, batch_size=4), 1)[0]
    plan = batch.plan
    for slot, (path, start) in enumerate(zip(batch.paths, batch.starts)):
        full = decode_window(path, start, 29, DATA.fps, DATA.height, DATA.width).frames   # every frame converted
        positions = batch.positions[slot]
        n = batch.lengths[slot]
        assert len(positions) == n and positions == sorted(positions) and positions[-1] < 29
        assert torch.equal(batch.videos[slot, :n], full[positions])
        assert batch.videos[slot, n:].count_nonzero() == 0
        # every kept frame is read by the plan, and the plan reads nothing else of this slot
        read = torch.cat([plan.background_frames[plan.background == slot].flatten(),
                          plan.action_frames[plan.action == slot].flatten()])
        assert set(read[read >= 0].tolist()) == set(range(n))


def test_compaction_keeps_the_synthetic_videos_identical(video_folder):
    """Synthesizing from the compacted batch equals synthesizing from the full decoded windows."""
    batch = epoch_batches(make_loader(video_folder, batch_size=4), 0)[0]
    full = torch.stack([decode_window(p, s, 29, DATA.fps, DATA.height, DATA.width).frames
                        for p, s in zip(batch.paths, batch.starts)])                     # [B, 29, H, W, 3]
    window_plan = replace(batch.plan, background_frames=_to_window(batch, batch.plan.background,
                                                                   batch.plan.background_frames),
                          action_frames=_to_window(batch, batch.plan.action, batch.plan.action_frames))
    expected = synthesize_batch(full, [29] * 4, window_plan, out_dtype=torch.uint8)
    assert torch.equal(synthesize_batch(batch.videos, batch.lengths, batch.plan, out_dtype=torch.uint8), expected)


def _to_window(batch, sources: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Plan frame indices (into the compacted videos) back to window positions."""
    positions = [torch.tensor(p) for p in batch.positions]
    return torch.stack([torch.where(row >= 0, positions[int(s)][row.clamp(min=0)], -1)
                        for s, row in zip(sources, frames)])


def test_same_seed_same_batches_and_epochs_reshuffle(video_folder):
    first, again = make_loader(video_folder), make_loader(video_folder)
    assert same_batches(epoch_batches(first, 0), epoch_batches(again, 0))
    epoch0, epoch1 = epoch_batches(first, 0), epoch_batches(first, 1)
    assert [b.paths for b in epoch0] != [b.paths for b in epoch1]
    other_seed = make_loader(video_folder, seed=1)
    assert [b.paths for b in epoch_batches(other_seed, 0)] != [b.paths for b in epoch0]


def test_worker_processes_give_the_same_batches(video_folder):
    in_process = epoch_batches(make_loader(video_folder), 2)
    workers = make_loader(video_folder, data=DataConfig(**{**DATA.__dict__, "workers": 2}))
    assert same_batches(epoch_batches(workers, 2), in_process)
    assert same_batches(epoch_batches(workers, 2), in_process)   # persistent workers, second pass


@pytest.mark.parametrize("priority, pin, workers, lowered", [
    ("auto", True, 1, True), ("auto", False, 1, False), ("low", False, 1, True), ("normal", True, 1, False),
    ("low", False, 0, False)])
def test_workers_run_at_low_priority_when_batches_go_to_a_gpu(video_folder, priority, pin, workers, lowered):
    loader = make_loader(video_folder, data=replace(DATA, workers=workers, worker_priority=priority), pin_memory=pin)
    assert (loader.loader.worker_init_fn is lower_worker_priority) == lowered


def test_low_priority_workers_are_niced_and_give_the_same_batches(video_folder, monkeypatch):
    niceness = multiprocessing.Value("i", -100)   # written by the (forked) worker process
    decode_batch = SourceWindows.__getitem__

    def recording(self, request):
        niceness.value = os.nice(0)
        return decode_batch(self, request)

    monkeypatch.setattr(SourceWindows, "__getitem__", recording)
    in_process = epoch_batches(make_loader(video_folder), 1)
    assert niceness.value == os.nice(0)
    low = make_loader(video_folder, data=replace(DATA, workers=1, worker_priority="low"))
    assert same_batches(epoch_batches(low, 1), in_process)
    assert niceness.value == min(os.nice(0) + LOW_PRIORITY_NICE, 19)


def test_a_refused_priority_change_does_not_stop_the_worker(monkeypatch, caplog):
    def refuse(increment):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "nice", refuse)
    with caplog.at_level(logging.WARNING):
        lower_worker_priority(3)
    assert "data worker 3 keeps its CPU priority" in caplog.text


def _frames_of_epochs(loader: PalLoader, epochs: int, hold: bool) -> tuple[list, list]:
    """(copies of every batch's frames, views of the frames themselves if held, else nothing)."""
    frames, held = [], []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:
            frames.append(batch.videos.clone())
            if hold:
                held.append(batch.videos[:, 1:])    # a view outlives the batch and keeps its buffer
    return frames, held


def test_a_batch_leaving_a_worker_shares_only_its_frames(video_folder):
    """Pickled as DataLoader workers do (torch's ForkingPickler), lengths and plan travel inside the message:
    as tensors, each of their storages would be a shared-memory segment fetched over its own connection."""
    from multiprocessing.reduction import ForkingPickler
    loader = make_loader(video_folder, batch_size=3)
    loader.set_epoch(0)
    batch = next(iter(loader))
    arrived = ForkingPickler.loads(ForkingPickler.dumps(batch))
    assert batch.videos.is_shared() and not batch.lengths.is_shared()
    plan_tensors = {name: value for name, value in batch.plan.to_dict().items() if isinstance(value, torch.Tensor)}
    assert len(plan_tensors) == 17 and not any(t.is_shared() for t in plan_tensors.values())
    assert torch.equal(arrived.videos, batch.videos) and torch.equal(arrived.lengths, batch.lengths)
    for name, value in arrived.plan.to_dict().items():
        expected = getattr(batch.plan, name)
        if isinstance(expected, torch.Tensor):
            assert value.dtype == expected.dtype and torch.equal(value, expected), name
        else:
            assert value == expected, name
    assert torch.equal(synthesize_batch(arrived.videos, arrived.lengths, arrived.plan),
                       synthesize_batch(batch.videos, batch.lengths, batch.plan))


def test_workers_reuse_their_batch_buffers_without_mixing_batches(video_folder):
    from uptal.data.batch_buffers import MAX_SLOTS
    one_worker = DataConfig(**{**DATA.__dict__, "workers": 1, "prefetch": 2})
    expected, _ = _frames_of_epochs(make_loader(video_folder, batch_size=3), 6, hold=False)   # 18 batches
    # dropped batch by batch: the worker cycles through a few shared buffers
    loader = make_loader(video_folder, batch_size=3, data=one_worker)
    frames, _ = _frames_of_epochs(loader, 6, hold=False)
    assert all(torch.equal(a, b) for a, b in zip(frames, expected)) and len(frames) == len(expected) == 18
    buffers = loader.dataset.buffers
    assert 1 <= len(buffers._mapped) <= one_worker.prefetch + 2          # slots used for 18 batches
    assert int(buffers.flags.sum()) == 0                                 # every batch let go: all free
    # held: nothing is overwritten; past MAX_SLOTS the worker falls back to one-off buffers
    loader = make_loader(video_folder, batch_size=3, data=one_worker)
    _, held = _frames_of_epochs(loader, 6, hold=True)
    assert all(torch.equal(view, frames[:, 1:]) for view, frames in zip(held, expected))
    assert len(loader.dataset.buffers._mapped) == MAX_SLOTS
    del held
    assert int(loader.dataset.buffers.flags.sum()) == 0


def test_ranks_read_disjoint_videos_and_step_together(video_folder):
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            loader = make_loader(video_folder, batch_size=3, rank=rank, world_size=2)
            assert len(loader) == 1                      # 10 videos / 2 ranks = 5 each -> 1 batch of 3
            seen.append({p for b in epoch_batches(loader, epoch) for p in b.paths})
        assert seen[0].isdisjoint(seen[1])
        assert len(seen[0]) == len(seen[1]) == 3
    shares = [EpochSampler(NUM_VIDEOS, 2, rank=r, world_size=2).rank_share(0) for r in (0, 1)]
    assert sorted(shares[0] + shares[1]) == list(range(NUM_VIDEOS))


def test_too_few_videos_is_a_clear_error(video_folder):
    with pytest.raises(DataError, match="cannot fill one batch of 6 per rank on 2 rank"):
        make_loader(video_folder, batch_size=6, world_size=2)


def test_worker_synthesis_matches_the_op(video_folder):
    batch = epoch_batches(make_loader(video_folder, synthesize=True, out_dtype=torch.uint8), 0)[0]
    expected = synthesize_batch(batch.videos, batch.lengths, batch.plan, out_dtype=torch.uint8)
    assert batch.clips is not None and torch.equal(batch.clips, expected)     # [2B, 3, J*F, S, S]


def test_short_video_is_used_within_its_length(tmp_path, video_folder):
    for path in sorted(video_folder.glob("*.mp4"))[:5]:
        shutil.copy(path, tmp_path / path.name)
    write_demo_videos(tmp_path / "short", num_videos=1, seed=9, num_frames=12, fps=10, height=32, width=40)
    loader = make_loader(tmp_path, batch_size=6)
    batch = epoch_batches(loader, 0)[0]
    short = [i for i, p in enumerate(batch.paths) if Path(p).parent.name == "short"]
    assert short, "the short video is in the only batch"
    i = short[0]
    assert batch.window_lengths[i] == 12
    assert max(batch.positions[i]) < 12                             # never a frame past its end
    assert batch.videos[i, batch.lengths[i]:].count_nonzero() == 0


def test_a_file_shorter_than_indexed_is_used_within_its_real_length(tmp_path, video_folder):
    for path in sorted(video_folder.glob("*.mp4"))[:3]:
        shutil.copy(path, tmp_path / path.name)
    index = load_index(tmp_path, progress=False, cache=False)      # says 3.2 s each
    victim = sorted(tmp_path.glob("*.mp4"))[0]
    write_demo_videos(tmp_path / "new", num_videos=1, seed=5, num_frames=10, fps=10, height=32, width=40)
    shutil.move(tmp_path / "new" / "demo_000.mp4", victim)          # now 1 s long
    batch = epoch_batches(PalLoader(index, PAL, DATA, batch_size=3), 0)[0]
    slot = batch.paths.index(str(victim))
    full = decode_window(victim, batch.starts[slot], 29, DATA.fps, DATA.height, DATA.width)
    assert 4 <= full.length < 29 and batch.window_lengths[slot] == full.length
    assert batch.decodes >= 4                                      # that slot was decoded again
    positions = batch.positions[slot]
    assert max(positions) < full.length
    assert torch.equal(batch.videos[slot, :len(positions)], full.frames[positions])


def indexed_then_broken(folder: Path, videos: Path):
    """Index copies of the ten videos, then break three that the index found fine: the loader, not the index,
    must catch these (truncated, missing, empty). Returns (index, broken paths)."""
    for path in videos.glob("*.mp4"):
        shutil.copy(path, folder / path.name)
    index = load_index(folder, progress=False, cache=False)
    files = sorted(folder.glob("*.mp4"))
    files[0].write_bytes(files[0].read_bytes()[:2000])     # truncated
    files[1].unlink()                                      # missing
    files[2].write_bytes(b"")                              # empty
    return index, [str(f) for f in files[:3]]


def test_bad_files_are_replaced_counted_and_reported(tmp_path, video_folder, caplog):
    index, broken = indexed_then_broken(tmp_path, video_folder)
    data = DataConfig(**{**DATA.__dict__, "max_bad_fraction": 0.5, "max_bad_batch_fraction": 1.0})
    loader = PalLoader(index, PAL, data, batch_size=3)
    with caplog.at_level(logging.WARNING, logger="uptal.data"):
        epochs = [epoch_batches(loader, e) for e in (0, 1)]
    for batches in epochs:
        assert len(batches) == 3
        for batch in batches:
            assert len(batch.paths) == 3 and not set(batch.paths) & set(broken)
            assert batch.window_lengths == [29] * 3
    assert set(loader.report.files) == set(broken)
    counts = loader.report.counts()
    assert counts.pop("missing") == 1 and counts.pop("empty") == 1
    # cut to 2000 bytes: mdat runs past the end (truncated), or no moov at all yet (undecodable)
    assert list(counts.values()) == [1] and set(counts) <= {"truncated", "undecodable"}
    first_sightings = [r for r in caplog.records if r.message.startswith("skipping bad video")]
    assert len(first_sightings) == 3                          # logged once each, over two epochs
    assert any("bad video(s) skipped and replaced" in r.message for r in caplog.records)
    # Files found bad are skipped without decoding when met again, with the same batches as when they were
    # discovered: the data order does not depend on history.
    again = epoch_batches(loader, 0)
    assert same_batches(again, epochs[0])
    assert sum(b.decodes for b in again) < sum(b.decodes for b in epochs[0])
    assert any(bad.reason == "known_bad" for b in again for bad in b.bad)
    fresh = PalLoader(index, PAL, data, batch_size=3)
    assert same_batches(epoch_batches(fresh, 1), epochs[1])


def test_too_many_bad_files_stop_with_the_files_named(tmp_path, video_folder):
    index, broken = indexed_then_broken(tmp_path, video_folder)
    data = DataConfig(**{**DATA.__dict__, "max_bad_fraction": 0.2, "max_bad_batch_fraction": 1.0})
    loader = PalLoader(index, PAL, data, batch_size=3)
    with pytest.raises(DataError, match="max_bad_fraction") as error:
        for e in (0, 1, 2):
            epoch_batches(loader, e)
    assert any(name in str(error.value) for name in broken)


def test_a_batch_of_mostly_bad_files_stops(tmp_path, video_folder):
    for path in sorted(video_folder.glob("*.mp4"))[:8]:
        shutil.copy(path, tmp_path / path.name)
    index = load_index(tmp_path, progress=False, cache=False)
    for path in sorted(tmp_path.glob("*.mp4"))[:6]:     # every batch of 4 and its 4 spares hold >= 3 of them
        path.write_bytes(b"not a video at all")
    data = DataConfig(**{**DATA.__dict__, "max_bad_fraction": 1.0, "max_bad_batch_fraction": 0.5})
    with pytest.raises(DataError, match="max_bad_batch_fraction"):
        epoch_batches(PalLoader(index, PAL, data, batch_size=4), 0)
    # in a worker too; the failed batch gives its shared buffer back
    loader = PalLoader(index, PAL, replace(data, workers=1), batch_size=4)
    with pytest.raises(DataError, match="max_bad_batch_fraction"):
        epoch_batches(loader, 0)
    flags = loader.dataset.buffers.flags
    deadline = time.monotonic() + 30   # the epoch's second batch, prefetched, may still be failing in the worker
    while int(flags.sum()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert int(flags.sum()) == 0


def test_state_dict_restores_the_data_order(tmp_path, video_folder):
    loader = make_loader(video_folder)
    loader.set_epoch(3)
    resumed = make_loader(video_folder)
    resumed.load_state_dict(loader.state_dict())
    assert resumed.epoch == 3
    assert same_batches(list(resumed), epoch_batches(loader, 3))


@pytest.mark.parametrize("pal", [PAL, PalConfig(), PalConfig(paste="same", scale=False), PalConfig(paste="none")],
                         ids=["test config", "paper", "same background, fixed stride", "no paste"])
def test_frames_a_slot_reads_depend_only_on_its_own_length(pal):
    """What the loader's planner relies on to plan once per length instead of once per slot."""
    from uptal.data.loader import _read_mask
    from uptal.pal import build_plan
    window = DATA.frames_to_decode(pal)
    lengths = torch.randint(1, window + 1, (6,), generator=torch.Generator().manual_seed(5)).tolist()
    mixed = build_plan(torch.Generator().manual_seed(9), lengths, 32, 40, pal)
    for slot, length in enumerate(lengths):
        alike = build_plan(torch.Generator().manual_seed(9), [length] * len(lengths), 32, 40, pal)
        assert _read_mask(mixed, slot, window) == _read_mask(alike, slot, window)
