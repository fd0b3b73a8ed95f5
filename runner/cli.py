"""The `tvo` command line: parse, call the library, format. No training logic lives here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from runner.console import console, fail

app = typer.Typer(
    name="tvo",
    help="Run experiment grids that compare target-value strategies for training classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SettingsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Settings as KEY=VALUE, e.g. lr=0.5 hidden=[64,64] strategy=lecun",
                   show_default=False),
]


@app.command()
def train(
    settings: SettingsArg = None,
    out: Annotated[Path, typer.Option(help="Output root; the job writes OUT/runs/<job_id>/")] = Path(
        "outputs/train"),
) -> None:
    """Train one job in the foreground and write its run dir.

    Example: tvo train dataset=digits loss=mse output=sigmoid strategy=lecun epochs=10
    """
    from jobs.datasets import DataError, check_dataset_files
    from jobs.spec import SpecError
    from runner.overrides import parse_assignments
    from runner.train_command import train_one

    try:
        spec = parse_assignments(settings or [])
        check_dataset_files(spec.dataset, spec.data_root or None)
    except (SpecError, DataError) as exc:
        fail(str(exc))
    result = train_one(spec, out)
    raise typer.Exit(0 if result.state == "done" else 1)


@app.command()
def strategies() -> None:
    """List every target strategy with its parameters, defaults, valid ranges and source.

    Example: tvo strategies
    """
    from runner.listing import print_strategies

    print_strategies(console)


def main() -> None:
    app()
