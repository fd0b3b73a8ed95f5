"""Strategies whose targets are fixed before training: onehot and fixed(c, nc)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jobs.strategies import catalogue
from jobs.strategies.base import (
    Pairing,
    StackContext,
    StrategyStack,
    TargetStrategy,
    register,
)


class StaticStack(StrategyStack):
    """Members whose K x K tables never change: one [G, K, K] table, gathered per batch."""

    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        self._templates = torch.stack([member.table(pairing) for member, pairing
                                       in zip(members, ctx.pairings, strict=True)]).to(ctx.device)

    def templates(self) -> torch.Tensor:
        return self._templates


class StaticStrategy(TargetStrategy):
    """A strategy with one K x K target table that never changes: its declaration's table
    (jobs.strategies.tables, the rows its pairing was checked with), as a tensor."""

    Stack = StaticStack

    def table(self, pairing: Pairing) -> torch.Tensor:
        table = self.declaration.table
        assert table is not None, f"{self.name} is declared without a table"
        return torch.tensor(table(self.args, pairing), dtype=torch.float32)

    def stack_key(self) -> str:
        return "static"  # any fixed tables stack together, whatever made them


@register(catalogue.ONEHOT)
class OneHot(StaticStrategy):
    onehot_targets = True


@register(catalogue.FIXED)
class Fixed(StaticStrategy):
    pass
