"""Shipped flow mqtt-pvinverter, end to end: `esess-flowctl run` on a site file, a real
mosquitto, a private dbus-daemon, and a Victron-style client reading the PV inverter
services as VRM and systemcalc would."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, eventually, run
from testkit.dbus import ABSENT, VictronClient, plain, wait_for
from testkit.flowctl import Runner, site
from testkit.mosquitto import Mosquitto
from testkit.mqtt import client

from nodes.dbus.daemon import PrivateBus
from nodes.mqtt.broker import Broker

ROOF = "com.victronenergy.pvinverter.esESS_MqttPVInverter_roof"
BALCONY = "com.victronenergy.pvinverter.esESS_MqttPVInverter_balcony"
GARAGE = "com.victronenergy.pvinverter.esESS_MqttPVInverter_garage"
STALE_MS = 1500

# a three-phase inverter with every topic, a micro inverter on L2 with power and energy,
# and a three-phase one without total topics
FLOWS = """
  - use: mqtt-pvinverter
    instance: roof
    vars: {{l1_power_topic: roof/L1/power, l2_power_topic: roof/L2/power,
            l3_power_topic: roof/L3/power, l1_voltage_topic: roof/L1/voltage,
            l2_voltage_topic: roof/L2/voltage, l3_voltage_topic: roof/L3/voltage,
            l1_current_topic: roof/L1/current, l2_current_topic: roof/L2/current,
            l3_current_topic: roof/L3/current, l1_energy_topic: roof/L1/energy,
            l2_energy_topic: roof/L2/energy, l3_energy_topic: roof/L3/energy,
            total_power_topic: roof/power, total_energy_topic: roof/energy,
            position: 2, vrm_instance: 62, custom_name: Roof, max_power_w: 10000,
            stale_after_ms: {stale_ms}, service_name: esESS_MqttPVInverter_roof}}
  - use: mqtt-pvinverter
    instance: balcony
    vars: {{l2_power_topic: solar/1161/0/power, l2_energy_topic: solar/1161/0/yieldtotal,
            position: 1, vrm_instance: 63, stale_after_ms: {stale_ms},
            service_name: esESS_MqttPVInverter_balcony}}
  - use: mqtt-pvinverter
    instance: garage
    vars: {{l1_power_topic: garage/L1/power, l2_power_topic: garage/L2/power,
            l3_power_topic: garage/L3/power, l1_energy_topic: garage/L1/energy,
            l3_energy_topic: garage/L3/energy, vrm_instance: 64,
            stale_after_ms: {stale_ms}, service_name: esESS_MqttPVInverter_garage}}
