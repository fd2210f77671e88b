"""The standing fault suite: a real runtime (`esess-flowctl run` in a subprocess) against
a real mosquitto, a private dbus-daemon and simulated devices, while they fail.

Each test starts what it breaks on free loopback ports (or a socket of its own), and a
runtime it leaves running is killed after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import flowctl, process
from testkit.mosquitto import Mosquitto

from nodes.dbus.daemon import PrivateBus


@pytest.fixture(autouse=True)
def _no_leftover_runtimes() -> Iterator[None]:
    flowctl.collect_quietly()  # what a failed test before left (its frames lived on in its report)
    yield
    if process.kill_leftovers() + flowctl.kill_leftovers():
        flowctl.collect_quietly()  # the dead runtimes' pipe transports here, not in a later test


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto of this test's own, which it may kill, freeze and start again."""
    server = Mosquitto(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()  # works on a SIGSTOPped one too


@pytest.fixture
def bus_address() -> Iterator[str]:
    """A private dbus-daemon; pass its address to the runtime and the services."""
    with PrivateBus() as address:
        yield address
