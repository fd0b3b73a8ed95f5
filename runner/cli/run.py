"""`tvo run`, `tvo status` and `tvo grids`: wire grid, backend and driver, and format results."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cluster.backends import BackendSettings, make_backend
from jobs.rundir.disk import advice, describe, is_disk_error
from jobs.rundir.index import StateIndex
from jobs.rundir.states import DONE
from jobs.spec import JobSpec
from runner.cli.console import fail
from runner.cli.hints import lost_checkpoints_text, what_to_do
from runner.cli.progress import RunProgress, counts_text, elapsed_text
from runner.dispatch import outdir
from runner.dispatch.driver import (
    RunOptions,
    RunReport,
    jobs_to_start,
    run_grid,
    wait_for_others,
)
from runner.dispatch.status import GridStatus
from runner.grid.expand import Grid, GridError, expand, load_grid, shipped_grids

INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C


def say(console: Console, text: str) -> None:
    """A line of plain text: no markup (job errors hold brackets), long lines left whole."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class Plan:
    """A grid read, checked and expanded: what `tvo run` is about to do."""

    grid: Grid
    specs: list[JobSpec]
    grid_dir: Path


def plan_run(grid_ref: str, overrides: list[str], out_root: Path,
             samples: int | None = None) -> Plan:
    grid = load_grid(grid_ref, overrides, samples)
    return Plan(grid, expand(grid), out_root / grid.name)


def print_plan(plan: Plan, console: Console, pack: int = 0, slots: int = 1) -> None:
    """--dry-run: the job count, the swept keys and one row per job; writes nothing."""
    grid = plan.grid
    swept = grid.swept_keys
    say(console, f"{grid.name}: {len(plan.specs)} jobs -> {plan.grid_dir} "
                 "(dry run: nothing written)")
    say(console, "swept: " + swept_text(grid))
    if grid.compare is not None:
        say(console, "compare: " + compare_text(grid))
    say(console, packing_text(plan.specs, pack, slots))
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("job_id")
    for key in swept:
        table.add_column(key)
    index = StateIndex(plan.grid_dir).refresh() if plan.grid_dir.is_dir() else None
    if index is not None:
        table.add_column("state")
    for spec in plan.specs[:PLAN_ROWS]:
        values = spec.to_dict()
        row = [spec.job_id] + [_cell(values[key]) for key in swept]
        if index is not None:
            row.append(index.record(spec.job_id).state.value)
        table.add_row(*(Text(cell) for cell in row))  # Text: a value like [/b] is no markup
    console.print(table)
    if len(plan.specs) > PLAN_ROWS:
        say(console, f"... and {len(plan.specs) - PLAN_ROWS:,} more jobs (every job is listed "
                     "in jobs.parquet once the grid runs)")


PLAN_ROWS = 1_000  # a dry run's table stays readable (and quick) for a large grid


def swept_text(grid: Grid) -> str:
    """The swept settings with their number of values: `strategy (4), lr (2), seed (3)`."""
    counts = [f"{key} ({len(grid.sweeps[key])})" if key in grid.sweeps
              else f"{key} ({grid.spaces[key]}, {grid.samples} draws)" if key in grid.spaces
              else f"{key} (tuned)" for key in grid.swept_keys]
    return ", ".join(counts) or "nothing (one job)"


def compare_text(grid: Grid) -> str:
    """What a grid's `compare:` section will do, in one line."""
    compare = grid.compare
    assert compare is not None
    return (f"stage 1 tries {compare.budget} configurations of "
            f"{', '.join(f'{k}={v}' for k, v in compare.tune.items())} per {compare.by}; "
            f"stage 2 trains each selected one with seeds "
            f"{', '.join(map(str, compare.final_seeds))} (selected on {compare.select})")


def default_slots(backend: str) -> int:
    """How many units the backend runs at once when --max-parallel does not say (for the dry
    run's picture of the packs; the run asks the backend itself)."""
    import os

    return {"inline": 1, "ray": os.cpu_count() or 1}.get(backend, 1)


