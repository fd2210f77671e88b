"""dbus.service on a private bus, seen through a Victron-style consumer."""

from __future__ import annotations

import pytest
from conftest import eventually, run
from dbus_fast import MessageType, Variant
from testkit.dbus import VictronClient

from flowengine.errors import FlowStartError
from flowengine.testing import FlowHarness, NodeHarness
from nodes.dbus.service import MAX_ROUTES

from .victron import VeService, plain

BATTERY = """
id: bms
type: dbus.service
preset: battery
name: esess_test
device_instance: 512
custom_name: Heater
product_id: 0xA144
"""
NAME = "com.victronenergy.battery.esess_test"


def test_every_busitem_method_answers_with_velib_signatures(bus_address: str) -> None:
    async def scenario() -> None:
        async with NodeHarness(BATTERY) as h, VictronClient(bus_address) as c:
            await h.send("/Soc", 85.0)
            await h.send("/Dc/0/Voltage", 51.23)
            await h.send("/Dc/0/Power", 123.42)

            items = await c.get_items(NAME)
            assert items.signature == "a{sa{sv}}"
            (body,) = items.body
            assert plain(body["/Soc"]) == {"Value": 85.0, "Text": "85%"}
            assert plain(body["/Dc/0/Voltage"]) == {"Value": 51.23, "Text": "51.2V"}
            assert plain(body["/Dc/0/Power"])["Text"] == "123.4W"
            assert body["/DeviceInstance"]["Value"] == Variant("i", 512)
            for path in ("/Mgmt/ProcessName", "/Mgmt/ProcessVersion", "/Mgmt/Connection",
                         "/ProductName", "/FirmwareVersion", "/HardwareVersion", "/Serial"):
                assert path in body
            assert plain(body["/Connected"])["Value"] == 1
            assert plain(body["/CustomName"])["Value"] == "Heater"

            value = await c.get_value(NAME, "/Soc")
            assert (value.signature, value.body) == ("v", [Variant("d", 85.0)])
            text = await c.get_text(NAME, "/Dc/0/Voltage")
            assert (text.signature, text.body) == ("s", ["51.2V"])
            product = await c.get_text(NAME, "/ProductId")
            assert product.body == ["0xA144"]

            root = await c.get_value(NAME, "/")
            assert root.signature == "v" and root.body[0].signature == "a{sv}"
            assert root.body[0].value["Soc"] == Variant("d", 85.0)
            root_text = await c.get_text(NAME, "/")
            assert root_text.signature == "v"
            assert plain(root_text.body[0])["Dc/0/Voltage"] == "51.2V"
            branch = await c.get_value(NAME, "/Dc")
            assert plain(branch.body[0])["0/Voltage"] == 51.23
            assert "Soc" not in branch.body[0].value

            description = await c.call(NAME, "/Soc", "GetDescription", "si", ["en", 0])
            assert description.signature == "s"
            missing = await c.get_value(NAME, "/Nope")
            assert missing.message_type is MessageType.ERROR
            intro = await c.call(NAME, "/Dc", "Introspect",
                                 interface="org.freedesktop.DBus.Introspectable")
            assert '<node name="0"/>' in intro.body[0]

    run(scenario())


def test_invalid_is_an_empty_int_array_and_shows_dashes(bus_address: str) -> None:
    async def scenario() -> None:
        async with NodeHarness(BATTERY) as h, VictronClient(bus_address) as c:
            await c.follow(NAME)
            value = await c.get_value(NAME, "/Soc")  # never set: invalid
            assert value.body == [Variant("ai", [])]
            assert (await c.get_text(NAME, "/Soc")).body == ["---"]
            await h.send("/Soc", 50)
            await eventually(lambda: len(c.of("PropertiesChanged")) == 1)
            await h.send("/Soc", None)
            await eventually(lambda: len(c.of("PropertiesChanged")) == 2)
            change = c.of("PropertiesChanged")[1]
            assert change.path == "/Soc" and change.signature == "a{sv}"
            assert change.body[0] == {"Value": Variant("ai", []), "Text": Variant("s", "---")}
            await h.send("/Alarms/LowVoltage", [])  # an empty list is not invalid
            await eventually(lambda: len(c.of("PropertiesChanged")) == 3)
            assert c.of("PropertiesChanged")[2].body[0]["Value"] == Variant("au", [])

    run(scenario())


