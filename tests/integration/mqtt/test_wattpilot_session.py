"""energy.wattpilot: hibernate and wake (VRM works while it sleeps), the session counters
and their reset, and every modelStatus the charger reports as a VRM /Status."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import eventually, run

from nodes.energy.wattpilot_vrm import MODEL_STATUS

from .mqttkit import Mosquitto
from .wattpilotkit import charger


def test_without_a_car_it_hibernates_looks_again_and_stays_when_a_car_came(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path, hibernate="true",
                           hibernate_check_s=1) as rig:
            wp = rig.wp
            await eventually(lambda: wp.clients == 0, 5)
            assert "hibernating" in rig.status()
            assert await rig.value("/Connected") == 1  # asleep, not gone
            assert await rig.value("/Status") == 0
            logins = wp.logins
            await eventually(lambda: wp.logins > logins, 5)  # it looks again
            await eventually(lambda: wp.clients == 0, 5)  # no car: asleep again
            wp.plug_in()
            await rig.until("/Status", 2, timeout=10)  # found at the next look
            await asyncio.sleep(1.5)
            assert wp.clients == 1  # and it stays with a car
    run(scenario())


def test_vrm_wakes_a_hibernating_charger_and_its_write_is_made(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path, hibernate="true",
                           hibernate_check_s=30) as rig:
            wp = rig.wp
            await eventually(lambda: wp.clients == 0, 5)
            assert await rig.set("/Mode", "i", 2) == 0  # scheduled: wake up
            await eventually(lambda: wp.clients == 1, 5)
            await asyncio.sleep(1.0)
            assert wp.clients == 1  # it stays awake for VRM (es-ESS fell asleep at once)
            assert await rig.value("/Mode") == 0  # the mode is the charger's again
        (tmp_path / "b").mkdir()
        async with charger(mosquitto, tmp_path / "b", hibernate="true",
                           hibernate_check_s=30) as rig:
            wp = rig.wp
            await eventually(lambda: wp.clients == 0, 5)
            assert await rig.set("/StartStop", "i", 1) == 0  # made once it is awake
            await rig.setting_is("frc", 2, timeout=10)
            assert await rig.set("/SetCurrent", "d", 24.0) == 0
            await rig.setting_is("psm", 2)
            await rig.setting_is("amp", 8)
    run(scenario())


def test_the_session_counts_charging_time_and_energy_and_resets_as_configured(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path) as rig:
            wp = rig.wp
            wp.plug_in()
            await rig.until("/Status", 2)
            await asyncio.sleep(1.2)
            wp.advance(1800)  # half an hour at 11 kW
            await rig.until("/Session/Energy", lambda v: v is not None and v > 5.0)
            assert await rig.value("/Ac/Energy/Forward") == await rig.value("/Session/Energy")
            charged = await rig.until("/Session/Time", lambda v: v >= 1)
            wp.app_set("frc", 1)  # stopped: the time stands still
            await rig.until("/Status", 1)
            await asyncio.sleep(0.3)
            stopped_at = await rig.value("/Session/Time")
            await asyncio.sleep(1.5)
            wp.advance(1)
            await asyncio.sleep(0.3)
            assert await rig.value("/Session/Time") == stopped_at >= charged
            assert await rig.value("/ChargingTime") == stopped_at
            wp.unplug()  # OnDisconnect: both go to 0
            await rig.until("/Session/Energy", 0.0)
            assert await rig.value("/Session/Time") == 0
        (tmp_path / "b").mkdir()
        async with charger(mosquitto, tmp_path / "b", reset_counters="OnConnect") as rig:
            wp = rig.wp
            wp.plug_in()
            await rig.until("/Status", 2)
            wp.advance(1800)
            energy = await rig.until("/Session/Energy", lambda v: v is not None and v > 5.0)
            wp.unplug()  # OnConnect: the last session stays shown
            await rig.until("/Status", 0)
            await asyncio.sleep(0.3)
            assert await rig.value("/Session/Energy") == energy
            wp.plug_in()  # until the next car: the new session counts from 0 (and the car
            # charges at once, so a slow runtime may first show a few Wh of it)
            await rig.until("/Session/Energy", lambda v: v is not None and 0 <= v < 0.5)
    run(scenario())


def test_every_model_status_is_shown_as_a_vrm_status(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path) as rig:
            rig.wp.app_set("frc", 1)
            rig.wp.plug_in()
            await rig.until("/Status", 1)
            for model_status, (_, vrm) in MODEL_STATUS.items():
                if model_status == 23:
                    vrm = 22  # a phase switch of the charger's own: to three phases
                rig.wp.force_model_status(model_status)
                await rig.until("/Status", vrm)
            rig.wp.force_model_status(99)  # unknown: from the car state and power
            await rig.until("/Status", 1)
            assert "unknown modelStatus 99" in caplog.text
            rig.wp.force_model_status(None)
            rig.wp.app_set("frc", 2)
            await rig.until("/Status", 2)  # and it goes on
    run(scenario())
