"""`uptal pretrain` end to end on tiny videos: run folder, logs, checkpoints, exact resume, stop signals, errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from trainhelpers import tiny_overrides

from uptal.cli import main
from uptal.config import load_pretrain_config
from uptal.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from uptal.train.pretrain import Pretrainer, TrainingError, pretrain

REPO = Path(__file__).resolve().parents[2]


def run(videos, out, *extra) -> Path:
    return pretrain(load_pretrain_config(None, tiny_overrides(videos, out, *extra)))


def records(out: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["kind"] == kind]


def model_state(out: Path) -> dict:
    return load_checkpoint(latest_checkpoint(out / "checkpoints"))


def test_run_folder_holds_config_logs_and_checkpoints(tiny_videos, tmp_path):
    out = run(tiny_videos, tmp_path / "run", "train.epochs=2", "train.image_every=2", "train.tensorboard=true")
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["backbone"] == "tiny" and config["train"]["epochs"] == 2
    train = records(out, "train")
    assert [r["step"] for r in train] == list(range(1, 7))          # 12 training videos / 4 = 3 steps an epoch
    for r in train:
        assert all(k in r for k in ("loss", "lr", "positive_similarity", "negative_similarity", "accuracy",
                                    "queue_fill", "data_wait_fraction", "samples_per_s"))
        assert r["loss"] > 0 and 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["data_wait_fraction"] <= 1.0
    assert train[-1]["queue_fill"] == 1.0                           # 6 steps x 4 keys = the queue of 24
    assert len(records(out, "val")) == 2
    assert list((out / "pictures").glob("*.png"))
    assert list(out.glob("events.out.tfevents.*"))
    state = model_state(out)
    assert state["step"] == 6 and state["epoch"] == 2 and state["batch_in_epoch"] == 0
    for key in ("model", "optimizer", "schedule", "rng", "data", "config", "versions"):
        assert key in state
    assert {"model.queue", "model.queue_ptr"} <= {f"model.{k}" for k in state["model"] if k.startswith("queue")}
    assert state["versions"]["torch"] == torch.__version__


def weights(out: Path) -> dict[str, torch.Tensor]:
    return model_state(out)["model"]


def test_resume_continues_exactly(tiny_videos, tmp_path):
    """2N steps straight == N steps, stop, resume, N steps (N = 4 crosses an epoch boundary mid-way)."""
    straight = run(tiny_videos, tmp_path / "straight", "train.epochs=3", "train.steps_per_epoch=3")
    first = run(tiny_videos, tmp_path / "resumed", "train.epochs=3", "train.steps_per_epoch=3", "train.max_steps=4")
    assert model_state(first)["step"] == 4 and model_state(first)["batch_in_epoch"] == 1
    resumed = run(tiny_videos, tmp_path / "resumed", "train.epochs=3", "train.steps_per_epoch=3", "train.resume=auto")
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert [r["loss"] for r in records(straight, "train")][4:] == [r["loss"] for r in records(resumed, "train")][4:]


def poison_loss_at_call(monkeypatch, bad_call: int) -> None:
    import uptal.train.engine as engine
    real = engine.region_infonce
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss, stats, keys = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == bad_call else loss), stats, keys

    monkeypatch.setattr(engine, "region_infonce", poisoned)


def test_non_finite_loss_stops_with_step_batch_and_checkpoint(tiny_videos, tmp_path, monkeypatch):
    poison_loss_at_call(monkeypatch, 3)
    with pytest.raises(TrainingError, match=r"non-finite loss nan at step 3 \(epoch 0, batch 2; videos .*"
                                            r"last checkpoint: .*step-000000002.pt"):
        run(tiny_videos, tmp_path / "nan", "train.checkpoint_every=2")


def test_a_step_with_a_non_finite_loss_is_never_checkpointed(tiny_videos, tmp_path, monkeypatch):
    poison_loss_at_call(monkeypatch, 2)   # step 2 is due for a checkpoint
    with pytest.raises(TrainingError, match=r"non-finite loss nan at step 2 .* last checkpoint: none written yet"):
        run(tiny_videos, tmp_path / "nan", "train.checkpoint_every=2")
    assert list_checkpoints(tmp_path / "nan" / "checkpoints") == []


class _RecordedLoss:
    """A step's loss that notes when the trainer reads it."""

    def __init__(self, loss, step, events):
        self.loss, self.step, self.events = loss, step, events

    def __float__(self):
        self.events.append(("read", self.step))
        return float(self.loss)


