"""End-to-end tests: a runtime a failed test left running is killed after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from testkit.flowctl import kill_leftovers


@pytest.fixture(autouse=True)
def _no_leftover_runtimes() -> Iterator[None]:
    yield
    kill_leftovers()
