"""One subscription per service, shared by watches of different paths: each watch gets
the changes of its own paths only, also when a watch comes or goes while others keep the
service followed, and the values of one signal arrive as one reading."""

from __future__ import annotations

from conftest import eventually, run

from flowengine.model import JsonValue
from flowengine.testing import FlowHarness, NodeHarness
from nodes.dbus.link import DbusLink

from .victron import VeService

SYSTEM = "com.victronenergy.system"
BATTERY = "com.victronenergy.battery.ttyO1"
SOC, POWER = "/Dc/Battery/Soc", "/Dc/Battery/Power"
SOURCE = f"""
id: soc
type: dbus.source
service: {SYSTEM}
paths: [{SOC}]
"""


class Recorder:
    """A watcher subscriber that keeps what it is handed."""

    def __init__(self) -> None:
        self.values: list[dict[str, JsonValue]] = []

    def values_changed(self, service: str, values: dict[str, JsonValue]) -> None:
        self.values.append(dict(values))

    def presence_changed(self, service: str, present: bool) -> None:
        pass


def test_each_source_gets_only_the_changes_of_its_own_paths(bus_address: str) -> None:
    async def scenario() -> None:
        async with VeService(bus_address, SYSTEM, {SOC: 55.0, POWER: -300.0}) as system, \
                FlowHarness(f"""
                    id: two
                    nodes:
                      - {{id: few, type: dbus.source, service: {SYSTEM}, paths: [{SOC}]}}
                      - {{id: all, type: dbus.source, service: {SYSTEM},
                         paths: [{SOC}, {POWER}]}}
                """) as h:
            system.set({POWER: -250.0})  # PropertiesChanged of a path only `all` follows
            system.set({SOC: 56.0, POWER: -200.0})  # one ItemsChanged
            await eventually(lambda: len(h.messages("all")) == 5)
            assert [(m.topic, m.value) for m in h.messages("few")] == \
                [(SOC, 55.0), (SOC, 56.0)]
            assert [(m.topic, m.value) for m in h.messages("all")][2:] == \
                [(POWER, -250.0), (SOC, 56.0), (POWER, -200.0)]

    run(scenario())


def test_a_device_instance_change_reaches_only_sources_that_follow_it(
        bus_address: str) -> None:
    """The watcher follows /DeviceInstance of every service (for `device_instance`); a
    source that did not ask for it never sees it, also inside one ItemsChanged."""
    async def scenario() -> None:
        values = {"/DeviceInstance": 1, "/Soc": 10.0}
        async with VeService(bus_address, BATTERY, values) as battery, FlowHarness(f"""
            id: two
            nodes:
              - {{id: soc, type: dbus.source, service: {BATTERY}, paths: [/Soc]}}
              - {{id: both, type: dbus.source, service: {BATTERY},
                 paths: [/Soc, /DeviceInstance]}}
        """) as h:
            battery.set({"/DeviceInstance": 2, "/Soc": 11.0})
            battery.set({"/DeviceInstance": 3})
            battery.set({"/Soc": 12.0})
            await eventually(lambda: len(h.messages("soc")) == 3)
            await eventually(lambda: len(h.messages("both")) == 6)
            assert [(m.topic, m.value) for m in h.messages("soc")] == \
                [("/Soc", 10.0), ("/Soc", 11.0), ("/Soc", 12.0)]
            assert sorted((m.topic, m.value) for m in h.messages("both")[2:]) == \
                [("/DeviceInstance", 2), ("/DeviceInstance", 3), ("/Soc", 11.0),
                 ("/Soc", 12.0)]

    run(scenario())


def test_a_path_watched_again_later_starts_from_its_value_now(bus_address: str) -> None:
    """A path nobody watches any more is not followed; watched again (a flow enabled
    again, while another flow kept the service followed), it starts from the value the
    service has now, not the one it had when the last watch of it went."""
    async def scenario() -> None:
        async with VeService(bus_address, SYSTEM, {SOC: 55.0, POWER: -300.0}) as system, \
                NodeHarness(SOURCE) as h:
            link: DbusLink = await h.runtime.connections.get("dbus", "system")
            first = Recorder()
            watch = await link.watcher.watch(SYSTEM, [POWER], first)
            assert first.values == [{POWER: -300.0}]
            await link.watcher.unwatch(watch)
            system.set({POWER: -100.0})  # while only `soc` follows the service
            system.set({SOC: 57.0})
            await eventually(lambda: len(h.messages()) == 2)
            again = Recorder()
            await link.watcher.watch(SYSTEM, [POWER], again)
            assert again.values == [{POWER: -100.0}]
            assert first.values == [{POWER: -300.0}]

    run(scenario())


def test_the_values_of_one_signal_are_one_reading(bus_address: str) -> None:
    """Messages made from one ItemsChanged share their time; each names its path and
    service in its meta."""
    async def scenario() -> None:
        async with VeService(bus_address, SYSTEM, {SOC: 55.0, POWER: -300.0}) as system, \
                NodeHarness(f"""
                    id: two
                    type: dbus.source
                    service: {SYSTEM}
                    paths: {{soc: {SOC}, power: {POWER}}}
                """) as h:
            await h.advance(1000)
            system.set({SOC: 56.0, POWER: -200.0})
            await eventually(lambda: len(h.messages()) == 4)
            soc, power = h.messages()[2:]
            assert (soc.topic, power.topic) == ("soc", "power")
            assert soc.ts == power.ts and soc.wall == power.wall
            assert soc.ts > h.messages()[0].ts
            assert dict(soc.meta or {}) == {"service": SYSTEM, "path": SOC}
            assert dict(power.meta or {}) == {"service": SYSTEM, "path": POWER}

    run(scenario())
