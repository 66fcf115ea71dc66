"""`uptal pretrain`: PAL pre-training, alone or under torchrun, resumable, observable.

The run folder (train.out) holds:
    config.yaml           the resolved configuration (also stored in every checkpoint)
    log.jsonl             one JSON object per logged step, validation and event
    events.out.tfevents.* TensorBoard scalars and pictures
    pictures/             synthetic samples with their pasted regions framed, every train.image_every steps
    checkpoints/          step-<step>.pt, written atomically, the last train.keep_last kept
    demo_videos/          the demo videos, when data.source is "demo"

Distributed: the same command under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT from the
environment) uses NCCL on CUDA and gloo on the CPU. train.batch_size is global; each rank takes an equal
share. Only rank 0 writes files.

Stopping: SIGTERM or SIGINT (a scheduler's preemption, Ctrl-C) finishes the current step and the next (the
host reads each step's stop vote one step late, see `_train_epoch`), writes a checkpoint and exits 0; a second
signal stops at once. A non-finite loss stops the run with an error that names the step, the batch, its videos
and the last checkpoint.
"""
from __future__ import annotations

import gc
import hashlib
import logging
import math
import os
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from .. import __version__
from ..config import PretrainConfig, to_dict
from ..data.index import VideoIndex, load_index
from ..data.loader import PalLoader
from ..pal.picture import render_batch
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from ..models.moco import convert_sync_batchnorm
from .engine import PalStep, build_moco, compile_backbones
from .gpu_idle import GpuIdle
from .host_values import HostValues
from .logger import RunLogger
from .rng import rng_state, seed_everything, set_rng_state
from .schedule import PlateauSchedule

__all__ = ["pretrain", "TrainingError", "DistEnv"]

log = logging.getLogger("uptal.train")


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a bad resume); the message says where and what to do."""


# ---------------------------------------------------------------------------------------------------------
# Processes and devices


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "DistEnv":
        """Read torchrun's variables; initialise the process group when there is more than one rank."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            if local_rank >= torch.cuda.device_count():
                raise RuntimeError(f"LOCAL_RANK {local_rank} but this process sees {torch.cuda.device_count()} "
                                   "CUDA device(s): start at most one rank per GPU (torchrun --nproc-per-node), "
                                   "or hide the GPUs (CUDA_VISIBLE_DEVICES=) to train on the CPU")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        if world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend, rank=rank, world_size=world)
        return cls(rank, world, local_rank, device)

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def start_any(self, flag: bool) -> bool | torch.Tensor:
        """Start a vote: the result is (or holds, non-zero) True on every rank when `flag` is True on any rank
        (so that all ranks stop at the same step). Every rank must start every vote. With several ranks the
        reduction runs on the device without the host waiting for it: read it through `HostValues`."""
        if self.world_size == 1:
            return flag
        value = torch.full((1,), 1.0 if flag else 0.0, device=self.device)   # made on the device: no copy
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return value

    def mean(self, value: float) -> float:
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return float(tensor.item()) / self.world_size


# ---------------------------------------------------------------------------------------------------------
# Data


def build_indexes(config: PretrainConfig, run: Path, env: DistEnv) -> tuple[VideoIndex, VideoIndex]:
    """The training and validation videos: a deterministic split of one index by a hash of each video's path
    relative to the data source (the same split on every rank and every run, whatever order the files were
    listed in, and wherever the data set is mounted: a run resumed after moving it keeps its split)."""
    source = config.data.source
    if not source:
        raise TrainingError("data.source is not set: give your videos (data.source=FOLDER, a .txt/.csv list or "
                            "a shard folder), or run the demo: uptal pretrain --config demo")
    if source == "demo":
        source = str(_demo_videos(config, run, env))
    index = load_index(source, progress=env.is_main)
    usable = index.usable()
    per_rank = config.train.batch_size // env.world_size
    held_out = max(per_rank * env.world_size, round(config.train.val_fraction * len(usable)))
    if config.train.val_fraction == 0:
        held_out = 0
    if len(usable) - held_out < config.train.batch_size:
        raise TrainingError(f"data.source {config.data.source}: {len(usable)} usable videos, {held_out} held out "
                            f"for validation, which leaves fewer than one global batch of "
                            f"{config.train.batch_size} to train on")
    root = _source_root(source)
    ranked = sorted(usable, key=lambda entry: hashlib.sha1(_relative(entry.path, root).encode()).hexdigest())
    validation = set(id(entry) for entry in ranked[:held_out])
    train = [e for e in index.entries if id(e) not in validation]
    val = [e for e in index.entries if id(e) in validation]
    return VideoIndex(train, index.source), VideoIndex(val, index.source)


