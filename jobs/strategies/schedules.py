"""Targets fixed in advance or on a schedule: lecun, label_smoothing, two_stage."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jobs.strategies import catalogue
from jobs.strategies.base import (
    StackContext,
    StrategyStack,
    TargetStrategy,
    register,
)
from jobs.strategies.fixed import StaticStrategy
from jobs.strategies.tables import smoothing_rows


@register(catalogue.LECUN)
class Lecun(StaticStrategy):
    pass


@register(catalogue.LABEL_SMOOTHING)
class LabelSmoothing(StaticStrategy):
    pass


class TwoStageStack(StrategyStack):
    """Each member's smoothed and one-hot tables [G, 2, K, K], picked per member and epoch."""

    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        k = self.num_classes
        smoothed = torch.tensor([smoothing_rows(k, m.args["eps"], "uniform") for m in members])
        onehot = torch.eye(k).expand(self.size, k, k)
        self._stages = torch.stack([smoothed, onehot], dim=1).to(ctx.device)  # [G, 2, K, K]
        self._switch = torch.tensor([m.args["switch_epoch"] for m in members], device=ctx.device)
        self._trained = self.table_for(1)  # the epoch just trained (before training: epoch 1)
        self._batch_epoch, self._batch_table = 1, self._trained

    def table_for(self, epoch: int) -> torch.Tensor:
        """[G, K, K]: every member's targets in `epoch`."""
        stage = (epoch >= self._switch).long()
        return self._stages[self.member_index.squeeze(1), stage]

    def targets(self, labels: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        if epoch != self._batch_epoch:  # once per epoch, not per batch
            self._batch_epoch, self._batch_table = epoch, self.table_for(epoch)
        return self._batch_table[self.member_index, labels]

    def end_epoch(self, epoch: int) -> None:
        self._trained = self.table_for(epoch)  # set after every epoch: no state to checkpoint

    def templates(self) -> torch.Tensor:
        return self._trained


@register(catalogue.TWO_STAGE)
class TwoStage(TargetStrategy):
    """Epochs 1 .. switch_epoch-1 train on smoothed targets; switch_epoch and later on one-hot."""

    Stack = TwoStageStack
