"""energy.wattpilot in auto mode (the app's Eco): it asks the distributor (a test client
here) for power and follows the allowance: start, current, phases, the cooldowns, a lost
allowance or link, low-price charging nested with solar, and the stop of the flow."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from conftest import eventually, run

from .mqttkit import Mosquitto
from .wattpilotkit import Rig, charger

ECO = {"min_on_off_s": 2, "min_phase_switch_s": 2, "overhead_vrm_instance": 1006}


async def eco_with_car(rig: Rig) -> None:
    rig.wp.app_set("lmo", 4)
    rig.wp.app_set("fst", 99000.0)
    rig.wp.plug_in(soc=30)
    await rig.until("/Mode", 1)
    await eventually(lambda: rig.request("Request") == str(3 * 16 * 230), 5)


def test_it_requests_power_and_follows_the_allowance_with_the_cooldowns(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "flowengine.runtime")

    async def scenario() -> None:
        async with charger(mosquitto, tmp_path, **ECO) as rig:
            await eco_with_car(rig)
            assert rig.request("Minimum") == str(6 * 230)
            assert rig.request("StepSize") == "230"
            assert rig.request("Priority") == "35"
            assert rig.request("IsAutomatic") == "true"
            assert rig.request("VRMInstanceID") == "1006"
            await rig.until("/Status", 4)  # waiting for sun
            rig.allow(3000)  # 13 A on one phase
            await rig.setting_is("frc", 2)
            assert (rig.setting("psm"), rig.setting("amp")) == (1, 13)
            await rig.until("/Status", 2)
            await rig.until("/Ac/Power", 13 * 230.0)
            await eventually(lambda: rig.request("Consumption") == str(13 * 230), 5)
            await eventually(lambda: rig.request("CustomName") == "Fronius Wattpilot (1)", 5)
            rig.allow(5000)  # 21 A: three phases at 7 A (no phase switch before)
            await rig.setting_is("psm", 2)
            await rig.setting_is("amp", 7)
            await eventually(lambda: rig.request("StepSize") == str(3 * 230), 5)
            rig.allow(3000)  # back to one phase: waits for the phase switch cooldown
            await rig.until("/Status", 23)  # switching to single phase
            await rig.setting_is("amp", 6)  # three phases at the least meanwhile
            assert rig.setting("psm") == 2
            assert "waits" in rig.status()
            assert "wattpilot: switch to 1 phase(s) waits" in caplog.text  # service message
            await rig.setting_is("psm", 1, timeout=5)
            await rig.setting_is("amp", 13)
            rig.allow(0)  # the stop waits for the on/off cooldown, at 6 A meanwhile
            await rig.until("/Status", lambda s: s in (24, 4))
            await rig.setting_is("frc", 1, timeout=5)
            await rig.until("/Status", 4)
            rig.allow(3000)  # the start waits for the on/off cooldown
            await rig.until("/Status", 21)
            assert rig.setting("frc") == 1
            await rig.setting_is("frc", 2, timeout=5)
    run(scenario())


def test_a_lost_allowance_stops_at_once_and_so_does_the_flow_stop(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path, min_on_off_s=600, allowance_timeout_s=1.5,
                           announce_s=1) as rig:
            await eco_with_car(rig)
            rig.allow(4000)
            await rig.setting_is("frc", 2)
            await rig.setting_is("frc", 1, timeout=5)  # no allowance for 1.5 s
            assert "lost" in rig.status() or "waiting" in rig.status(), rig.status()
            for _ in range(3):  # the allowance back: it starts again (600 s cooldown!)
                rig.allow(4000)
                await asyncio.sleep(0.5)
            assert rig.setting("frc") == 1
            await rig.until("/Status", 21)  # start charging, after the cooldown
        (tmp_path / "again").mkdir()
        async with charger(mosquitto, tmp_path / "again", min_on_off_s=0) as rig:
            await eco_with_car(rig)
            rig.allow(4000)
            await rig.setting_is("frc", 2)
            wp = rig.wp
            await rig.runtime.stop()  # the flow stops: force state off
            assert wp.state.settings["frc"] == 1
            await eventually(lambda: rig.request("Request") == "0", 3)
    run(scenario())


def test_the_link_lost_while_charging_stops_it_when_back_and_the_request_drops(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path, min_on_off_s=0) as rig:
            await eco_with_car(rig)
            rig.allow(4000)
            await rig.setting_is("frc", 2)
            await eventually(lambda: rig.request("Consumption") != "0", 5)
            await rig.wp.go_away()
            await eventually(lambda: rig.request("Request") == "0", 5)
            assert rig.request("Consumption") == "0"
            await rig.until("/Connected", 0)
            await rig.wp.come_back()
            await rig.setting_is("frc", 1, timeout=15)  # stopped first thing
            await asyncio.sleep(0.3)
            assert rig.setting("frc") == 1  # the old allowance does not start it again
            rig.allow(4000)  # a fresh one does
            await rig.setting_is("frc", 2)
    run(scenario())


def test_manual_mode_is_never_touched_by_the_stop(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path) as rig:
            rig.wp.app_set("frc", 2)
            rig.wp.plug_in()
            await rig.until("/Status", 2)
            rig.allow(0)
            await asyncio.sleep(0.5)
            wp = rig.wp
            await rig.runtime.stop()
            assert wp.state.settings["frc"] == 2
            assert wp.writes == []
    run(scenario())


def test_low_price_charging_nests_with_solar_either_way(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path, min_on_off_s=0, min_phase_switch_s=0,
                           low_price="true", low_price_a=10) as rig:
            await eco_with_car(rig)
            rig.allow(0)
            await rig.until("/Status", 4)
            rig.wp.set_price(5.0)  # below the charger's limit awp 10: 10 A, one phase
            await rig.setting_is("frc", 2)
            assert (rig.setting("psm"), rig.setting("amp")) == (1, 10)
            rig.allow(5000)  # solar gives more: 21 A on three phases
            await rig.setting_is("psm", 2)
            await rig.setting_is("amp", 7)
            rig.allow(0)  # the low price still holds: back to 10 A on one phase
            await rig.setting_is("psm", 1)
            await rig.setting_is("amp", 10)
            rig.wp.set_price(30.0)
            await rig.setting_is("frc", 1)
    run(scenario())


def test_without_low_price_the_chargers_own_low_price_charging_is_left_alone(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path, min_on_off_s=0) as rig:
            rig.wp.app_set("ful", True)  # the charger's own dynamic pricing
            await eco_with_car(rig)
            rig.allow(0)
            rig.wp.set_price(5.0)
            await rig.until("/Status", 2)  # modelStatus 7: it charges by itself
            await asyncio.sleep(0.5)
            assert rig.setting("frc") == 0
            assert rig.wp.state.model_status() == 7
    run(scenario())
