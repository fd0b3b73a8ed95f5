"""Target strategies: importing this package registers every strategy in STRATEGIES."""

from jobs.strategies import fixed, literature, matrix, schedules, tvo  # noqa: F401
from jobs.strategies.base import (
    STRATEGIES,
    Pairing,
    StrategyContext,
    StrategyValues,
    TargetStrategy,
    canonical_strategy,
    make_strategy,
)
from jobs.strategies.params import StrategyError

__all__ = [
    "STRATEGIES",
    "Pairing",
    "StrategyContext",
    "StrategyError",
    "StrategyValues",
    "TargetStrategy",
    "canonical_strategy",
    "make_strategy",
]
