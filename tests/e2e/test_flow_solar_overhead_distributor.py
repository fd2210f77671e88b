"""Shipped flow solar-overhead-distributor, end to end: `esess-flowctl run` on a site
file, the simulated Venus OS on a private dbus-daemon (its settings service too), a real
mosquitto, and consumers that speak the request protocol over MQTT. What a consumer
sees is read on MQTT; what VRM sees (fake BMS, status service) through D-Bus. SIGTERM
and kill -9 (with the guardian) end with every allowance 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

from conftest import eventually, run
from dbus_fast.aio import MessageBus
from testkit.dbus import ABSENT, value, wait_for
from testkit.flowctl import Runner, site
from testkit.guarded import Guarded, plugin_path
from testkit.mosquitto import Mosquitto
from testkit.mqtt import Listener, client

from nodes.dbus.daemon import PrivateBus
from sim import EnergyModel
from sim.venus import SimVenus

ROOT = "es-ESS/SolarOverheadDistributor"
STATUS = "com.victronenergy.settings.esESS_SolarOverheadDistributor"
GUARD_KEY = "solar-overhead-distributor/distributor/allowance-"
RESERVATION = "com.victronenergy.battery.esESS_SolarOverheadBatteryReservation"


def bms(part: str) -> str:
    return f"com.victronenergy.battery.esESS_SolarOverheadConsumer_{part}"


def publish_request(mqtt: Listener, key: str, **fields: object) -> None:
    """As a scripted consumer: retained, so a restarted runtime learns it again."""
    for name, v in fields.items():
        text = str(v).lower() if isinstance(v, bool) else str(v)
        mqtt.broker.publish(f"{ROOT}/Requests/{key}/{name}", text, qos=1, retain=True)


def allowance(mqtt: Listener, key: str) -> float | None:
    last = mqtt.last(f"{ROOT}/Requests/{key}/Allowance")
    return None if last is None else float(last)


def site_text(tmp_path: Path, broker: Mosquitto, cycle_s: float = 60) -> str:
    return f"""
        state_dir: {tmp_path / 'state'}
        connections:
          mqtt: {{main: {{host: {broker.host}, port: {broker.port}}}}}
        flows:
          - use: solar-overhead-distributor
            vars: {{reservation: "3000 - 25 * SOC", cycle_s: {cycle_s}}}
    """


@contextlib.asynccontextmanager
async def gx(tmp_path: Path) -> AsyncIterator[tuple[Mosquitto, str, SimVenus, MessageBus]]:
    """mosquitto, a private bus with the simulated Venus OS (export 3 kW, SoC 80 %:
    reservation 1000 W) and a client connection to it."""
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        with PrivateBus() as address:
            async with SimVenus(EnergyModel(), address=address) as venus:
                venus.system.update({"/Ac/Grid/L1/Power": -3000.0, "/Ac/Grid/L2/Power": None,
                                     "/Ac/Grid/L3/Power": None, "/Dc/Battery/Power": 0.0,
                                     "/Dc/Battery/Soc": 80.0})
                bus = MessageBus(bus_address=address)
                await bus.connect()
                try:
                    yield broker, address, venus, bus
                finally:
                    bus.disconnect()
    finally:
        broker.stop()


def test_consumers_get_their_share_and_vrm_shows_fake_bms_and_calculations(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async with gx(tmp_path) as (broker, address, _, bus), \
                client(broker, "consumers") as mqtt:
            mqtt.listen(f"{ROOT}/#")
            publish_request(mqtt, "EV", IsScriptedConsumer=True, IsAutomatic=True,
                            CustomName="EV", Request=3680, Minimum=1380, StepSize=230,
                            Priority=35, VRMInstanceID=1201, Consumption=0)
            publish_request(mqtt, "Pool heater", IsScriptedConsumer=True, IsAutomatic=True,
                            CustomName="Pool heater", Request=1000, StepSize=1000,
                            Priority=40, VRMInstanceID=1202, Consumption=0)
            runner = Runner(site(tmp_path, site_text(tmp_path, broker)), address)
            await runner.start()
            await eventually(lambda: allowance(mqtt, "EV") is not None and
                             allowance(mqtt, "Pool heater") is not None, timeout=15)
            ev, heater = allowance(mqtt, "EV"), allowance(mqtt, "Pool heater")
            # EV: 1380 (< 3000 - 1000), then 230 steps while < what is left - 1000
            assert ev == 1380 + 230 * 2 and heater == 0, (ev, heater)
            # the explanation comes from another publisher of the flow: maybe a bit later
            await eventually(lambda: "reservation 1000 W" in (
                mqtt.last(f"{ROOT}/Requests/Pool heater/Explanation") or ""), timeout=5)
            # VRM: the calculations and a fake BMS per consumer
            await wait_for(bus, STATUS, "/Calculations/OverheadAvailable",
                           lambda v: v == 3000.0)
            assert await value(bus, STATUS, "/Calculations/Battery/Reservation") == 1000.0
            assert await value(bus, STATUS, "/Calculations/Grid/L2/Power") is None
            await wait_for(bus, RESERVATION, "/CustomName",
                           lambda v: v == "Battery Charge Reservation: 1000W")
            publish_request(mqtt, "EV", Consumption=1840)
            await wait_for(bus, bms("EV"), "/Dc/0/Power", lambda v: v == 1840.0)
            assert await value(bus, bms("EV"), "/Soc") == 50.0
            assert await value(bus, bms("EV"), "/CustomName") == "EV ☼ @ 3680W"
            assert await value(bus, bms("EV"), "/DeviceInstance") == 1201
            heater_bms = bms("Pool_20heater")
            assert await value(bus, heater_bms, "/CustomName") == "Pool heater ☼ @ 1000W"
            publish_request(mqtt, "Pool heater", IsAutomatic=False)
            await wait_for(bus, heater_bms, "/CustomName", lambda v: v == "Pool heater ◌")
            # the heater leaves (its retained topics cleared): its fake BMS goes
            for name in ("IsScriptedConsumer", "IsAutomatic", "CustomName", "Request",
                         "StepSize", "Priority", "VRMInstanceID", "Consumption"):
                mqtt.broker.publish(f"{ROOT}/Requests/Pool heater/{name}", "", qos=1,
                                    retain=True)
            try:
                await wait_for(bus, heater_bms, "/CustomName", lambda v: v == ABSENT)
            except AssertionError:
                raise AssertionError((await runner.stop())[1]) from None
            assert allowance(mqtt, "Pool heater") == 0
            code, out = await runner.stop()
            assert code == 0, out
            assert "Traceback" not in out, out
    run(scenario())


def test_sigterm_sets_every_allowance_to_zero_within_a_second(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with gx(tmp_path) as (broker, address, _, _bus), \
                client(broker, "consumers") as mqtt:
            mqtt.listen(f"{ROOT}/+/+/Allowance")
            publish_request(mqtt, "a", IsAutomatic=True, Request=500, StepSize=500)
            publish_request(mqtt, "b", IsAutomatic=True, Request=500, StepSize=500)
            runner = Runner(site(tmp_path, site_text(tmp_path, broker)), address)
            await runner.start()
            await eventually(lambda: allowance(mqtt, "a") == 500 and
                             allowance(mqtt, "b") == 500, timeout=15)
            assert runner.proc is not None
            runner.proc.send_signal(signal.SIGTERM)
            start = time.monotonic()
            await eventually(lambda: allowance(mqtt, "a") == 0 and allowance(mqtt, "b") == 0,
                             timeout=1.0)
            took = time.monotonic() - start
            assert runner.proc.stdout is not None
            out = (await asyncio.wait_for(runner.proc.stdout.read(), 15)).decode()
            assert await asyncio.wait_for(runner.proc.wait(), 15) == 0, out
            assert took < 1.0, out
    run(scenario())


def test_kill_9_the_guardian_publishes_zero_to_every_consumer(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with gx(tmp_path) as (broker, address, _, _bus), \
                client(broker, "consumers") as mqtt:
            mqtt.listen(f"{ROOT}/+/+/Allowance")
            publish_request(mqtt, "a", IsAutomatic=True, Request=500, StepSize=500)
            publish_request(mqtt, "b", IsAutomatic=True, Request=800, StepSize=400)
            path = site(tmp_path, site_text(tmp_path, broker))
            async with Guarded(path, address=address, state_dir=tmp_path / "state",
                               plugins=plugin_path(tmp_path / "plugins")) as g:
                first = await g.runtime_pid()
                await eventually(lambda: allowance(mqtt, "a") == 500 and
                                 allowance(mqtt, "b") == 800, timeout=15)
                for key in ("a", "b"):
                    await g.wait_for(f"holding for {GUARD_KEY}{key}: MQTT", timeout=5)
                os.kill(first, signal.SIGKILL)
                await eventually(lambda: allowance(mqtt, "a") == 0 and
                                 allowance(mqtt, "b") == 0, timeout=5)
                await g.wait_for(f"{GUARD_KEY}a: applied MQTT")
                await g.wait_for(f"{GUARD_KEY}b: applied MQTT")
                # the new runtime grants again from the retained requests
                await g.runtime_pid(other_than=first)
                await eventually(lambda: allowance(mqtt, "a") == 500, timeout=15)
                assert await g.stop() == 0
            assert allowance(mqtt, "a") == 0 and allowance(mqtt, "b") == 0
    run(scenario())


def test_a_runtime_restart_keeps_the_energy_counted(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with gx(tmp_path) as (broker, address, _, _bus), \
                client(broker, "consumers") as mqtt:
            mqtt.listen(f"{ROOT}/Requests/+/Energy/#")
            publish_request(mqtt, "heater", IsAutomatic=True, Request=1000, StepSize=1000,
                            Consumption=36000)  # 10 Wh per second
            path = site(tmp_path, site_text(tmp_path, broker, cycle_s=0.5))

            def total() -> float:
                return float(mqtt.last(f"{ROOT}/Requests/heater/Energy/energyTotal") or 0)

            for _ in range(2):
                runner = Runner(path, address)
                await runner.start()
                before = total()
                await eventually(lambda b=before: total() >= b + 10, timeout=10)
                await asyncio.sleep(0.3)
                code, out = await runner.stop()
                assert code == 0, out
            assert total() >= 20
            assert float(mqtt.last(f"{ROOT}/Requests/heater/Energy/energyToday") or 0) \
                == total()  # one day: today is the total (not the other way round)
    run(scenario())
