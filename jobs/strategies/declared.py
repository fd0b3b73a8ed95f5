"""Strategy strings checked, bound and spelled from the declarations (jobs.strategies.catalogue)
alone: no torch, so settings, grid expansion, `tvo strategies` and the report never import it."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs.strategies.catalogue import DECLARATIONS, Declaration
from jobs.strategies.pairing import Pairing
from jobs.strategies.params import Call, Param, StrategyError, bind, parse_call


def strategy_names() -> tuple[str, ...]:
    return tuple(sorted(DECLARATIONS))


def unknown_strategy(name: str) -> StrategyError:
    """The error for a strategy name that is not declared, with the closest valid one."""
    names = strategy_names()
    hint = difflib.get_close_matches(name, list(names), n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    return StrategyError(
        f"unknown strategy {name!r}{suggestion}; valid strategies: {', '.join(names)}")


def declaration(name: str) -> Declaration:
    found = DECLARATIONS.get(name)
    if found is None:
        raise unknown_strategy(name)
    return found


def bound(text: str | Call) -> tuple[Declaration, dict[str, Any]]:
    """A strategy string's declaration and every parameter's value (StrategyError if invalid)."""
    call = parse_call(text) if isinstance(text, str) else text
    declared = declaration(call.name)
    return declared, declared.bind(call.args)


def canonical(text: str) -> str:
    """The one spelling of a strategy with every parameter, so equal settings give equal job ids."""
    declared, args = bound(text)
    return declared.canonical(args)


def check_pairing(text: str, pairing: Pairing) -> None:
    """Refuse a strategy that cannot train with this pairing (StrategyError, one line)."""
    declared, args = bound(text)
    declared.check(args, pairing)


@dataclass(frozen=True)
class Defaults:
    """One strategy's parameter defaults, bound as the strategy binds them (options as Calls
    with their own defaults filled in), and the defaults of every option of each parameter."""

    values: Mapping[str, Any]
    options: Mapping[str, Mapping[str, Mapping[str, Any]]]  # param -> option name -> defaults


@functools.cache
def static_strategies() -> frozenset[str]:
    """Names of the strategies whose targets never move during training: the plots need not
    read their target columns (a quarter of a second at 1M rows)."""
    return frozenset(name for name, declared in DECLARATIONS.items() if declared.static)


@functools.cache
def strategy_defaults() -> Mapping[str, Defaults]:
    """Strategy name -> its parameters' defaults (as declared: a matrix's rows=[] too)."""
    found: dict[str, Defaults] = {}
    for name, declared in DECLARATIONS.items():
        values = bind(name, declared.params, {})
        option_defaults = {p.name: {o.name: bind(o.name, o.params, {}) for o in p.options}
                           for p in declared.params if p.options}
        found[name] = Defaults(values, option_defaults)
    return found


def declared_params() -> Mapping[str, tuple[Param, ...]]:
    """Strategy name -> its declared parameters."""
    return {name: declared.params for name, declared in DECLARATIONS.items()}
