"""Strategies whose targets are fixed before training: onehot and fixed(c, nc)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jobs.strategies.base import (
    Pairing,
    StackContext,
    StrategyStack,
    TargetStrategy,
    register,
)
from jobs.strategies.params import boolean, number, param


class StaticStack(StrategyStack):
    """Members whose K x K tables never change: one [G, K, K] table, gathered per batch."""

    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        self._templates = torch.stack([member.table(pairing) for member, pairing
                                       in zip(members, ctx.pairings, strict=True)]).to(ctx.device)

    def templates(self) -> torch.Tensor:
        return self._templates


class StaticStrategy(TargetStrategy):
    """A strategy with one K x K target table that never changes."""

    Stack = StaticStack

    def table(self, pairing: Pairing) -> torch.Tensor:
        raise NotImplementedError

    def static_templates(self, pairing: Pairing) -> torch.Tensor:
        return self.table(pairing)

    def stack_key(self) -> str:
        return "static"  # any fixed tables stack together, whatever made them


@register
class OneHot(StaticStrategy):
    name = "onehot"
    summary = "class 1, non-class 0: the usual one-hot target"
    source = "standard practice"
    onehot_targets = True

    def table(self, pairing: Pairing) -> torch.Tensor:
        return torch.eye(pairing.num_classes)


def fixed_table(num_classes: int, c: float, nc: float, normalize: bool) -> torch.Tensor:
    table = torch.full((num_classes, num_classes), nc) + torch.eye(num_classes) * (c - nc)
    return table / table.sum(dim=1, keepdim=True) if normalize else table


@register
class Fixed(StaticStrategy):
    name = "fixed"
    summary = "class value c, non-class value nc for every class (LeCun's 0.9/0.1 advice)"
    source = "LeCun et al. 1998, Efficient BackProp, sec. 4.5"
    params = (
        param("c", 0.9, "target for the true class", number()),
        param("nc", 0.1, "target for every other class", number()),
        param("normalize", False, "divide each target row by its sum (for loss=ce)", boolean()),
    )

    def table(self, pairing: Pairing) -> torch.Tensor:
        return fixed_table(pairing.num_classes, self.args["c"], self.args["nc"],
                           self.args["normalize"])
