"""A private dbus-daemon per test; code under test finds it via DBUS_SYSTEM_BUS_ADDRESS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nodes.dbus.daemon import PrivateBus


@pytest.fixture
def bus_address(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with PrivateBus() as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
        yield address
