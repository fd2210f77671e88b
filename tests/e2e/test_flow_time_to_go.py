"""Shipped flow time-to-go, end to end: `esess-flowctl run` on a site file, the simulated
Venus OS on a private dbus-daemon, a real mosquitto as both the GX broker and the main
broker, and a battery service that accepts /TimeToGo writes."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import eventually, run
from testkit.flowctl import Runner, site
from testkit.mosquitto import Mosquitto
from testkit.mqtt import Listener, client

from nodes.dbus.daemon import PrivateBus
from nodes.dbus.presets import Writable
from sim import EnergyModel
from sim.venus import SimService, SimVenus

CAPACITY_WH = 28000
PORTAL = "c0619ab1b2c3"
VRM_TOPIC = f"N/{PORTAL}/system/0/Dc/Battery/TimeToGo"
MAIN_TOPIC = "es-ESS/TimeToGoCalculator/TimeToGo"
LYNX = "com.victronenergy.battery.lynx"


def hand(power: float, soc: float, limit: float) -> int | None:
    """The reference's formula, written out once more by hand."""
    if soc == 0 or power == 0:
        return None
    if power < 0:
        return round(((soc - limit) / 100 * CAPACITY_WH) / abs(power) * 3600)
    return round(((100 - soc) / 100 * CAPACITY_WH) / power * 3600)


async def shows(listener: Listener, expected: int | None) -> None:
    """Both topics carry `expected`: {"value": n} on the N/ topic, n on the main one."""
    def both() -> bool:
        vrm, main = listener.last(VRM_TOPIC), listener.last(MAIN_TOPIC)
        return (vrm is not None and json.loads(vrm) == {"value": expected}
                and main is not None and json.loads(main) == expected)
    try:
        await eventually(both, timeout=5)
    except AssertionError:
        raise AssertionError(f"wanted {expected}: N/ topic {listener.last(VRM_TOPIC)!r}, "
                             f"main {listener.last(MAIN_TOPIC)!r}") from None


def test_time_to_go_matches_the_hand_computation_and_reaches_vrm_mqtt_and_the_battery(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Mosquitto(tmp_path)
        broker.start()
        try:
            with PrivateBus() as address:
                async with (SimVenus(EnergyModel(), address=address) as venus,
                            client(broker) as listener):
                    lynx = SimService(LYNX, writable={"/TimeToGo": Writable("any")})
                    lynx.update({"/Soc": 60.0, "/TimeToGo": None})
                    await lynx.start(address)
                    listener.listen(VRM_TOPIC)
                    listener.listen(MAIN_TOPIC)
                    path = site(tmp_path, f"""
                        state_dir: {tmp_path / 'state'}
                        connections:
                          mqtt:
                            main: {{host: {broker.host}, port: {broker.port}}}
                            local: {{host: {broker.host}, port: {broker.port}}}
                        flows:
                          - use: time-to-go
                            vars: {{capacity_wh: {CAPACITY_WH}, portal_id: {PORTAL},
                                    interval_ms: 200, battery_service: {LYNX}}}
                    """)
                    system = venus.system
                    system.update({"/Dc/Battery/Power": -1400.0, "/Dc/Battery/Soc": 60.0,
                                   "/Control/ActiveSocLimit": 20.0})
                    runner = Runner(path, address)
                    await runner.start()

                    # discharging 1400 W at 60 % down to 20 % of 28 kWh: 11.2 kWh, 8 h
                    assert hand(-1400, 60, 20) == 28800
                    await shows(listener, 28800)
                    await eventually(lambda: lynx.values.get("/TimeToGo") == 28800, 5)

                    # charging 2000 W from 75 %: 7 kWh to go, 3.5 h
                    system.update({"/Dc/Battery/Power": 2000.0, "/Dc/Battery/Soc": 75.0})
                    assert hand(2000, 75, 20) == 12600
                    await shows(listener, 12600)
                    await eventually(lambda: lynx.values.get("/TimeToGo") == 12600, 5)

                    # an odd case: 333 W discharging from 47.5 % to a 10 % limit
                    system.update({"/Dc/Battery/Power": -333.0, "/Dc/Battery/Soc": 47.5,
                                   "/Control/ActiveSocLimit": 10.0})
                    await shows(listener, hand(-333, 47.5, 10))

                    # below the limit while still discharging: nothing left, not negative
                    system.update({"/Dc/Battery/Soc": 8.0})
                    await shows(listener, 0)

                    # no current, SoC 0, an invalid SoC: invalid, and the flow keeps going
                    system.update({"/Dc/Battery/Power": 0.0, "/Dc/Battery/Soc": 50.0})
                    await shows(listener, None)
                    system.update({"/Dc/Battery/Power": -500.0, "/Dc/Battery/Soc": 0.0})
                    await shows(listener, None)
                    system.update({"/Dc/Battery/Soc": None})
                    await shows(listener, None)
                    system.update({"/Dc/Battery/Soc": 50.0})
                    await shows(listener, hand(-500, 50, 10))

                    # a system without ESS has no active SoC limit: down to 0 %
                    system.update({"/Control/ActiveSocLimit": None})
                    await shows(listener, hand(-500, 50, 0))

                    # systemcalc gone: invalid, not the last number
                    await system.close()
                    await shows(listener, None)
                    assert listener.last(MAIN_TOPIC) == "null"

                    # unknown is written as invalid (a moment after MQTT has it)
                    await eventually(lambda: lynx.values["/TimeToGo"] is None, 5)
                    writes = [v for p, v in lynx.writes if p == "/TimeToGo"]
                    assert writes[:2] == [28800, 12600]
                    assert all(v is None or (isinstance(v, int) and v >= 0) for v in writes)
                    system = SimService("com.victronenergy.system")  # systemcalc is back
                    system.update({"/Dc/Battery/Power": 1000.0, "/Dc/Battery/Soc": 90.0,
                                   "/Control/ActiveSocLimit": 10.0})
                    await system.start(address)
                    await eventually(lambda: lynx.values["/TimeToGo"] == hand(1000, 90, 10), 5)
                    code, out = await runner.stop()
                    assert code == 0, out
                    assert "Traceback" not in out
                    # stopped: the battery's time to go is made invalid, not left standing
                    assert lynx.writes[-1] == ("/TimeToGo", None)
                    assert lynx.values["/TimeToGo"] is None
                    await system.close()
                    await lynx.close()
        finally:
            broker.stop()

    run(scenario())
