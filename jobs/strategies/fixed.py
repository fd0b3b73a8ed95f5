"""Strategies whose targets are fixed before training: onehot and fixed(c, nc)."""

from __future__ import annotations

import torch

from jobs.strategies.base import (
    Pairing,
    StrategyContext,
    StrategyValues,
    TargetStrategy,
    register,
    values_from_table,
)
from jobs.strategies.params import boolean, number, param


class StaticStrategy(TargetStrategy):
    """A strategy with one K x K target table that never changes."""

    def table(self, pairing: Pairing) -> torch.Tensor:
        raise NotImplementedError

    def static_templates(self, pairing: Pairing) -> torch.Tensor:
        return self.table(pairing)

    def setup(self, ctx: StrategyContext) -> None:
        super().setup(ctx)
        self._templates = self.table(ctx.pairing).to(ctx.device)

    def templates(self) -> torch.Tensor:
        return self._templates

    def values(self) -> StrategyValues:
        return values_from_table(self._templates)


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
