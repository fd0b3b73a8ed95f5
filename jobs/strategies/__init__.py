"""Target strategies: the TargetStrategy seam, the registry STRATEGIES and every strategy.

Importing the package is light: `Pairing` and `StrategyError` need no torch, and everything
else (the strategies, their base class, the registry filled with all of them) loads on first
use of its name here. So settings, results, `tvo status` and `tvo aggregate` do not pay
torch's import (about a second) unless they build a strategy.
"""

from typing import Any

from jobs.strategies.pairing import Pairing
from jobs.strategies.params import StrategyError

_FROM_BASE = ("StackContext", "StrategyContext", "StrategyStack", "StrategyValues",
              "TargetStrategy")
_FROM_REGISTRY = ("STRATEGIES", "canonical_strategy", "make_strategy")

__all__ = ["Pairing", "StrategyError", *_FROM_BASE, *_FROM_REGISTRY]


def __getattr__(name: str) -> Any:
    """The names from jobs.strategies.base and .registry, with every strategy registered."""
    if name not in _FROM_BASE and name not in _FROM_REGISTRY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from jobs.strategies import base, registry  # the registry imports every strategy module

    value = getattr(base if name in _FROM_BASE else registry, name)
    globals()[name] = value
    return value
