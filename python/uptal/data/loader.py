"""The PAL batch loader: B source videos, each decoded ONCE, + their usable lengths + the plan of the batch.

A PAL sample needs three videos (an action source and two backgrounds). Per-clip loaders decode all three
for every sample; here every video of a batch is decoded once, as one window, and plays every role: it is
the action source of one query/key pair and the background of two other synthetic videos (DESIGN.md,
"The data path"). Decodes per sample therefore stay at 1 (plus replacements of bad files).

How a batch is made, and why it is reproducible:

1. `EpochSampler` (main process) shuffles the index with a generator seeded by (seed, epoch), gives rank r
   the entries r, r + W, r + 2W, ... of that order (ranks see disjoint videos; every epoch reshuffles) and
   cuts it into `BatchRequest`s of B entries plus a few spare entries (replacements for bad files), drawn
   from the rank's own share with a generator seeded by (seed, epoch, rank, batch).
2. `SourceWindows.__getitem__` (a DataLoader worker) decodes each entry's window, replacing a file that
   fails (missing, empty, truncated, not a video, undecodable, or a window shorter than `data.min_frames`)
   by the next spare, and builds the `PalPlan` for the actual window lengths with a generator seeded by
   (seed, epoch, rank, batch). Each entry's window start is drawn from that same per-batch seed by its
   slot, so the batch does not depend on which worker made it, on the number of workers, or on whether a
   bad file was already known (known bad files are skipped without being decoded again, same result).
3. Only what the plan reads is paid for: the plan's random draws do not depend on the lengths, so the
   frames each window must provide are known before it is decoded; the decoder converts (RGB + resize)
   only those and stops after the last one, and the batch carries only those frames ([B, T', H, W, 3],
   the plan renumbered to match), in a shared-memory buffer that the worker reuses from batch to batch
   (`batch_buffers`), so it reaches the main process without a copy, a new segment or a new mapping. A window
   shorter than its probe promised is decoded again for its real length.
4. `PalLoader` (main process) runs the DataLoader (persistent workers, prefetch, pinned memory on CUDA
   machines), records every bad file once (`BadFileReport`: counts by reason, logged at first sight,
   summarised at the end of each epoch) and stops with a `DataError` naming the worst files when more
   than `data.max_bad_batch_fraction` of one batch or `data.max_bad_fraction` of the data set is bad.

A short video is used within its length (`frame_run` lowers the stride or spreads its frames), never padded
with another video's frames; rows of `videos` past a slot's kept frames are zero and never read.
"""
from __future__ import annotations

import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import DataConfig, PalConfig
from ..pal import PalPlan, build_plan, synthesize_batch
from .batch_buffers import BatchBuffers, SlotLease
from .decode import Decoder, PyAVDecoder, VideoError
from .index import IndexEntry, VideoIndex

__all__ = ["BadFile", "BadFileReport", "BatchRequest", "DataError", "EpochSampler", "PalLoader", "SourceBatch",
           "SourceWindows", "batch_seed"]

log = logging.getLogger("uptal.data")

TOO_SHORT = "too_short"
_SPARES_PER_BATCH = 4   # spare entries sent with every batch, at least; more for large batches
# Independent random streams of one batch (the `stream` of batch_seed).
_ORDER, _SPARES, _STARTS, _PLAN = 0, 1, 2, 3


class DataError(RuntimeError):
    """The data set cannot feed training (too many bad files, too few videos); the message names files."""


