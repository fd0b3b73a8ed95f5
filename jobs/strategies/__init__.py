"""Target strategies: the TargetStrategy seam, the registry STRATEGIES and every strategy.

Importing the package is light: `Pairing` and `StrategyError` need no torch, and everything
else (the strategies, their base class, the registry filled with all of them) loads on first
use of its name here. So settings, results, `tvo status` and `tvo aggregate` do not pay
torch's import (about a second) unless they build a strategy.
"""

from typing import Any

from jobs.strategies.pairing import Pairing
from jobs.strategies.params import StrategyError

_FROM_BASE = ("STRATEGIES", "StackContext", "StrategyContext", "StrategyStack", "StrategyValues",
              "TargetStrategy", "canonical_strategy", "make_strategy")

__all__ = ["Pairing", "StrategyError", *_FROM_BASE]


def __getattr__(name: str) -> Any:
    """The names from jobs.strategies.base, with every strategy registered first."""
    if name not in _FROM_BASE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from jobs.strategies import base

    base.load_catalogue()
    value = getattr(base, name)
    globals()[name] = value
    return value
