"""Shipped flows switched-consumer-http and switched-consumer-mqtt, end to end:
`esess-flowctl run` on a site file with one instance of each, a real mosquitto, a
simulated Shelly 1PM relay and a simulated MQTT heater; a test client plays the
distributor. SIGTERM switches both off within a second, min on time or not."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from conftest import eventually, run
from testkit.flowctl import site
from testkit.guarded import Guarded, plugin_path
from testkit.mosquitto import Mosquitto
from testkit.mqtt import client
from testkit.process import RuntimeProcess

from sim import EnergyModel, ModelParams
from sim.devices import ShellyRelayGen1
from sim.devices.mqtt_consumer import MqttConsumer

R = "es-ESS/SolarOverheadDistributor/Requests/"


def test_both_consumers_follow_the_allowance_and_sigterm_switches_them_off(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Mosquitto(tmp_path)
        broker.start()
        model = EnergyModel(ModelParams(seed=3))
        try:
            async with client(broker, "distributor") as distributor, \
                    ShellyRelayGen1(model, name="boiler", power_w=2000.0) as relay, \
                    MqttConsumer(model, port=broker.port, name="heater",
                                 power_w=750.0) as heater:
                await heater.wait_connected()
                distributor.listen(R + "#")
                path = site(tmp_path, f"""
                    state_dir: {tmp_path / 'state'}
                    connections:
                      mqtt:
                        main: {{host: {broker.host}, port: {broker.port}}}
                    flows:
                      - use: switched-consumer-http
                        instance: boiler
                        vars: {{key: boiler, custom_name: Boiler, request_w: 2000,
                                vrm_instance: 1010, min_on_s: 600, min_off_s: 0,
                                on_url: "{relay.url}/relay/0?turn=on",
                                off_url: "{relay.url}/relay/0?turn=off",
                                status_url: "{relay.url}/status",
                                on_keyword_regex: '"ison":\\s*true',
                                power_extract_regex: '"power":\\s*([0-9.]+)',
                                status_interval_s: 1}}
                      - use: switched-consumer-mqtt
                        instance: heater
                        vars: {{key: heater, custom_name: Heater, request_w: 750,
                                priority: 40, min_on_s: 600, min_off_s: 0,
                                on_topic: sim/heater/set, on_value: "on",
                                off_topic: sim/heater/set, off_value: "off",
                                status_topic: sim/heater/state, on_keyword_regex: ^on$}}
                """)
                runtime = RuntimeProcess(path, tmp_path)
                await runtime.start()
                try:
                    # Consumption is the last field of an announcement
                    await runtime.until(lambda: distributor.last(R + "heater/Consumption")
                                        == "0", 15, "the heater's request")
                    await runtime.until(lambda: distributor.last(R + "boiler/Consumption")
                                        == "0", 5, "the boiler's request")
                    assert distributor.last(R + "heater/Priority") == "40"
                    assert distributor.last(R + "boiler/IsHttpConsumer") == "true"
                    assert distributor.last(R + "boiler/StepSize") == "2000"
                    assert distributor.last(R + "heater/IsMqttConsumer") == "true"
                    distributor.broker.publish(R + "boiler/Allowance", "2000", qos=1)
                    distributor.broker.publish(R + "heater/Allowance", "750", qos=1)
                    await runtime.until(lambda: relay.load.on and heater.load.on, 5,
                                        "both consumers on")
                    await runtime.until(
                        lambda: distributor.last(R + "boiler/Consumption") == "2000"
                        and distributor.last(R + "heater/Consumption") == "750", 5,
                        "the consumption of both")
                    sent = time.monotonic()
                    assert runtime.proc is not None
                    runtime.proc.send_signal(signal.SIGTERM)
                    await eventually(lambda: not relay.load.on and not heater.load.on, 1.0)
                    assert time.monotonic() - sent < 1.0
                    assert await runtime.wait() == 0, runtime.output()
                    assert "safe state FAILED" not in runtime.output()
                finally:
                    if runtime.running():
                        runtime.kill()
        finally:
            broker.stop()

    run(scenario())


def test_kill_9_of_the_runtime_the_guardian_switches_the_relay_off(tmp_path: Path) -> None:
    """With the relay's basic auth: the guardian has the password (sealed on disk)."""
    password = "relay-Pa55-word"

    async def scenario() -> None:
        broker = Mosquitto(tmp_path)
        broker.start()
        try:
            async with client(broker, "distributor") as distributor, \
                    ShellyRelayGen1(EnergyModel(ModelParams(seed=3)),
                                    password=password) as relay:
                distributor.listen(R + "boiler/#")
                path = site(tmp_path, f"""
                    connections:
                      mqtt:
                        main: {{host: {broker.host}, port: {broker.port}}}
                    flows:
                      - use: switched-consumer-http
                        instance: boiler
                        vars: {{key: boiler, request_w: 2000, min_on_s: 600, min_off_s: 0,
                                on_url: "{relay.url}/relay/0?turn=on",
                                off_url: "{relay.url}/relay/0?turn=off",
                                status_url: "{relay.url}/status",
                                on_keyword_regex: '"ison":\\s*true',
                                auth: basic, password: !secret relay}}
                """)
                state = tmp_path / "state"
                async with Guarded(path, address=None, state_dir=state,
                                   plugins=plugin_path(tmp_path / "plugins"),
                                   env={"ESESS_SECRET_RELAY": password}) as guarded:
                    first = await guarded.runtime_pid(15)
                    await eventually(lambda: distributor.last(R + "boiler/Request") == "2000",
                                     15)
                    distributor.broker.publish(R + "boiler/Allowance", "2000", qos=1)
                    await eventually(lambda: relay.load.on, 5)
                    pending = (state / "guardian-pending.json").read_text()
                    assert "relay/0?turn=off" in pending and password not in pending
                    os.kill(first, signal.SIGKILL)
                    await eventually(lambda: not relay.load.on, 5)
                    await guarded.wait_for("applied HTTP GET")
                    await guarded.runtime_pid(other_than=first, timeout=10)
                    assert await guarded.stop() == 0
                assert not relay.load.on
                assert password not in guarded.output
        finally:
            broker.stop()

    run(scenario())


