"""Run progress: running counts the units in flight as soon as they are sent; progress and the
ETA move with the stacks' epochs, not only when a stack ends; plain output prints a line per
stack that ends at most every two seconds, and one per problem."""

from __future__ import annotations

import io
import time
from pathlib import Path

from rich.console import Console

from cluster.backends import BackendSettings, make_backend
from cluster.base import Resources
from jobs.rundir.run_dir import RunDir
from runner.cli.progress import Eta, RunProgress
from runner.dispatch.driver import Counts, RunOptions, run_grid
from tests.backend_suite import tiny_spec


def test_eta_measures_the_pace_from_the_first_progress_including_epochs_in_flight() -> None:
    eta, counts = Eta(), Counts(total=10, running=4, pending=6)
    eta.update(counts, now=5.0)
    assert eta.text(counts, now=5.0) == "ETA estimating"
    counts.in_flight_done = 0.5  # start-up made the first progress late: it is not the pace
    eta.update(counts, 30.0)
    assert eta.text(counts, 30.0) == "ETA estimating"
    counts.in_flight_done = 1.5  # a stack of 4 jobs a quarter through its epochs: a job's worth
    eta.update(counts, 32.0)
    assert eta.text(counts, 32.0) == "ETA 17s"  # 8.5 jobs left at a job per 2 s
    counts.done, counts.in_flight_done = 4, 0.0  # the stack ended
    eta.update(counts, 33.0)
    assert eta.text(counts, 33.0) == "ETA 5s"  # 6 left at 3.5 jobs in 3 s
    counts.done = 10
    assert eta.text(counts, 40.0) == ""


def test_progress_moves_with_the_epochs_of_the_stacks_in_flight(tmp_path: Path) -> None:
    from runner.dispatch.in_flight import InFlight

    specs = [tiny_spec(seed=seed, epochs=4) for seed in range(4)]
    grid_dir = tmp_path / "grid"
    seen: list[float] = []
    feed = InFlight(grid_dir, seen.append)
    feed.started("the-stack", 4)
    files = RunDir(grid_dir).stack_files("the-stack", specs)
    with feed:
        files.begin("cpu")
        files.epoch(1, 4, 4)
        time.sleep(0.8)
        files.epoch(3, 4, 4)
        time.sleep(0.8)
        feed.ended("the-stack")
    files.close()
    assert seen == [1.0, 3.0, 0.0]  # jobs' worth done in flight: 4 jobs x 1/4, then x 3/4


def test_running_shows_the_units_just_sent(tmp_path: Path) -> None:
    specs = [tiny_spec(seed=seed, epochs=1) for seed in range(3)]
    seen: list[tuple[int, int]] = []

    def listener(counts: Counts, end: object) -> None:
        seen.append((counts.running, counts.finished))

    grid_dir = tmp_path / "grid"
    backend = make_backend("inline", BackendSettings(grid_dir=grid_dir))
    try:
        run_grid(specs, "grid", grid_dir, backend, Resources(), RunOptions(pack=1), listener)
    finally:
        backend.close()
    # each job shows as running before it ends: (1, n) comes before (0, n + 1)
    assert [(1, 0), (0, 1), (1, 1), (0, 2), (1, 2), (0, 3)] == [
        step for step in seen if step != (0, 0)][:6]


def test_plain_lines_come_per_problem_and_at_most_every_two_seconds(tmp_path: Path) -> None:
    from runner.dispatch.driver import JobEnd

    out = io.StringIO()
    progress = RunProgress(Console(file=out, force_terminal=False, width=200))
    counts = Counts(total=300, running=64, pending=236)
    for stack in range(1, 5):  # four stacks end in quick succession: one line for them
        counts.done, counts.units_ended = 64 * stack, stack
        progress(counts, None)
    counts.failed = 1
    progress(counts, JobEnd("job1", "failed", "RuntimeError: boom"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[64/300] done 64 · running 64") and "ETA" in lines[0]
    assert lines[1].startswith("[257/300] failed job1 RuntimeError: boom | done 256")