def packing_text(specs: list[JobSpec], pack: int, slots: int) -> str:
    """How the jobs train: in stacks of how many (pack 0: auto, balanced for `slots` at once),
    and which jobs train as stacks of one, and why."""
    from jobs.engine.packing import pack_refusal, plan_packs, plan_stacks

    how = f"auto for {slots} at once" if pack == 0 else ("off" if pack == 1 else f"--pack {pack}")
    packs = plan_stacks(specs, slots) if pack == 0 else plan_packs(specs, pack)
    sizes = sorted({len(stack) for stack in packs})
    if sizes == [1] or not sizes:
        return f"packing {how}: each job trains alone"
    size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    text = f"packing {how}: {len(specs)} jobs in {len(packs)} stacks of {size}"
    if pack == 0:
        text += " (their work balanced over the slots)"
    refusals = sorted({reason for spec in specs if (reason := pack_refusal(spec))})
    if refusals:
        alone = sum(1 for spec in specs if pack_refusal(spec))
        text += f"; {alone} train alone: " + "; ".join(refusals)
    return text


def _cell(value: object) -> str:
    return str(list(value)) if isinstance(value, tuple | list) else str(value)


def execute(plan: Plan, backend_name: str, options: RunOptions, ray_address: str | None,
            console: Console) -> int:
    """Start the backend, write grid.yaml and jobs.parquet, run, report; returns the exit code.

    Raises BackendError (bad input: nothing written) when the backend cannot start.
    """
    try:
        return _execute(plan, backend_name, options, ray_address, console)
    except OSError as exc:  # the grid dir refused a write: a full disk, a read-only dir
        if not (is_disk_error(exc) or exc.filename):
            raise
        fail(f"{describe(exc)}; {advice(exc)}, then run the same command again: finished jobs "
             "are kept and the others resume from their last checkpoint", code=1)


def _execute(plan: Plan, backend_name: str, options: RunOptions, ray_address: str | None,
             console: Console) -> int:
    set_aside = outdir.set_aside_damaged(plan.grid_dir)
    if set_aside is not None:
        say(console, f"warning: {set_aside.with_suffix('')} was no readable Parquet file (cut "
                     f"short or damaged): set aside as {set_aside.name}; it is written again "
                     "with this grid's jobs")
    if not jobs_to_start(plan.specs, plan.grid_dir):  # every job is finished or another
        # runner's: no backend is started (an embedded Ray takes seconds) unless one frees up
        outdir.prepare(plan.grid_dir, plan.grid.to_yaml(), plan.specs, plan.grid.name)
        say(console, f"{plan.grid.name}: {len(plan.specs)} jobs, none to start here -> "
                     f"{plan.grid_dir}")
        try:
            with RunProgress(console) as progress:
                report = wait_for_others(plan.specs, plan.grid.name, plan.grid_dir,
                                         plan.grid.resources, options, progress)
        except KeyboardInterrupt:
            say(console, f"interrupted: nothing was started here; see `tvo status "
                         f"{plan.grid_dir}`")
            return INTERRUPTED
        if not report.not_started:
            print_report(report, console)
            return report.exit_code
        say(console, f"{report.not_started} jobs are free to run (their runner is gone): "
                     "starting the backend")
    settings = BackendSettings(grid_dir=plan.grid_dir, resources=plan.grid.resources,
                               max_parallel=options.max_parallel, ray_address=ray_address,
                               slurm=plan.grid.slurm)
    sigterm = signal.getsignal(signal.SIGTERM)
    backend = make_backend(backend_name, settings)
    _restore_sigterm(sigterm)
    backend.warm_up(plan.specs, plan.grid.resources)
    try:
        outdir.prepare(plan.grid_dir, plan.grid.to_yaml(), plan.specs, plan.grid.name)
        say(console, f"{plan.grid.name}: {len(plan.specs)} jobs on {backend.describe()} "
                     f"-> {plan.grid_dir}")
        with RunProgress(console) as progress:
            report = run_grid(plan.specs, plan.grid.name, plan.grid_dir, backend,
                              plan.grid.resources, options, progress)
    except KeyboardInterrupt:
        backend.cancel()
        say(console, f"interrupted: unfinished jobs keep their last checkpoint; run the same "
                     f"command again to resume, or see `tvo status {plan.grid_dir}`")
        return INTERRUPTED
    finally:
        kept = backend.close()
        if kept:
            say(console, kept)
    print_report(report, console)
    return report.exit_code


