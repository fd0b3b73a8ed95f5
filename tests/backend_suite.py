"""The behaviour every backend must show, proven the same way for inline, ray and slurm.

A backend's test module defines one fixture, `make_backend`, returning a callable that builds
the backend from BackendSettings, and subclasses BackendSuite with an empty body:

    @pytest.fixture
    def make_backend():
        return InlineBackend

    class TestInline(BackendSuite):
        pass
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from cluster.backends import BackendSettings
from cluster.base import Backend, Resources
from jobs.engine.train import JobResult, run_job
from jobs.entry import StackRequest, run_unit
from jobs.request import stack_id
from jobs.rundir.journal import START, append_event
from jobs.rundir.states import JobRecord
from jobs.spec import JobSpec
from runner.dispatch.driver import RunOptions, RunReport, run_grid
from tests import rundir_view

MakeBackend = Callable[[BackendSettings], Backend]


def tiny_spec(**changes: Any) -> JobSpec:
    """A job that trains in well under a second on digits."""
    values = {"dataset": "digits", "hidden": [16], "epochs": 2, "lr": 0.5, "output": "sigmoid",
              "loss": "mse", **changes}
    return JobSpec.from_dict(values)


def failing_spec(tmp_path: Path, **changes: Any) -> JobSpec:
    """A valid job whose data files are missing: run_job records it failed, with a traceback."""
    return tiny_spec(dataset="mnist", data_root=str(tmp_path / "no-data"), **changes)


def diverging_spec(**changes: Any) -> JobSpec:
    """ReLU into a linear output on MSE at lr=1000: the loss is NaN within the first epoch."""
    return tiny_spec(activation="relu", output="linear", loss="mse", lr=1000.0, **changes)


def metrics_without_timing(grid_dir: Path, spec: JobSpec) -> list[dict[str, Any]]:
    return [{**row, "grid": ""} for row in rundir_view.rows(grid_dir, spec.job_id, timing=False)]


def reference_run(spec: JobSpec, grid_dir: Path) -> JobResult:
    """The job trained straight through here, on one torch thread like a 1-cpu unit.

    Thread counts change float sums, so a comparison needs the same count on both sides; this
    process keeps its own count afterwards.
    """
    threads = torch.get_num_threads()
    try:
        return run_job(spec, grid_dir, grid="", threads=1)
    finally:
        torch.set_num_threads(threads)


_REFERENCE_METRICS: dict[str, list[dict[str, Any]]] = {}


def reference_metrics(spec: JobSpec, scratch: Path) -> list[dict[str, Any]]:
    """The metrics of `spec` trained straight through (reference_run, into `scratch` the first
    time): once per test process, as a job's metrics depend on its spec alone (its id is a hash
    of every setting), and several tests compare the same jobs' runs against them."""
    if spec.job_id not in _REFERENCE_METRICS:
        assert reference_run(spec, scratch).state == "done"
        _REFERENCE_METRICS[spec.job_id] = metrics_without_timing(scratch, spec)
    return _REFERENCE_METRICS[spec.job_id]


def status_of(grid_dir: Path, spec: JobSpec) -> JobRecord:
    return rundir_view.record(grid_dir, spec.job_id)


def crash_once(request: StackRequest, *, threads: int, marker_dir: str,
               driver_pid: int) -> list[JobResult]:
    """A unit entry whose first call per job crashes: the worker process dies (os._exit), or,
    run inside the driver's own process (inline), the unit raises."""
    marker = Path(marker_dir) / f"crashed-{request.specs[0].job_id}"
    if not marker.exists():
        marker.touch()
        if os.getpid() != driver_pid:
            os._exit(3)
        raise RuntimeError("the unit broke before training")
    return run_unit(request, threads=threads)


def timed_unit(request: StackRequest, *, threads: int, log_dir: str) -> list[JobResult]:
    """run_unit that leaves its start and end time behind, to check how many ran at once."""
    started = time.time()
    time.sleep(0.3)  # long enough that units started together surely overlap
    out = run_unit(request, threads=threads)
    Path(log_dir, request.specs[0].job_id).write_text(json.dumps([started, time.time()]))
    return out


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def record_dead_start(grid_dir: Path, specs: Sequence[JobSpec]) -> None:
    """What a worker on this host that was SIGKILLed mid-stack leaves: its stack's start, by a
    process that is gone, and no runner holding the jobs."""
    append_event(grid_dir, START, stack=stack_id(spec.job_id for spec in specs),
                 jobs=[spec.job_id for spec in specs], host=socket.gethostname(),
                 pid=dead_pid(), pid_start="1", log="", epochs=1)


