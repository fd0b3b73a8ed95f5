"""Listings for the terminal: the strategy catalogue."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_strategies(console: Console) -> None:
    from jobs.strategies import STRATEGIES, make_strategy

    table = Table(title="Target strategies (use as strategy=NAME(param=value, ...))",
                  show_lines=True)
    table.add_column("strategy", style="bold")
    table.add_column("parameters (default, valid)")
    table.add_column("what it does")
    table.add_column("source")
    for name in sorted(STRATEGIES):
        cls = STRATEGIES[name]
        params = "\n".join(
            f"{p.name}={make_strategy(name).args[p.name]!s} ({p.valid}): {p.help}"
            for p in cls.params) or "-"
        table.add_row(name, params, cls.summary, cls.source)
    console.print(table)
