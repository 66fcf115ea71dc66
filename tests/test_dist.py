"""uptal.dist: no-ops alone, and rank-ordered collectives in a real 2-process gloo group on the CPU."""
from __future__ import annotations

import torch
import torch.distributed
import torch.multiprocessing as mp

from uptal import dist


def test_alone_every_collective_is_a_no_op():
    assert not dist.is_dist() and dist.rank() == 0 and dist.world_size() == 1
    x = torch.arange(6.0).view(3, 2).requires_grad_()
    assert dist.all_gather_cat(x) is x
    y = torch.tensor([1.0, 3.0])
    assert dist.broadcast(y, src=0) is y and dist.all_reduce_mean(y) is y
    assert y.tolist() == [1.0, 3.0]
    dist.barrier()


def run_collectives(rank: int, world_size: int, rendezvous: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world_size)
    try:
        assert dist.is_dist() and dist.rank() == rank and dist.world_size() == world_size
        local = torch.full((2, 3), float(rank), requires_grad=True)
        gathered = dist.all_gather_cat(local * 1.0)
        assert gathered[:, 0].tolist() == [0.0, 0.0, 1.0, 1.0]  # rank order
        (gathered * torch.arange(1.0, 5.0)[:, None]).sum().backward()
        weight = 1.0 + 2 * rank  # rows 2r and 2r + 1 are scaled by 2r + 1 and 2r + 2
        assert local.grad[:, 0].tolist() == [weight, weight + 1]  # gradient into the local part only
        from_rank_1 = dist.broadcast(torch.tensor([10.0 * rank]), src=1)
        assert from_rank_1.tolist() == [10.0]
        mean = dist.all_reduce_mean(torch.tensor([float(rank), 4.0]))
        assert mean.tolist() == [0.5, 4.0]
        dist.barrier()
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_ranks_gather_in_rank_order(tmp_path):
    mp.spawn(run_collectives, args=(2, f"file://{tmp_path / 'rendezvous'}"), nprocs=2, join=True)
