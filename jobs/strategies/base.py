"""The TargetStrategy seam: what a strategy must do, the context it gets, and the registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch

from jobs.strategies.catalogue import Declaration
from jobs.strategies.pairing import Pairing
from jobs.strategies.params import Param, format_call


@dataclass
class StrategyContext:
    """What one member's strategy may look at when training starts (before epoch 1)."""

    pairing: Pairing
    num_train: int
    device: torch.device
    x_train: torch.Tensor
    y_train: torch.Tensor
    forward: Callable[[torch.Tensor], torch.Tensor]  # inputs -> output activations, no grad
    generator: torch.Generator  # the strategy's own randomness, seeded from the job's seed


@dataclass
class StackContext:
    """What the G members of a strategy stack may look at when training starts.

    `forward` maps inputs [n, ...] to every member's output activations [G, n, K] (no grad);
    `pairings` and `generators` are per member (members may train different epochs)."""

    pairings: list[Pairing]
    num_train: int
    device: torch.device
    x_train: torch.Tensor
    y_train: torch.Tensor
    forward: Callable[[torch.Tensor], torch.Tensor]
    generators: list[torch.Generator]

    @property
    def num_classes(self) -> int:
        return self.pairings[0].num_classes

    @classmethod
    def of_one(cls, ctx: StrategyContext) -> StackContext:
        def forward(x: torch.Tensor) -> torch.Tensor:
            return ctx.forward(x).unsqueeze(0)

        return cls([ctx.pairing], ctx.num_train, ctx.device, ctx.x_train, ctx.y_train, forward,
                   [ctx.generator])


@dataclass(frozen=True)
class StrategyValues:
    """A strategy's current values for logging: one c_i and nc_i per class, and/or a K x K table
    whose row k is the current target for class k (what `templates()` returns)."""

    target_class: list[float] | None = None
    target_nonclass: list[float] | None = None
    target_matrix: list[list[float]] | None = None


