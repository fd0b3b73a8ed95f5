"""A strategy string checked against the strategies' declarations, read from the strategy
modules' source (jobs.strategies.declared): an unknown name or a bad parameter is refused before
the registry, and torch with it, is imported."""

from __future__ import annotations

import difflib
import sys

from jobs.strategies.declared import declared_params
from jobs.strategies.params import Call, StrategyError, bind


def strategy_names() -> tuple[str, ...]:
    return tuple(sorted(declared_params()))


def unknown_strategy(name: str, names: tuple[str, ...] | list[str]) -> StrategyError:
    """The error for a strategy name that is not registered, with the closest valid one."""
    hint = difflib.get_close_matches(name, list(names), n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    return StrategyError(
        f"unknown strategy {name!r}{suggestion}; valid strategies: {', '.join(sorted(names))}")


def check_call(call: Call) -> None:
    """Refuse an unknown name or parameters its declaration does not take (StrategyError, the
    same message the registry gives), without torch. Once the registry is loaded it has the
    last word (strategies registered at run time count)."""
    declared = declared_params()
    if call.name not in declared:
        base = sys.modules.get("jobs.strategies.base")
        if base is not None and call.name in base.STRATEGIES:
            return
        raise unknown_strategy(call.name, strategy_names())
    bind(call.name, declared[call.name], call.args)
