"""dbus.source hands each change on once, also from a service that signals it twice, by
PropertiesChanged on its path and again in an ItemsChanged on `/` (velib sends one or the
other for one change, never both; a service may still do it, or repeat a value)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

from conftest import eventually, run
from dbus_fast import Message, Variant
from testkit.dbus import BUSITEM

from flowengine.testing import NodeHarness

from .victron import VeService, variant

SYSTEM = "com.victronenergy.system"
SOURCE = """
id: system
type: dbus.source
service: com.victronenergy.system
paths: {soc: /Dc/Battery/Soc, power: /Dc/Battery/Power}
"""


class TwiceSignallingService(VeService):
    """Signals every change both ways: PropertiesChanged per path, then one ItemsChanged."""

    def set(self, changes: Mapping[str, Any]) -> None:
        self.values.update(changes)
        assert self.bus is not None
        body = {p: {"Value": variant(v), "Text": Variant("s", str(v))}
                for p, v in changes.items()}
        for path, item in body.items():
            self.bus.send(Message.new_signal(path, BUSITEM, "PropertiesChanged", "a{sv}",
                                             [item]))
        self.bus.send(Message.new_signal("/", BUSITEM, "ItemsChanged", "a{sa{sv}}", [body]))


def test_a_change_signalled_both_ways_is_one_message(bus_address: str) -> None:
    async def scenario() -> None:
        values = {"/Dc/Battery/Soc": 55.0, "/Dc/Battery/Power": -300.0}
        async with TwiceSignallingService(bus_address, SYSTEM, values) as system, \
                NodeHarness(SOURCE) as h:
            await eventually(lambda: len(h.messages()) == 2)
            system.set({"/Dc/Battery/Soc": 56.0})
            system.set({"/Dc/Battery/Soc": 57.0, "/Dc/Battery/Power": -250.0})
            system.set({"/Dc/Battery/Soc": 57.0})  # the same again: no change
            system.set({"/Dc/Battery/Power": math.nan})  # unequal even to itself
            system.set({"/Dc/Battery/Power": math.nan})
            system.set({"/Dc/Battery/Power": math.inf})
            system.set({"/Dc/Battery/Soc": 58.0})
            await eventually(lambda: ("soc", 58.0) in seen(h))
            await asyncio.sleep(0.2)  # the ItemsChanged right behind the last one, too
            assert seen(h)[2:] == [("soc", 56.0), ("soc", 57.0), ("power", -250.0),
                                   ("power", None), ("soc", 58.0)]

    run(scenario())


def seen(h: NodeHarness) -> list[tuple[str, object]]:
    return [(m.topic, m.value) for m in h.messages()]
