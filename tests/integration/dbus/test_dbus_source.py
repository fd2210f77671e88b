"""dbus.source against velib-like services on a private bus: read, follow, vanish, return."""

from __future__ import annotations

from conftest import eventually, run

from flowengine.testing import FlowHarness, NodeHarness
from nodes.dbus.link import DbusLink

from .victron import VeService

SYSTEM = "com.victronenergy.system"
SOURCE = """
id: system
type: dbus.source
service: com.victronenergy.system
paths: {soc: /Dc/Battery/Soc, power: /Dc/Battery/Power}
"""


def seen(h: FlowHarness, node: str = "system") -> list[tuple[str, object, object]]:
    return [(m.topic, m.value, (m.meta or {}).get("service")) for m in h.messages(node)]


def test_reads_values_at_start_then_follows_signals(bus_address: str) -> None:
    async def scenario() -> None:
        values = {"/Dc/Battery/Soc": 55.0, "/Dc/Battery/Power": -300, "/Other": 1}
        async with VeService(bus_address, SYSTEM, values) as system, \
                NodeHarness(SOURCE) as h:
            assert sorted(seen(h)) == [("power", -300, SYSTEM), ("soc", 55.0, SYSTEM)]
            assert {m.topic: (m.meta or {}).get("path") for m in h.messages()} == \
                {"power": "/Dc/Battery/Power", "soc": "/Dc/Battery/Soc"}
            assert h.node_status.level == "ok" and SYSTEM in h.node_status.text
            system.set({"/Dc/Battery/Power": -250})  # PropertiesChanged
            await eventually(lambda: len(h.messages()) == 3)
            system.set({"/Dc/Battery/Soc": 56.0, "/Dc/Battery/Power": None, "/Other": 2})
            await eventually(lambda: len(h.messages()) == 5)
            system.set({"/Other": 3})  # not watched
            system.set({"/Dc/Battery/Power": None})  # unchanged: not emitted again
            system.set({"/Dc/Battery/Soc": 57.0})
            await eventually(lambda: len(h.messages()) == 6)
            assert seen(h)[2:] == [("power", -250, SYSTEM), ("soc", 56.0, SYSTEM),
                                   ("power", None, SYSTEM), ("soc", 57.0, SYSTEM)]

    run(scenario())


def test_sources_share_one_match_rule_per_service(bus_address: str) -> None:
    async def scenario() -> None:
        values = {"/Dc/Battery/Soc": 55.0, "/Dc/Battery/Power": -300}
        async with VeService(bus_address, SYSTEM, values) as system, FlowHarness("""
            id: two
            nodes:
              - {id: a, type: dbus.source, service: com.victronenergy.system,
                 paths: [/Dc/Battery/Soc]}
              - {id: b, type: dbus.source, service: com.victronenergy.system,
                 paths: {soc: /Dc/Battery/Soc, power: /Dc/Battery/Power}}
        """) as h:
            link: DbusLink = await h.runtime.connections.get("dbus", "system")
            service_rules = [r for r in link.bus.match_rules if f"sender='{SYSTEM}'" in r]
            assert service_rules == [
                "type='signal',sender='com.victronenergy.system',"
                "interface='com.victronenergy.BusItem'"]
            assert link.watcher.services == [SYSTEM]
            system.set({"/Dc/Battery/Soc": 60.0})
            await eventually(lambda: len(h.messages("a")) == 2 and len(h.messages("b")) == 3)
            assert h.messages("a")[-1].value == h.messages("b")[-1].value == 60.0
            assert h.messages("a")[-1].topic == "/Dc/Battery/Soc"
            assert h.messages("b")[-1].topic == "soc"

    run(scenario())


def test_a_source_started_later_gets_the_values_of_paths_no_one_read_before(
        bus_address: str) -> None:
    """Two sources on one service, started one after the other: the second wants paths
    the first never asked for, one of which never changes (like /Control/ActiveSocLimit);
    it must still get its value, not None."""
    async def scenario() -> None:
        values = {"/Dc/Battery/Soc": 55.0, "/Dc/Battery/Power": -300,
                  "/Control/ActiveSocLimit": 20.0}
        async with VeService(bus_address, SYSTEM, values), FlowHarness("""
            id: two
            nodes:
              - {id: a, type: dbus.source, service: com.victronenergy.system,
                 paths: [/Dc/Battery/Soc]}
              - {id: b, type: dbus.source, service: com.victronenergy.system,
                 paths: {soc: /Dc/Battery/Soc, limit: /Control/ActiveSocLimit,
                         gone: /Not/There}}
        """) as h:
            assert [m.value for m in h.messages("a")] == [55.0]
            got = {m.topic: m.value for m in h.messages("b")}
            assert got == {"soc": 55.0, "limit": 20.0, "gone": None}

    run(scenario())


