"""Terminal output for the CLI: one rich console, and one-line errors with exit code 2."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False)

BAD_INPUT = 2


MAX_ERROR_CHARS = 1_000  # messages cut the input they repeat; this is the last guard


def one_line(message: str) -> str:
    """`message` on one line (line breaks and other control characters escaped), cut."""
    text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in message)
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    """Print `Error: message` on stderr and exit (2 = bad input, nothing ran)."""
    error_console.print(f"Error: {one_line(message)}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


# Typer's click (its own copy in recent versions, else click itself): found, not named
_CLICK_ERROR = next(kind for kind in typer.BadParameter.__mro__
                    if kind.__name__ == "ClickException")


class OneLineErrors(TyperGroup):
    """The command group: usage errors (an unknown option, a missing argument, a bad option
    value) are one `Error:` line with a pointer to --help, like every other input error."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        except _CLICK_ERROR as exc:
            if not standalone_mode:
                raise
            where = exc.ctx.command_path if getattr(exc, "ctx", None) else "tvo"
            if not exc.format_message().strip():  # `tvo` alone: the help was the answer
                sys.exit(exc.exit_code)
            error_console.print(f"Error: {one_line(exc.format_message())} (see `{where} "
                                "--help`)", markup=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except typer.Abort:  # end of input at a prompt; tvo has none
            if not standalone_mode:
                raise
            sys.exit(1)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)
