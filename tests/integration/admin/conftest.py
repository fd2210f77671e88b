"""Admin API tests: a private dbus-daemon per test; no runtime outlives its test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from testkit.process import kill_leftovers

from nodes.dbus.daemon import PrivateBus


@pytest.fixture
def bus_address(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with PrivateBus() as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
        yield address


@pytest.fixture(autouse=True)
def _no_leftover_runtimes() -> Iterator[None]:
    yield
    kill_leftovers()