def test_stopping_the_last_source_of_a_service_removes_its_match_rules(
        bus_address: str) -> None:
    """A stopped flow leaves no match rule behind: the daemon would keep routing the
    service's signals to us for nothing."""
    async def scenario() -> None:
        values = {"/Dc/Battery/Soc": 55.0}
        async with VeService(bus_address, SYSTEM, values), FlowHarness("""
            id: one
            nodes:
              - {id: a, type: dbus.source, service: com.victronenergy.system,
                 paths: [/Dc/Battery/Soc]}
              - {id: b, type: dbus.source, service: com.victronenergy.battery.*,
                 paths: [/Soc]}
        """) as h:
            link: DbusLink = await h.runtime.connections.get("dbus", "system")
            assert any(SYSTEM in r for r in link.bus.match_rules)
            assert any("com.victronenergy.battery" in r for r in link.bus.match_rules)
            assert h.run is not None
            await h.runtime.stop_flow(h.run.plan.spec.id)
            assert link.bus.match_rules == []
            assert link.watcher.services == []

    run(scenario())


def test_a_service_that_vanishes_turns_invalid_and_is_followed_again(bus_address: str,
                                                                     ) -> None:
    async def scenario() -> None:
        values = {"/Dc/Battery/Soc": 55.0, "/Dc/Battery/Power": -300}
        system = VeService(bus_address, SYSTEM, values)
        await system.start()
        try:
            async with NodeHarness(SOURCE) as h:
                await system.stop()
                await eventually(lambda: len(h.messages()) == 4)
                assert sorted(seen(h)[2:]) == [("power", None, SYSTEM), ("soc", None, SYSTEM)]
                assert h.node_status.level == "warning"
                assert h.node_status.text == f"{SYSTEM} left the bus"
                system.values.update({"/Dc/Battery/Soc": 20.0})
                await system.start()
                await eventually(lambda: len(h.messages()) == 6)
                assert sorted(seen(h)[4:]) == [("power", -300, SYSTEM), ("soc", 20.0, SYSTEM)]
                assert h.node_status.level == "ok"
                system.set({"/Dc/Battery/Soc": 21.0})  # signals from the new owner count
                await eventually(lambda: len(h.messages()) == 7)
                assert seen(h)[-1] == ("soc", 21.0, SYSTEM)
        finally:
            await system.stop()

    run(scenario())


def test_a_service_that_starts_after_the_runtime_is_picked_up(bus_address: str) -> None:
    async def scenario() -> None:
        async with NodeHarness(SOURCE) as h:
            assert sorted(seen(h)) == [("power", None, SYSTEM), ("soc", None, SYSTEM)]
            assert h.node_status.text == f"waiting for {SYSTEM}"
            async with VeService(bus_address, SYSTEM, {"/Dc/Battery/Soc": 80.0}):
                await eventually(lambda: len(h.messages()) == 4)
                assert sorted(seen(h)[2:]) == [("power", None, SYSTEM), ("soc", 80.0, SYSTEM)]
                assert h.node_status.level == "ok"

    run(scenario())


def test_a_pattern_with_a_device_instance_picks_one_battery(bus_address: str) -> None:
    async def scenario() -> None:
        first = VeService(bus_address, "com.victronenergy.battery.ttyO1",
                          {"/DeviceInstance": 1, "/Soc": 10.0})
        second = VeService(bus_address, "com.victronenergy.battery.ttyO2",
                           {"/DeviceInstance": 2, "/Soc": 20.0})
        async with first, NodeHarness("""
            id: bat
            type: dbus.source
            service: com.victronenergy.battery.*
            device_instance: 2
            paths: [/Soc]
        """) as h:
            assert h.messages() == []
            async with second:  # appears later
                await eventually(lambda: len(h.messages()) == 1)
                first.set({"/Soc": 11.0})
                second.set({"/Soc": 21.0})
                await eventually(lambda: len(h.messages()) == 2)
                assert seen(h, "bat") == [("/Soc", 20.0, "com.victronenergy.battery.ttyO2"),
                                          ("/Soc", 21.0, "com.victronenergy.battery.ttyO2")]

    run(scenario())


def test_a_source_reads_what_a_dbus_service_node_publishes(bus_address: str) -> None:
    async def scenario() -> None:
        async with FlowHarness("""
            id: loop
            nodes:
              - {id: meter, type: dbus.service, preset: grid, name: esess_meter,
                 device_instance: 30}
              - {id: read, type: dbus.source, service: com.victronenergy.grid.*,
                 paths: {power: /Ac/Power, role: /Role}}
        """) as h:
            await eventually(lambda: len(h.messages("read")) == 2)
            await h.send("meter", "/Ac/Power", 1234.5)
            await eventually(lambda: len(h.messages("read")) == 3)
            meter = "com.victronenergy.grid.esess_meter"
            assert set(seen(h, "read")) == {("power", None, meter), ("role", "grid", meter),
                                            ("power", 1234.5, meter)}
            assert seen(h, "read")[-1] == ("power", 1234.5, meter)

    run(scenario())
