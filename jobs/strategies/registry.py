"""The catalogue: every strategy module imported (each registers its strategies in STRATEGIES),
and strategies made from their strings."""

from __future__ import annotations

from jobs.strategies import fixed, literature, matrix, schedules, tvo  # noqa: F401 (register)
from jobs.strategies.base import STRATEGIES, TargetStrategy
from jobs.strategies.names import unknown_strategy
from jobs.strategies.params import Call, bind, parse_call

__all__ = ["STRATEGIES", "canonical_strategy", "make_strategy"]


def make_strategy(text: str | Call) -> TargetStrategy:
    """Build a strategy from its string, e.g. `fixed(c=0.9, nc=0.1)`; StrategyError if invalid."""
    call = parse_call(text) if isinstance(text, str) else text
    cls = STRATEGIES.get(call.name)
    if cls is None:
        raise unknown_strategy(call.name, sorted(STRATEGIES))
    return cls(bind(call.name, cls.params, call.args))


def canonical_strategy(text: str) -> str:
    """The one spelling of a strategy with every parameter, so equal settings give equal job ids."""
    return make_strategy(text).canonical()