def test_properties_changed_only_when_the_value_really_changes(bus_address: str) -> None:
    async def scenario() -> None:
        async with NodeHarness(BATTERY) as h, VictronClient(bus_address) as c:
            await c.follow(NAME)
            for soc in (40, 40, 41, 41):
                await h.send("/Soc", soc)
                await eventually(lambda: bool(c.of("PropertiesChanged")))
            await h.send("/Dc/0/Power", -10.0)  # a later signal proves the earlier are in
            await eventually(lambda: c.of("PropertiesChanged")[-1].path == "/Dc/0/Power")
            socs = [plain(m.body[0]) for m in c.of("PropertiesChanged") if m.path == "/Soc"]
            assert socs == [{"Value": 40, "Text": "40%"}, {"Value": 41, "Text": "41%"}]
            assert c.of("ItemsChanged") == []

    run(scenario())


def heatpump(name: str, instance: int, *extra: str) -> str:
    """A generic (heatpump) service taking batches on `values`, /Power in W."""
    return "\n".join(["id: many", "type: dbus.service", "preset: generic",
                      "service_type: heatpump", f"name: {name}",
                      f"device_instance: {instance}", "batch_topic: values",
                      "units: {/Power: W}", *extra])


def test_500_paths_changed_in_one_turn_give_one_items_changed(bus_address: str) -> None:
    async def scenario() -> None:
        async with NodeHarness(heatpump("esess_many", 3)) as h, \
                VictronClient(bus_address) as c:
            name = "com.victronenergy.heatpump.esess_many"
            await c.follow(name)
            batch = {f"/Zone/{i}/Temperature": float(i) for i in range(500)}
            await h.send("values", batch)
            await eventually(lambda: bool(c.of("ItemsChanged")))
            await h.send("/Power", 1500)  # one more, alone: a PropertiesChanged after it
            await eventually(lambda: bool(c.of("PropertiesChanged")))
            (items,) = c.of("ItemsChanged")
            assert items.path == "/" and items.signature == "a{sa{sv}}"
            assert len(items.body[0]) == 500
            assert plain(items.body[0]["/Zone/7/Temperature"]) == {"Value": 7.0, "Text": "7"}
            assert [m.path for m in c.of("PropertiesChanged")] == ["/Power"]
            assert (await c.get_text(name, "/Power")).body == ["1500.0W"]  # W: a Double
            everything = (await c.get_items(name)).body[0]
            assert len([p for p in everything if p.startswith("/Zone/")]) == 500

    run(scenario())


def test_paths_and_units_of_input_topics_are_kept_within_a_bound(bus_address: str) -> None:
    """Each input topic's path and unit are looked up once and kept (the per-message
    path of a poll's values); a generic service fed more paths than MAX_ROUTES keeps no
    more than that, and still publishes every one, with the same text every time."""
    async def scenario() -> None:
        async with NodeHarness(heatpump("esess_routes", 4, "topics: {power: /Power}")) as h, \
                VictronClient(bus_address) as c:
            name = "com.victronenergy.heatpump.esess_routes"
            await c.follow(name)
            def power_texts() -> list[str]:
                return [plain(m.body[0])["Text"] for m in c.of("PropertiesChanged")
                        if m.path == "/Power"]

            await h.send("power", 1500)  # the first looks the route up, the second keeps it
            await eventually(lambda: len(power_texts()) == 1)
            await h.send("power", 1501.26)
            await eventually(lambda: len(power_texts()) == 2)
            assert power_texts() == ["1500.0W", "1501.3W"]
            first = {f"/Zone/{i}/Temperature": float(i) for i in range(MAX_ROUTES)}
            await h.send("values", first)
            await h.send("values", {f"/Extra/{i}": i for i in range(100)})
            await h.send("values", {"/Zone/3/Temperature": 33.5, "/Extra/99": 990})
            assert len(h.node._routes) == MAX_ROUTES
            assert "/Extra/99" not in h.node._routes
            everything = (await c.get_items(name)).body[0]
            assert len([p for p in everything if p.startswith("/Zone/")]) == MAX_ROUTES
            assert len([p for p in everything if p.startswith("/Extra/")]) == 100
            assert plain(everything["/Zone/3/Temperature"])["Value"] == 33.5
            assert plain(everything["/Extra/99"]) == {"Value": 990, "Text": "990"}
            assert plain(everything["/Power"])["Text"] == "1501.3W"

    run(scenario())


