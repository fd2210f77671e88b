"""The "dbus" connection kind: one shared bus connection and its Watcher.

    connections:
      dbus:
        system: {address: "unix:path=/run/esess/bus"}   # optional

Without a site entry, `system` connects to DBUS_SYSTEM_BUS_ADDRESS when it is set
(tests, the demo) and to the machine's system bus otherwise. Every `dbus.source`
and `dbus.write` of every flow shares this one connection; each `dbus.service`
opens a connection of its own to the same bus (`DbusLink.private()`), because a
Victron service is one connection owning one name.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from flowengine.connections import ConnectionKind
from flowengine.node import option
from nodes.dbus.bus import BusConnection, open_bus, resolve_address
from nodes.dbus.watcher import Watcher

__all__ = ["CONNECTION_KINDS", "DbusConnectionConfig", "DbusLink"]


@dataclass(frozen=True, kw_only=True)
class DbusConnectionConfig:
    address: str | None = option(
        "D-Bus address; default: DBUS_SYSTEM_BUS_ADDRESS when set, else the system bus",
        default=None, example="unix:path=/var/run/dbus/system_bus_socket")


class DbusLink:
    """What a node gets for `ctx.connections.get("dbus", name)`."""

    def __init__(self, bus: BusConnection, watcher: Watcher, address: str | None) -> None:
        self.bus = bus
        self.watcher = watcher
        self.address = address

    def private(self) -> AbstractAsyncContextManager[BusConnection]:
        """A new connection of its own to the same bus."""
        return open_bus(self.address)


@contextlib.asynccontextmanager
async def open_link(name: str, config: DbusConnectionConfig) -> AsyncIterator[DbusLink]:
    address = resolve_address(config.address)
    async with open_bus(address) as bus:
        watcher = Watcher(bus)
        try:
            yield DbusLink(bus, watcher, address)
        finally:
            await watcher.close()


CONNECTION_KINDS = (
    ConnectionKind("dbus", DbusConnectionConfig, open_link,
                   summary="a D-Bus (the GX's system bus), shared by dbus nodes",
                   defaults={"system": {}}),
)