def test_each_loss_is_read_after_the_next_step_is_queued(tiny_videos, tmp_path, monkeypatch):
    """On a GPU, reading a loss waits for the device: read before the next step is queued, the GPU would idle
    while the host fetches and launches it. A checkpoint reads its own step first (checkpoint_every=2)."""
    from uptal.train.engine import PalStep
    real = PalStep.train_step
    events, losses = [], []

    def recorded(self, clips, plan):
        result = real(self, clips, plan)
        events.append(("step", len([e for e in events if e[0] == "step"]) + 1))
        losses.append(result.loss)
        result.loss = _RecordedLoss(result.loss, events[-1][1], events)
        return result

    monkeypatch.setattr(PalStep, "train_step", recorded)
    out = run(tiny_videos, tmp_path / "late", "train.checkpoint_every=2", "train.epochs=2")
    first = [event for i, event in enumerate(events) if event not in events[:i]]   # a logged loss is read twice
    assert first == [("step", 1), ("step", 2), ("read", 1), ("read", 2),    # step 2 is checkpointed
                     ("step", 3), ("read", 3),                              # the end of epoch 1 (3 steps)
                     ("step", 4), ("read", 4),                              # checkpointed
                     ("step", 5), ("step", 6), ("read", 5), ("read", 6)]
    assert [r["step"] for r in records(out, "train")] == list(range(1, 7))
    assert [r["loss"] for r in records(out, "train")] == [float(e) for e in losses]


def test_bad_config_is_an_error_naming_the_key(tmp_path, capsys):
    assert main(["pretrain", "train.lrr=1"]) == 2
    assert "train.lrr: unknown key" in capsys.readouterr().err
    assert main(["pretrain", "model.temporal_layers=5"]) == 2
    assert "model.temporal_layers" in capsys.readouterr().err


