"""Listings for the terminal: the strategy catalogue."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from jobs.strategies.params import Option, Param


def strategy_lines() -> list[str]:
    """Every strategy: a line with its name, what it does and its source, then one line per
    parameter (default, valid values, meaning) and per option of a nested choice."""
    from jobs.strategies.catalogue import DECLARATIONS  # the declarations: no torch

    lines = ["Target strategies: strategy=NAME or strategy=NAME(param=value, ...)", ""]
    for name in sorted(DECLARATIONS):
        declared = DECLARATIONS[name]
        lines.append(f"{name}  {declared.summary}  [{declared.source}]")
        width = max((len(_assignment(p)) for p in declared.params), default=0)
        for p in declared.params:
            lines.append(f"    {_assignment(p):<{width}}  {p.valid}: {p.help}")
            lines.extend(f"        {_option(option)}: {option.help}" for option in p.options)
    return lines


def _assignment(p: Param) -> str:
    from jobs.strategies.params import format_value

    return f"{p.name}={format_value(p.check(p.default))}"


def _option(option: Option) -> str:
    from jobs.strategies.params import format_value

    if not option.params:
        return option.name
    inner = ", ".join(f"{p.name}={format_value(p.check(p.default))} {p.valid}"
                      for p in option.params)
    return f"{option.name}({inner})"


def print_strategies(console: Console) -> None:
    for line in strategy_lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
