"""The `tvo` program: SIGTERM becomes Ctrl-C before anything heavy is imported, and an
interrupt at any moment (even during imports) is one line and exit code 130."""

from __future__ import annotations

from runner.interrupts import INTERRUPTED, say_interrupted, sigterm_interrupts


def main() -> None:
    try:
        sigterm_interrupts()
        from runner.cli import app

        app()
    except KeyboardInterrupt:  # outside a command's own guard: while starting, nothing ran
        say_interrupted("nothing was started")
        raise SystemExit(INTERRUPTED) from None
    except SystemExit as exit_:  # Typer turns an interrupt while it parses into a silent 130
        if exit_.code == INTERRUPTED:
            say_interrupted("nothing was started")
        raise
