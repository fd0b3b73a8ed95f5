"""The shared backend suite on a real embedded local Ray (one Ray start for the module)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.ray_backend import RayBackend, start_ray
from tests.backend_suite import BackendSuite, MakeBackend

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    import ray

    temp_dir = Path(tempfile.mkdtemp(prefix="tvo-ray-test-"))  # short: Ray's sockets live here
    assert start_ray(num_cpus=2, temp_dir=temp_dir)
    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def make_backend(ray_session: None) -> MakeBackend:
    return RayBackend


class TestRayBackend(BackendSuite):
    pass
