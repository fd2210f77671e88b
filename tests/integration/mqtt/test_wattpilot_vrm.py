"""energy.wattpilot, VRM <-> Wattpilot: the EV charger service shows the simulated charger
(login with PBKDF2 and bcrypt), a change in the Fronius app comes back to VRM, and VRM's
writes go to the charger (manual mode), with the 1/3-phase mapping of the current."""

from __future__ import annotations

from pathlib import Path

from conftest import eventually, run

from .mqttkit import Mosquitto
from .wattpilotkit import charger


def test_vrm_shows_the_charger_and_changes_in_the_app_come_back(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path) as rig:
            assert await rig.value("/Serial") == rig.wp.serial
            assert await rig.value("/Mode") == 0  # lmo 3 Default: manual
            assert await rig.value("/Status") == 0  # no car
            assert await rig.value("/MaxCurrent") == 48.0  # 3 x ama 16
            rig.wp.plug_in(soc=40)  # Default mode, neutral: it charges at 16 A x 3
            await rig.until("/Status", 2)
            await rig.until("/Ac/Power", 16 * 3 * 230.0)
            assert await rig.value("/SetCurrent") == 48.0
            assert await rig.value("/StartStop") == 1
            rig.wp.app_set("amp", 10)
            await rig.until("/SetCurrent", 30.0)
            await rig.until("/Ac/L2/Power", 2300.0)
            rig.wp.app_set("frc", 1)
            await rig.until("/Status", 1)
            assert await rig.value("/StartStop") == 0
            assert await rig.value("/Ac/Power") == 0.0
            rig.wp.app_set("lmo", 4)
            await rig.until("/Mode", 1)
            assert rig.wp.writes == []  # nothing written by the node in manual mode
            rig.wp.unplug()
            await rig.until("/Status", 0)
    run(scenario())


def test_vrm_writes_reach_the_charger_with_the_phase_mapping(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path) as rig:
            rig.wp.plug_in()
            await rig.until("/Status", 2)
            assert await rig.set("/SetCurrent", "d", 10.0) == 0
            await rig.setting_is("psm", 1)
            await rig.setting_is("amp", 10)
            await rig.until("/SetCurrent", 10.0)
            assert await rig.set("/SetCurrent", "d", 30.0) == 0  # three phases at 10 A
            await rig.setting_is("psm", 2)
            await rig.setting_is("amp", 10)
            await rig.until("/SetCurrent", 30.0)
            await rig.until("/Ac/Power", 30 * 230.0)
            assert await rig.set("/SetCurrent", "d", 17.0) == 0  # one phase, 16 A at most
            await rig.setting_is("psm", 1)
            await rig.setting_is("amp", 16)
            assert await rig.set("/StartStop", "i", 0) == 0
            await rig.setting_is("frc", 1)
            await rig.until("/Status", 1)
            assert await rig.set("/StartStop", "i", 1) == 0
            await rig.setting_is("frc", 2)
            await rig.until("/Status", 2)
            assert await rig.set("/Mode", "i", 1) == 0
            await rig.setting_is("lmo", 4)
            await rig.until("/Mode", 1)
            assert await rig.set("/Mode", "i", 0) == 0
            await rig.setting_is("lmo", 3)
            assert await rig.set("/Mode", "i", 7) == 2  # out of range: refused by the service
    run(scenario())


def test_a_flex_logs_in_with_bcrypt_and_a_wrong_password_is_an_error(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path, sim={"devicetype": "wattpilot_flex",
                                                     "serial": "12345678"}) as rig:
            assert await rig.value("/Serial") == "12345678"
            assert rig.flow.runners["wattpilot"].status.level == "ok"
    run(scenario())


def test_a_wrong_password_is_an_error_and_nothing_is_written(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with charger(mosquitto, tmp_path, sim={"password": "another"},
                           wait=False) as rig:
            runner = rig.flow.runners["wattpilot"]
            await eventually(lambda: runner.status.level == "error", 15)
            assert "password" in runner.status.text.lower(), runner.status.text
            assert await rig.value("/Connected") == 0
            assert rig.request("Request") == "0"
            assert rig.wp.writes == []
    run(scenario())
