"""The TargetStrategy seam: what a strategy must do, the context it gets, and the registry."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from jobs.strategies.pairing import Pairing
from jobs.strategies.params import Call, Param, StrategyError, bind, format_call, parse_call


@dataclass
class StrategyContext:
    """What a strategy may look at when training starts (before epoch 1)."""

    pairing: Pairing
    num_train: int
    device: torch.device
    x_train: torch.Tensor
    y_train: torch.Tensor
    forward: Callable[[torch.Tensor], torch.Tensor]  # inputs -> output activations, no grad
    generator: torch.Generator  # the strategy's own randomness, seeded from the job's seed


@dataclass(frozen=True)
class StrategyValues:
    """A strategy's current values for logging: one c_i and nc_i per class, and/or a K x K table
    whose row k is the current target for class k (what `templates()` returns)."""

    target_class: list[float] | None = None
    target_nonclass: list[float] | None = None
    target_matrix: list[list[float]] | None = None


class TargetStrategy:
    """Builds the target tensor for each batch, may learn from the outputs, and says how to predict.

    Lifecycle in one job: `check(pairing)` before anything runs; `setup(ctx)` once when the job
    starts (on resume too, then `load_state_dict` puts back what was learned); then per training
    batch the forward pass, `batch_targets(...)` (by default `targets(...)`), `sample_weights(...)`,
    the optimiser step, `observe(...)` (only when `observes` is true); `end_epoch(epoch)` after
    each epoch. `templates()` is the current target per class (row k = target for class k), used
    for test loss, confidence and nearest-template prediction. State tensors live on `self.device`.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    source: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    decision: ClassVar[str] = "argmax"  # or "template": nearest target template
    observes: ClassVar[bool] = False  # True: needs `observe` with every training batch's outputs
    onehot_targets: ClassVar[bool] = False  # True: targets are always exactly one-hot
    uses_outputs: ClassVar[bool] = False  # True: batch_targets reads this batch's outputs

    def __init__(self, args: Mapping[str, Any]) -> None:
        self.args = dict(args)
        self.num_classes = 0
        self.device = torch.device("cpu")

    # -- identity -------------------------------------------------------------------------------
    def canonical(self) -> str:
        return format_call(self.name, self.args)

    def __repr__(self) -> str:
        return self.canonical()

    # -- before training ------------------------------------------------------------------------
    def check(self, pairing: Pairing) -> None:
        """Refuse pairings that cannot work (raise StrategyError). Default: check static targets."""
        table = self.static_templates(pairing)
        if table is not None:
            check_target_table(self.canonical(), table, pairing)

    def static_templates(self, pairing: Pairing) -> torch.Tensor | None:
        """The K x K targets when they are known before training; None when they are learned."""
        return None

    def setup(self, ctx: StrategyContext) -> None:
        self.num_classes = ctx.pairing.num_classes
        self.device = ctx.device

    # -- each batch -----------------------------------------------------------------------------
    def batch_targets(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                      epoch: int) -> torch.Tensor:
        """Targets (B x K) for a batch, given its output activations from this forward pass.

        For strategies whose targets depend on the current predictions (bootstrapping,
        self-adaptive training). `outputs` still carry gradients: detach them unless the gradient
        through the target is meant. Default: `targets(labels, indices, epoch)`.
        """
        return self.targets(labels, indices, epoch)

    def targets(self, labels: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        """Targets (B x K) for training samples `indices` (positions in the training set)."""
        return self.templates()[labels]

    def sample_weights(self, labels: torch.Tensor, indices: torch.Tensor,
                       epoch: int) -> torch.Tensor | None:
        """Per-sample loss weights for this batch, or None for an unweighted mean."""
        return None

    def observe(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                epoch: int) -> None:
        """See the (detached) output activations of a training batch after its step."""

    def end_epoch(self, epoch: int) -> None:
        """Called after training epoch `epoch` (1-based) has finished."""

    # -- evaluation -----------------------------------------------------------------------------
    def templates(self) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        if self.decision == "template":
            return nearest_template(outputs, self.templates())
        return outputs.argmax(dim=1)

    def values(self) -> StrategyValues:
        return StrategyValues()

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned; called instead of `setup`'s learning on resume."""


def nearest_template(outputs: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """argmin_k mean((p - T_k)^2): the study's decision rule for learned targets."""
    distances = (outputs.unsqueeze(1) - templates.unsqueeze(0)).pow(2).mean(dim=2)
    return distances.argmin(dim=1)


def templates_from_values(target_class: torch.Tensor, target_nonclass: torch.Tensor,
                          layout: str = "class") -> torch.Tensor:
    """K x K targets from per-class values.

    layout "class": row i is nc_i everywhere and c_i at position i (one pair per class, the study).
    layout "position": row i is nc_k at each other position k and c_i at position i (one class
    value and one non-class value per output neuron).
    """
    k = target_class.shape[0]
    eye = torch.eye(k, dtype=target_class.dtype, device=target_class.device)
    if layout == "class":
        off = target_nonclass.unsqueeze(1).expand(k, k)
    elif layout == "position":
        off = target_nonclass.unsqueeze(0).expand(k, k)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return eye * target_class.unsqueeze(1) + (1 - eye) * off


def output_range(output: str) -> tuple[float, float] | None:
    """The closed range an output activation can approach; None when unbounded (linear)."""
    from jobs.models import LECUN_TANH_SCALE  # here, not at the top: jobs.models imports jobs.spec

    return {"sigmoid": (0.0, 1.0), "softmax": (0.0, 1.0), "tanh": (-1.0, 1.0),
            "lecun_tanh": (-LECUN_TANH_SCALE, LECUN_TANH_SCALE)}.get(output)


def values_from_table(table: torch.Tensor) -> StrategyValues:
    """What a K x K target table logs: the table, and c_i / nc_i where row i has that form
    (c_i on the diagonal, one value nc_i everywhere else)."""
    k = table.shape[0]
    off_diagonal = table[~torch.eye(k, dtype=torch.bool, device=table.device)].view(k, k - 1)
    uniform_rows = bool((off_diagonal == off_diagonal[:, :1]).all())
    return StrategyValues(
        target_class=table.diagonal().tolist(),
        target_nonclass=off_diagonal[:, 0].tolist() if uniform_rows else None,
        target_matrix=table.tolist(),
    )


def check_target_table(strategy: str, table: torch.Tensor, pairing: Pairing) -> None:
    """Refuse targets the loss and output cannot use, instead of training into a silent NaN."""
    low, high = float(table.min()), float(table.max())
    reachable = output_range(pairing.output)
    if reachable is not None and (low < reachable[0] or high > reachable[1]):
        raise StrategyError(
            f"strategy {strategy} gives targets in [{low:.4g}, {high:.4g}], but output="
            f"{pairing.output} only reaches [{reachable[0]:.4g}, {reachable[1]:.4g}]"
        )
    if pairing.loss == "ce":
        sums = table.sum(dim=1)
        if low < 0 or (sums - 1).abs().max() > 1e-6:
            raise StrategyError(
                f"strategy {strategy} gives targets summing to {float(sums.max()):.4g} per row, "
                "but loss=ce needs non-negative targets that sum to 1; use normalize=true "
                "where the strategy has it, or loss=mse/bce"
            )
    if pairing.loss == "bce" and (low < 0 or high > 1):
        raise StrategyError(
            f"strategy {strategy} gives targets in [{low:.4g}, {high:.4g}], but loss=bce "
            "needs targets in [0, 1]"
        )


# ---------------------------------------------------------------------------------------------
# Registry

STRATEGIES: dict[str, type[TargetStrategy]] = {}


def register(cls: type[TargetStrategy]) -> type[TargetStrategy]:
    STRATEGIES[cls.name] = cls
    return cls


def load_catalogue() -> None:
    """Import every strategy module, which registers its strategies in STRATEGIES."""
    from jobs.strategies import fixed, literature, matrix, schedules, tvo  # noqa: F401


def make_strategy(text: str | Call) -> TargetStrategy:
    """Build a strategy from its string, e.g. `fixed(c=0.9, nc=0.1)`; StrategyError if invalid."""
    load_catalogue()
    call = parse_call(text) if isinstance(text, str) else text
    cls = STRATEGIES.get(call.name)
    if cls is None:
        names = sorted(STRATEGIES)
        hint = difflib.get_close_matches(call.name, names, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise StrategyError(
            f"unknown strategy {call.name!r}{suggestion}; valid strategies: {', '.join(names)}"
        )
    return cls(bind(call.name, cls.params, call.args))


def canonical_strategy(text: str) -> str:
    """The one spelling of a strategy with every parameter, so equal settings give equal job ids."""
    return make_strategy(text).canonical()
