"""Shipped flow mqtt-temperature, end to end: `esess-flowctl run` on a site file with two
sensors, a real mosquitto, a private dbus-daemon, and a Victron-style client reading the
temperature services as VRM would."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from conftest import run
from dbus_fast.aio import MessageBus
from testkit.dbus import ABSENT, value, wait_for
from testkit.flowctl import Runner, site
from testkit.mosquitto import Mosquitto
from testkit.mqtt import client

from nodes.dbus.daemon import PrivateBus
from nodes.mqtt.broker import Broker

GARDEN = "com.victronenergy.temperature.esESS_MqttTemperature_garden"
CELLAR = "com.victronenergy.temperature.esESS_MqttTemperature_cellar"
STALE_MS = 1500


Scenario = Callable[[Path, Mosquitto, str, MessageBus, Broker], Awaitable[None]]


def test_two_sensors_values_garbage_staleness_and_sigterm(tmp_path: Path) -> None:
    run(with_site(tmp_path, sensors_to_services))


async def with_site(tmp_path: Path, scenario: Scenario) -> None:
    """`scenario` with a mosquitto, a private bus, a client on that bus and the sensors'
    MQTT connection, all taken down afterwards."""
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        with PrivateBus() as address:
            async with client(broker) as sensors:
                bus = await MessageBus(bus_address=address).connect()
                try:
                    await scenario(tmp_path, broker, address, bus, sensors.broker)
                finally:
                    bus.disconnect()
    finally:
        broker.stop()


async def sensors_to_services(tmp_path: Path, broker: Mosquitto, address: str,
                              bus: MessageBus, sensors: Broker) -> None:
    publish = sensors.publish
    path = site(tmp_path, f"""
        state_dir: {tmp_path / 'state'}
        connections:
          mqtt:
            main: {{host: {broker.host}, port: {broker.port}}}
        flows:
          - use: mqtt-temperature
            instance: garden
            vars: {{topic: garden/temperature, humidity_topic: garden/humidity,
                    pressure_topic: garden/pressure, custom_name: Garden,
                    vrm_instance: 1000, temperature_type: 4, stale_after_ms: {STALE_MS},
                    service_name: esESS_MqttTemperature_garden}}
          - use: mqtt-temperature
            instance: cellar
            vars: {{topic: zigbee2mqtt/cellar, json_path: temperature,
                    custom_name: Cellar, vrm_instance: 1001,
                    service_name: esESS_MqttTemperature_cellar}}
    """)
    runner = Runner(path, address)
    await runner.start()

    # both services are on the bus before any reading: disconnected, values invalid
    await wait_for(bus, GARDEN, "/DeviceInstance", lambda v: v != ABSENT)
    await wait_for(bus, CELLAR, "/DeviceInstance", lambda v: v != ABSENT)
    assert await read(bus, GARDEN, "/DeviceInstance", "/CustomName", "/TemperatureType",
                      "/ProductId", "/Connected", "/Temperature") == \
        [1000, "Garden", 4, 65535, 0, None]
    assert await read(bus, CELLAR, "/DeviceInstance", "/CustomName", "/TemperatureType",
                      "/ProductId", "/Mgmt/Connection") == \
        [1001, "Cellar", 2, 65535, "MQTT zigbee2mqtt/cellar"]

    # retained, so they arrive whenever the flow's subscriptions are in place
    publish("garden/temperature", "21.5", retain=True)
    publish("garden/humidity", "55", retain=True)
    publish("garden/pressure", "1013.2", retain=True)
    publish("zigbee2mqtt/cellar", '{"temperature": 12.25, "linkquality": 80}', retain=True)
    await wait_for(bus, GARDEN, "/Pressure", lambda v: v == 1013.2)
    assert await read(bus, GARDEN, "/Temperature", "/Humidity", "/Connected", "/Status") == \
        [21.5, 55, 1, 0]
    await wait_for(bus, CELLAR, "/Temperature", lambda v: v == 12.25)
    assert await read(bus, CELLAR, "/Connected", "/Humidity", "/Pressure") == [1, None, None]

    # garbage is dropped and the flow carries on with the next good reading
    for garbage in ('{"temperature": "warm"}', '{"temperature": null}', "oops", "",
                    '{"humidity": 40}'):
        publish("zigbee2mqtt/cellar", garbage)
    await asyncio.sleep(0.3)
    assert await read(bus, CELLAR, "/Temperature", "/Connected") == [12.25, 1]
    publish("zigbee2mqtt/cellar", '{"temperature": 13.5}')
    await wait_for(bus, CELLAR, "/Temperature", lambda v: v == 13.5)
    assert runner.proc is not None and runner.proc.returncode is None

    # garden falls silent: invalid and disconnected, until its next temperature
    await wait_for(bus, GARDEN, "/Connected", lambda v: v == 0, timeout=STALE_MS / 1000 + 3)
    assert await read(bus, GARDEN, "/Temperature", "/Humidity", "/Pressure", "/Status") == \
        [None, None, None, 1]
    publish("garden/temperature", "22")
    await wait_for(bus, GARDEN, "/Temperature", lambda v: v == 22)
    assert await read(bus, GARDEN, "/Connected", "/Status", "/Humidity") == [1, 0, None]
    assert await value(bus, CELLAR, "/Connected") == 1  # its default stale time is 15 min

    code, out = await runner.stop()
    assert code == 0, out
    assert await value(bus, GARDEN, "/Connected") == ABSENT
    assert await value(bus, CELLAR, "/Connected") == ABSENT
    # the change is logged once, readings are not logged at all
    assert out.count("'temperature' is older than") == 1, out
    # (without each line's time stamp: 23:05:13.527 holds "13.5")
    logged = "\n".join(line.split(" ", 2)[-1] for line in out.splitlines())
    assert "13.5" not in logged and "1013.2" not in logged, out


async def read(bus: MessageBus, service: str, *paths: str) -> list[object]:
    return [await value(bus, service, p) for p in paths]


def test_a_broker_named_localhost_leaves_the_runtime_on_one_thread(tmp_path: Path) -> None:
    """The broker's host name is looked up in a thread (asyncio's getaddrinfo); the
    runtime's executor lets it end, so the running runtime has its loop's thread only."""
    run(with_site(tmp_path, one_thread))


async def one_thread(tmp_path: Path, broker: Mosquitto, address: str, bus: MessageBus,
                     sensors: Broker) -> None:
    path = site(tmp_path, f"""
        state_dir: {tmp_path / 'state'}
        connections:
          mqtt:
            main: {{host: localhost, port: {broker.port}}}
        flows:
          - use: mqtt-temperature
            instance: garden
            vars: {{topic: garden/temperature, service_name: esESS_MqttTemperature_garden}}
    """)
    runner = Runner(path, address)
    await runner.start()
    sensors.publish("garden/temperature", "21.5", retain=True)
    await wait_for(bus, GARDEN, "/Temperature", lambda v: v == 21.5)
    assert runner.proc is not None
    assert threads_of(runner.proc.pid) == 1
    code, out = await runner.stop()
    assert code == 0, out


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no thread count for {pid}")
