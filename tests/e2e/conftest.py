"""End-to-end tests: a runtime a failed test left running is killed after it."""

from __future__ import annotations

import gc
import sys
import warnings
from collections.abc import Iterator

import pytest
from testkit.flowctl import kill_leftovers


@pytest.fixture(autouse=True)
def _no_leftover_runtimes() -> Iterator[None]:
    _collect()  # what a failed test before left (its frames lived on in its report)
    yield
    if kill_leftovers():
        _collect()  # the dead runtimes' pipe transports here, not in a later test


def _collect() -> None:
    """Collect garbage of a failed test's runtimes here, quietly: their transports warn and
    may raise (their loop is closed) when collected, which would fail the test running then."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _unraisable: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    finally:
        sys.unraisablehook = hook
