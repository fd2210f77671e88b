"""dbus.service publishes continuous quantities as Double, as Victron's drivers do, whatever
number the flow gives (`"22"` on MQTT decodes to an int); counters, enums and instances
keep Int32. Seen on the wire by a Victron-style client on a private bus."""

from __future__ import annotations

from conftest import eventually, run
from dbus_fast import Variant
from testkit.dbus import VictronClient

from flowengine.testing import NodeHarness
from nodes.dbus.presets import PRESETS

TEMPERATURE = """
id: garden
type: dbus.service
preset: temperature
name: esess_garden
device_instance: 1000
register_instance: false
"""
GARDEN = "com.victronenergy.temperature.esess_garden"
GRID = """
id: meter
type: dbus.service
preset: grid
name: esess_meter
device_instance: 40
register_instance: false
"""
METER = "com.victronenergy.grid.esess_meter"


def signalled(c: VictronClient) -> dict[str, Variant]:
    """path -> the Value variant of its latest signal (PropertiesChanged or ItemsChanged)."""
    out: dict[str, Variant] = {}
    for msg in c.signals:
        if msg.member == "PropertiesChanged":
            out[msg.path] = msg.body[0]["Value"]
        elif msg.member == "ItemsChanged":
            out.update({p: item["Value"] for p, item in msg.body[0].items()})
    return out


def test_a_temperature_is_a_double_for_22_and_for_22_5(bus_address: str) -> None:
    async def scenario() -> None:
        async with NodeHarness(TEMPERATURE) as h, VictronClient(bus_address) as c:
            await c.follow(GARDEN)
            await h.send("/Temperature", 22)
            await eventually(lambda: len(c.of("PropertiesChanged")) == 1)
            (signal,) = c.of("PropertiesChanged")
            assert signal.path == "/Temperature"
            assert signal.body[0]["Value"] == Variant("d", 22.0)
            reply = await c.get_value(GARDEN, "/Temperature")
            assert reply.body == [Variant("d", 22.0)]
            assert await c.text(GARDEN, "/Temperature") == "22.0°C"

            await h.send("/Temperature", 22.5)
            await eventually(lambda: len(c.of("PropertiesChanged")) == 2)
            assert c.of("PropertiesChanged")[1].body[0]["Value"] == Variant("d", 22.5)

            await h.send("/Humidity", 61)
            await h.send("/Pressure", 1013)
            await h.send("/Status", 1)
            await eventually(lambda: {"/Humidity", "/Pressure", "/Status"} <= signalled(c).keys())
            sent = signalled(c)
            assert sent["/Humidity"] == Variant("d", 61.0)
            assert sent["/Pressure"] == Variant("d", 1013.0)
            assert sent["/Status"] == Variant("i", 1)  # an enum stays Int32
            body = (await c.get_items(GARDEN)).body[0]
            assert body["/Temperature"]["Value"] == Variant("d", 22.5)
            assert body["/TemperatureType"]["Value"] == Variant("i", 2)
            assert body["/DeviceInstance"]["Value"] == Variant("i", 1000)

    run(scenario())


def test_grid_power_voltage_current_and_energy_are_doubles(bus_address: str) -> None:
    async def scenario() -> None:
        async with NodeHarness(GRID) as h, VictronClient(bus_address) as c:
            ints = {"/Ac/Power": 100, "/Ac/L1/Power": -30, "/Ac/L1/Voltage": 230,
                    "/Ac/L1/Current": 2, "/Ac/Energy/Forward": 3, "/Ac/L2/Energy/Reverse": 0,
                    "/Ac/Frequency": 50}
            for path, number in ints.items():
                await h.send(path, number)
            await h.send("/Connected", 0)
            body = (await c.get_items(METER)).body[0]
            for path, number in ints.items():
                assert body[path]["Value"] == Variant("d", float(number)), path
            assert body["/Connected"]["Value"] == Variant("i", 0)
            assert body["/Position"]["Value"] == Variant("i", 0)
            assert body["/ProductId"]["Value"].signature == "i"

    run(scenario())


def test_every_preset_path_with_a_continuous_unit_is_declared_double() -> None:
    for name in ("grid", "pvinverter", "temperature", "battery", "evcharger"):
        paths = PRESETS[name].paths
        for path, spec in paths.items():
            continuous = any(word in path for word in (
                "Power", "Voltage", "Current", "Energy", "Temperature", "Humidity",
                "Pressure", "Frequency", "Soc", "Amphours", "Capacity"))
            if path in ("/TemperatureType", "/StartStop", "/ChargingTime"):
                continuous = False
            assert spec.double == continuous, (name, path, spec.unit)
