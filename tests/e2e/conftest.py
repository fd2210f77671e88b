"""End-to-end tests: a runtime a failed test left running is killed after it."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest
from testkit.flowctl import kill_leftovers


@pytest.fixture(autouse=True)
def _no_leftover_runtimes() -> Iterator[None]:
    yield
    if kill_leftovers():
        # the dead runtimes' pipe transports are collected here, not in a later test
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