def batch_seed(seed: int, epoch: int, rank: int, batch: int, stream: int = 0) -> int:
    """A 63-bit seed mixed from the coordinates of one batch (independent streams for independent draws);
    all arguments are non-negative integers."""
    state = np.random.SeedSequence([seed, epoch, rank, batch, stream]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------
# What travels between the processes


@dataclass(frozen=True)
class BadFile:
    """A file that could not serve as a source video, and why (`reason`: a VideoError reason or too_short)."""

    path: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class BatchRequest:
    """Which index entries one batch should decode (ids into the index's usable entries)."""

    epoch: int
    index: int                    # batch number within the epoch (on this rank)
    entries: tuple[int, ...]      # B entry ids, one per slot
    spares: tuple[int, ...]       # replacements, used in order when an entry is bad
    known_bad: frozenset[int] = frozenset()   # ids among entries/spares already known to be bad


@dataclass
class SourceBatch:
    """One decoded batch: what the synthesis op needs, plus what the trainer logs."""

    videos: torch.Tensor          # [B, T', H, W, 3] uint8: the frames the plan reads, per slot, in time order
    lengths: torch.Tensor         # [B] int64 frames kept per slot (rows past it are zero)
    plan: PalPlan                 # 2B synthetic videos (row i: query of source i, row B + i: its key),
                                  # frame indices into `videos`
    paths: list[str]              # the file behind each slot (after replacements)
    starts: list[float]           # start time (s) of each slot's window
    positions: list[list[int]]    # window position of every kept frame: its time is start + position / fps
    window_lengths: list[int]     # usable frames of each decoded window (the plan was drawn for these)
    epoch: int
    index: int
    bad: list[BadFile] = field(default_factory=list)   # files found bad while filling this batch
    decodes: int = 0              # decode calls made (successful ones = B)
    decoded_frames: int = 0       # window positions decoded (each window stops after the last frame read)
    converted_frames: int = 0     # of those, the frames converted to RGB: the ones the plan reads
    clips: torch.Tensor | None = None   # [2B, 3, J*F, S, S] when synthesized in the worker
    # The worker's claim on the shared buffer behind `videos`, on its way to the main process; there it moves onto
    # the `videos` tensor, and the buffer is reused once that tensor and every view of it are gone (batch_buffers)
    lease: SlotLease | None = field(default=None, repr=False, compare=False)

    @property
    def batch_size(self) -> int:
        return self.videos.shape[0]

    def __getstate__(self) -> dict:
        """Leaving a worker: the lengths and the plan travel inside the message, as numpy arrays. As tensors,
        each of their 18 storages would become a shared-memory segment of its own, which the main process
        fetches over a new socket connection with an authentication handshake (torch's file_descriptor
        sharing): about 2 ms each there, for a few kB."""
        state = dict(self.__dict__)
        state["lengths"] = self.lengths.numpy()
        state["plan"] = {name: _as_array(value) for name, value in self.plan.to_dict().items()}
        return state

    def __setstate__(self, state: dict) -> None:
        """Arriving in the main process: lengths and plan become tensors again (over the received arrays, no
        copy); the lease goes onto the frames tensor, whose buffer stays mapped for the next batch that
        reuses it."""
        state["lengths"] = torch.from_numpy(state["lengths"])
        state["plan"] = PalPlan(**{name: _as_tensor(value) for name, value in state["plan"].items()})
        self.__dict__.update(state)
        if self.lease is not None:
            self.lease.remember(self.videos)
            self.videos.slot_lease, self.lease = self.lease, None

    def pin_memory(self) -> "SourceBatch":
        """Called by the DataLoader's pinning thread: page-locked copies, so the host-to-device copy of the
        uint8 frames can run asynchronously (non_blocking=True); the worker's buffer is free again once the
        shared frames are dropped."""
        return replace(self, videos=self.videos.pin_memory(),
                       clips=None if self.clips is None else self.clips.pin_memory())


def _as_array(value):
    return value.numpy() if isinstance(value, torch.Tensor) else value


def _as_tensor(value):
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


# ---------------------------------------------------------------------------------------------------------
# Sampling: which videos go into which batch, on which rank


class EpochSampler:
    """Yields the `BatchRequest`s of one rank for one epoch (call `set_epoch` before each epoch).

    Every rank gets the same number of batches (floor of its share / B; the remainder is dropped and
    changes every epoch), so DDP ranks step in lockstep."""

    def __init__(self, num_entries: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        per_rank = num_entries // world_size
        if per_rank < batch_size:
            raise DataError(f"{num_entries} usable videos cannot fill one batch of {batch_size} per rank on "
                            f"{world_size} rank(s): need at least {batch_size * world_size}")
        self.num_entries, self.batch_size = num_entries, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.start_batch = 0
        self.known_bad: set[int] = set()

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate `epoch` from batch `start_batch` on (a resumed run skips what it already trained on,
        without decoding it: a batch depends only on (seed, epoch, rank, batch number))."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch must be in [0, {len(self)}], got {start_batch}")
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.num_entries // self.world_size) // self.batch_size

    def rank_share(self, epoch: int) -> list[int]:
        """This rank's entry ids for `epoch`, in order (disjoint from every other rank's)."""
        order = torch.randperm(self.num_entries, generator=_generator(batch_seed(self.seed, epoch, 0, 0, _ORDER)))
        per_rank = self.num_entries // self.world_size
        return order[self.rank::self.world_size][:per_rank].tolist()

    def __iter__(self) -> Iterator[BatchRequest]:
        share = self.rank_share(self.epoch)
        b = self.batch_size
        num_spares = min(len(share) - b, max(_SPARES_PER_BATCH, b // 2))
        for i in range(self.start_batch, len(self)):
            entries = share[i * b:(i + 1) * b]
            spares = self._spares(share, entries, i, num_spares)
            known = frozenset(self.known_bad.intersection(entries + spares))
            yield BatchRequest(self.epoch, i, tuple(entries), tuple(spares), known)

    def _spares(self, share: list[int], entries: list[int], batch: int, count: int) -> list[int]:
        """`count` other entries of this rank's share, in a seeded random order."""
        taken = set(entries)
        others = [e for e in share if e not in taken]
        pick = torch.randperm(len(others), generator=_generator(batch_seed(self.seed, self.epoch, self.rank, batch, _SPARES)))
        return [others[j] for j in pick[:count].tolist()]


# ---------------------------------------------------------------------------------------------------------
# Decoding one batch (runs in the DataLoader workers)


class SourceWindows(Dataset):
    """Map-style dataset whose items are whole batches: `dataset[BatchRequest] -> SourceBatch`."""

    def __init__(self, entries: Sequence[IndexEntry], pal: PalConfig, data: DataConfig, seed: int = 0,
                 rank: int = 0, decoder: Decoder | None = None, synthesize: bool = False,
                 out_dtype: torch.dtype = torch.float32, buffers: BatchBuffers | None = None) -> None:
        self.entries = list(entries)
        self.pal, self.data = pal, data
        self.seed, self.rank = seed, rank
        self.decoder = decoder or PyAVDecoder(threads=1)
        self.window = data.frames_to_decode(pal)
        self.min_frames = min(data.min_frames, self.window)   # a whole window is never "too short"
        self.synthesize = synthesize
        self.out_dtype = out_dtype
        self.buffers = buffers   # None: plain tensors (no workers)

    def __len__(self) -> int:
        return len(self.entries)

    def batch_tensor(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, SlotLease | None]:
        """uint8 tensor for a batch's frames: in a worker, a reused shared buffer (see batch_buffers)."""
        if self.buffers is None:
            return torch.empty(shape, dtype=torch.uint8), None
        return self.buffers.tensor(shape)

    def __getitem__(self, request: BatchRequest) -> SourceBatch:
        b = len(request.entries)
        coordinates = (self.seed, request.epoch, self.rank, request.index)
        starts = torch.rand(b + len(request.spares), generator=_generator(batch_seed(*coordinates, _STARTS))).tolist()
        planner = _Planner(self, b, batch_seed(*coordinates, _PLAN))
        filler = _Filler(self, request, starts, planner)
        try:
            for slot, entry_id in enumerate(request.entries):
                filler.fill(slot, entry_id)
            plan = planner.plan(filler.lengths)
            videos, lengths, plan, positions = filler.finish(plan)
        except BaseException:   # the batch never leaves the worker: its buffer is free again
            if filler.lease is not None:
                self.buffers.release_in_worker(filler.lease)
            raise
        batch = SourceBatch(videos=videos, lengths=lengths, plan=plan, paths=filler.paths, starts=filler.starts_used,
                            positions=positions, window_lengths=filler.lengths, epoch=request.epoch,
                            index=request.index, bad=filler.bad, decodes=filler.decodes,
                            decoded_frames=filler.decoded_frames, converted_frames=int(lengths.sum()),
                            lease=filler.lease)
        if self.synthesize:
            batch.clips = synthesize_batch(videos, lengths, plan, out_dtype=self.out_dtype)
        return batch

    def window_start(self, entry: IndexEntry, u: float) -> float:
        """Start time (s) of a window of `self.window` frames, uniform over the video (0 when it is shorter)."""
        duration = entry.info.duration if entry.info is not None else 0.0
        return max(0.0, duration - self.window / self.data.fps) * u

    def expected_length(self, entry: IndexEntry, start: float) -> int:
        """Frames a window starting at `start` should get: the target times before the end of the video."""
        if entry.info is None:
            return self.window
        remaining = (entry.info.duration - start) * self.data.fps
        return max(0, min(self.window, math.ceil(remaining - 1e-6)))

    def decode(self, entry: IndexEntry, start: float, out: torch.Tensor, rows: list[int]) -> int:
        """Decode one window, converting only the positions with a row (>= 0) into those rows of `out`
        [T', H, W, 3]; return how many positions were decoded (raises VideoError)."""
        window = self.decoder.decode_window(_source_of(entry), start, self.window, self.data.fps,
                                            self.data.height, self.data.width, out=out, rows=rows)
        return window.length


class _Planner:
    """The plan of one batch, and which frames of each slot it reads.

    The plan's random draws do not depend on the lengths, and the frames a synthetic video takes from a
    source depend only on that source's length; so the frames read from slot i are known once the length
    of slot i is, whatever the other slots hold. That lets each window convert (RGB + resize, about half
    of the decoding cost) only the frames the plan will read."""

    def __init__(self, dataset: SourceWindows, batch_size: int, seed: int) -> None:
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self._read: dict[tuple[int, int], list[bool]] = {}   # (slot, length) -> frames read; a plan costs ms

    def plan(self, lengths: Sequence[int]) -> PalPlan:
        d = self.dataset.data
        return build_plan(_generator(self.seed), list(lengths), d.height, d.width, self.dataset.pal)

    def frames_read(self, slot: int, length: int) -> list[bool]:
        """[T] which window positions of `slot` the plan reads when that slot holds `length` frames."""
        length = max(length, 1)
        if (slot, length) not in self._read:   # what a slot reads depends only on its own length:
            plan = self.plan([length] * self.batch_size)   # one plan answers for every slot of that length
            window = self.dataset.window
            self._read.update(((s, length), _read_mask(plan, s, window)) for s in range(self.batch_size))
        return self._read[slot, length]


def _last(mask: list[bool]) -> int:
    """Index of the last True (-1 when none)."""
    return max((k for k, value in enumerate(mask) if value), default=-1)


def _read_mask(plan: PalPlan, slot: int, window: int) -> list[bool]:
    mask = torch.zeros(window, dtype=torch.bool)
    mask[plan.background_frames[plan.background == slot].flatten()] = True
    action = plan.action_frames[plan.action == slot].flatten()
    mask[action[action >= 0]] = True
    return mask.tolist()


class _Filler:
    """Fills the slots of one batch, replacing bad files by the request's spares, in order.

    Each slot's frames go straight into the batch tensor [B, T', H, W, 3], which holds only the frames the
    plan reads (T' = the most any slot keeps), in time order; it grows in the rare case a replacement or a
    shorter-than-probed file needs more rows."""

    def __init__(self, dataset: SourceWindows, request: BatchRequest, starts: list[float], planner: _Planner) -> None:
        self.dataset, self.request, self.starts, self.planner = dataset, request, starts, planner
        self.next_spare = 0
        self.lengths: list[int] = []
        self.paths: list[str] = []
        self.starts_used: list[float] = []
        self.kept: list[list[bool]] = []
        self.bad: list[BadFile] = []
        self.decodes = 0
        self.decoded_frames = 0
        self.videos, self.lease = dataset.batch_tensor((len(request.entries), self._expected_rows()) +
                                                       self._frame_shape())

    def _frame_shape(self) -> tuple[int, int, int]:
        return self.dataset.data.height, self.dataset.data.width, 3

    def _expected_rows(self) -> int:
        """Frames kept per slot if every first-choice entry holds what its probe says (the usual case)."""
        d = self.dataset
        counts = []
        for slot, entry_id in enumerate(self.request.entries):
            entry = d.entries[entry_id]
            length = d.expected_length(entry, d.window_start(entry, self.starts[slot]))
            counts.append(sum(self.planner.frames_read(slot, length)))
        return max(1, max(counts))

    def fill(self, slot: int, entry_id: int) -> None:
        candidate, u = entry_id, self.starts[slot]
        while True:
            entry = self.dataset.entries[candidate]
            if candidate in self.request.known_bad:
                self._record_bad(BadFile(entry.path, "known_bad"))
            elif self._try(slot, entry, u):
                self.paths.append(entry.path)
                return
            candidate, u = self._take_spare()

    def _try(self, slot: int, entry: IndexEntry, u: float) -> bool:
        """Decode `entry` into `slot`: only the frames the plan will read, and only up to the last of them.

        The plan is drawn for the length the probe predicts. When the window ends before the last frame
        the plan needs (the file is shorter than probed), the slot is decoded again for its real length;
        when it holds at least that frame, the predicted length stands (the plan reads no frame past it)."""
        d = self.dataset
        start = d.window_start(entry, u)
        length = d.expected_length(entry, start)
        keep = self.planner.frames_read(slot, length)
        decoded = self._decode(slot, entry, start, keep)
        if decoded is not None and decoded < _last(keep) + 1:     # shorter than probed
            length = decoded
            needed = self.planner.frames_read(slot, length) if length >= d.min_frames else keep
            if any(n and not k for n, k in zip(needed, keep)):
                keep = needed
                decoded = self._decode(slot, entry, start, keep)
            elif decoded is not None:        # kept positions past the end got no frame: not kept after all
                keep = [wanted and k < decoded for k, wanted in enumerate(keep)]
        if decoded is None:
            return False
        self.decoded_frames += decoded
        if length < d.min_frames:
            self._record_bad(BadFile(entry.path, TOO_SHORT, f"{length} frames at {d.data.fps:g} fps, "
                                                            f"need {d.min_frames}"))
            return False
        self.lengths.append(length)
        self.starts_used.append(start)
        self.kept.append(keep)
        return True

    def _decode(self, slot: int, entry: IndexEntry, start: float, keep: list[bool]) -> int | None:
        rows, row = [], 0
        for wanted in keep:                                       # kept position -> next row of the slot
            rows.append(row if wanted else -1)
            row += wanted
        self._ensure_rows(row)
        self.decodes += 1
        try:
            return self.dataset.decode(entry, start, self.videos[slot], rows)
        except VideoError as error:
            self._record_bad(BadFile(entry.path, error.reason, error.detail))
            return None

    def _ensure_rows(self, rows: int) -> None:
        if rows > self.videos.shape[1]:
            grown, lease = self.dataset.batch_tensor((self.videos.shape[0], rows) + self._frame_shape())
            grown[:, :self.videos.shape[1]] = self.videos
            if self.lease is not None:
                self.dataset.buffers.release_in_worker(self.lease)
            self.videos, self.lease = grown, lease

    def finish(self, plan: PalPlan) -> tuple[torch.Tensor, torch.Tensor, PalPlan, list[list[int]]]:
        """The batch tensor, frames kept per slot, the plan with frame indices renumbered into the batch
        tensor, and the window position of every kept frame. Checks that the plan reads only kept frames."""
        window = self.dataset.window
        renumber = torch.full((len(self.kept), window), -1, dtype=torch.int64)   # window position -> row
        positions = []
        for slot, keep in enumerate(self.kept):
            where = torch.tensor(keep).nonzero().flatten()                     # [n] kept positions
            renumber[slot, where] = torch.arange(len(where))
            self.videos[slot, len(where):] = 0                                 # rows no frame went to
            positions.append(where.tolist())
            missing = [k for k, (n, c) in enumerate(zip(_read_mask(plan, slot, window), keep)) if n and not c]
            if missing:
                raise RuntimeError(f"internal error: the plan reads frames {missing[:5]} of slot {slot} that "
                                   "were not decoded")
        background = renumber[plan.background[:, None], plan.background_frames]     # [M, J*F]
        action = torch.where(plan.action_frames >= 0,
                             renumber[plan.action[:, None], plan.action_frames.clamp(min=0)], -1)
        lengths = torch.tensor([max(1, len(p)) for p in positions], dtype=torch.int64)
        return self.videos, lengths, replace(plan, background_frames=background, action_frames=action), positions

    def _record_bad(self, bad: BadFile) -> None:
        self.bad.append(bad)
        b = len(self.request.entries)
        limit = self.dataset.data.max_bad_batch_fraction * b
        if len(self.bad) > limit:
            raise DataError(f"batch {self.request.index} of epoch {self.request.epoch}: {len(self.bad)} of its "
                            f"{b} videos are bad (limit data.max_bad_batch_fraction="
                            f"{self.dataset.data.max_bad_batch_fraction:g}): {_name_files(self.bad)}")

    def _take_spare(self) -> tuple[int, float]:
        if self.next_spare >= len(self.request.spares):
            raise DataError(f"batch {self.request.index} of epoch {self.request.epoch}: no spare video left to "
                            f"replace the bad ones: {_name_files(self.bad)}")
        k = self.next_spare
        self.next_spare += 1
        return self.request.spares[k], self.starts[len(self.request.entries) + k]


def _source_of(entry: IndexEntry):
    """What the decoder opens for an entry: its path, or the bytes of a tar-shard member."""
    from .shards import open_entry_source
    return open_entry_source(entry)


def _name_files(bad: Sequence[BadFile], limit: int = 8) -> str:
    named = "; ".join(f"{b.path} ({b.reason}{': ' + b.detail if b.detail else ''})" for b in bad[:limit])
    return named + (f"; and {len(bad) - limit} more" if len(bad) > limit else "")


# ---------------------------------------------------------------------------------------------------------
# The loader users iterate (main process)


class BadFileReport:
    """Every bad file seen by this rank: counted by reason, logged once, checked against the limits."""

    def __init__(self, data_set_size: int, max_bad_fraction: float) -> None:
        self.data_set_size = data_set_size
        self.max_bad_fraction = max_bad_fraction
        self.files: dict[str, BadFile] = {}
        self.hits: Counter[str] = Counter()          # path -> times it was found bad (known_bad skips excluded)
        self.epoch_counts: Counter[str] = Counter()  # reason -> new bad files this epoch

    def add_index_failures(self, entries: Sequence[IndexEntry]) -> None:
        """Files the index already found unusable (probed once, never decoded here)."""
        for entry in entries:
            self._add(BadFile(entry.path, entry.status, entry.detail))

    def record(self, bad: Sequence[BadFile]) -> list[BadFile]:
        """Record the bad files of one batch; returns the ones seen for the first time."""
        new = []
        for item in bad:
            if item.reason == "known_bad":
                continue
            self.hits[item.path] += 1
            if item.path not in self.files:
                self._add(item)
                self.epoch_counts[item.reason] += 1
                new.append(item)
                log.warning("skipping bad video %s: %s%s", item.path, item.reason,
                            f" ({item.detail})" if item.detail else "")
        self.check()
        return new

    def _add(self, item: BadFile) -> None:
        self.files[item.path] = item

    def counts(self) -> dict[str, int]:
        """reason -> number of distinct bad files seen so far (index and decoding)."""
        return dict(Counter(b.reason for b in self.files.values()))

    def check(self) -> None:
        limit = self.max_bad_fraction * self.data_set_size
        if len(self.files) > limit:
            worst = sorted(self.files.values(), key=lambda b: -self.hits[b.path])
            raise DataError(f"{len(self.files)} of {self.data_set_size} videos are bad, more than "
                            f"data.max_bad_fraction={self.max_bad_fraction:g} of the data set "
                            f"({self.counts()}): {_name_files(worst)}")

    def end_epoch(self, epoch: int) -> dict[str, int]:
        """Log and return this epoch's new bad files by reason, and start counting the next epoch."""
        counts = dict(self.epoch_counts)
        if counts:
            total = sum(counts.values())
            log.warning("epoch %d: %d bad video(s) skipped and replaced (%s); %d bad in all", epoch, total,
                        ", ".join(f"{r}: {n}" for r, n in sorted(counts.items())), len(self.files))
        self.epoch_counts = Counter()
        return counts


LOW_PRIORITY_NICE = 10


def lower_worker_priority(worker_id: int) -> None:
    """DataLoader worker_init_fn: run this worker at nice +10. On a GPU node busy workers otherwise take CPU time
    from the training process, whose host work (kernel launches, pinning and copying batches) then delays every
    step; at low priority they decode in whatever CPU time the training process leaves. Where the system refuses
    (a sandbox without setpriority), the worker runs on at its priority: a slower step is no reason to stop."""
    try:
        os.nice(LOW_PRIORITY_NICE)
    except OSError as error:
        log.warning("data worker %d keeps its CPU priority: %s", worker_id, error)


class PalLoader:
    """Iterate `SourceBatch`es of one rank for one epoch at a time (`set_epoch(e)`, then `for batch in loader`).

    batch_size: source videos per batch on this rank (B); each batch gives 2B synthetic videos.
    synthesize: also run the synthesis op in the worker (`batch.clips`; the CPU training path). On a GPU,
        leave it off and synthesize on the device from the pinned uint8 frames.
    """

    def __init__(self, index: VideoIndex, pal: PalConfig, data: DataConfig, batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, decoder: Decoder | None = None, synthesize: bool = False,
                 out_dtype: torch.dtype = torch.float32, pin_memory: bool | None = None) -> None:
        usable = index.usable()
        self.report = BadFileReport(len(index), data.max_bad_fraction)
        self.report.add_index_failures(index.bad())
        self.report.check()
        self.sampler = EpochSampler(len(usable), batch_size, seed, rank, world_size)
        # workers reuse their shared batch buffers; without workers batches are plain tensors
        buffers = BatchBuffers(data.workers) if data.workers > 0 else None
        self.dataset = SourceWindows(usable, pal, data, seed, rank, decoder, synthesize, out_dtype, buffers)
        self._entry_id = {entry.path: i for i, entry in enumerate(usable)}
        self.epoch = 0
        pin = torch.cuda.is_available() if pin_memory is None else pin_memory
        workers = self.workers = data.workers
        self.prefetch = data.prefetch_batches(pal, batch_size) if workers > 0 else 0   # batches queued per worker
        low_priority = data.worker_priority == "low" or (data.worker_priority == "auto" and pin)
        self.loader = DataLoader(
            self.dataset, batch_size=None, sampler=self.sampler, num_workers=workers, pin_memory=pin,
            persistent_workers=workers > 0, prefetch_factor=self.prefetch or None,
            worker_init_fn=lower_worker_priority if workers > 0 and low_priority else None,
            # its own generator: starting an iteration must not draw from torch's global one, or a resumed
            # run's model randomness (shuffle-BN permutations) would shift against the uninterrupted run's
            generator=torch.Generator().manual_seed(seed))

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Next iteration covers `epoch`, from batch `start_batch` on (to resume inside an epoch)."""
        self.epoch = epoch
        self.sampler.set_epoch(epoch, start_batch)

    def __len__(self) -> int:
        """Batches in a whole epoch (the same on every rank)."""
        return len(self.sampler)

    def __iter__(self) -> Iterator[SourceBatch]:
        for batch in self.loader:
            for bad in self.report.record(batch.bad):
                entry_id = self._entry_id.get(bad.path)
                if entry_id is not None:
                    self.sampler.known_bad.add(entry_id)
            yield batch
        self.report.end_epoch(self.epoch)

    def state_dict(self) -> dict:
        """What a checkpoint needs to continue the same data order (the rest derives from the seeds)."""
        return {"epoch": self.epoch, "known_bad": sorted(self.sampler.known_bad)}

    def load_state_dict(self, state: dict) -> None:
        """Restore the bad files already found and the epoch (call `set_epoch` to choose the start batch)."""
        self.set_epoch(int(state["epoch"]))
        self.sampler.known_bad = set(int(i) for i in state["known_bad"])