def _source_root(source: str) -> str:
    """The folder that the paths of a data source are relative to: the folder itself, or the one holding a
    list file or shard manifest."""
    path = os.path.abspath(source)
    return path if os.path.isdir(path) else os.path.dirname(path)


def _relative(path: str, root: str) -> str:
    """`path` relative to `root` when inside it (a shard record's "<shard>#<key>" too), else unchanged."""
    if os.path.isabs(path) and os.path.commonpath([root, path]) == root:
        return os.path.relpath(path, root)
    return path


def _demo_videos(config: PretrainConfig, run: Path, env: DistEnv) -> Path:
    from ..data.demo import write_demo_videos

    folder = run / "demo_videos"
    if env.is_main and len(list(folder.glob("demo_*.mp4"))) < config.data.demo_videos:
        write_demo_videos(folder, num_videos=config.data.demo_videos, seed=config.train.seed)
    env.barrier()
    return folder


# ---------------------------------------------------------------------------------------------------------
# The run


class _StopRequest:
    """SIGTERM / SIGINT set a flag that the loop reads after each step; a second signal stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping without a checkpoint")
        self.requested = True
        log.warning("%s received: finishing this step, writing a checkpoint and exiting",
                    signal.Signals(signum).name)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def validation_prefetch(config: PretrainConfig, batch_size: int) -> int:
    """Batches each validation worker queues: what the training loader would, but no more than a validation
    pass reads (it takes `train.val_batches` and stops; the rest of a deeper queue is decoded for nothing)."""
    data = config.data
    needed = math.ceil(config.train.val_batches / max(data.workers, 1))
    return max(1, min(data.prefetch_batches(config.pal, batch_size), needed))


@dataclass
class _Position:
    epoch: int = 0
    step: int = 0              # optimizer steps done
    batch_in_epoch: int = 0    # batches of `epoch` already trained on


class Pretrainer:
    """One rank's share of a pre-training run: builds data, model and optimizer from the config, then `fit()`
    trains (resuming first when train.resume asks), validates every epoch and checkpoints (rank 0 writes)."""

    def __init__(self, config: PretrainConfig) -> None:
        self.config = config
        train = config.train
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if train.batch_size % world_size:    # checked before any process group is started
            raise TrainingError(f"train.batch_size={train.batch_size} is global and must divide by the "
                                f"{world_size} ranks")
        self.env = env = DistEnv.from_environment()
        self.run = Path(train.out)
        self.checkpoints = self.run / "checkpoints"
        self.batch_per_rank = train.batch_size // env.world_size
        seed_everything(train.seed)          # the same initial weights on every rank
        if env.is_main:
            self.run.mkdir(parents=True, exist_ok=True)
            (self.run / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        self.logger = RunLogger(self.run, enabled=env.is_main, tensorboard=train.tensorboard)
        self._build_data()
        self._build_model()
        self.position = _Position()
        self.last_checkpoint: Path | None = None
        self.epoch_losses: list[float] = []      # train losses of the current epoch (for its summary line)
        self.loss_history: list[tuple[int, float]] = []   # (epoch, mean train loss) of full-queue epochs

    # --- building -----------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        c, env = self.config, self.env
        train_index, val_index = build_indexes(c, self.run, env)
        on_cpu = env.device.type == "cpu"
        common = dict(pal=c.pal, data=c.data, batch_size=self.batch_per_rank, rank=env.rank,
                      world_size=env.world_size, synthesize=on_cpu, out_dtype=torch.float32)
        self.train_loader = PalLoader(train_index, seed=c.train.seed, **common)
        if len(val_index.usable()):
            val_data = replace(c.data, prefetch=validation_prefetch(c, self.batch_per_rank))
            self.val_loader = PalLoader(val_index, seed=c.train.seed + 1, **{**common, "data": val_data})
        else:
            self.val_loader = None

    def _build_model(self) -> None:
        c, env = self.config, self.env
        self.moco = build_moco(c.model).to(env.device)
        if c.model.sync_bn and env.world_size > 1 and env.device.type == "cuda":
            self.moco.encoder_q = convert_sync_batchnorm(self.moco.encoder_q, env.device)
        if c.train.channels_last and env.device.type == "cuda":
            self.moco.to(memory_format=torch.channels_last_3d)
        model: torch.nn.Module = self.moco
        if env.world_size > 1:
            # no buffer sync on every forward: the queue is the same on every rank already (all-gathered keys),
            # and broadcasting it every step would move K x D floats for nothing
            device_ids = [env.device.index] if env.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(self.moco, device_ids=device_ids, **_no_buffer_sync())
        if c.train.compile:
            compile_backbones(self.moco)
        self.optimizer = torch.optim.Adam(self.moco.encoder_q.parameters(), lr=c.train.effective_lr,
                                          weight_decay=c.train.weight_decay)
        self.schedule = PlateauSchedule(self.optimizer, c.train.effective_lr, c.train.plateau_factor,
                                        c.train.plateau_patience, warmup_steps=c.train.warmup_steps)
        amp = c.train.amp
        autocast = torch.bfloat16 if (amp == "bf16" or (amp == "auto" and env.device.type == "cuda")) else None
        self.step = PalStep(self.moco, model, self.optimizer, c.model.temperature, c.train.grad_clip, autocast)

    # --- checkpoints --------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.moco.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": None,   # bf16 autocast needs no loss scaling
            "epoch": self.position.epoch,
            "step": self.position.step,
            "batch_in_epoch": self.position.batch_in_epoch,
            "rng": self._gather_rng(),
            "data": self.train_loader.state_dict(),
            "config": to_dict(self.config),
            "versions": {"uptal": __version__, "torch": torch.__version__, "git_sha": _git_sha()},
            "world_size": self.env.world_size,
        }

    def _gather_rng(self) -> list[dict]:
        """RNG states of every rank, in rank order (rank 0 writes them all)."""
        if self.env.world_size == 1:
            return [rng_state()]
        states: list = [None] * self.env.world_size
        torch.distributed.all_gather_object(states, rng_state())
        return states

    def save(self) -> None:
        state = self.state()    # collective (RNG gather): every rank takes part
        if self.env.is_main:
            self.last_checkpoint = save_checkpoint(state, self.checkpoints, self.position.step,
                                                   self.config.train.keep_last)
            self.logger.event(self.position.step, "checkpoint", path=str(self.last_checkpoint))
        self.env.barrier()

    def resume(self) -> bool:
        """Continue from train.resume ("auto": the newest checkpoint of the run, if any)."""
        wanted = self.config.train.resume
        if not wanted:
            return False
        path = latest_checkpoint(self.checkpoints) if wanted == "auto" else Path(wanted)
        if path is None:
            return False
        state = load_checkpoint(path)
        if state.get("world_size", 1) != self.env.world_size:
            log.warning("resuming a %s-rank checkpoint on %s ranks: weights, optimizer and schedule carry over; "
                        "the data order and RNG streams differ from an uninterrupted run",
                        state.get("world_size"), self.env.world_size)
        self.moco.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.train_loader.load_state_dict(state["data"])
        rng = state["rng"]
        set_rng_state(rng[self.env.rank] if self.env.rank < len(rng) else rng[0])
        self.position = _Position(state["epoch"], state["step"], state["batch_in_epoch"])
        self.last_checkpoint = path
        self.logger.event(self.position.step, "resume", path=str(path), epoch=self.position.epoch)
        log.info("resumed from %s (epoch %d, step %d)", path, self.position.epoch, self.position.step)
        return True

    # --- the loop -----------------------------------------------------------------------------------------
    def steps_in_epoch(self) -> int:
        limit = self.config.train.steps_per_epoch
        return min(len(self.train_loader), limit) if limit else len(self.train_loader)

    def fit(self) -> int:
        stop = _StopRequest()
        stop.install()
        try:
            self.resume()
            self.logger.event(self.position.step, "start", world_size=self.env.world_size,
                              device=str(self.env.device), batch_per_rank=self.batch_per_rank)
            while self.position.epoch < self.config.train.epochs:
                if self._train_epoch(stop):
                    self.save()
                    why = "signal" if stop.requested else f"train.max_steps={self.config.train.max_steps}"
                    self.logger.event(self.position.step, f"stopped by {why}")
                    return 0
                self._end_epoch()
            self._final_summary()
            return 0
        finally:
            stop.restore()
            self.logger.close()

    def _train_epoch(self, stop: _StopRequest) -> bool:
        """Train the rest of the current epoch; True when the run must stop (a signal, train.max_steps).

        The host reads a step's results (the loss and its non-finite check, the log line, the stop vote) only
        after it has queued the next step: reading a value on a GPU waits until the device has got there, and
        waiting before the next step is queued would leave the GPU idle while the host fetches the next
        batch and launches its kernels. The reads go through `HostValues`, which waits for that step only,
        not for the one queued after it. A checkpoint first reads the step it saves, so none holds the
        weights of a step whose loss was not finite."""
        c, p = self.config.train, self.position
        steps = self.steps_in_epoch()
        self.train_loader.set_epoch(p.epoch, start_batch=min(p.batch_in_epoch, steps))
        meter = _Meter()
        gpu_idle = GpuIdle(self.env.device, window=meter.window)
        bar = _progress(self.env.is_main, steps, p.batch_in_epoch, f"epoch {p.epoch + 1}/{c.epochs}")
        batches = iter(self.train_loader)
        queued: _QueuedStep | None = None     # the newest step, its results not read yet
        stopping = False
        try:
            while p.batch_in_epoch < steps and not stopping:
                waited = time.perf_counter()
                batch = next(batches)
                meter.data_ready(time.perf_counter() - waited)
                begin = gpu_idle.mark()
                clips = self.step.clips(batch, self.env.device)
                self.schedule.set_step(p.step)
                result = self.step.train_step(clips, batch.plan)
                end = gpu_idle.mark()
                p.step += 1
                p.batch_in_epoch += 1
                meter.step_done(batch.batch_size * self.env.world_size)
                values = HostValues({**result.scalars(), "stop": self.env.start_any(stop.requested)})
                done = _QueuedStep(values, p.step, p.batch_in_epoch, lr=self.schedule.current, marks=(begin, end),
                                   batch_index=batch.index, paths=batch.paths,
                                   picture=(clips, batch.plan) if self._picture_due(p.step) else None)
                if queued is not None:
                    stopping |= self._read_step(queued, meter, gpu_idle, bar)
                queued = done
                if c.checkpoint_every and p.step % c.checkpoint_every == 0:
                    stopping |= self._read_step(queued, meter, gpu_idle, bar)
                    queued = None
                    self.save()
                stopping |= bool(c.max_steps and p.step >= c.max_steps)
            if queued is not None:
                stopping |= self._read_step(queued, meter, gpu_idle, bar)
        finally:
            bar.close()
        return stopping

    def _read_step(self, done: "_QueuedStep", meter: "_Meter", gpu_idle: GpuIdle, bar) -> bool:
        """Read a queued step's results: non-finite check, epoch loss, GPU idle time, log line; True when any
        rank asked to stop at that step."""
        self._check_finite(done)                  # waits for the step's values: its events have passed too
        self.epoch_losses.append(float(done.values["loss"]))
        gpu_idle.add(*done.marks)
        self._log_step(done, meter, gpu_idle, bar)
        return bool(done.values["stop"])

    def _end_epoch(self) -> None:
        p = self.position
        val = self.validate()
        # before the queue is full its random keys make the loss low and not comparable: no plateau yet
        reduced = self.schedule.end_epoch(val["loss"]) if val and self._queue_fill() >= 1.0 else False
        if val:
            self.logger.scalars(p.step, {**val, "lr": self.schedule.lr, "epoch": p.epoch + 1}, kind="val")
        if reduced:
            self.logger.event(p.step, "lr reduced on plateau", lr=self.schedule.lr)
        if self.env.is_main:
            print(self._epoch_summary(val), flush=True)
        if self.epoch_losses and self._queue_fill() >= 1.0:
            self.loss_history.append((p.epoch + 1, sum(self.epoch_losses) / len(self.epoch_losses)))
        p.epoch += 1
        p.batch_in_epoch = 0
        self.epoch_losses = []
        self.save()

    def _final_summary(self) -> None:
        if self.env.is_main and len(self.loss_history) >= 2:
            (first_epoch, first), (last_epoch, last) = self.loss_history[0], self.loss_history[-1]
            print(f"train loss with a full queue: {first:.4f} (epoch {first_epoch}) -> {last:.4f} "
                  f"(epoch {last_epoch})", flush=True)

    def _epoch_summary(self, val: dict[str, float] | None) -> str:
        """One line per epoch. Until the queue is full its random initial keys are easy negatives, so the
        loss starts low and rises while real keys arrive: only full-queue epochs compare."""
        p = self.position
        parts = [f"epoch {p.epoch + 1}/{self.config.train.epochs}"]
        if self.epoch_losses:
            parts.append(f"train loss {sum(self.epoch_losses) / len(self.epoch_losses):.4f}")
        if val:
            parts.append(f"val loss {val['loss']:.4f} (accuracy {val['accuracy']:.2f})")
        if self._queue_fill() < 1.0:
            parts.append(f"queue {self._queue_fill():.0%} full")
        parts.append(f"lr {self.schedule.lr:.2e}")
        bad = self.train_loader.report.counts()
        if bad:
            parts.append(f"bad videos so far {bad}")
        return ", ".join(parts)

    def validate(self) -> dict[str, float] | None:
        if self.val_loader is None:
            return None
        self.val_loader.set_epoch(0)     # the same held-out batches every epoch: comparable losses
        totals = {"loss": 0.0, "positive_similarity": 0.0, "negative_similarity": 0.0, "accuracy": 0.0}
        count = 0
        for batch in self.val_loader:
            if count == self.config.train.val_batches:
                break
            result = self.step.validation_loss(self.step.clips(batch, self.env.device), batch.plan)
            for name in totals:
                totals[name] += float(getattr(result, name))
            count += 1
        return {name: self.env.mean(total / max(count, 1)) for name, total in totals.items()}

    def _queue_fill(self, step: int | None = None) -> float:
        """Fraction of the queue holding real keys after `step` steps (default: all done so far); it starts as
        random unit vectors."""
        written = (self.position.step if step is None else step) * self.config.train.batch_size
        return min(1.0, written / self.config.model.queue_size)

    def _check_finite(self, done: "_QueuedStep") -> None:
        loss = float(done.values["loss"])
        if math.isfinite(loss):
            return
        where = self.last_checkpoint or "none written yet"
        raise TrainingError(f"non-finite loss {loss} at step {done.step} "
                            f"(epoch {self.position.epoch}, batch {done.batch_index}; videos {done.paths}); "
                            f"last checkpoint: {where}. Lower train.lr or set train.grad_clip, then resume.")

    def _picture_due(self, step: int) -> bool:
        c = self.config.train
        return bool(c.image_every) and (step % c.image_every == 0 or step == 1) and self.env.is_main

    def _log_step(self, done: "_QueuedStep", meter: "_Meter", gpu_idle: GpuIdle, bar) -> None:
        c, values = self.config.train, done.values
        bar.update(1)
        if done.step % c.log_every == 0 or done.batch_in_epoch == 1:
            logged = {"loss": float(values["loss"]), "lr": done.lr,
                      "positive_similarity": values["positive_similarity"],
                      "negative_similarity": values["negative_similarity"],
                      "accuracy": values["accuracy"], "queue_fill": self._queue_fill(done.step),
                      "data_wait_fraction": meter.data_wait_fraction, "samples_per_s": meter.samples_per_s,
                      "epoch": self.position.epoch + done.batch_in_epoch / max(self.steps_in_epoch(), 1)}
            if values["grad_norm"] is not None:
                logged["grad_norm"] = values["grad_norm"]
            if self.env.device.type == "cuda":
                logged["gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.env.device) / 1e9
                logged["gpu_idle_fraction"] = gpu_idle.fraction
            self.logger.scalars(done.step, logged)
            on_gpu = {} if gpu_idle.fraction is None else {"gpu_idle": f"{gpu_idle.fraction:.0%}"}
            bar.set_postfix(loss=f"{logged['loss']:.3f}", acc=f"{logged['accuracy']:.2f}",
                            sps=f"{meter.samples_per_s:.1f}", wait=f"{meter.data_wait_fraction:.0%}", **on_gpu)
        if done.picture is not None:
            self.logger.image(done.step, render_batch(*done.picture))


@dataclass
class _QueuedStep:
    """A training step the host has queued; its results are read one step later. It keeps what the log and
    the error messages need, not the batch: the batch's frames (a worker's shared buffer, or pinned memory)
    are let go as soon as the step has been queued."""

    values: HostValues             # StepResult's scalars and "stop": any rank's stop request at this step
    step: int                      # position.step once this step is done
    batch_in_epoch: int
    lr: float
    marks: tuple[Any, Any]         # GpuIdle marks: the batch in hand, the step queued (None off CUDA)
    batch_index: int
    paths: list[str]
    picture: tuple[torch.Tensor, Any] | None   # (clips, plan), only when this step's picture is due


def _no_buffer_sync() -> dict:
    """DDP's switch for per-forward buffer broadcasts (renamed in recent torch releases)."""
    import inspect
    parameters = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in parameters else {"broadcast_buffers": False}