def execute_comparison(plan: Plan, backend_name: str, options: RunOptions,
                       ray_address: str | None, console: Console) -> int:
    """A grid with `compare:` (runner.grid.protocol): the tuning stage, the selection on validation,
    then the final seeds of each method's selected configuration. A rerun skips what is done
    in either stage and selects the same configurations again."""
    from runner.grid.protocol import select, stage_two

    compare = plan.grid.compare
    assert compare is not None
    say(console, f"stage 1 of 2: {compare.budget} configurations of {', '.join(compare.tune)} "
                 f"for each {compare.by}, selected on {compare.select}")
    code = execute(plan, backend_name, options, ray_address, console)
    if code == INTERRUPTED:
        return code
    selections = select(plan.grid_dir, plan.grid.base, plan.grid.sweeps, compare)
    if not selections:
        say(console, "no configuration of stage 1 finished: nothing to select; see `tvo status "
                     f"{plan.grid_dir}`")
        return 1
    for chosen in selections:
        tuned = ", ".join(f"{key}={_cell(value)}" for key, value in chosen.settings.items())
        tie = (f"; {len(chosen.tied)} tied, broken by the {chosen.tie_break}"
               if chosen.tied else "")
        say(console, f"selected for {compare.by}={_cell(chosen.context[compare.by])}: {tuned} "
                     f"({compare.select} {chosen.score:.4f}{tie}"
                     + (f"; {chosen.missing} configurations without a score)"
                        if chosen.missing else ")"))
    final = Plan(plan.grid, stage_two(selections, compare), plan.grid_dir)
    say(console, f"stage 2 of 2: seeds {', '.join(map(str, compare.final_seeds))} of each "
                 "selected configuration")
    second = execute(final, backend_name, options, ray_address, console)
    return second if second == INTERRUPTED else max(code, second)


def _restore_sigterm(handler: Any) -> None:
    """Put the caller's SIGTERM handler back once the backend is up.

    ray.init installs its own (sys.exit), which would skip the run's cleanup when it is killed
    and the bookkeeping of `tvo cancel`, which stops a run with SIGTERM.
    """
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def print_report(report: RunReport, console: Console) -> None:
    counts = report.counts
    before = f"; {counts.skipped} already done before this run" if counts.skipped else ""
    say(console, f"{counts.total} jobs: {counts_text(counts)} ({elapsed_text(counts)}{before})")
    if report.cancel_requested:
        say(console, f"cancelled (`tvo cancel`): {len(report.cancelled)} jobs stopped and keep "
                     f"their last checkpoint, {report.not_started} were not started; run the "
                     "same command again to resume them")
    elif report.not_started:
        say(console, f"--fail-fast: stopped launching after the first failure; "
                     f"{report.not_started} jobs were not started and stay pending")
    for path in report.set_aside:
        say(console, f"warning: {path.with_suffix('')} was no readable results file (cut short "
                     f"or damaged): set aside as {path.name}, its jobs were trained again")
    if report.lost_checkpoints:
        say(console, lost_checkpoints_text(report))
    if report.lost_claims:
        say(console, "warning: another runner removed this runner's claims while it ran (it was "
                     "thought dead): it may have taken jobs over")
    for end in report.problems[:PROBLEM_ROWS]:
        say(console, f"{end.state} {end.job_id}: {end.error or ''}")
        say(console, f"  log: tvo status {report.grid_dir} --job {end.job_id}")
    if len(report.problems) > PROBLEM_ROWS:
        say(console, f"... and {len(report.problems) - PROBLEM_ROWS} more: `tvo status "
                     f"{report.grid_dir}` lists them")
    for hint in what_to_do(report.problems):
        say(console, hint)
    if report.detached:
        say(console, f"detached: {report.detached} jobs submitted; follow them with `tvo status "
                     f"{report.grid_dir}`; the same `tvo run` again waits for them")
    for end in report.cancelled[:PROBLEM_ROWS]:
        say(console, f"cancelled {end.job_id}: `tvo run` resumes it")
    if len(report.cancelled) > PROBLEM_ROWS:
        say(console, f"... and {len(report.cancelled) - PROBLEM_ROWS} more cancelled")
    say(console, f"results in {report.grid_dir}")


PROBLEM_ROWS = 50  # failed jobs listed by name; the rest are counted (`tvo status --jobs`)


def print_status(status: GridStatus, console: Console) -> None:
    counts = status.counts
    say(console, f"{status.grid_dir}: {len(status.jobs)} jobs")
    line = " · ".join(f"{state} {count}" for state, count in counts.items())
    if status.interrupted:
        line += (f" ({status.interrupted} interrupted: their runner is gone; "
                 "`tvo run` resumes them from their checkpoint)")
    say(console, line)
    for warning in status.warnings:
        say(console, f"warning: {warning}")
    print_slurm_jobs(status, console)
    problems = status.problems
    for job in problems[:PROBLEM_ROWS]:
        say(console, f"{job.state} {job.job_id}: {job.error or ''}")
        say(console, f"  log: tvo status {status.grid_dir} --job {job.job_id}")
    if len(problems) > PROBLEM_ROWS:
        say(console, f"... and {len(problems) - PROBLEM_ROWS} more (`tvo status "
                     f"{status.grid_dir} --jobs` lists every job)")


