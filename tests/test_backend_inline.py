"""The shared backend suite on the inline backend (units run in this process)."""

from __future__ import annotations

import pytest

from cluster.inline import InlineBackend
from tests.backend_suite import BackendSuite, MakeBackend


@pytest.fixture
def make_backend() -> MakeBackend:
    return InlineBackend


class TestInlineBackend(BackendSuite):
    pass
