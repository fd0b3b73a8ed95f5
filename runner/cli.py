"""The `tvo` command line: parse, call the library, format. No training logic lives here."""

from __future__ import annotations

from enum import Enum
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


class OutputFormat(str, Enum):
    """What `tvo aggregate` prints on standard output."""

    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


@app.command()
def aggregate(
    directory: Annotated[Path, typer.Argument(help="A grid's output dir, e.g. outputs/quickstart",
                                              show_default=False)],
    threshold: Annotated[float, typer.Option(
        help="Test accuracy for the 'epochs to threshold' column")] = 0.9,
    by: Annotated[str | None, typer.Option(
        metavar="KEY,KEY", show_default=False,
        help="Group by these settings, comma-separated (default: every setting that differs "
             "between jobs, except seed)")] = None,
    baseline: Annotated[str | None, typer.Option(
        metavar="KEY=VALUE", show_default=False,
        help="Compare every group with the group KEY=VALUE and otherwise equal settings "
             "(default: strategy=onehot)")] = None,
    output_format: Annotated[OutputFormat, typer.Option(
        "--format", help="Standard output: a table, or csv/json/markdown for scripts")
    ] = OutputFormat.table,
    plots: Annotated[bool, typer.Option(help="Draw the PNG plots (the slow part)")] = True,
) -> None:
    """Summarise a grid: mean, std and 95 % CI per group over seeds, Welch tests against a
    baseline, and DIR/summary/ with report.md, summary.csv/.parquet, compacted metrics, plots.

    Example: tvo aggregate outputs/quickstart --baseline strategy=onehot --threshold 0.95
    """
    from runner.aggregate.load import AggregateError
    from runner.aggregate.pipeline import aggregate as run_aggregate
    from runner.aggregate_command import command_line, print_aggregation
    from runner.console import error_console

    keys = None if by is None else [key.strip() for key in by.split(",") if key.strip()]
    command = command_line(directory, threshold=threshold, by=keys, baseline=baseline,
                           plots=plots)
    try:
        result = run_aggregate(directory, threshold=threshold, by=keys, baseline=baseline,
                               plots=plots, command=command)
    except AggregateError as exc:
        fail(str(exc))
    print_aggregation(console, error_console, result, output_format.value)


def main() -> None:
    app()
