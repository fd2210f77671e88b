"""dbus.service keeps its VRM instance and a user's name in localsettings.

The settings service here is the simulation's (`sim.venus.settings.SimSettings`), which
follows localsettings' contract: AddSetting on `/` with a group outside `Settings/`
answers -9, SetValue answers -1 when refused, ClassAndVrmInstance moves to a free
instance, and every change is a PropertiesChanged on the setting's path.
"""

from __future__ import annotations

import logging
import time

import pytest
from conftest import eventually, run
from dbus_fast import MessageType, Variant
from dbus_fast.aio import MessageBus
from testkit.dbus import VictronClient

from flowengine.testing import NodeHarness
from nodes.dbus.service import REGISTER_TIMEOUT_S
from sim import EnergyModel, ModelParams
from sim.venus.settings import SETTINGS, SimSettings

NAME = "com.victronenergy.grid.esess_meter"
DIR = "/Settings/Devices/esess_grid_esess_meter"
INSTANCE = f"{DIR}/ClassAndVrmInstance"
CUSTOM = f"{DIR}/CustomName"


def meter(custom_name: str = "Shelly 3EM") -> str:
    return f"""
        id: meter
        type: dbus.service
        preset: grid
        name: esess_meter
        device_instance: 40
        custom_name: {custom_name}
    """