"""

ROOF_READING = {  # retained, so they arrive whenever the subscriptions are in place
    "roof/L1/power": "1000.5", "roof/L2/power": "1100", "roof/L3/power": "1200.25",
    "roof/L1/voltage": "230.1", "roof/L2/voltage": "231.2", "roof/L3/voltage": "229.8",
    "roof/L1/current": "4.35", "roof/L2/current": "4.76", "roof/L3/current": "5.22",
    "roof/L1/energy": "1234.5", "roof/L2/energy": "1300.25", "roof/L3/energy": "1400.75",
    "roof/power": "3290.5", "roof/energy": "3940.125",
}


@dataclass
class Site:
    devices: Broker
    victron: VictronClient
    runner: Runner


@contextlib.asynccontextmanager
async def running(tmp_path: Path, stale_ms: int = 30000) -> AsyncIterator[Site]:
    """mosquitto, a private bus, the runtime on FLOWS, a device client and a Victron client;
    the runtime is stopped with SIGTERM at the end and must exit 0."""
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        with PrivateBus() as address:
            async with client(broker) as devices, VictronClient(address) as victron:
                path = site(tmp_path, f"""
                    state_dir: {tmp_path / 'state'}
                    connections:
                      mqtt:
                        main: {{host: {broker.host}, port: {broker.port}}}
                    flows:""" + FLOWS.format(stale_ms=stale_ms).replace("\n", "\n" + " " * 20))
                runner = Runner(path, address)
                await runner.start()
                await wait_for(victron.bus, ROOF, "/DeviceInstance", lambda v: v != ABSENT)
                await wait_for(victron.bus, BALCONY, "/DeviceInstance", lambda v: v != ABSENT)
                yield Site(devices.broker, victron, runner)
                code, out = await runner.stop()
                assert code == 0, out
                assert not await victron.has_owner(ROOF)
    finally:
        broker.stop()


async def read(victron: VictronClient, service: str, *paths: str) -> list[object]:
    return [await victron.value(service, p) for p in paths]


async def settle(victron: VictronClient, service: str, expected: dict[str, object],
                 timeout: float = 10) -> None:
    """Wait until every path has its expected value (values take one to three hops of the
    flow, and retained topics arrive in any order); AssertionError naming the first that
    does not."""
    for path, want in expected.items():
        await wait_for(victron.bus, service, path, lambda got, want=want: got == want,
                       timeout=timeout)


def seen(victron: VictronClient, path: str, since: int = 0) -> list[object]:
    """Every value the followed services signalled for `path` (from signal number `since`
    on), in order."""
    values = []
    for msg in victron.signals[since:]:
        if msg.member == "PropertiesChanged" and msg.path == path:
            values.append(plain(msg.body[0]["Value"]))
        elif msg.member == "ItemsChanged" and path in msg.body[0]:
            values.append(plain(msg.body[0][path]["Value"]))
    return values


async def signature(victron: VictronClient, service: str, path: str) -> str:
    return str((await victron.get_value(service, path)).body[0].signature)


def test_three_phases_per_phase_values_and_the_total_topics(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as s:
            v = s.victron
            await v.follow(ROOF)
            # on the bus before any reading: disconnected, values invalid
            assert await read(v, ROOF, "/DeviceInstance", "/CustomName", "/Position",
                              "/ProductId", "/Connected", "/StatusCode", "/Ac/Power",
                              "/Ac/L1/Power", "/Ac/MaxPower", "/Mgmt/Connection") == \
                [62, "Roof", 2, 0xA144, 0, 10, None, None, 10000, "MQTT main"]

            for topic, payload in ROOF_READING.items():
                s.devices.publish(topic, payload, retain=True)
            await settle(v, ROOF, {
                "/Ac/L1/Power": 1000.5, "/Ac/L2/Power": 1100, "/Ac/L3/Power": 1200.25,
                "/Ac/L1/Voltage": 230.1, "/Ac/L2/Voltage": 231.2, "/Ac/L3/Voltage": 229.8,
                "/Ac/L1/Current": 4.35, "/Ac/L2/Current": 4.76, "/Ac/L3/Current": 5.22,
                "/Ac/L1/Energy/Forward": 1234.5, "/Ac/L2/Energy/Forward": 1300.25,
                "/Ac/L3/Energy/Forward": 1400.75,
                # the total topics win over the sums of the phases (3301.25 W, 3935.5 kWh)
                "/Ac/Power": 3290.5, "/Ac/Energy/Forward": 3940.125,
                "/Connected": 1, "/StatusCode": 7})
            assert await signature(v, ROOF, "/Ac/Power") == "d"
            assert await v.text(ROOF, "/Ac/L1/Voltage") == "230.1V"

            # new phase values leave the totals alone (not even for a moment); a new total
            # power replaces the old one
            mark = len(v.signals)
            s.devices.publish("roof/L1/power", "1001")
            s.devices.publish("roof/L2/energy", "1300.5")
            s.devices.publish("roof/power", "2990")
            await settle(v, ROOF, {"/Ac/L1/Power": 1001, "/Ac/L2/Energy/Forward": 1300.5,
                                   "/Ac/Power": 2990})
            await eventually(lambda: seen(v, "/Ac/Power", since=mark)[-1:] == [2990])
            assert seen(v, "/Ac/Power", since=mark) == [2990]
            assert seen(v, "/Ac/Energy/Forward", since=mark) == []
            assert await v.value(ROOF, "/Ac/Energy/Forward") == 3940.125
            # the other inverter saw none of it
            assert await read(v, BALCONY, "/Connected", "/Ac/Power") == [0, None]

    run(scenario())


def test_single_phase_on_l2_with_power_and_energy_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as s:
            v = s.victron
            s.devices.publish("solar/1161/0/power", "612", retain=True)
            s.devices.publish("solar/1161/0/yieldtotal", "845.125", retain=True)
            await settle(v, BALCONY, {
                "/Ac/L2/Power": 612, "/Ac/L2/Energy/Forward": 845.125, "/Ac/Power": 612,
                "/Ac/Energy/Forward": 845.125, "/Connected": 1, "/StatusCode": 7})
            assert await read(v, BALCONY, "/Position", "/DeviceInstance", "/CustomName") == \
                [1, 63, ""]
            # the phases and values it has no topic for stay invalid
            assert await read(v, BALCONY, "/Ac/L1/Power", "/Ac/L3/Power", "/Ac/L2/Voltage",
                              "/Ac/L2/Current", "/Ac/L1/Energy/Forward", "/Ac/MaxPower") == \
                [None] * 6
            # the total is the sum of the phases present, a Double even from "612"
            assert await signature(v, BALCONY, "/Ac/Power") == "d"
            assert await signature(v, BALCONY, "/Ac/Energy/Forward") == "d"

            s.devices.publish("solar/1161/0/power", "598.5")
            await wait_for(v.bus, BALCONY, "/Ac/Power", lambda x: x == 598.5)
            assert await v.value(BALCONY, "/Ac/L2/Power") == 598.5

    run(scenario())


def test_an_energy_counter_at_zero_or_garbage_is_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as s:
            v = s.victron
            await v.follow(BALCONY)
            s.devices.publish("solar/1161/0/yieldtotal", "845.125")
            await settle(v, BALCONY, {"/Ac/Energy/Forward": 845.125})
            # a DTU that has not reached the inverter yet says 0: VRM's counter must not
            # see a reset; garbage is dropped too
            for bad in ("0", "0.0", "-1", "much", ""):
                s.devices.publish("solar/1161/0/yieldtotal", bad)
            s.devices.publish("solar/1161/0/yieldtotal", "845.5")  # after them, same topic
            await settle(v, BALCONY, {"/Ac/Energy/Forward": 845.5})
            await eventually(lambda: seen(v, "/Ac/L2/Energy/Forward")[-1:] == [845.5])
            assert seen(v, "/Ac/L2/Energy/Forward") == [845.125, 845.5]
            await eventually(lambda: seen(v, "/Ac/Energy/Forward")[-1:] == [845.5])
            assert seen(v, "/Ac/Energy/Forward") == [845.125, 845.5]
            assert await v.value(BALCONY, "/Connected") == 1

    run(scenario())


def test_stale_values_go_invalid_and_disconnected_until_the_next_reading(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, stale_ms=STALE_MS) as s:
            v = s.victron
            for topic, payload in ROOF_READING.items():
                s.devices.publish(topic, payload)
            await settle(v, ROOF, {"/Ac/Energy/Forward": 3940.125, "/Connected": 1})

            # silent for longer than stale_after_ms: every value invalid, /Connected 0
            paths = ["/Ac/Power", "/Ac/Energy/Forward",
                     *(f"/Ac/L{n}/{q}" for n in (1, 2, 3)
                       for q in ("Power", "Voltage", "Current", "Energy/Forward"))]
            await settle(v, ROOF, {"/Connected": 0, "/StatusCode": 10} |
                         dict.fromkeys(paths, None), timeout=STALE_MS / 1000 + 3)
            assert await v.text(ROOF, "/Ac/Power") == "---"

            # the next reading brings its value and /Connected back; the total power
            # stays invalid until its own topic sends again
            s.devices.publish("roof/L1/power", "800")
            await settle(v, ROOF, {"/Ac/L1/Power": 800, "/Connected": 1, "/StatusCode": 7})
            assert await read(v, ROOF, "/Ac/Power", "/Ac/L2/Power") == [None, None]
            s.devices.publish("roof/power", "2400")
            await settle(v, ROOF, {"/Ac/Power": 2400})

    run(scenario())


def test_without_total_topics_the_totals_are_the_sums_of_the_phases(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as s:
            v = s.victron
            for topic, payload in {"garage/L1/power": "100", "garage/L2/power": "200.5",
                                   "garage/L3/power": "300", "garage/L1/energy": "10.25",
                                   "garage/L3/energy": "20.5"}.items():
                s.devices.publish(topic, payload, retain=True)
            await settle(v, GARAGE, {"/Ac/L2/Power": 200.5, "/Ac/Power": 600.5,
                                     "/Ac/Energy/Forward": 30.75, "/Connected": 1})
            assert await v.value(GARAGE, "/Ac/L2/Energy/Forward") is None
            s.devices.publish("garage/L2/power", "-2")  # standby draw is passed on as it is
            await settle(v, GARAGE, {"/Ac/Power": 398})

    run(scenario())


def test_the_sum_is_invalid_while_one_phase_is_stale(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, stale_ms=STALE_MS) as s:
            v = s.victron

            l2 = ["200"]  # until it falls silent (sent again and again: the runtime may
            # still be subscribing when the first ones go out)

            async def keep_sending() -> None:
                while True:
                    s.devices.publish("garage/L1/power", "100")
                    if l2:
                        s.devices.publish("garage/L2/power", l2[0])
                    s.devices.publish("garage/L3/power", "300")
                    await asyncio.sleep(0.2)  # the device's publish interval

            device = asyncio.create_task(keep_sending())
            try:
                await settle(v, GARAGE, {"/Ac/Power": 600})
                l2.clear()
                # L2 falls silent: its path and the sum go invalid, the rest stays
                await settle(v, GARAGE, {"/Ac/L2/Power": None, "/Ac/Power": None},
                             timeout=STALE_MS / 1000 + 3)
                assert await read(v, GARAGE, "/Ac/L1/Power", "/Ac/L3/Power", "/Connected",
                                  "/StatusCode") == [100, 300, 1, 7]
                s.devices.publish("garage/L2/power", "250")
                await settle(v, GARAGE, {"/Ac/Power": 650, "/Ac/L2/Power": 250})
            finally:
                device.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await device

    run(scenario())


def validate(tmp_path: Path, flows: str) -> subprocess.CompletedProcess[str]:
    path = site(tmp_path, "connections: {mqtt: {main: {host: broker.lan}}}\nflows:" + flows)
    return subprocess.run([sys.executable, str(ROOT / "esess-flowctl"), "validate", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_validate_accepts_the_shipped_flow_with_example_vars(tmp_path: Path) -> None:
    done = validate(tmp_path, FLOWS.format(stale_ms=5000))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mqtt-pvinverter@roof" in done.stdout and "mqtt-pvinverter@balcony" in done.stdout


@pytest.mark.parametrize(("var", "bad"), [("position", "3"), ("l2_power_topic", "[a, b]")])
def test_validate_refuses_a_bad_var_at_its_line(tmp_path: Path, var: str, bad: str) -> None:
    done = validate(tmp_path, f"""
  - use: mqtt-pvinverter
    vars:
      l1_power_topic: pv/power
      {var}: {bad}
""")
    assert done.returncode == 1, done.stdout
    assert "site.yaml:6:" in done.stdout + done.stderr, done.stdout + done.stderr
    assert f"var '{var}'" in done.stdout + done.stderr