class StrategyStack:
    """The training-time state of G members that share a strategy type, as stacked tensors.

    Every per-batch call takes and returns tensors with the members first: outputs [G, B, K],
    labels and indices [G, B] (indices: positions in the training set), targets [G, B, K],
    weights [G, B]. Per-member numbers (eps, beta, alpha, ...) are columns of the stack, so G
    members cost the same few tensor operations as one. A job alone is a stack of one.
    """

    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        self.members = list(members)
        self.size = len(self.members)
        self.num_classes = ctx.num_classes
        self.device = ctx.device
        self.eye = torch.eye(self.num_classes, device=ctx.device)
        self.member_index = torch.arange(self.size, device=ctx.device).unsqueeze(1)  # [G, 1]

    def column(self, key: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Every member's numeric argument `key` as a [G, 1, 1] column."""
        values = [member.args[key] for member in self.members]
        return torch.tensor(values, dtype=dtype, device=self.device).view(-1, 1, 1)

    # -- each batch -----------------------------------------------------------------------------
    def batch_targets(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                      epoch: int) -> torch.Tensor:
        """Targets [G, B, K] given this forward pass's outputs [G, B, K] (still with gradients:
        detach unless the gradient through the target is meant). Default: `targets`."""
        return self.targets(labels, indices, epoch)

    def targets(self, labels: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        return self.templates()[self.member_index, labels]

    def sample_weights(self, labels: torch.Tensor, indices: torch.Tensor,
                       epoch: int) -> torch.Tensor | None:
        """Per-sample loss weights [G, B], or None for an unweighted mean."""
        return None

    def observe(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                epoch: int) -> None:
        """See the detached outputs [G, B, K] of a training batch after its step."""

    def end_epoch(self, epoch: int) -> None:
        """Called after training epoch `epoch` (1-based) has finished."""

    # -- evaluation -----------------------------------------------------------------------------
    def templates(self) -> torch.Tensor:
        """[G, K, K]: row k of member g's table is its current target for class k."""
        raise NotImplementedError

    def predict(self, outputs: torch.Tensor, members: slice = slice(None)) -> torch.Tensor:
        """Predicted classes [G, B] by the strategy's decision rule (`members`: the outputs are
        those of a slice of the stack's members)."""
        if self.members[0].decision == "template":
            return nearest_template(outputs, self.templates()[members])
        return outputs.argmax(dim=-1)

    def all_values(self) -> list[StrategyValues]:
        """Every member's current values for logging, read from the device at once."""
        return values_from_tables(self.templates())

    def values(self, g: int) -> StrategyValues:
        return self.all_values()[g]

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self, g: int) -> dict[str, Any]:
        """Member g's learned state (tensors on the CPU or the device; copies)."""
        return {}

    def load_state_dict(self, g: int, state: Mapping[str, Any]) -> None:
        """Put back what `state_dict(g)` returned; called after `__init__` on resume."""


class TargetStrategy:
    """A target strategy's definition: its parameters, what it fits with, how it trains.

    One object per job: its name and arguments (`canonical()`), `check(pairing)` before anything
    runs, and `Stack`, the class that trains it: members of a stack with equal `stack_key()`
    share one `Stack` object whose state is stacked over them (see StrategyStack). Name,
    summary, source, parameters and checks are its declaration's (jobs.strategies.catalogue),
    set by `register`.

    The per-job methods below (`setup`, `targets`, `observe`, ...) are that same Stack with one
    member, for tests and tools that look at one strategy; training always goes through stacks.
    """

    declaration: ClassVar[Declaration]
    name: ClassVar[str]
    summary: ClassVar[str]
    source: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    decision: ClassVar[str] = "argmax"  # or "template": nearest target template
    observes: ClassVar[bool] = False  # True: needs `observe` with every training batch's outputs
    onehot_targets: ClassVar[bool] = False  # True: targets are always exactly one-hot
    uses_outputs: ClassVar[bool] = False  # True: batch_targets reads this batch's outputs
    weighted: ClassVar[bool] = False  # True: sample_weights may weight the loss
    Stack: ClassVar[type[StrategyStack]]

    def __init__(self, args: Mapping[str, Any]) -> None:
        self.args = dict(args)
        self._one: StrategyStack | None = None

    # -- identity -------------------------------------------------------------------------------
    def canonical(self) -> str:
        return format_call(self.name, self.args)

    def __repr__(self) -> str:
        return self.canonical()

    def stack_key(self) -> str:
        """Members with equal keys train in one Stack. By default: the same strategy with the
        same non-numeric arguments (numbers become per-member columns)."""
        words = {k: v for k, v in self.args.items()
                 if isinstance(v, bool) or not isinstance(v, int | float)}
        return format_call(self.name, words)

    # -- before training ------------------------------------------------------------------------
    def check(self, pairing: Pairing) -> None:
        """Refuse pairings that cannot work (raise StrategyError), as the declaration says."""
        self.declaration.check(self.args, pairing)

    # -- one job as a stack of one --------------------------------------------------------------
    def setup(self, ctx: StrategyContext) -> None:
        self._one = self.Stack([self], StackContext.of_one(ctx))

    @property
    def one(self) -> StrategyStack:
        if self._one is None:
            raise RuntimeError(f"strategy {self.canonical()} is used before setup()")
        return self._one

    @property
    def num_classes(self) -> int:
        return self.one.num_classes

    def batch_targets(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                      epoch: int) -> torch.Tensor:
        return self.one.batch_targets(outputs[None], labels[None], indices[None], epoch)[0]

    def targets(self, labels: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        return self.one.targets(labels[None], indices[None], epoch)[0]

    def sample_weights(self, labels: torch.Tensor, indices: torch.Tensor,
                       epoch: int) -> torch.Tensor | None:
        weights = self.one.sample_weights(labels[None], indices[None], epoch)
        return None if weights is None else weights[0]

    def observe(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                epoch: int) -> None:
        self.one.observe(outputs[None], labels[None], indices[None], epoch)

    def end_epoch(self, epoch: int) -> None:
        self.one.end_epoch(epoch)

    def templates(self) -> torch.Tensor:
        return self.one.templates()[0]

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.one.predict(outputs[None])[0]

    def values(self) -> StrategyValues:
        return self.one.values(0)

    def state_dict(self) -> dict[str, Any]:
        return self.one.state_dict(0)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.one.load_state_dict(0, state)


def nearest_template(outputs: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """argmin_k mean((p - T_k)^2): the study's decision rule for learned targets.

    outputs [..., B, K] and templates [..., K, K] (the same leading member dims) -> [..., B].
    Expanded as |p|^2 - 2 p.T_k + |T_k|^2 (one batched matmul): |p|^2 is the same for every k
    and drops out of the argmin."""
    cross = outputs @ templates.transpose(-1, -2)  # [..., B, K]
    distances = templates.pow(2).sum(dim=-1).unsqueeze(-2) - 2 * cross
    return distances.min(dim=-1).indices  # as argmin (the first of ties), 30% faster on the CPU


def templates_from_values(target_class: torch.Tensor, target_nonclass: torch.Tensor,
                          layout: str = "class") -> torch.Tensor:
    """K x K targets from per-class values [..., K] (leading dims: members).

    layout "class": row i is nc_i everywhere and c_i at position i (one pair per class, the study).
    layout "position": row i is nc_k at each other position k and c_i at position i (one class
    value and one non-class value per output neuron).
    """
    k = target_class.shape[-1]
    eye = torch.eye(k, dtype=target_class.dtype, device=target_class.device)
    if layout == "class":
        off = target_nonclass.unsqueeze(-1).expand(*target_nonclass.shape, k)
    elif layout == "position":
        off = target_nonclass.unsqueeze(-2).expand(*target_nonclass.shape[:-1], k, k)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return eye * target_class.unsqueeze(-1) + (1 - eye) * off


def values_from_tables(tables: torch.Tensor) -> list[StrategyValues]:
    """What each of [G, K, K] tables logs, with one transfer from the device: the table, and
    c_i / nc_i where row i has that form (c_i on the diagonal, one value nc_i elsewhere)."""
    g, k, _ = tables.shape
    off = tables[:, ~torch.eye(k, dtype=torch.bool, device=tables.device)].view(g, k, k - 1)
    uniform = (off == off[:, :, :1]).flatten(1).all(dim=1).tolist()
    diagonal, nonclass = tables.diagonal(dim1=1, dim2=2).tolist(), off[:, :, 0].tolist()
    matrices = tables.tolist()
    return [StrategyValues(target_class=diagonal[i],
                           target_nonclass=nonclass[i] if uniform[i] else None,
                           target_matrix=matrices[i]) for i in range(g)]


# ---------------------------------------------------------------------------------------------
# Registry: filled by each strategy module's @register (jobs.strategies.registry imports them all)

STRATEGIES: dict[str, type[TargetStrategy]] = {}
Strategy = TypeVar("Strategy", bound=type[TargetStrategy])


def register(declaration: Declaration) -> Callable[[Strategy], Strategy]:
    """`@register(catalogue.FIXED)`: the class trains that declared strategy and takes its name,
    summary, source and parameters from it."""

    def add(cls: Strategy) -> Strategy:
        cls.declaration, cls.name, cls.params = declaration, declaration.name, declaration.params
        cls.summary, cls.source = declaration.summary, declaration.source
        STRATEGIES[declaration.name] = cls
        return cls

    return add
