"""Terminal output for the CLI: one rich console, and one-line errors with exit code 2."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False)

BAD_INPUT = 2


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    """Print `Error: message` on stderr and exit (2 = bad input, nothing ran)."""
    error_console.print(f"Error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)
