"""`tvo ui`: check the output root, bind, print the URL with the session's token, serve."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from runner.cli.run import say


class OutRootError(ValueError):
    """An OUT_ROOT that cannot be served; one line naming it."""


def check_out_root(out_root: Path) -> None:
    """A folder, or not there yet (the first run started from the app creates it)."""
    if out_root.exists() and not out_root.is_dir():
        raise OutRootError(f"OUT_ROOT {str(out_root)!r} is not a folder; pass the output root "
                           "that `tvo run --out` wrote to (default: outputs)")


def serve_ui(out_root: Path, host: str, port: int | None, console: Console) -> None:
    """Serve until Ctrl-C or SIGTERM; raises runner.ui.server.ServeError when it cannot
    listen."""
    from runner.ui.server import bind, serve

    bound = bind(host, port)

    def announce(url: str) -> None:
        say(console, f"tvo ui: the grids under {out_root} at")
        say(console, f"    {url}")
        say(console, "Open that URL (its token lets the page start and cancel runs). Ctrl-C "
                     "stops the server; runs started from it go on.")

    try:
        serve(out_root, bound, announce)
    except KeyboardInterrupt:  # uvicorn stopped gracefully on Ctrl-C or SIGTERM, then re-raised
        say(console, "tvo ui stopped; runs started from it go on (see `tvo status`)")
