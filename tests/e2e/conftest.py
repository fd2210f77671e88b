"""End-to-end tests: a runtime a failed test left running is killed after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from testkit import flowctl


@pytest.fixture(autouse=True)
def _no_leftover_runtimes() -> Iterator[None]:
    flowctl.collect_quietly()  # what a failed test before left (its frames lived on in its report)
    yield
    if flowctl.kill_leftovers():
        flowctl.collect_quietly()  # the dead runtimes' pipe transports here, not in a later test