def interrupt_at(epoch: int) -> Callable[[int, int, dict[str, Any]], None]:
    """A progress callback that stops a job the way a kill does, after `epoch - 1` checkpoints."""
    def progress(done: int, epochs: int, row: dict[str, Any]) -> None:
        if done == epoch:
            raise KeyboardInterrupt
    return progress


def run_on_backend(make_backend: MakeBackend, specs: Sequence[JobSpec], grid_dir: Path,
                   options: RunOptions | None = None, entry: Any = None) -> RunReport:
    """Run `specs` as a grid in `grid_dir` on a backend made for it, then close the backend."""
    options = options or RunOptions()
    if options.pack == 0:  # these suites test per-job dispatch; packing has tests of its own
        options = dataclasses.replace(options, pack=1)
    resources = Resources(cpus=1)
    backend = make_backend(BackendSettings(grid_dir=grid_dir, resources=resources,
                                           max_parallel=options.max_parallel, entry=entry))
    try:
        return run_grid(specs, grid_dir.name, grid_dir, backend, resources, options)
    finally:
        backend.close()


class BackendSuite:
    """Success, failure, divergence, crash and retry, resume, skip-done, claims, caps."""

    def run(self, make_backend: MakeBackend, specs: Sequence[JobSpec], grid_dir: Path,
            options: RunOptions | None = None, entry: Any = None) -> RunReport:
        return run_on_backend(make_backend, specs, grid_dir, options, entry)

    def test_success(self, make_backend: MakeBackend, tmp_path: Path) -> None:
        specs = [tiny_spec(seed=seed) for seed in range(3)]
        report = self.run(make_backend, specs, tmp_path / "grid")
        assert report.exit_code == 0
        assert (report.counts.done, report.counts.failed, report.counts.pending) == (3, 0, 0)
        for spec in specs:
            status = status_of(tmp_path / "grid", spec)
            assert (status.state, status.attempts) == ("done", 1)
            rows = rundir_view.rows(tmp_path / "grid", spec.job_id)
            assert [row["epoch"] for row in rows] == [0, 1, 2]
            assert rows[0]["grid"] == "grid"

    def test_job_exception_is_failed_with_traceback(self, make_backend: MakeBackend,
                                                    tmp_path: Path) -> None:
        bad, good = failing_spec(tmp_path), tiny_spec()
        report = self.run(make_backend, [bad, good], tmp_path / "grid")
        assert report.exit_code == 1
        assert (report.counts.done, report.counts.failed) == (1, 1)
        status = status_of(tmp_path / "grid", bad)
        assert status.state == "failed"
        assert status.error.startswith("DataError: dataset 'mnist': missing ")
        log = rundir_view.log(tmp_path / "grid", bad.job_id)
        assert "Traceback (most recent call last)" in log and "DataError" in log
        [problem] = report.problems
        assert (problem.job_id, problem.state) == (bad.job_id, "failed")
        assert problem.error == status.error
        assert "DataError" in Path(problem.log).read_text()

    def test_divergence_is_a_result_not_retried(self, make_backend: MakeBackend,
                                                tmp_path: Path) -> None:
        spec = diverging_spec()
        report = self.run(make_backend, [spec], tmp_path / "grid", RunOptions(retries=2))
        assert report.exit_code == 1
        assert report.counts.diverged == 1
        status = status_of(tmp_path / "grid", spec)
        assert (status.state, status.attempts) == ("diverged", 1)
        assert status.error == "training loss became nan in epoch 1"

    def test_retry_after_worker_crash(self, make_backend: MakeBackend, tmp_path: Path) -> None:
        entry = functools.partial(crash_once, marker_dir=str(tmp_path), driver_pid=os.getpid())
        specs = [tiny_spec(seed=0)]
        report = self.run(make_backend, specs, tmp_path / "grid", RunOptions(retries=1), entry)
        assert report.exit_code == 0
        assert report.counts.done == 1
        assert (tmp_path / f"crashed-{specs[0].job_id}").exists()  # it did crash once

    def test_crash_without_retries_is_recorded_failed(self, make_backend: MakeBackend,
                                                      tmp_path: Path) -> None:
        entry = functools.partial(crash_once, marker_dir=str(tmp_path), driver_pid=os.getpid())
        spec = tiny_spec(seed=1)
        report = self.run(make_backend, [spec], tmp_path / "grid", RunOptions(retries=0), entry)
        assert report.exit_code == 1
        [problem] = report.problems
        assert problem.error.startswith("worker crashed: ")
        status = status_of(tmp_path / "grid", spec)
        assert status.state == "failed"
        assert status.error == problem.error

    def test_resume_of_an_interrupted_job(self, make_backend: MakeBackend,
                                          tmp_path: Path) -> None:
        spec = tiny_spec(epochs=4)
        grid_dir = tmp_path / "grid"
        threads = torch.get_num_threads()
        with pytest.raises(KeyboardInterrupt):
            run_job(spec, grid_dir, grid="grid", threads=1, progress=interrupt_at(3),
                    checkpoint_seconds=0)
        torch.set_num_threads(threads)
        interrupted = status_of(grid_dir, spec)
        assert (interrupted.state, interrupted.interrupted) == ("pending", True)
        report = self.run(make_backend, [spec], grid_dir)
        assert report.exit_code == 0
        assert "resumed after epoch 2" in rundir_view.log(grid_dir, spec.job_id)
        assert metrics_without_timing(grid_dir, spec) == reference_metrics(
            spec, tmp_path / "clean")

    def test_done_jobs_are_not_dispatched(self, make_backend: MakeBackend,
                                          tmp_path: Path) -> None:
        specs = [tiny_spec(seed=seed) for seed in range(2)]
        self.run(make_backend, specs, tmp_path / "grid")
        results_dir = tmp_path / "grid" / "results"
        written = {path.name: path.stat().st_mtime_ns for path in results_dir.iterdir()}
        entry = functools.partial(crash_once, marker_dir=str(tmp_path), driver_pid=os.getpid())
        report = self.run(make_backend, specs + [tiny_spec(seed=2)], tmp_path / "grid",
                          RunOptions(retries=1), entry)
        assert (report.counts.skipped, report.counts.done) == (2, 3)
        assert sorted(p.name for p in tmp_path.glob("crashed-*")) == [
            f"crashed-{tiny_spec(seed=2).job_id}"]  # only the new job reached the backend
        after = {path.name: path.stat().st_mtime_ns for path in results_dir.iterdir()}
        assert {name: after[name] for name in written} == written  # untouched
        assert len(after) == len(written) + 1  # and the new job's
        assert status_of(tmp_path / "grid", specs[0]).attempts == 1

    def test_two_runners_never_run_a_job_twice(self, make_backend: MakeBackend,
                                               tmp_path: Path) -> None:
        failing = failing_spec(tmp_path)
        specs = [failing] + [tiny_spec(seed=seed) for seed in range(4)]
        reports: list[RunReport] = []
        options = RunOptions(poll_s=0.05)

        def runner() -> None:
            reports.append(self.run(make_backend, specs, tmp_path / "grid", options))

        threads = [threading.Thread(target=runner) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [report.exit_code for report in reports] == [1, 1]
        assert all((report.counts.done, report.counts.failed) == (4, 1) for report in reports)
        assert status_of(tmp_path / "grid", failing).attempts == 1  # failed once, not twice
        for spec in specs[1:]:
            status = status_of(tmp_path / "grid", spec)
            assert (status.state, status.attempts) == ("done", 1)

    def test_a_rerun_retries_a_job_that_failed_under_a_runner_now_gone(
            self, make_backend: MakeBackend, tmp_path: Path) -> None:
        failing = failing_spec(tmp_path)
        self.run(make_backend, [failing], tmp_path / "grid")
        report = self.run(make_backend, [failing], tmp_path / "grid")
        assert report.counts.failed == 1
        assert status_of(tmp_path / "grid", failing).attempts == 2

    def test_fail_fast_stops_launching(self, make_backend: MakeBackend, tmp_path: Path) -> None:
        specs = [failing_spec(tmp_path)] + [tiny_spec(seed=seed) for seed in range(3)]
        report = self.run(make_backend, specs, tmp_path / "grid",
                          RunOptions(max_parallel=1, fail_fast=True))
        assert report.exit_code == 1
        assert (report.counts.failed, report.counts.done, report.not_started) == (1, 0, 3)
        assert all(status_of(tmp_path / "grid", spec).state == "pending" for spec in specs[1:])

    def test_max_parallel_caps_units_in_flight(self, make_backend: MakeBackend,
                                               tmp_path: Path) -> None:
        specs = [tiny_spec(seed=seed) for seed in range(3)]
        entry = functools.partial(timed_unit, log_dir=str(tmp_path))
        report = self.run(make_backend, specs, tmp_path / "grid", RunOptions(max_parallel=1),
                          entry)
        assert report.counts.done == 3
        spans = sorted(json.loads((tmp_path / spec.job_id).read_text()) for spec in specs)
        assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False))