def test_writable_paths_validate_writes_and_emit_user_changes(bus_address: str) -> None:
    async def scenario() -> None:
        async with NodeHarness("""
            id: charger
            type: dbus.service
            preset: evcharger
            name: esess_wallbox
            device_instance: 40
            topics: {amps: /SetCurrent}
            writable: {/MaxCurrent: {minimum: 6, maximum: 32}}
        """) as h, VictronClient(bus_address) as c:
            name = "com.victronenergy.evcharger.esess_wallbox"
            assert await c.set_value(name, "/SetCurrent", Variant("d", 10.0)) == 0
            assert await c.set_value(name, "/SetCurrent", Variant("i", 99)) == 2
            assert await c.set_value(name, "/SetCurrent", Variant("s", "ten")) == 1
            assert await c.set_value(name, "/Mode", Variant("i", 1)) == 0
            assert await c.set_value(name, "/Mode", Variant("d", 1.5)) == 1
            assert await c.set_value(name, "/Ac/Power", Variant("d", 5.0)) == 1
            assert await c.set_value(name, "/MaxCurrent", Variant("i", 40)) == 2
            assert await c.set_value(name, "/Mode", Variant("i", 1)) == 0  # unchanged
            assert await c.set_value(name, "/CustomName", Variant("s", "Car")) == 0
            await eventually(lambda: len(h.messages()) == 3)
            got = [(m.topic, m.value, (m.meta or {}).get("service")) for m in h.messages()]
            assert got == [("amps", 10.0, name), ("/Mode", 1, name), ("/CustomName", "Car", name)]
            assert (await c.get_value(name, "/SetCurrent")).body == [Variant("d", 10.0)]
            assert (await c.get_text(name, "/SetCurrent")).body == ["10.0A"]

    run(scenario())


def test_two_presets_side_by_side_and_names_released_on_stop(bus_address: str) -> None:
    async def scenario() -> None:
        flow = FlowHarness("""
            id: two
            nodes:
              - {id: bms, type: dbus.service, preset: battery, name: esess_a, device_instance: 1}
              - {id: grid, type: dbus.service, preset: grid, name: esess_b, device_instance: 2}
        """)
        async with VictronClient(bus_address) as c:
            async with flow:
                await flow.send("grid", "/Ac/L1/Power", 230.0)
                battery = (await c.get_items("com.victronenergy.battery.esess_a")).body[0]
                grid = (await c.get_items("com.victronenergy.grid.esess_b")).body[0]
                assert "/Soc" in battery and "/Ac/L1/Power" not in battery
                assert "/Soc" not in grid
                assert plain(grid["/Role"])["Value"] == "grid"
                await eventually(lambda: True)
                assert plain((await c.get_items("com.victronenergy.grid.esess_b")).body[0][
                    "/Ac/L1/Power"]) == {"Value": 230.0, "Text": "230.0W"}
                assert plain(battery["/DeviceInstance"])["Value"] == 1
                assert plain(grid["/DeviceInstance"])["Value"] == 2
            assert not await c.has_owner("com.victronenergy.battery.esess_a")
            assert not await c.has_owner("com.victronenergy.grid.esess_b")

    run(scenario())


def test_a_name_owned_by_another_connection_fails_the_start(bus_address: str) -> None:
    async def scenario() -> None:
        async with VeService(bus_address, NAME, {}):
            with pytest.raises(FlowStartError, match=r"is owned by .*stop that process first"):
                async with NodeHarness(BATTERY):
                    pass

    run(scenario())


KEPT = "/Settings/Devices/esess_temperature_esess_kept/ClassAndVrmInstance"


def test_device_instance_comes_from_class_and_vrm_instance_setting(bus_address: str) -> None:
    async def scenario() -> None:
        settings = VeService(bus_address, "com.victronenergy.settings", {
            f"{KEPT}": "temperature:7"})
        async with settings, VictronClient(bus_address) as c:
            async with NodeHarness("""
                id: t
                type: dbus.service
                preset: temperature
                name: esess_kept
                device_instance: 100
            """), NodeHarness("""
                id: u
                type: dbus.service
                preset: temperature
                name: esess_new
                device_instance: 101
            """):
                kept = await c.get_value("com.victronenergy.temperature.esess_kept",
                                         "/DeviceInstance")
                new = await c.get_value("com.victronenergy.temperature.esess_new",
                                        "/DeviceInstance")
            assert kept.body == [Variant("i", 7)]
            assert new.body == [Variant("i", 101)]
            # registered on /Settings, as localsettings accepts it (on / it answers -9)
            assert settings.settings == {
                KEPT: "temperature:100",
                KEPT.replace("ClassAndVrmInstance", "CustomName"): "",
                KEPT.replace("kept", "new"): "temperature:101",
                KEPT.replace("kept", "new").replace("ClassAndVrmInstance", "CustomName"): ""}

    run(scenario())
