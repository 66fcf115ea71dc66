"""Two CPU ranks (gloo): the first step equals a one-rank step on the whole batch, and a 2-rank run stays in sync.

BatchNorm semantics that make one rank and W ranks agree: every BatchNorm sees one rank's share of the
batch. Under DDP that is what each rank computes (plain BatchNorm; SyncBatchNorm only on CUDA), and
shuffle-BN hands each rank a random share of the keys of all ranks. On one process MoCo's "split" mode
emulates it: the queries are encoded as W consecutive sub-batches (what W ranks hold) and the keys are
shuffled with the same permutation and encoded as W sub-batches.
"""
from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import torch
import torch.multiprocessing as mp
from trainhelpers import tiny_overrides

from uptal.config import ModelConfig, PalConfig, load_pretrain_config
from uptal.pal import build_plan
from uptal.train.engine import PalStep, build_moco

PAL = PalConfig(clips=4, frames=2, size=16, max_region_clips=2, blur_kernel=3)
MODEL = ModelConfig(backbone="tiny", dim=16, queue_size=24, momentum=0.9, split_bn_groups=2)
PER_RANK = 3


def global_batch():
    """Clips and plan of 2 * PER_RANK sources (what one rank would train on)."""
    g = torch.Generator().manual_seed(0)
    sources = 2 * PER_RANK
    plan = build_plan(g, [20] * sources, 24, 32, PAL)
    clips = torch.randn(2 * sources, 3, PAL.clips * PAL.frames, PAL.size, PAL.size, generator=g)  # [2B, 3, JF, S, S]
    return clips, plan


def rank_share(clips: torch.Tensor, plan, rank: int):
    """Rank r's queries and keys (and their regions) of the global batch."""
    b, total = PER_RANK, 2 * PER_RANK
    rows = list(range(rank * b, (rank + 1) * b)) + list(range(total + rank * b, total + (rank + 1) * b))
    share = SimpleNamespace(clips=plan.clips, frames=plan.frames, num_sources=b, region=plan.region[rows])
    return clips[rows], share


def first_step(moco, model, clips, plan):
    """Loss of the first training step and the query encoder's gradients."""
    step = PalStep(moco, model, torch.optim.SGD(moco.encoder_q.parameters(), lr=0.0), tau=0.1)
    moco.train()
    torch.manual_seed(7)                      # the shuffle-BN permutation
    loss, _, _ = step._loss(clips, plan, model)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in moco.encoder_q.parameters()]


def two_rank_first_step(rank: int, rendezvous: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        moco = build_moco(MODEL)               # same seed: same weights on both ranks
        model = torch.nn.parallel.DistributedDataParallel(moco, broadcast_buffers=False)
        clips, plan = rank_share(*global_batch(), rank)
        loss, grads = first_step(moco, model, clips, plan)
        torch.distributed.all_reduce(loss)
        if rank == 0:
            torch.save({"loss": loss / 2, "grads": grads}, out)
        del model                              # DDP's reducer must go before its process group
    finally:
        _shut_down()


def _shut_down() -> None:
    """Both ranks reach the end, the DDP objects are gone, then the group: tearing the group down under a live
    reducer, or while the other rank still talks, can abort the process at exit."""
    import gc
    torch.distributed.barrier()
    gc.collect()
    torch.distributed.destroy_process_group()


def test_two_ranks_first_step_equals_one_rank_on_the_whole_batch(tmp_path):
    torch.manual_seed(0)
    moco = build_moco(MODEL)                   # shuffle_bn auto -> "split" into 2 groups on one process
    assert moco.shuffle_mode() == "split"
    loss, grads = first_step(moco, moco, *global_batch())
    out = tmp_path / "ranks.pt"
    mp.spawn(two_rank_first_step, args=(f"file://{tmp_path / 'rendezvous'}", str(out)), nprocs=2, join=True)
    ranks = torch.load(out)
    torch.testing.assert_close(ranks["loss"], loss)
    for mine, theirs in zip(grads, ranks["grads"]):
        torch.testing.assert_close(theirs, mine)
    assert any(g.abs().sum() > 0 for g in grads)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_rank_pretrain(rank: int, port: int, overrides: list[str], out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from uptal.train.pretrain import Pretrainer
    torch.set_num_threads(1)
    trainer = Pretrainer(load_pretrain_config(None, overrides))
    seen = [p for b in trainer.train_loader for p in b.paths]     # epoch 0's videos of this rank
    trainer.fit()
    torch.save({"state": trainer.moco.state_dict(), "seen": seen}, f"{out}/rank{rank}.pt")
    del trainer
    _shut_down()


def test_two_rank_pretrain_stays_in_sync_on_disjoint_videos(tiny_videos, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")   # two gloo ranks on the CPU, also on a machine with one GPU
    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_videos, run, "train.batch_size=6", "train.epochs=2")
    mp.spawn(two_rank_pretrain, args=(_free_port(), overrides, str(tmp_path)), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert set(first["seen"]).isdisjoint(second["seen"]) and len(first["seen"]) == len(second["seen"]) == 3
    for name, value in first["state"].items():
        if name.startswith(("encoder_q.", "encoder_k.", "queue")) and "running_" not in name \
                and "num_batches" not in name:
            torch.testing.assert_close(second["state"][name], value, msg=name)
    assert (run / "checkpoints").is_dir() and list((run / "checkpoints").glob("step-*.pt"))


def two_rank_pretrain_one_rank_signalled(rank: int, port: int, overrides: list[str], out: str) -> None:
    """Rank 1 alone gets SIGTERM during its second step; both ranks must stop after the same step."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import signal
    from uptal.train.engine import PalStep
    from uptal.train.pretrain import Pretrainer
    torch.set_num_threads(1)
    real, calls = PalStep.train_step, []

    def step(self, clips, plan):
        calls.append(1)
        if rank == 1 and len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, clips, plan)

    PalStep.train_step = step
    trainer = Pretrainer(load_pretrain_config(None, overrides))
    rc = trainer.fit()
    torch.save({"rc": rc, "step": trainer.position.step, "steps_run": len(calls)}, f"{out}/stop{rank}.pt")
    del trainer
    _shut_down()


def test_a_signal_on_one_rank_stops_every_rank_after_the_same_step(tiny_videos, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_videos, run, "train.batch_size=4", "train.epochs=1000")   # 3 steps an epoch
    mp.spawn(two_rank_pretrain_one_rank_signalled, args=(_free_port(), overrides, str(tmp_path)), nprocs=2,
             join=True)
    first, second = (torch.load(tmp_path / f"stop{r}.pt") for r in (0, 1))
    assert first["rc"] == second["rc"] == 0
    # the vote of step 2 is read once step 3 is queued (mid-epoch): both ranks stop after step 3
    assert first["step"] == second["step"] == 3 and first["steps_run"] == second["steps_run"] == 3
    assert list((run / "checkpoints").glob("step-000000003.pt"))