class _Meter:
    """Samples per second and the fraction of step time spent waiting for data, over the last few steps."""

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self.records: list[tuple[float, float, int]] = []   # (wait s, step s, samples)
        self._started = time.perf_counter()
        self._wait = 0.0

    def data_ready(self, waited: float) -> None:
        self._wait = waited

    def step_done(self, samples: int) -> None:
        now = time.perf_counter()
        self.records = (self.records + [(self._wait, now - self._started, samples)])[-self.window:]
        self._started = now

    @property
    def data_wait_fraction(self) -> float:
        total = sum(r[1] for r in self.records)
        return sum(r[0] for r in self.records) / total if total else 0.0

    @property
    def samples_per_s(self) -> float:
        total = sum(r[1] for r in self.records)
        return sum(r[2] for r in self.records) / total if total else 0.0


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **values) -> None: ...
    def close(self) -> None: ...


def _progress(enabled: bool, total: int, done: int, description: str):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, initial=done, desc=description, unit="step", dynamic_ncols=True)


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pretrain(config: PretrainConfig) -> Path:
    """Run (or resume) pre-training; returns the run folder."""
    trainer = Pretrainer(config)
    trainer.fit()
    run = trainer.run
    if torch.distributed.is_initialized():
        # every rank got here; drop DDP (its reducer) before the group, or the exit can abort
        trainer.env.barrier()
        del trainer
        gc.collect()
        torch.distributed.destroy_process_group()
    return run