class _Settings:
    def __init__(self, address: str) -> None:
        self.service = SimSettings(EnergyModel(ModelParams(seed=1)))
        self.address = address

    async def __aenter__(self) -> SimSettings:
        await self.service.start(self.address)
        return self.service

    async def __aexit__(self, *exc: object) -> None:
        await self.service.close()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_instance_is_registered_in_localsettings_without_a_warning(
        bus_address: str, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with _Settings(bus_address) as settings, VictronClient(bus_address) as c:
            async with NodeHarness(meter()):
                assert settings.values[INSTANCE] == "grid:40"
                assert settings.values[CUSTOM] == ""
                assert await c.value(NAME, "/DeviceInstance") == 40
            assert warnings(caplog) == []
    run(scenario())


def test_a_taken_instance_is_moved_to_the_next_free_one_by_localsettings(
        bus_address: str) -> None:
    async def scenario() -> None:
        async with _Settings(bus_address) as settings, VictronClient(bus_address) as c:
            assert settings.add_setting("/Settings", [
                "Devices/shelly_abc", "ClassAndVrmInstance", "grid:40", "s", 0, 0]) == 0
            async with NodeHarness(meter()):
                assert settings.values[INSTANCE] == "grid:41"
                assert await c.value(NAME, "/DeviceInstance") == 41
    run(scenario())


def test_the_instance_a_user_sets_is_used_at_once_and_after_a_restart(
        bus_address: str) -> None:
    async def scenario() -> None:
        async with _Settings(bus_address) as settings, VictronClient(bus_address) as c:
            async with NodeHarness(meter()):
                await c.follow(NAME)
                # the GUI's device list writes the setting
                assert await c.set_value(SETTINGS, INSTANCE, Variant("s", "grid:45")) == 0
                assert settings.values[INSTANCE] == "grid:45"
                await eventually(lambda: any(
                    m.path == "/DeviceInstance" for m in c.of("PropertiesChanged")))
                assert await c.value(NAME, "/DeviceInstance") == 45
            async with NodeHarness(meter()):  # the flow restarted: a new runtime
                assert await c.value(NAME, "/DeviceInstance") == 45
    run(scenario())


def test_a_rename_is_kept_in_localsettings_and_shown_after_a_restart(
        bus_address: str) -> None:
    async def scenario() -> None:
        async with _Settings(bus_address) as settings, VictronClient(bus_address) as c:
            async with NodeHarness(meter()) as h:
                assert await c.value(NAME, "/CustomName") == "Shelly 3EM"
                assert await c.set_value(NAME, "/CustomName", Variant("s", "Grid meter")) == 0
                await eventually(lambda: settings.values[CUSTOM] == "Grid meter")
                assert h.values() == ["Grid meter"]
            async with NodeHarness(meter()):
                assert await c.value(NAME, "/CustomName") == "Grid meter"
            # the user's name wins over a new configured one, too
            async with NodeHarness(meter("House meter")):
                assert await c.value(NAME, "/CustomName") == "Grid meter"
                # an empty name gives the configured one back, now and after a restart
                assert await c.set_value(NAME, "/CustomName", Variant("s", "")) == 0
                assert await c.value(NAME, "/CustomName") == "House meter"
                await eventually(lambda: settings.values[CUSTOM] == "")
            async with NodeHarness(meter("House meter")):
                assert await c.value(NAME, "/CustomName") == "House meter"
    run(scenario())


def test_a_rename_just_before_the_stop_is_kept(bus_address: str) -> None:
    async def scenario() -> None:
        async with _Settings(bus_address) as settings, VictronClient(bus_address) as c:
            async with NodeHarness(meter()):
                assert await c.set_value(NAME, "/CustomName", Variant("s", "Last word")) == 0
            assert settings.values[CUSTOM] == "Last word"
    run(scenario())


def test_a_name_changed_in_localsettings_is_shown_at_once(bus_address: str) -> None:
    async def scenario() -> None:
        async with _Settings(bus_address), VictronClient(bus_address) as c, \
                NodeHarness(meter()):
            await c.follow(NAME)
            assert await c.set_value(SETTINGS, CUSTOM, Variant("s", "Renamed")) == 0
            await eventually(lambda: any(
                m.path == "/CustomName" for m in c.of("PropertiesChanged")))
            assert await c.value(NAME, "/CustomName") == "Renamed"
    run(scenario())


def test_without_localsettings_the_service_runs_with_its_configured_name(
        bus_address: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        async with VictronClient(bus_address) as c:
            async with NodeHarness(meter()):
                assert await c.value(NAME, "/DeviceInstance") == 40
                assert await c.value(NAME, "/CustomName") == "Shelly 3EM"
                # a rename still shows until the next start
                assert await c.set_value(NAME, "/CustomName", Variant("s", "Grid")) == 0
                assert await c.value(NAME, "/CustomName") == "Grid"
            async with NodeHarness(meter()):
                assert await c.value(NAME, "/CustomName") == "Shelly 3EM"
        absent = [r for r in caplog.records if f"{SETTINGS} is not on the bus" in r.getMessage()]
        assert len(absent) == 2  # once per start, nothing per rename
        assert warnings(caplog) == []
    run(scenario())


def test_a_setting_localsettings_refuses_is_logged_with_its_code(
        bus_address: str, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with _Settings(bus_address) as settings, VictronClient(bus_address) as c:
            # another program made our CustomName a number: localsettings answers -5
            assert settings.add_setting("/", [DIR, "CustomName", 3, "i", 0, 0]) == 0
            async with NodeHarness(meter()):
                assert await c.value(NAME, "/CustomName") == "Shelly 3EM"
                assert await c.value(NAME, "/DeviceInstance") == 40
                assert settings.values[INSTANCE] == "grid:40"
        assert warnings(caplog) == [
            f"harness/meter: AddSetting {CUSTOM} in {SETTINGS} refused (-5: it exists with another "
            "type); using the configured value"]
    run(scenario())


def test_a_settings_service_that_does_not_answer_costs_one_timeout(
        bus_address: str, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        hung = MessageBus(bus_address=bus_address)
        await hung.connect()
        hung.add_message_handler(  # takes every call, answers none
            lambda msg: True if msg.message_type is MessageType.METHOD_CALL else None)
        await hung.request_name(SETTINGS)
        try:
            async with VictronClient(bus_address) as c:
                started = time.monotonic()
                async with NodeHarness(meter()):
                    took = time.monotonic() - started
                    assert await c.value(NAME, "/DeviceInstance") == 40
                    assert await c.value(NAME, "/CustomName") == "Shelly 3EM"
        finally:
            hung.disconnect()
        assert REGISTER_TIMEOUT_S <= took < 2 * REGISTER_TIMEOUT_S
        assert warnings(caplog) == [
            f"harness/meter: {SETTINGS} did not answer in 2 s: instance 40 and the name "
            "'Shelly 3EM'"]
    run(scenario())
