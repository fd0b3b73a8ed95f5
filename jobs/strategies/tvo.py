"""tvo: the target-value-optimization study's learned class / non-class targets, and its variants.

Targets are built from one (c_j, nc_j) pair per class (layout=class, the study) or per output
neuron (layout=position); see tvo_values for how each layout measures its pairs. Values start
from `init`, change by `adapt` after every epoch or batch, and predictions go to the nearest
target template, as in the study.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from jobs.strategies import catalogue
from jobs.strategies.base import (
    Pairing,
    StackContext,
    StrategyStack,
    StrategyValues,
    TargetStrategy,
    register,
    templates_from_values,
)
from jobs.strategies.tvo_values import (
    NEEDS_NETWORK,
    NEEDS_STATISTICS,
    OutputStatistics,
    adapt_values,
    initial_values,
    measure_network,
)


@register(catalogue.TVO)
class TVO(TargetStrategy):
    """c_j and nc_j live in output units, before any normalisation: `normalize` only divides the
    target row given to the loss (and used as template) by its sum.

    normalize=false with output=softmax and loss=ce is the study's own setting (unnormalised
    targets into -(t * log_softmax(z)).sum(), which acts like t / sum(t)); tvo is the one
    strategy that allows it, and only when asked for by name: normalize=auto normalises there.
    """

    decision = "template"
    observes = True

    def stack_key(self) -> str:
        """The rules are the stack's; the numbers in them (nu, m, eps, ...) are columns."""
        rules = (self.args["init"].name, self.args["adapt"].name, self.args["cadence"],
                 self.args["layout"], self.args["normalize"])
        return f"tvo{rules}"

    def normalizes(self, pairing: Pairing) -> bool:
        normalize = self.args["normalize"]
        return pairing.output == "softmax" if normalize == "auto" else bool(normalize)


class TVOStack(StrategyStack):
    """Every member's (c_j, nc_j) as [G, K] float64 rows; the adaptation rule is one for the
    stack and its numbers (m, eps) are per-member columns."""

    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        first = members[0]
        self.init, self.adapt = first.args["init"].name, first.args["adapt"].name
        self.cadence, self.layout = first.args["cadence"], first.args["layout"]
        self.normalize = first.normalizes(ctx.pairings[0])
        adapt_args = {key for member in members for key in member.args["adapt"].args}
        self.adapt_args = {key: torch.tensor([m.args["adapt"].args[key] for m in members],
                                             dtype=torch.float64, device=ctx.device).view(-1, 1)
                           for key in adapt_args}
        preferences = None
        if self.init in NEEDS_NETWORK:  # the untrained networks of all members, in one pass
            preferences = measure_network(ctx.forward, ctx.x_train, ctx.y_train,
                                          self.num_classes, members=self.size
                                          ).moments(self.layout)
        starts = [initial_values(self.init, member.args["init"].args, self.num_classes,
                                 ctx.generators[g],
                                 None if preferences is None else preferences.member(g))
                  for g, member in enumerate(members)]
        self.statistics = (OutputStatistics(self.num_classes, ctx.device, members=self.size)
                           if self.adapt in NEEDS_STATISTICS else None)
        self._set_values(torch.stack([c for c, _ in starts]), torch.stack([nc for _, nc in starts]))

    def _set_values(self, c: torch.Tensor, nc: torch.Tensor) -> None:
        self.target_class = c.to(self.device, torch.float64)
        self.target_nonclass = nc.to(self.device, torch.float64)
        table = templates_from_values(self.target_class, self.target_nonclass, self.layout)
        if self.normalize:
            table = table / table.sum(dim=-1, keepdim=True)
        self._templates = table.float()

    def observe(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                epoch: int) -> None:
        if self.adapt == "none":
            return
        if self.statistics is not None:
            self.statistics.add(outputs, labels)
        if self.cadence == "batch":
            self._adapt()

    def end_epoch(self, epoch: int) -> None:
        if self.adapt != "none" and self.cadence == "epoch":
            self._adapt()

    def _adapt(self) -> None:
        """Adapt from the outputs seen since the last adaptation, then forget them."""
        moments = None
        if self.statistics is not None:
            moments = self.statistics.moments(self.layout)
            self.statistics.reset()
        self._set_values(*adapt_values(self.adapt, self.adapt_args, self.target_class,
                                       self.target_nonclass, moments))

    def templates(self) -> torch.Tensor:
        return self._templates

    def all_values(self) -> list[StrategyValues]:
        c, nc = self.target_class.tolist(), self.target_nonclass.tolist()
        tables = self._templates.tolist()
        return [StrategyValues(target_class=c[g], target_nonclass=nc[g], target_matrix=tables[g])
                for g in range(self.size)]

    def state_dict(self, g: int) -> dict[str, Any]:
        return {"target_class": self.target_class[g].clone(),
                "target_nonclass": self.target_nonclass[g].clone()}

    def load_state_dict(self, g: int, state: Mapping[str, Any]) -> None:
        c, nc = self.target_class.clone(), self.target_nonclass.clone()
        c[g] = state["target_class"].to(self.device)
        nc[g] = state["target_nonclass"].to(self.device)
        self._set_values(c, nc)


TVO.Stack = TVOStack
