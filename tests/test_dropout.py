"""Dropout masks drawn for a whole stack at once (jobs.engine.dropout): a member's masks are its
own whatever its mates, drop at its rate, follow the hash written out in plain Python, and a job
with dropout resumed after an epoch trains on as it would have uninterrupted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from jobs.engine.dropout import GOLDEN, MemberDropout, member_seed, mix32, signed32
from jobs.engine.member import Member
from jobs.engine.stack import Stack
from jobs.engine.train import shared_dataset
from jobs.rundir.run_dir import Saved
from jobs.spec import JobSpec
from tests.engine_members import fresh_members

CPU = torch.device("cpu")
SHAPES = [(5, 7), (64, 16), (3, 7), (2, 20)]  # dense layers, a short last batch, Dropout2d


def draws(dropout: MemberDropout, epochs: int = 2) -> list[torch.Tensor]:
    masks = []
    for epoch in range(1, epochs + 1):
        dropout.start_epoch(epoch)
        masks += [dropout.masks(shape) for shape in SHAPES]
    return masks


def test_a_members_masks_are_the_same_alone_and_in_stacks_of_any_size():
    seed, p = 12345, 0.3
    alone = draws(MemberDropout([p], [seed], CPU))
    generator = torch.Generator().manual_seed(0)
    for size in (1, 7, 64):
        position = size // 2
        probabilities = torch.rand(size, generator=generator).mul(0.9).tolist()
        seeds = torch.randint(0, 2**33, (size,), generator=generator).tolist()
        probabilities[position], seeds[position] = p, seed
        stacked = draws(MemberDropout(probabilities, seeds, CPU))
        for mine, together in zip(alone, stacked, strict=True):
            assert torch.equal(together[position], mine[0])


def test_masks_follow_the_hash_written_in_plain_python():
    """Element e of member m's d-th draw in epoch t: kept iff
    mix32(e * GOLDEN ^ seed_m ^ mix32(mix32(t) ^ d)) >= -2^31 + p * 2^32 (as signed words)."""
    seeds, probabilities = [7, 2**32 + 5], [0.5, 0.25]
    dropout = MemberDropout(probabilities, seeds, CPU)
    dropout.start_epoch(3)
    dropout.masks((4,))
    masks = dropout.masks((2, 9))
    for m, (seed, p) in enumerate(zip(seeds, probabilities, strict=True)):
        key = member_seed(seed) ^ mix32(mix32(3) ^ 1)
        for e in range(18):
            word = signed32(mix32((e * GOLDEN) ^ key))
            kept = word >= -(2**31) + round(p * 2**32)
            assert masks[m].flatten()[e].item() == pytest.approx(1 / (1 - p) if kept else 0.0)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_masks_drop_at_the_members_rate_and_scale_the_rest(p):
    dropout = MemberDropout([p, 0.0], [1, 2], CPU)
    dropout.start_epoch(1)
    masks = torch.stack([dropout.masks((100, 100)) for _ in range(20)])  # [draws, N, ...]
    kept = masks[:, 0] > 0
    n = kept.numel()
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    assert torch.equal(masks[:, 0][kept], torch.full((int(kept.sum()),), 1 / (1 - p)))
    assert torch.equal(masks[:, 1], torch.ones_like(masks[:, 1]))  # p = 0 drops nothing
    # draws and neighbouring elements agree no more than independent Bernoulli draws do
    agreement = p * p + (1 - p) * (1 - p)
    tolerance = 5 * math.sqrt(agreement * (1 - agreement) / n)
    assert abs((kept[1:] == kept[:-1]).float().mean().item() - agreement) < tolerance
    flat = kept.flatten(1)
    assert abs((flat[:, 1:] == flat[:, :-1]).float().mean().item() - agreement) < tolerance


def test_each_epoch_and_draw_gets_other_masks():
    dropout = MemberDropout([0.5], [3], CPU)
    seen = [mask.flatten().tolist() for mask in draws(dropout, epochs=3)]
    by_shape = {}
    for mask in seen:
        by_shape.setdefault(len(mask), []).append(mask)
    for masks in by_shape.values():
        assert len({tuple(mask) for mask in masks}) == len(masks)


def spec(**settings) -> JobSpec:
    return JobSpec.from_dict({"dataset": "digits", "hidden": [16, 8], "dropout": 0.3,
                              "epochs": 2, "batch_size": 128, **settings})


def train(stack: Stack, epochs: range) -> list[list[float]]:
    losses = []
    for epoch in epochs:
        epoch_losses, _, _ = stack.train_epoch(epoch)
        stack.end_epoch(epoch, epoch_losses)
        losses.append(epoch_losses)
    return losses


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_a_member_resumed_after_an_epoch_trains_on_as_uninterrupted(model):
    """The masks need nothing from the checkpoint: the resumed member draws those of the epoch
    it goes on with, in a stack of other mates."""
    jobs = [spec(model=model, seed=seed, dropout=p) for seed, p in ((0, 0.3), (1, 0.0), (2, 0.5))]
    data = shared_dataset(jobs[0], CPU)
    whole = Stack(fresh_members(jobs, data), data, CPU)
    uninterrupted = train(whole, range(1, 3))
    first = Stack(fresh_members(jobs, data), data, CPU)
    train(first, range(1, 2))
    first.hand_back(0)
    saved = Saved(Path("stack.ckpt"), first.members[0].state(1))
    resumed = Member.build(jobs[0], data, CPU, saved)
    mates = fresh_members([spec(model=model, seed=9, dropout=0.2)], data)
    again = Stack([resumed, *mates], data, CPU)
    assert [losses[0] for losses in train(again, range(2, 3))] == pytest.approx(
        [losses[0] for losses in uninterrupted[1:]], rel=1e-5)
    whole.hand_back(0)
    again.hand_back(0)
    for name, tensor in whole.members[0].params.items():
        torch.testing.assert_close(again.members[0].params[name], tensor, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_trained_on_the_earlier_masks_is_refused_with_dropout_only():
    data = shared_dataset(spec(), CPU)
    member = fresh_members([spec()], data)[0]
    state = member.state(1)
    del state["dropout_masks"]
    saved = Saved(Path("stack.ckpt"), state)
    with pytest.raises(Exception, match="^checkpoint stack.ckpt was trained with the dropout "
                                        "masks of an earlier tvo"):
        Member.build(spec(), data, CPU, saved)
    Member.build(spec(dropout=0.0), data, CPU, saved)
