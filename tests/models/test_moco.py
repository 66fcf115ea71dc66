"""uptal.models.moco: momentum update, the queue ring buffer, shuffle BN (its single-process emulation and the
real thing in a 2-process gloo group), and a few training steps with the region InfoNCE loss."""
from __future__ import annotations

import pytest
import torch
import torch.distributed
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from uptal import dist
from uptal.losses import RegionInfoNCE
from uptal.models.moco import MoCo, convert_sync_batchnorm

J, FRAMES, SIZE, DIM = 3, 2, 4, 8


class StandInClipEncoder(nn.Module):
    """clips [B, J, 3, F, S, S] -> L2-normalised clip features [B, J, D], with a BatchNorm over all the clips of
    the batch (so batch composition changes the output, as in a real backbone)."""

    def __init__(self, dim=DIM, hidden=6, batch_norm=True):
        super().__init__()
        self.embed = nn.Linear(3 * FRAMES, hidden)
        self.norm = nn.BatchNorm1d(hidden) if batch_norm else nn.Identity()
        self.project = nn.Linear(hidden, dim)

    def forward(self, clips):
        batch, num_clips = clips.shape[:2]
        pooled = clips.mean(dim=(4, 5)).flatten(0, 1).flatten(1)       # [B * J, 3 * F]
        features = self.project(torch.relu(self.norm(self.embed(pooled))))  # [B * J, D]
        return F.normalize(features, dim=1).view(batch, num_clips, -1)


def make_clips(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, J, 3, FRAMES, SIZE, SIZE, generator=g)


def make_moco(seed=0, **options):
    torch.manual_seed(seed)
    return MoCo(StandInClipEncoder(batch_norm=options.pop("batch_norm", True)), DIM, **options)


# --- momentum encoder ---------------------------------------------------------------------------------------


def test_momentum_update_matches_a_loop_over_parameters():
    moco = make_moco(K=4, m=0.9)
    with torch.no_grad():
        for p in moco.encoder_q.parameters():
            p.add_(torch.randn_like(p))
        moco.encoder_q.norm.running_mean.fill_(0.25)
        moco.encoder_q.norm.num_batches_tracked.fill_(7)
    expected = [0.9 * k + 0.1 * q for k, q in zip(moco.encoder_k.parameters(), moco.encoder_q.parameters())]
    moco.momentum_update()
    for actual, wanted in zip(moco.encoder_k.parameters(), expected):
        torch.testing.assert_close(actual, wanted, rtol=1e-6, atol=1e-7)
    assert torch.equal(moco.encoder_k.norm.running_mean, torch.full((6,), 0.25))
    assert int(moco.encoder_k.norm.num_batches_tracked) == 7


def test_key_encoder_is_an_independent_copy_without_gradient():
    moco = make_moco(K=4)
    assert all(not p.requires_grad for p in moco.encoder_k.parameters())
    assert all(p.requires_grad for p in moco.encoder_q.parameters())
    q_weight, k_weight = moco.encoder_q.embed.weight, moco.encoder_k.embed.weight
    assert torch.equal(q_weight, k_weight) and q_weight.data_ptr() != k_weight.data_ptr()


def test_eval_mode_leaves_the_key_encoder_alone():
    moco = make_moco(K=4, m=0.5)
    with torch.no_grad():
        moco.encoder_q.embed.weight.add_(1.0)
    before = moco.encoder_k.embed.weight.clone()
    moco.eval()
    moco(make_clips(4), make_clips(4, seed=1))
    assert torch.equal(moco.encoder_k.embed.weight, before)
    moco.train()
    moco(make_clips(4), make_clips(4, seed=1))
    assert torch.allclose(moco.encoder_k.embed.weight, before + 0.5)


# --- the queue -------------------------------------------------------------------------------------------------


def test_queue_wraps_around_when_the_batch_does_not_divide_K():
    moco = make_moco(K=10)
    expected = moco.queue.clone()
    position = 0
    for step in range(5):
        keys = torch.arange(3 * DIM, dtype=torch.float32).view(3, DIM) + 100 * step  # distinct rows
        moco.enqueue(keys)
        for row in keys:  # one at a time, the slow obvious way
            expected[position] = row
            position = (position + 1) % 10
        assert torch.equal(moco.queue, expected), f"step {step}"
        assert int(moco.queue_ptr) == position
    assert int(moco.queue_ptr) == 5  # 15 keys into 10 slots


def test_more_keys_than_slots_keep_the_newest_as_if_written_one_by_one():
    moco = make_moco(K=5)
    moco.enqueue(torch.zeros(1, DIM))
    keys = torch.arange(13, dtype=torch.float32)[:, None].expand(13, DIM)
    moco.enqueue(keys)
    assert int(moco.queue_ptr) == (1 + 13) % 5
    # key i would land in slot (1 + i) % 5: the last five, 8..12, in slots 4, 0, 1, 2, 3
    assert moco.queue[:, 0].tolist() == [9.0, 10.0, 11.0, 12.0, 8.0]


def test_queue_and_pointer_are_checkpointed():
    moco = make_moco(K=6)
    moco.enqueue(torch.ones(4, DIM))
    state = moco.state_dict()
    assert "queue" in state and "queue_ptr" in state
    restored = make_moco(seed=1, K=6)
    restored.load_state_dict(state)
    assert torch.equal(restored.queue, moco.queue) and int(restored.queue_ptr) == 4


def test_enqueue_rejects_keys_of_the_wrong_dimension():
    with pytest.raises(ValueError, match="^keys:"):
        make_moco(K=6).enqueue(torch.ones(4, DIM + 1))


