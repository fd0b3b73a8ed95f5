"""The catalogue's torch side: every strategy module imported (each registers its classes in
STRATEGIES against their declarations), and strategies made from their strings."""

from __future__ import annotations

from jobs.strategies import fixed, literature, matrix, schedules, tvo  # noqa: F401 (register)
from jobs.strategies.base import STRATEGIES, TargetStrategy
from jobs.strategies.declared import bound
from jobs.strategies.params import Call

__all__ = ["STRATEGIES", "canonical_strategy", "make_strategy"]


def make_strategy(text: str | Call) -> TargetStrategy:
    """Build a strategy from its string, e.g. `fixed(c=0.9, nc=0.1)`; StrategyError if invalid."""
    declaration, args = bound(text)
    return STRATEGIES[declaration.name](args)


def canonical_strategy(text: str) -> str:
    """The one spelling of a strategy with every parameter, so equal settings give equal job ids."""
    return make_strategy(text).canonical()
