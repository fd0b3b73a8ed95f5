"""The driver and cancel requests, on inline and on a real embedded Ray: stop launching, count
crashes of jobs asked to stop as cancelled, exit 1, clear the requests and resume on a rerun."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cluster.inline import InlineBackend
from jobs.request import swept_keys
from jobs.rundir.claims import live_held
from jobs.rundir.run_dir import RunDir
from jobs.spec import JobSpec
from runner.dispatch.driver import RunOptions, RunReport
from runner.dispatch.outdir import prepare
from tests.backend_suite import MakeBackend, run_on_backend, status_of, tiny_spec
from tests.cancel_entries import (
    cancel_grid_by_force,
    cancel_grid_first,
    cancel_job_then_crash,
)


class CancelSuite:
    def run(self, make_backend: MakeBackend, specs: Sequence[JobSpec], grid_dir: Path,
            options: RunOptions | None = None, entry: object = None) -> RunReport:
        prepare(grid_dir, "name: grid\n", specs, grid_dir.name)
        return run_on_backend(make_backend, specs, grid_dir, options, entry)

    def test_a_grid_request_stops_launching_and_a_rerun_resumes(self, make_backend: MakeBackend,
                                                                 tmp_path: Path) -> None:
        grid_dir = tmp_path / "grid"
        specs = [tiny_spec(seed=seed) for seed in range(3)]
        entry = functools.partial(cancel_grid_first, grid_dir=str(grid_dir))
        report = self.run(make_backend, specs, grid_dir, RunOptions(max_parallel=1), entry)
        assert report.cancel_requested and report.exit_code == 1
        assert (report.counts.cancelled, report.counts.pending, report.not_started) == (1, 2, 2)
        [cancelled] = report.cancelled
        assert cancelled.job_id == specs[0].job_id
        assert status_of(grid_dir, specs[0]).state == "cancelled"
        assert all(RunDir(grid_dir).cancel_requested(s.job_id) for s in specs)

        report = self.run(make_backend, specs, grid_dir)  # clears the requests, runs them all
        assert report.exit_code == 0 and not report.cancel_requested
        assert report.counts.done == 3
        assert not any(RunDir(grid_dir).cancel_requested(s.job_id) for s in specs)

    def test_a_crash_of_a_job_asked_to_stop_is_cancelled_not_retried(
            self, make_backend: MakeBackend, tmp_path: Path) -> None:
        grid_dir = tmp_path / "grid"
        spec = tiny_spec(seed=5)
        entry = functools.partial(cancel_job_then_crash, marker_dir=str(tmp_path),
                                  driver_pid=os.getpid())
        report = self.run(make_backend, [spec], grid_dir, RunOptions(retries=2), entry)
        assert report.exit_code == 1 and not report.cancel_requested
        assert (report.counts.cancelled, report.counts.failed, report.problems) == (1, 0, [])
        assert [end.job_id for end in report.cancelled] == [spec.job_id]
        status = status_of(grid_dir, spec)
        assert (status.state, status.error) == ("cancelled", None)
        assert len(list(tmp_path.glob("dispatched-*"))) == 1

    def test_sigterm_after_a_grid_request_stops_the_units_in_flight_at_once(
            self, make_backend: MakeBackend, tmp_path: Path,
            sigterm_interrupts: None) -> None:
        grid_dir = tmp_path / "grid"
        specs = [tiny_spec(seed=seed) for seed in range(2)]
        entry = functools.partial(cancel_grid_by_force, grid_dir=str(grid_dir),
                                  driver_pid=os.getpid())
        started = time.monotonic()
        report = self.run(make_backend, specs, grid_dir, RunOptions(max_parallel=1), entry)
        assert time.monotonic() - started < 20  # not the unit's 30 s
        assert report.cancel_requested and report.exit_code == 1
        assert (report.counts.cancelled, report.counts.running, report.not_started) == (1, 0, 1)
        status = status_of(grid_dir, specs[0])
        assert (status.state, status.error) == ("cancelled", None)
        assert status.ended_at > 0
        assert live_held(grid_dir) == set()


@pytest.fixture
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt here, as `tvo run` makes it (ray.init replaces it)."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    yield
    signal.signal(signal.SIGTERM, previous)


class TestInline(CancelSuite):
    @pytest.fixture
    def make_backend(self) -> MakeBackend:
        return InlineBackend


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One embedded Ray for the Ray tests of this module (pytest 10 drops class-scoped fixtures
    written as methods)."""
    from cluster.ray import private_temp_dir, start_ray

    temp_dir = private_temp_dir()
    assert start_ray(num_cpus=2, temp_dir=temp_dir)
    import ray  # (after start_ray, which sets what Ray reads when first imported)

    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.ray
class TestRay(CancelSuite):
    @pytest.fixture
    def make_backend(self, ray_session: None) -> MakeBackend:
        from cluster.ray import RayBackend

        return RayBackend


def test_swept_keys_are_the_settings_that_differ() -> None:
    specs = [tiny_spec(seed=seed, lr=lr) for seed in (0, 1) for lr in (0.5, 0.1)]
    assert swept_keys(specs) == ("lr", "seed")
    assert swept_keys(specs[:1]) == ()
    assert swept_keys([tiny_spec(hidden=[8]), tiny_spec(hidden=[8, 8])]) == ("hidden",)
