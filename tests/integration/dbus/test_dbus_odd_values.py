"""Values D-Bus cannot carry as they are (a text with NUL or a lone surrogate, an integer
beyond 64 bits), as an MQTT payload can bring them into a dbus.service: they used to fail
every signal and every GetItems of the service while they stayed."""

from __future__ import annotations

import pytest
from conftest import eventually, run
from testkit.dbus import VictronClient

from flowengine.testing import NodeHarness

SERVICE = """
id: bms
type: dbus.service
preset: battery
name: esess_odd
device_instance: 512
"""
NAME = "com.victronenergy.battery.esess_odd"

ODD = {
    "nul": ("/CustomName", "a\x00b", "ab"),
    "lone-surrogate": ("/CustomName", "x\ud800y", "x\ufffdy"),
    "int-beyond-64-bits": ("/Soc", 2 ** 64, None),
    "int-beyond-a-double": ("/Soc", 10 ** 400, None),
}


def signalled(c: VictronClient, path: str) -> bool:
    """A PropertiesChanged on the path, or an ItemsChanged naming it, came."""
    return any(m.path == path for m in c.of("PropertiesChanged")) or \
        any(path in change for change in c.changed())


@pytest.mark.parametrize(("path", "odd", "seen"), ODD.values(), ids=ODD.keys())
def test_a_value_dbus_cannot_carry_is_made_carriable_and_the_service_keeps_answering(
        bus_address: str, path: str, odd: object, seen: object) -> None:
    async def scenario() -> None:
        async with NodeHarness(SERVICE) as h, VictronClient(bus_address) as c:
            await h.send("/Soc", 50.0)
            await c.follow(NAME)
            await h.send(path, odd)
            await h.send("/Dc/0/Voltage", 51.5)  # a change after it is still signalled
            await eventually(lambda: signalled(c, "/Dc/0/Voltage"), 3)
            assert await c.value(NAME, path) == seen
            items = await c.items(NAME)  # GetItems answers, with the value as sent
            assert items[path] == seen
            assert h.node_status.level == "ok"

    run(scenario())
