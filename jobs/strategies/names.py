"""The names of the registered strategies, read from the strategy modules' source (no torch):
an unknown name is refused before the registry, and torch with it, is imported."""

from __future__ import annotations

import difflib
import functools
import re
import sys
from pathlib import Path

from jobs.strategies.params import StrategyError

MODULES = ("fixed", "literature", "matrix", "schedules", "tvo")  # what the registry imports
_NAME = re.compile(r'^    name = "(\w+)"', re.MULTILINE)  # a strategy class's `name`


@functools.cache
def strategy_names() -> tuple[str, ...]:
    folder = Path(__file__).parent
    names: set[str] = set()
    for module in MODULES:
        names.update(_NAME.findall((folder / f"{module}.py").read_text()))
    return tuple(sorted(names))


def unknown_strategy(name: str, names: tuple[str, ...] | list[str]) -> StrategyError:
    """The error for a strategy name that is not registered, with the closest valid one."""
    hint = difflib.get_close_matches(name, list(names), n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    return StrategyError(
        f"unknown strategy {name!r}{suggestion}; valid strategies: {', '.join(sorted(names))}")


def check_name(name: str) -> None:
    """Refuse a name no strategy module declares (raises StrategyError), without torch. Once
    the registry is loaded it has the last word (strategies registered at run time count)."""
    if name in strategy_names():
        return
    base = sys.modules.get("jobs.strategies.base")
    if base is not None and name in base.STRATEGIES:
        return
    raise unknown_strategy(name, strategy_names())
