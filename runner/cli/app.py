"""The `tvo` command line: parse, call the library, format. No training logic lives here."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cluster.backends import BACKENDS
from runner.cli.console import OneLineErrors, console, fail

app = typer.Typer(
    name="tvo",
    cls=OneLineErrors,
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
TensorBoardOption = Annotated[bool, typer.Option(
    "--tensorboard", help="Also write TensorBoard events per evaluated epoch into each run dir "
                          "(runs/<job_id>/tensorboard); view with: tensorboard --logdir OUT")]


@app.command()
def train(
    settings: SettingsArg = None,
    out: Annotated[Path, typer.Option(
        help="Output root; the job writes OUT/runs/<job_id>/")] = Path("outputs/train"),
    tensorboard: TensorBoardOption = False,
) -> None:
    """Train one job in the foreground and write its run dir.

    Example: tvo train dataset=digits loss=mse output=sigmoid strategy=lecun epochs=10
    """
    from jobs.spec import SpecError
    from runner.cli.interrupts import interrupt_guard
    from runner.dispatch.preflight import PreflightError, check_run
    from runner.dispatch.run_state import checkpoint_seconds_from_env
    from runner.grid.overrides import parse_assignments

    try:
        spec = parse_assignments(settings or [])
        check_run([spec], out)
        checkpoint_seconds = checkpoint_seconds_from_env()
    except (SpecError, PreflightError, ValueError) as exc:
        fail(str(exc))
    from runner.cli.train import train_one  # here: it imports the training engine

    with interrupt_guard(f"job {spec.job_id} keeps its last checkpoint; the same command "
                         f"resumes it (see `tvo status {out}`)"):
        result = train_one(spec, out, tensorboard=tensorboard,
                           checkpoint_seconds=checkpoint_seconds)
    raise typer.Exit(0 if result.state == "done" else 1)


BackendName = Enum("BackendName", {name: name for name in BACKENDS}, type=str)  # type: ignore[misc]
DEFAULT_BACKEND = BackendName("ray")


@app.command()
def run(
    grid: Annotated[str, typer.Argument(help="A grid file (YAML) or the name of a shipped grid "
                                             "(see `tvo grids`)", show_default=False)],
    settings: Annotated[list[str] | None, typer.Argument(
        help="Overrides and sweeps after the grid: lr=0.1,0.5 'seed=range(5)' "
             "'strategy=onehot,fixed(c=0.9, nc=0.1)' 'hidden=[64,64],[128]' (quote words "
             "with parentheses, brackets or spaces for the shell)",
        show_default=False)] = None,
    backend: Annotated[BackendName, typer.Option(
        help="Where jobs run: ray (RAY_ADDRESS or --ray-address, else an embedded local Ray), "
             "inline (one after another in this process), slurm (job arrays via submitit; "
             "see the grid's resources and slurm sections)")] = DEFAULT_BACKEND,
    out: Annotated[Path, typer.Option(help="Output root; the grid writes OUT/<grid name>/")] = Path(
        "outputs"),
    max_parallel: Annotated[int | None, typer.Option(
        min=1, help="At most this many jobs running at once (default: as many as the backend fits)",
        show_default=False)] = None,
    retries: Annotated[int, typer.Option(
        min=0, help="Run a job again up to N times when it failed or its worker crashed")] = 0,
    fail_fast: Annotated[bool, typer.Option(
        help="Stop launching jobs after the first failure; running ones finish")] = False,
    dry_run: Annotated[bool, typer.Option(
        help="Print the jobs the grid expands to and exit; writes nothing")] = False,
    ray_address: Annotated[str | None, typer.Option(
        help="Join the Ray cluster at this address (default: RAY_ADDRESS, else start one)",
        show_default=False)] = None,
    pack: Annotated[str | None, typer.Option(
        help="auto, off or N: train up to N compatible jobs as one stack in one process; auto "
             "spreads the jobs over the slots that run at once (default: the grid's `pack`, "
             "else auto)", show_default=False)] = None,
    detach: Annotated[bool, typer.Option(
        help="Submit every job and exit without waiting (slurm); then `tvo status DIR`")] = False,
    tensorboard: TensorBoardOption = False,
    samples: Annotated[int | None, typer.Option(
        min=1, max=100_000, help="Draw N configurations from the grid's search spaces, e.g. "
                                 "'lr=loguniform(0.01, 1)' (default: the grid's `samples`)",
        show_default=False)] = None,
) -> None:
    """Run every job of a grid; finished jobs are skipped, interrupted and cancelled ones resume.

    Exit code 0 when every job is done, 1 when some failed, diverged or were cancelled (`tvo
    cancel`), 2 for bad input, 130 when interrupted (Ctrl-C or SIGTERM; the same command
    resumes).

    Example: tvo run quickstart 'seed=range(5)' --max-parallel 2
    """
    from cluster.backends import BackendError
    from runner.cli.run import execute, execute_comparison, plan_run, print_plan
    from runner.dispatch.driver import RunOptions
    from runner.grid.expand import GridError

    try:
        plan = plan_run(grid, settings or [], out, samples)
    except GridError as exc:
        fail(str(exc))
    if ray_address and backend.value != "ray":
        fail(f"--ray-address is for --backend ray (got --backend {backend.value})")
    if detach and backend.value != "slurm":
        fail(f"--detach is for --backend slurm: jobs on {backend.value} end with this process")
    from runner.dispatch.preflight import PreflightError, check_run

    try:
        check_run(plan.specs, plan.grid_dir, backend=backend.value, resources=plan.grid.resources,
                  ray_address=ray_address)
    except PreflightError as exc:
        fail(str(exc))
    pack_size = _pack_option(pack) if pack is not None else plan.grid.pack or 0
    if dry_run:
        from runner.cli.run import default_slots

        print_plan(plan, console, pack_size, slots=max_parallel or default_slots(backend.value))
        raise typer.Exit(0)
    import signal

    from runner.dispatch.run_state import checkpoint_seconds_from_env

    try:
        checkpoint_seconds = checkpoint_seconds_from_env()
    except ValueError as exc:
        fail(str(exc))
    options = RunOptions(max_parallel=max_parallel, retries=retries, fail_fast=fail_fast,
                         pack=pack_size, detach=detach, tensorboard=tensorboard,
                         checkpoint_seconds=checkpoint_seconds)
    if tensorboard:
        console.print(f"TensorBoard: tensorboard --logdir {plan.grid_dir}", markup=False,
                      highlight=False, soft_wrap=True)
    from runner.cli.interrupts import INTERRUPTED, announced, interrupt_guard, stop_children

    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops a run like Ctrl-C
    try:
        with interrupt_guard("unfinished jobs keep their last checkpoint; run the same command "
                             f"again to resume, or see `tvo status {plan.grid_dir}`"):
            run = execute if plan.grid.compare is None else execute_comparison
            code = run(plan, backend.value, options, ray_address, console)
            if code == INTERRUPTED:  # execute said so in one line
                announced()
                stop_children()  # whatever the backend's own cleanup left
    except BackendError as exc:
        fail(str(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(code)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _pack_option(value: str) -> int:
    """--pack auto|off|N as the pack size the runner takes (0: auto, 1: off)."""
    word = value.strip().lower()
    if word == "auto":
        return 0
    if word == "off":
        return 1
    if word.isdigit() and 1 <= int(word) <= 100_000:
        return int(word)
    fail(f"--pack: got {value[:40]!r}; expected auto, off or a whole number >= 1 (jobs trained "
         "together as one stack)")
    raise AssertionError  # fail() exits


@app.command()
def status(
    grid_dir: Annotated[Path, typer.Argument(help="A grid's output dir, e.g. outputs/quickstart",
                                             show_default=False)],
    watch: Annotated[bool, typer.Option(
        "--watch", help="Refresh the status until no job of the grid runs any more (Ctrl-C "
                        "stops watching)")] = False,
    interval: Annotated[float, typer.Option(
        min=0.05, help="Seconds between refreshes with --watch")] = 2.0,
    jobs: Annotated[bool, typer.Option(
        "--jobs", help="Also list every job with its state, epochs and test accuracy")] = False,
    job: Annotated[str | None, typer.Option(
        "--job", help="One job: its state, where it ran, and every log line about it",
        show_default=False)] = None,
) -> None:
    """Count a grid's jobs by state and list failed ones with their error.

    Reads only files, so it works during a run, after a crash, and on a grid another machine ran.
    Jobs sent to SLURM also show SLURM's state and job id (squeue and sacct, where available).
    With --watch it shows the running jobs and their epoch too, refreshed live; --jobs lists
    every job's state; --job ID shows one job and its log.

    Example: tvo status outputs/quickstart --job 3f2a9c01b7de
    """
    from runner.cli.run import print_job, print_jobs, print_status
    from runner.cli.watch import watch_status
    from runner.dispatch.outdir import OutDirError
    from runner.dispatch.status import grid_status, job_log

    try:
        if watch:
            watch_status(grid_dir, interval, console)
            return
        found = grid_status(grid_dir)
    except OutDirError as exc:
        fail(str(exc))
    if job is not None:
        if job not in {listed.job_id for listed in found.jobs}:
            fail(f"{str(grid_dir)!r} has no job {job[:40]!r}; `tvo status {grid_dir} --jobs` "
                 "lists its jobs")
        print_job(found, job, job_log(grid_dir, job), console)
        return
    if jobs:
        print_jobs(found, console)
    print_status(found, console)


@app.command()
def cancel(
    grid_dir: Annotated[Path, typer.Argument(help="A grid's output dir, e.g. outputs/quickstart",
                                             show_default=False)],
    job: Annotated[list[str] | None, typer.Option(
        "--job", help="Cancel only this job (repeatable); default: the whole grid",
        show_default=False)] = None,
    grace: Annotated[float, typer.Option(
        min=0, help="Seconds the running jobs get to stop at their epoch end, losing nothing; "
                    "then they are stopped at once, back to their last checkpoint")] = 30.0,
) -> None:
    """Stop a running grid, or one job of it, wherever it runs (Ray, SLURM, inline).

    Cancelled jobs keep their last checkpoint and show as `cancelled`; running the grid again
    (`tvo run`) resumes them. Exit code 0 when every job asked to stop has stopped, 1 when some
    still run (on another host: they stop at their next epoch end), 2 for bad input.

    Example: tvo cancel outputs/quickstart --grace 10
    """
    from runner.cli.cancel import print_report, print_request
    from runner.dispatch.cancel import CancelError, request_cancel, stop
    from runner.dispatch.outdir import OutDirError

    try:
        request = request_cancel(grid_dir, job or [])
    except (OutDirError, CancelError) as exc:
        fail(str(exc))
    print_request(request, grace, console)
    report = stop(request, grace)
    print_report(report, console)
    raise typer.Exit(1 if report.still_running else 0)


@app.command()
def grids() -> None:
    """List the grids shipped with tvo, with their job count and what they compare.

    Example: tvo grids
    """
    from runner.cli.run import print_grids

    print_grids(console)


@app.command()
def strategies() -> None:
    """List every target strategy with its parameters, defaults, valid ranges and source.

    Example: tvo strategies
    """
    from runner.cli.listing import print_strategies

    print_strategies(console)


class OutputFormat(str, Enum):
    """What `tvo aggregate` prints on standard output."""

    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"
    latex = "latex"


@app.command()
def aggregate(
    directory: Annotated[Path, typer.Argument(help="A grid's output dir, e.g. outputs/quickstart",
                                              show_default=False)],
    threshold: Annotated[float, typer.Option(
        help="Validation accuracy for the 'epochs to threshold' column")] = 0.9,
    by: Annotated[str | None, typer.Option(
        metavar="KEY,KEY", show_default=False,
        help="Group by these settings, comma-separated (default: every setting that differs "
             "between jobs, except seed)")] = None,
    baseline: Annotated[str | None, typer.Option(
        metavar="KEY=VALUE", show_default=False,
        help="Compare every group with the group KEY=VALUE and otherwise equal settings "
             "(default: strategy=onehot)")] = None,
    output_format: Annotated[OutputFormat, typer.Option(
        "--format", help="Standard output: a table, csv/json/markdown for scripts, or a "
                         "booktabs table for LaTeX (latex)")
    ] = OutputFormat.table,
    plots: Annotated[bool, typer.Option(
        help="Draw the plots (PNG, SVG) and the charts of report.html (the slow part)")] = True,
) -> None:
    """Summarise a grid: mean, std and 95 % CI per group over seeds, bootstrap CIs and IQM,
    paired or Welch tests against a baseline with Holm's correction and P(A > B), and
    DIR/summary/ with report.md, report.html (interactive), summary.csv/.parquet/.tex,
    compacted metrics, plots (PNG and SVG, kept when unchanged). A grid with `compare:` leads
    with its selection, final-seed comparison, tuning curves and verdicts. --by and --baseline
    write to a sub-folder of their own (summary/by-.../, summary/vs-.../).

    Example: tvo aggregate outputs/quickstart --baseline strategy=onehot --threshold 0.95

    Example: tvo aggregate outputs/study --format latex > table.tex
    """
    from runner.report.render_worker import FigureWorkers

    # started first, so the worker imports matplotlib while this process imports the data
    # libraries (ended unused when the figures are kept)
    workers = FigureWorkers() if plots else None
    from runner.cli.aggregate import command_line, print_aggregation
    from runner.cli.console import error_console
    from runner.report.load import AggregateError
    from runner.report.pipeline import aggregate as run_aggregate

    keys = None if by is None else [key.strip() for key in by.split(",") if key.strip()]
    command = command_line(directory, threshold=threshold, by=keys, baseline=baseline,
                           plots=plots)
    try:
        result = run_aggregate(directory, threshold=threshold, by=keys, baseline=baseline,
                               plots=plots, command=command, workers=workers)
    except AggregateError as exc:
        fail(str(exc))
    finally:
        if workers:
            workers.close()
    print_aggregation(console, error_console, result, output_format.value)


@app.command()
def ui(
    out_root: Annotated[Path, typer.Argument(
        help="The output root whose grids to show (tvo run --out)")] = Path("outputs"),
    host: Annotated[str, typer.Option(
        help="Address to listen on; 127.0.0.1 keeps it to this machine")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Port (0: any free one; default: 8731 or the next free one)",
        show_default=False)] = None,
) -> None:
    """Serve a local web app to start, watch, stop and compare the grids under OUT_ROOT.

    It prints a URL with a token for this session (http://127.0.0.1:PORT/?token=...); starting
    and cancelling runs need it. Runs started from the page go on when the page or the server
    closes. Ctrl-C stops the server.

    Example: tvo ui outputs --port 8731
    """
    from runner.cli.ui import OutRootError, check_out_root, serve_ui

    try:
        check_out_root(out_root)
    except OutRootError as exc:
        fail(str(exc))
    from runner.ui.server import ServeError

    try:
        serve_ui(out_root, host, port, console)
    except ServeError as exc:
        fail(str(exc))


def main() -> None:
    app()