def print_jobs(status: GridStatus, console: Console) -> None:
    """One line per job: its id, state, epochs and test accuracy, and its error."""
    table = Table(show_edge=False, pad_edge=False, box=None)
    for column in ("job_id", "state", "epochs", "test_acc", "stack", "error"):
        table.add_column(column)
    for job in status.jobs:
        record = job.record
        epochs = ""
        test_acc = ""
        if record is not None:
            epoch = record.epoch if job.state == "running" else record.epochs_done
            epochs = f"{epoch}/{record.epochs}" if record.epochs else str(epoch or "")
            test_acc = f"{record.test_acc:.4f}" if record.test_acc is not None else ""
        table.add_row(*(Text(cell) for cell in (
            job.job_id, job.state + (" (interrupted)" if job.interrupted else ""), epochs,
            test_acc, record.stack if record else "", job.error or "")))
    console.print(table)


def print_job(status: GridStatus, job_id: str, log_text: str, console: Console) -> None:
    """One job: its state and record, then every log line about it."""
    found = [job for job in status.jobs if job.job_id == job_id]
    job = found[0]
    record = job.record
    say(console, f"job {job_id}: {job.state}" + (" (interrupted: `tvo run` resumes it)"
                                                 if job.interrupted else ""))
    if record is not None:
        details = {"attempts": record.attempts, "epochs done": record.epochs_done,
                   "test_acc": record.test_acc, "stack": record.stack, "host": record.host,
                   "log file": record.log, "results": record.committed}
        for name, value in details.items():
            if value not in (None, "", 0):
                say(console, f"  {name}: {value}")
    if job.error:
        say(console, f"  error: {job.error}")
    if job.slurm is not None:
        say(console, f"  SLURM: {job.slurm.slurm_id} {job.slurm.state} {job.slurm.log}")
    say(console, "log:" if log_text else "log: nothing logged yet")
    if log_text:
        say(console, log_text.rstrip("\n"))


SLURM_ROWS = 20  # a big grid's table would bury the counts: the rest is on disk


def print_slurm_jobs(status: GridStatus, console: Console) -> None:
    """SLURM's states, and each job's SLURM job id, unfinished ones first."""
    in_slurm = [job for job in status.jobs if job.slurm is not None]
    if not in_slurm:
        return
    states = Counter(job.slurm.state.split()[0] for job in in_slurm if job.slurm is not None)
    say(console, "SLURM: " + " · ".join(f"{state} {count}" for state, count in states.items()))
    in_slurm.sort(key=lambda job: job.state == DONE.value)
    for job in in_slurm[:SLURM_ROWS]:
        assert job.slurm is not None
        say(console, f"  {job.job_id}  {job.slurm.slurm_id}  {job.slurm.state}  {job.slurm.log}")
    if len(in_slurm) > SLURM_ROWS:
        say(console, f"  ... and {len(in_slurm) - SLURM_ROWS} more (see "
                     f"{status.grid_dir / 'slurm'}/*/submission.json)")


def job_count(grid: Grid) -> str:
    """"24"; for a comparison grid both stages, "104 (64 + 40)": 64 tuning jobs, then each
    context's selected configuration trained with every one of `final_seeds`."""
    tuning = len(expand(grid))
    if grid.compare is None:
        return str(tuning)
    final = tuning // grid.compare.budget * len(grid.compare.final_seeds)
    return f"{tuning + final} ({tuning} + {final})"


def print_grids(console: Console) -> None:
    table = Table(title="Grids shipped with tvo (run one with: tvo run NAME)",
                  caption="jobs of a comparison grid: all (tuning + final)")
    table.add_column("grid", style="bold")
    table.add_column("jobs", justify="right", no_wrap=True)
    table.add_column("description")
    for name in shipped_grids():
        try:
            grid = load_grid(name)
            count = job_count(grid)
            description = grid.description
        except GridError as exc:  # a shipped grid that needs a strategy this build lacks
            count, description = "-", f"cannot expand here: {exc}"
        table.add_row(name, count, description)
    console.print(table)
