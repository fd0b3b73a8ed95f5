"""Run progress: running counts the units in flight as soon as they are sent, and the ETA
says "estimating" until enough jobs of this run have ended to measure a pace."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from cluster.backends import BackendSettings, make_backend
from cluster.base import Resources
from runner.cli.progress import Eta, RunProgress
from runner.dispatch.driver import Counts, RunOptions, run_grid
from tests.backend_suite import tiny_spec


def test_eta_estimates_until_three_jobs_ended_then_uses_the_pace_after_the_first() -> None:
    eta, counts = Eta(), Counts(total=10, running=2, pending=8)
    assert eta.text(counts, now=5.0) == "ETA estimating"
    for now in (30.0, 32.0):  # start-up made the first end late: it is not the pace
        eta.job_ended(now)
        counts.done += 1
        assert eta.text(counts, now) == "ETA estimating"
    eta.job_ended(34.0)
    counts.done += 1
    assert eta.text(counts, 34.0) == "ETA 14s"  # 7 left at one job per 2 s, not 7 x 11 s
    counts.done = 10
    assert eta.text(counts, 40.0) == ""


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


def test_plain_lines_carry_the_eta_word(tmp_path: Path) -> None:
    out = io.StringIO()
    progress = RunProgress(Console(file=out, force_terminal=False, width=200))
    counts = Counts(total=4, running=1, pending=3)
    from runner.dispatch.driver import JobEnd

    counts.done, counts.running = 1, 1
    progress(counts, JobEnd("job1", "done"))
    assert "| done 1 · running 1" in out.getvalue() and "ETA estimating" in out.getvalue()