# --- shuffle BN ----------------------------------------------------------------------------------------------


def test_split_bn_keys_equal_the_key_encoder_run_on_each_sub_batch_alone():
    batch, groups = 6, 3
    moco = make_moco(K=4, shuffle_bn="split", split_bn_groups=groups)
    clips = make_clips(batch)
    torch.manual_seed(11)
    keys = moco.encode_keys(clips)
    torch.manual_seed(11)
    order = torch.randperm(batch)  # the permutation encode_keys drew
    for group in order.view(groups, -1):
        alone = moco.encoder_k(clips[group])  # BatchNorm statistics over this sub-batch only
        torch.testing.assert_close(keys[group], alone)
    whole = moco.encoder_k(clips)
    assert not torch.allclose(keys, whole, atol=1e-3), "sub-batch statistics must differ from the whole batch's"


def test_split_bn_queries_use_consecutive_sub_batches():
    moco = make_moco(K=4, shuffle_bn="split", split_bn_groups=2)
    clips = make_clips(6)
    clip_q, clip_k = moco(clips, make_clips(6, seed=1))
    torch.testing.assert_close(clip_q[:3], moco.encoder_q(clips[:3]))
    torch.testing.assert_close(clip_q[3:], moco.encoder_q(clips[3:]))
    assert clip_q.requires_grad and not clip_k.requires_grad and clip_k.shape == (6, J, DIM)


def test_auto_mode_follows_the_encoder_and_the_process_group():
    assert make_moco(K=4).shuffle_mode() == "split"
    assert make_moco(K=4, split_bn_groups=1).shuffle_mode() == "off"
    assert make_moco(K=4, batch_norm=False).shuffle_mode() == "off"
    synced = make_moco(K=4)
    synced.encoder_k.norm = nn.SyncBatchNorm(6)  # statistics across ranks: nothing to shuffle
    assert synced.shuffle_mode() == "off"


def test_sync_batchnorm_is_refused_off_cuda():
    with pytest.raises(ValueError, match="^device:"):
        convert_sync_batchnorm(make_moco(K=4), "cpu")


@pytest.mark.parametrize("options, name", [
    (dict(K=0), "K"), (dict(m=1.5), "m"), (dict(shuffle_bn="sometimes"), "shuffle_bn"),
    (dict(split_bn_groups=0), "split_bn_groups"),
])
def test_bad_options_are_value_errors_naming_them(options, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        make_moco(**options)


# --- a few training steps ------------------------------------------------------------------------------------


def test_training_steps_lower_the_loss_and_fill_the_queue():
    """The loss is taken against a fixed bank of random negatives: against the queue, the loss of a tiny model
    on a few cycling batches rises as the queue fills with keys of the very same clips (hard negatives)."""
    torch.manual_seed(0)
    moco = make_moco(K=300, m=0.9)
    loss_fn = RegionInfoNCE(tau=0.2)
    optimizer = torch.optim.Adam(moco.encoder_q.parameters(), lr=0.01)
    regions = torch.tensor([[0, 2], [1, 1], [0, 1], [2, 2]] * 2)
    negatives = F.normalize(torch.randn(32, DIM), dim=1)

    def two_views(seed):  # two noisy views of the same clips
        clips = make_clips(8, seed)
        return clips + 0.5 * make_clips(8, seed + 1000), clips + 0.5 * make_clips(8, seed + 2000)

    losses = []
    for step in range(30):
        clip_q, clip_k = moco(*two_views(step % 3))
        loss, stats, keys = loss_fn(clip_q, clip_k, regions, regions, negatives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        moco.enqueue(keys)
        losses.append(loss.item())
        assert 0.0 <= stats.accuracy.item() <= 1.0
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert all(torch.isfinite(torch.tensor(losses))) and last < 0.7 * first, losses
    assert int(moco.queue_ptr) == 240
    torch.testing.assert_close(moco.queue[232:240], keys)  # the last batch sits just before the pointer


# --- two ranks (gloo, CPU) -------------------------------------------------------------------------------------


def run_two_ranks(rank: int, world_size: int, rendezvous: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world_size)
    try:
        batch = 3
        moco = make_moco(K=10, shuffle_bn="ddp")  # same seed: the same weights on both ranks, as DDP ensures
        # the queue receives the keys of every rank, in rank order, and wraps around
        for step in range(2):
            moco.enqueue(torch.full((batch, DIM), 10.0 * step + rank))
        # step 0 fills slots 0-5 with 0, 0, 0, 1, 1, 1; step 1 writes 10, 10, 10, 11, 11, 11 into slots 6-9, 0-1
        assert moco.queue[:, 0].tolist() == [11.0, 11.0, 0.0, 1.0, 1.0, 1.0, 10.0, 10.0, 10.0, 11.0]
        assert int(moco.queue_ptr) == 2
        # shuffle BN across ranks computes what its single-process emulation computes on the whole batch
        local_clips = make_clips(batch, seed=100 + rank)
        everyone = dist.all_gather_cat(local_clips)
        torch.manual_seed(5)
        keys = moco.encode_keys(local_clips, "ddp")
        moco.split_bn_groups = world_size
        torch.manual_seed(5)
        emulated = moco.encode_keys(everyone, "split")
        torch.testing.assert_close(keys, emulated[rank * batch:(rank + 1) * batch])
        assert not torch.allclose(keys, moco.encoder_k(local_clips), atol=1e-3)
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_ranks_share_the_queue_and_shuffle_bn(tmp_path):
    mp.spawn(run_two_ranks, args=(2, f"file://{tmp_path / 'rendezvous'}"), nprocs=2, join=True)
