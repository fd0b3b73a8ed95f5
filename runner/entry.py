"""The `tvo` program: SIGTERM becomes Ctrl-C before anything heavy is imported, and an
interrupt at any moment (even during imports) is one line and exit code 130."""

from __future__ import annotations

import gc
import os
import sys

from runner.cli.interrupts import INTERRUPTED, say_interrupted, sigterm_interrupts


def main() -> None:
    try:
        sigterm_interrupts()
        from runner.cli.app import app

        app()
    except KeyboardInterrupt:  # outside a command's own guard: while starting, nothing ran
        say_interrupted("nothing was started")
        _exit_now()
    except SystemExit as exit_:  # Typer turns an interrupt while it parses into a silent 130
        if exit_.code == INTERRUPTED:
            say_interrupted("nothing was started")
            _exit_now()
        raise
    finally:
        # The interpreter's last garbage collection then skips every object alive now: with
        # torch's and Ray's modules loaded it took 0.4 s of the program's exit.
        gc.freeze()


def _exit_now() -> None:
    """Exit 130 at once. An interrupt that lands inside an import (a C extension's
    initialisation) can leave the interpreter marked as killed by Ctrl-C, and its shutdown then
    ends the process by SIGINT instead of with 130; nothing was started, so nothing needs it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)
