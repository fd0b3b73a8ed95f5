"""The shared backend suite on a real embedded local Ray (one Ray start for the module), and
where an embedded Ray keeps its files."""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.backends import BackendError, BackendSettings
from cluster.base import Resources
from cluster.ray import RayBackend, private_temp_dir, start_ray
from runner.dispatch.driver import RunOptions, run_grid
from tests.backend_suite import BackendSuite, MakeBackend, crash_once, tiny_spec

pytestmark = pytest.mark.ray


def test_each_embedded_ray_gets_a_private_short_dir(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.delenv("TVO_RAY_TMPDIR", raising=False)  # (the suite sets one: conftest)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / ("t" * 80)))  # too long a TMPDIR
    first, second = private_temp_dir(), private_temp_dir()
    try:
        assert first != second and first.parent == second.parent == Path("/tmp")
        assert first.name.startswith("tvo-ray-") and first.stat().st_mode & 0o777 == 0o700
    finally:
        first.rmdir()
        second.rmdir()
    chosen = Path(tempfile.mkdtemp(dir="/tmp"))  # where the user says, when short enough
    monkeypatch.setenv("TVO_RAY_TMPDIR", str(chosen))
    try:
        assert private_temp_dir().parent == chosen
    finally:
        shutil.rmtree(chosen)
    monkeypatch.setenv("TVO_RAY_TMPDIR", "/tmp/" + "r" * 30)
    with pytest.raises(BackendError) as refused:
        private_temp_dir()
    assert str(refused.value) == (f"TVO_RAY_TMPDIR=/tmp/{'r' * 30} is too long for Ray's socket "
                                  "paths; use a path of at most 26 characters")


def test_a_crash_keeps_the_embedded_rays_dir_for_its_logs_and_says_where(tmp_path: Path) -> None:
    """A worker that dies is Ray's business: its logs stay, and close() says where. (A run
    without a crash removes the dir: test_runner_processes.)"""
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "runs before this module's shared Ray"
    entry = functools.partial(crash_once, marker_dir=str(tmp_path), driver_pid=os.getpid())
    resources = Resources(cpus=1)
    backend = RayBackend(BackendSettings(grid_dir=tmp_path / "grid", resources=resources,
                                         max_parallel=1, entry=entry))
    assert backend.embedded
    try:
        report = run_grid([tiny_spec()], "grid", tmp_path / "grid", backend, resources,
                          RunOptions(pack=1))
    finally:
        kept = backend.close()
    assert report.exit_code == 1 and report.problems[0].error.startswith("worker crashed: ")
    assert kept is not None and kept.startswith("Ray's logs of this run are kept (a unit "
                                                "crashed): ")
    logs = Path(kept.rsplit(": ", 1)[1])
    try:
        assert logs.name == "logs" and any(logs.glob("raylet*"))
    finally:
        shutil.rmtree(logs.parents[1])


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    temp_dir = private_temp_dir()  # short: Ray's sockets live here
    assert start_ray(num_cpus=2, temp_dir=temp_dir)
    import ray  # (after start_ray, which sets what Ray reads when first imported)

    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def make_backend(ray_session: None) -> MakeBackend:
    return RayBackend


class TestRayBackend(BackendSuite):
    pass