def test_kill_9_of_the_runtime_the_guardian_publishes_the_heater_off(tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Mosquitto(tmp_path)
        broker.start()
        try:
            async with client(broker, "distributor") as distributor, MqttConsumer(
                    EnergyModel(ModelParams(seed=3)), port=broker.port) as heater:
                await heater.wait_connected()
                distributor.listen(R + "heater/#")
                path = site(tmp_path, f"""
                    connections:
                      mqtt:
                        main: {{host: {broker.host}, port: {broker.port}}}
                    flows:
                      - use: switched-consumer-mqtt
                        instance: heater
                        vars: {{key: heater, request_w: 2000, min_on_s: 600, min_off_s: 0,
                                on_topic: sim/heater/set, on_value: "on",
                                off_topic: sim/heater/set, off_value: "off",
                                status_topic: sim/heater/state, on_keyword_regex: ^on$}}
                """)
                async with Guarded(path, address=None, state_dir=tmp_path / "state",
                                   plugins=plugin_path(tmp_path / "plugins")) as guarded:
                    first = await guarded.runtime_pid(15)
                    await eventually(lambda: distributor.last(R + "heater/Request") == "2000",
                                     15)
                    distributor.broker.publish(R + "heater/Allowance", "2000", qos=1)
                    await eventually(lambda: heater.load.on, 5)
                    os.kill(first, signal.SIGKILL)
                    await eventually(lambda: not heater.load.on, 5)
                    await guarded.wait_for("applied MQTT")
                    assert await guarded.stop() == 0
        finally:
            broker.stop()

    run(scenario())
