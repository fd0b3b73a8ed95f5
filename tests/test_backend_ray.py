"""The shared backend suite on a real embedded local Ray (one Ray start for the module)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from cluster.ray import RayBackend, start_ray
from tests.backend_suite import BackendSuite, MakeBackend
from tests.short_paths import short_temp_dir

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    import ray

    temp_dir = short_temp_dir("tvo-ray-test-")  # short: Ray's sockets live here
    assert start_ray(num_cpus=2, temp_dir=temp_dir)
    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def make_backend(ray_session: None) -> MakeBackend:
    return RayBackend


class TestRayBackend(BackendSuite):
    pass
