"""Simulated Venus OS: a Victron-style client reads the model's values and writes settings."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from conftest import eventually, run
from dbus_fast import MessageType, Variant
from testkit.dbus import VictronClient

from flowengine.testing import NodeHarness
from nodes.dbus.daemon import PrivateBus
from sim import EnergyModel, ModelDriver, ModelParams
from sim.venus import SETTINGS_INTERFACE, SimVenus

SYSTEM = "com.victronenergy.system"
SETTINGS = "com.victronenergy.settings"
SETPOINT = "/Settings/CGwacs/AcPowerSetPoint"


def morning_model() -> EnergyModel:
    """Little sun, half-full battery: the battery covers the house, the grid is near 0."""
    return EnergyModel(ModelParams(seed=5, start_hour=8.0, initial_soc=50.0))


def phases(items: dict[str, object], template: str) -> float:
    return sum(float(items[template.format(n)]) for n in (1, 2, 3))  # type: ignore[arg-type]


def test_every_service_is_on_the_bus_with_system_values_of_the_model() -> None:
    async def scenario() -> None:
        model = morning_model()
        async with PrivateBus() as address, SimVenus(model, address=address), \
                VictronClient(address) as client:
            names = await client.names()
            for name in (SYSTEM, SETTINGS, "com.victronenergy.battery.ttyS7",
                         "com.victronenergy.vebus.ttyS4", "com.victronenergy.hub4"):
                assert name in names
            s = model.snapshot
            items = await client.items(SYSTEM)
            assert items["/Dc/Battery/Soc"] == pytest.approx(s.soc, abs=0.05)
            assert items["/Dc/Battery/Power"] == pytest.approx(s.battery_w, abs=0.05)
            assert items["/Control/ActiveSocLimit"] == pytest.approx(s.min_soc)
            assert phases(items, "/Ac/Grid/L{}/Power") == pytest.approx(s.grid_w, abs=0.2)
            assert phases(items, "/Ac/Consumption/L{}/Power") == pytest.approx(s.load_w, abs=0.2)
            assert phases(items, "/Ac/PvOnGrid/L{}/Power") == pytest.approx(s.pv_ac_w, abs=0.2)
            # no PV inverter on the output or a genset: invalid, as systemcalc leaves them
            for n in (1, 2, 3):
                assert items[f"/Ac/PvOnOutput/L{n}/Power"] is None
                assert items[f"/Ac/PvOnGenset/L{n}/Power"] is None
            assert items["/Dc/Pv/Power"] == pytest.approx(s.pv_dc_w, abs=0.05)
            assert items["/Ac/ActiveIn/NumberOfPhases"] == 3
            assert items["/Dc/Battery/TimeToGo"] is None
            assert await client.text(SYSTEM, "/Dc/Battery/TimeToGo") == "---"
            assert await client.text(SYSTEM, "/Dc/Battery/Soc") == f"{round(s.soc, 1):.0f}%"
            # the energy balance holds in what the bus shows
            grid = phases(items, "/Ac/Grid/L{}/Power")
            pv = phases(items, "/Ac/PvOnGrid/L{}/Power") + float(items["/Dc/Pv/Power"])
            load = phases(items, "/Ac/Consumption/L{}/Power")
            assert grid + pv == pytest.approx(load + float(items["/Dc/Battery/Power"]), abs=1.0)
            battery = await client.items("com.victronenergy.battery.ttyS7")
            assert battery["/Soc"] == items["/Dc/Battery/Soc"]
            assert battery["/DeviceInstance"] == 512
            assert battery["/TimeToGo"] is None
            vebus = await client.items("com.victronenergy.vebus.ttyS4")
            assert vebus["/Dc/0/Power"] == pytest.approx(s.inverter_w, abs=0.05)
    run(scenario())


def test_each_model_step_goes_out_as_one_items_changed_per_service() -> None:
    async def scenario() -> None:
        model = morning_model()
        async with PrivateBus() as address, SimVenus(model, address=address) as venus, \
                VictronClient(address) as client:
            await client.follow(SYSTEM)
            before = model.snapshot.soc
            model.step(600)
            await eventually(lambda: len(client.changed()) >= 1)
            assert model.snapshot.soc != before
            (changes,) = client.changed()
            assert changes["/Dc/Battery/Soc"] == pytest.approx(model.snapshot.soc, abs=0.05)
            assert venus.system.values["/Dc/Battery/Soc"] == changes["/Dc/Battery/Soc"]
            assert await client.value(SYSTEM, "/Dc/Battery/Soc") == changes["/Dc/Battery/Soc"]
    run(scenario())


def test_a_setpoint_written_to_settings_moves_power_from_battery_to_grid() -> None:
    async def scenario() -> None:
        model = morning_model()
        async with PrivateBus() as address, SimVenus(model, address=address), \
                VictronClient(address) as client:
            await client.follow(SYSTEM)
            grid_before = model.snapshot.grid_w
            battery_before = model.snapshot.battery_w
            assert await client.set_value(SETTINGS, SETPOINT, Variant("d", 1500.0)) == 0
            assert model.settings.setpoint_w == 1500.0
            assert model.snapshot.grid_w == pytest.approx(grid_before, abs=0.01)  # no time yet
            s = model.step(30)  # the Multiplus ramps to it within seconds
            assert grid_before == pytest.approx(0.0, abs=0.01)
            assert s.grid_w == pytest.approx(1500.0, abs=0.01)
            # the battery takes the difference (the sun and the house moved a little)
            assert s.battery_w == pytest.approx(s.pv_w - s.load_w + 1500.0, abs=0.01)
            assert s.battery_w - battery_before == pytest.approx(1500.0, abs=100.0)
            assert await client.value(SETTINGS, SETPOINT) == 1500.0
            assert await client.text(SETTINGS, SETPOINT) == "1500.0"  # str(), as localsettings

            def published() -> bool:
                items = {k: v for c in client.changed() for k, v in c.items()}
                return "/Dc/Battery/Power" in items and \
                    abs(items["/Dc/Battery/Power"] - s.battery_w) < 0.1
            await eventually(published)
            items = await client.items(SYSTEM)
            assert phases(items, "/Ac/Grid/L{}/Power") == pytest.approx(s.grid_w, abs=0.2)
            # an integer write works too; export moves power the other way
            assert await client.set_value(SETTINGS, SETPOINT, Variant("i", -1000)) == 0
            assert model.step(30).grid_w == pytest.approx(-1000.0, abs=0.01)
    run(scenario())


def test_settings_refuse_wrong_types_and_values_out_of_range_with_minus_one() -> None:
    async def scenario() -> None:
        model = morning_model()
        async with PrivateBus() as address, SimVenus(model, address=address), \
                VictronClient(address) as client:
            # localsettings answers -1 to any refused SetValue, never velib's 1 or 2
            assert await client.set_value(SETTINGS, SETPOINT, Variant("s", "lots")) == -1
            limit = "/Settings/CGwacs/BatteryLife/MinimumSocLimit"
            assert await client.set_value(SETTINGS, limit, Variant("d", 140.0)) == -1
            assert await client.set_value(SYSTEM, "/Dc/Battery/Soc", Variant("d", 1.0)) == 1
            assert model.settings.setpoint_w == 0.0
            assert await client.set_value(SETTINGS, limit, Variant("d", 60.0)) == 0
            assert model.settings.min_soc == 60.0
            assert await client.value(SYSTEM, "/Control/ActiveSocLimit") == 60.0
            # below the new limit the battery stops discharging: the grid covers the house
            assert model.snapshot.battery_w >= 0
    run(scenario())


def test_dbus_service_registers_its_class_and_vrm_instance(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        model = morning_model()
        async with PrivateBus() as address, SimVenus(model, address=address) as venus, \
                VictronClient(address) as client:
            monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
            async with NodeHarness("""
                id: a
                type: dbus.service
                preset: temperature
                name: esess_a
                device_instance: 100
            """), NodeHarness("""
                id: b
                type: dbus.service
                preset: temperature
                name: esess_b
                device_instance: 100
            """):
                a = await client.value("com.victronenergy.temperature.esess_a",
                                       "/DeviceInstance")
                b = await client.value("com.victronenergy.temperature.esess_b",
                                       "/DeviceInstance")
            path = "/Settings/Devices/esess_temperature_esess_{}/ClassAndVrmInstance"
            assert venus.settings.values[path.format("a")] == "temperature:100"
            # the second device asked for a taken instance and got the next free one
            assert venus.settings.values[path.format("b")] == "temperature:101"
            assert (a, b) == (100, 101)
            # a user changes the instance in the GUI; the next start uses it
            assert await client.set_value(SETTINGS, path.format("a"),
                                          Variant("s", "temperature:7")) == 0
            async with NodeHarness("""
                id: a
                type: dbus.service
                preset: temperature
                name: esess_a
                device_instance: 100
            """):
                assert await client.value("com.victronenergy.temperature.esess_a",
                                          "/DeviceInstance") == 7
    run(scenario())


def test_relay_state_on_system_is_writable() -> None:
    async def scenario() -> None:
        model = morning_model()
        async with PrivateBus() as address, SimVenus(model, address=address) as venus, \
                VictronClient(address) as client:
            assert await client.value(SYSTEM, "/Relay/0/State") == 0
            assert await client.set_value(SYSTEM, "/Relay/0/State", Variant("i", 1)) == 0
            assert venus.relays[0] == 1
            model.step(1)
            assert await client.value(SYSTEM, "/Relay/0/State") == 1
            assert await client.set_value(SYSTEM, "/Relay/1/State", Variant("i", 3)) == 2
    run(scenario())


def test_settings_answer_add_setting_as_localsettings_does() -> None:
    async def scenario() -> None:
        model = morning_model()
        async with PrivateBus() as address, SimVenus(model, address=address) as venus, \
                VictronClient(address) as client:
            async def add(on: str, group: str, name: str, default: Variant,
                          kind: str = "s", low: int = 0, high: int = 0) -> Any:
                reply = await client.call(
                    SETTINGS, on, "AddSetting", "ssvsvv",
                    [group, name, default, kind, Variant("i", low), Variant("i", high)],
                    interface=SETTINGS_INTERFACE)
                return reply.body[0] if reply.message_type is MessageType.METHOD_RETURN \
                    else reply.error_name
            grid = Variant("s", "grid:40")
            # on / a group outside Settings/ is refused: what dbus.service used to send
            assert await add("/", "Devices/a", "ClassAndVrmInstance", grid) == -9
            assert "/Devices/a/ClassAndVrmInstance" not in venus.settings.values
            assert await add("/Settings", "Devices/a", "ClassAndVrmInstance", grid) == 0
            assert await add("/", "Settings/Devices/b", "ClassAndVrmInstance", grid) == 0
            assert await add("/Settings/Devices", "c", "ClassAndVrmInstance", grid) == 0
            values = venus.settings.values
            assert [values[f"/Settings/Devices/{d}/ClassAndVrmInstance"] for d in "abc"] == \
                ["grid:40", "grid:41", "grid:42"]
            # an existing setting keeps its value; another type, a bad default are refused
            assert await add("/Settings", "Devices/a", "ClassAndVrmInstance",
                             Variant("s", "grid:7")) == 0
            assert values["/Settings/Devices/a/ClassAndVrmInstance"] == "grid:40"
            assert await add("/Settings", "Devices/a", "ClassAndVrmInstance",
                             Variant("i", 7), "i") == -5
            assert await add("/Settings", "Devices/d", "ClassAndVrmInstance",
                             Variant("s", "grid")) == -6
            assert await add("/Settings", "X", "_y", Variant("i", 1), "i") == -2
            assert await add("/Settings", "X", "y", Variant("i", 1), "q") == -3
            assert await add("/Settings", "X", "y", Variant("i", 5), "i", 0, 3) == -7
            assert await add("/Settings", "", "Devices", Variant("i", 1), "i") == -8
            assert await add("/Settings/Devices/a/ClassAndVrmInstance", "", "z",
                             grid) == "org.freedesktop.DBus.Error.UnknownMethod"
            assert await add("/Nowhere", "", "z", grid) == \
                "org.freedesktop.DBus.Error.UnknownObject"
            # SetValue converts to the setting's type, and moves a taken instance on
            path = "/Settings/Devices/a/ClassAndVrmInstance"
            assert await client.set_value(SETTINGS, path, Variant("s", "grid:42")) == 0
            assert values[path] == "grid:43"
            assert await client.set_value(SETTINGS, path, Variant("s", "grid")) == -1
            assert await client.set_value(SETTINGS, SETPOINT, Variant("s", "250")) == 0
            assert model.settings.setpoint_w == 250.0
    run(scenario())


def test_with_systemcalcs_timer_the_system_service_signals_once_a_second_the_latest_step(
        ) -> None:
    """`system_every_s=1.0`: twenty model steps a second, yet com.victronenergy.system
    signals at most once a second, with the values of the latest step (as
    dbus-systemcalc-py's 1 s timer); with no step since its last tick it stays quiet."""
    async def scenario() -> None:
        model = morning_model()
        async with PrivateBus() as address, \
                SimVenus(model, address=address, system_every_s=1.0), \
                VictronClient(address) as client:
            await client.follow(SYSTEM)
            loop = asyncio.get_running_loop()
            times: list[float] = []  # when each system signal came
            async with ModelDriver(model, interval_s=0.05) as driver:
                end = loop.time() + 3.2
                while loop.time() < end:
                    before = len(client.changed())
                    await asyncio.sleep(0.01)
                    times += [loop.time()] * (len(client.changed()) - before)
                steps = driver.steps
            assert steps >= 50 and 3 <= len(times) <= 4, (steps, times)
            assert all(b - a > 0.9 for a, b in itertools.pairwise(times))
            await asyncio.sleep(1.2)  # the next tick publishes the last step
            items = await client.items(SYSTEM)
            s = model.snapshot
            assert phases(items, "/Ac/Grid/L{}/Power") == pytest.approx(sum(s.grid_l), abs=0.3)
            assert items["/Dc/Battery/Soc"] == pytest.approx(s.soc, abs=0.1)
            quiet = len(client.changed())
            await asyncio.sleep(1.5)  # no step since: nothing changed, nothing sent
            assert len(client.changed()) == quiet
    run(scenario())


def test_system_every_s_must_be_positive() -> None:
    with pytest.raises(ValueError, match="system_every_s"):
        SimVenus(morning_model(), address="unix:path=/nonexistent", system_every_s=0.0)