def test_global_batch_must_divide_by_ranks(tiny_videos, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    config = load_pretrain_config(None, tiny_overrides(tiny_videos, tmp_path / "x"))
    with pytest.raises(TrainingError, match="batch_size=4 is global and must divide by the 3 ranks"):
        Pretrainer(config)


def test_sigterm_checkpoints_and_exits_zero(tiny_videos, tmp_path):
    out = tmp_path / "preempted"
    args = tiny_overrides(tiny_videos, out, "train.epochs=1000")
    process = subprocess.Popen([sys.executable, "-m", "uptal.cli", "pretrain", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "log.jsonl").exists() and records(out, "train")):
        time.sleep(0.2)
    assert records(out, "train"), "training did not start"
    sent = time.time()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, process.stdout.read()
    assert time.time() - sent < 30
    events = [r["message"] for r in records(out, "event")]
    assert "stopped by signal" in events
    state = model_state(out)
    assert state["step"] >= 1


def test_sigkill_at_any_moment_leaves_a_resumable_run(tiny_videos, tmp_path):
    out = tmp_path / "killed"
    args = tiny_overrides(tiny_videos, out, "train.epochs=1000", "train.checkpoint_every=1")
    process = subprocess.Popen([sys.executable, "-m", "uptal.cli", "pretrain", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list_checkpoints(out / "checkpoints")) < 2:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    newest = latest_checkpoint(out / "checkpoints")
    assert newest is not None
    step = load_checkpoint(newest)["step"]
    resumed = run(tiny_videos, out, f"train.max_steps={step + 1}", "train.resume=auto", "train.epochs=1000")
    assert model_state(resumed)["step"] == step + 1


CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml"))


def test_every_paper_config_is_there():
    names = {Path(c).stem for c in CONFIGS}
    assert {"pal_paper", "moco_v2", "demo"} <= names
    assert sum(n.startswith("table3_") for n in names) == 4
    assert sum(n.startswith("table4_") for n in names) == 4
    assert sum(n.startswith("table5_") for n in names) == 5


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_loads_and_runs_one_step(config, tiny_videos, tmp_path):
    """Each file's method settings (paste, dense, scale, beta, temporal head, clip count) with the scale
    shrunk (tiny backbone, 16 px, 4 videos a batch) so that one step takes a second."""
    config_path = REPO / config
    original = load_pretrain_config(config_path)
    overrides = [o for o in tiny_overrides(tiny_videos, tmp_path / "run", "train.max_steps=1")
                 if not o.startswith(("pal.clips=", "pal.max_region_clips=", "model.queue_size="))]
    clips = min(original.pal.clips, 4)
    overrides += [f"pal.clips={clips}", f"pal.max_region_clips={min(original.pal.max_region_clips, clips)}",
                  "model.queue_size=24"]
    loaded = load_pretrain_config(config_path, overrides)
    for key in ("paste", "dense", "scale", "beta"):
        assert getattr(loaded.pal, key) == getattr(original.pal, key)
    assert loaded.model.temporal_layers == original.model.temporal_layers
    out = pretrain(loaded)
    train = records(out, "train")
    assert len(train) == 1 and train[0]["loss"] > 0


def test_compiled_backbones_train_like_eager(tiny_videos, tmp_path, monkeypatch):
    # float32 on the CPU even on a GPU machine: CUDA trains in bf16, where fused kernels round differently
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    eager = run(tiny_videos, tmp_path / "eager", "train.max_steps=2")
    compiled = run(tiny_videos, tmp_path / "compiled", "train.max_steps=2", "train.compile=true")
    losses = [torch.tensor([r["loss"] for r in records(out, "train")]) for out in (eager, compiled)]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    assert set(weights(compiled)) == set(weights(eager))         # checkpoint keys unchanged by compiling


def test_more_local_ranks_than_gpus_is_a_clear_error(monkeypatch):
    from uptal.train.pretrain import DistEnv
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(RuntimeError, match="LOCAL_RANK 1 but this process sees 1 CUDA device"):
        DistEnv.from_environment()


def test_validation_split_does_not_depend_on_where_the_data_lives(tiny_videos, tmp_path):
    """Moving the data set (another mount, a local scratch copy) must not change which videos are held out."""
    import shutil
    from uptal.train.pretrain import DistEnv, build_indexes
    moved = tmp_path / "elsewhere" / "videos"
    shutil.copytree(tiny_videos, moved)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    held_out = []
    for source in (tiny_videos, moved):
        config = load_pretrain_config(None, tiny_overrides(source, tmp_path / "run"))
        train, validation = build_indexes(config, tmp_path / "run", env)
        held_out.append(sorted(Path(entry.path).name for entry in validation.entries))
        assert len(train) + len(validation) == 16
    assert held_out[0] == held_out[1] and len(held_out[0]) == 4


def test_validation_workers_queue_no_more_than_a_validation_pass_reads():
    from uptal.train.pretrain import validation_prefetch

    def config(*overrides):
        return load_pretrain_config("demo", list(overrides))

    demo = config()    # tiny frames: the training loader queues the auto ceiling, 8 per worker
    assert demo.data.prefetch_batches(demo.pal, 8) == 8
    assert validation_prefetch(config("train.val_batches=2", "data.workers=1"), 8) == 2
    assert validation_prefetch(config("train.val_batches=3", "data.workers=2"), 8) == 2     # ceil(3 / 2)
    assert validation_prefetch(config("train.val_batches=100", "data.workers=2"), 8) == 8   # as in training
    paper = load_pretrain_config("pal_paper", ["data.workers=2", "train.val_batches=8"])
    assert validation_prefetch(paper, 32) == 2                                              # B = 32 keeps 2
