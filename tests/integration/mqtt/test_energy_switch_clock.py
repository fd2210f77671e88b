"""energy.switch with its default times (300 s min on/off, 30 s announce, 180 s allowance
timeout) on the NodeHarness's manual clock, against the simulated MQTT heater on a
real mosquitto: the minutes pass in an instant."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from conftest import eventually, run

from flowengine.connections import Connections
from flowengine.testing import NodeHarness
from nodes.mqtt.broker import Broker
from sim import EnergyModel, ModelParams
from sim.devices.mqtt_consumer import MqttConsumer

from .mqttkit import Listener, Mosquitto, client, settle

R = "es-ESS/SolarOverheadDistributor/Requests/heater/"
NODE = """
id: heater
type: energy.switch
key: heater
request_w: 2000
mqtt:
  on_topic: sim/heater/set
  on_value: "on"
  off_topic: sim/heater/set
  off_value: "off"
  status_topic: sim/heater/state
  on_keyword_regex: ^on$
"""


@asynccontextmanager
async def harness(mosquitto: Mosquitto) -> AsyncIterator[
        tuple[NodeHarness, MqttConsumer, Listener]]:
    model = EnergyModel(ModelParams(seed=3))
    h = NodeHarness(NODE)
    settings = mosquitto.settings(client_id="runtime-clock", status_topic=None)
    h.runtime.connections = Connections(h.registry.connection_kinds,
                                        {"mqtt": {"main": settings}})
    async with client(mosquitto, "distributor") as distributor, MqttConsumer(
            model, port=mosquitto.port) as heater:
        await heater.wait_connected()
        distributor.listen(R + "#")
        async with h:
            broker: Broker = await h.runtime.connections.get("mqtt", "main")
            await broker.wait_connected(5)
            await settle(broker)
            await eventually(lambda: h.node_status.text.startswith("off;"), 3)
            yield h, heater, distributor


async def allowance(h: NodeHarness, distributor: Listener, watts: str) -> None:
    before = h.values().count(float(watts))
    distributor.broker.publish(R + "Allowance", watts, qos=1)
    await eventually(lambda: h.values().count(float(watts)) > before, 3)


async def cycles(h: NodeHarness, distributor: Listener, watts: str, seconds: int) -> None:
    """`seconds` pass with the allowance `watts` every 60 s, as the distributor sends it."""
    while seconds > 0:
        step = min(60, seconds)
        await h.advance(step * 1000)
        seconds -= step
        if seconds > 0:
            await allowance(h, distributor, watts)


def test_default_min_off_and_min_on_times_are_five_minutes(mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        async with harness(mosquitto) as (h, heater, distributor):
            await allowance(h, distributor, "2000")
            switch_at = time.strftime("%H:%M:%S", time.localtime(h.clock.wall() + 300))
            assert f"waiting for the min off time to switch on at {switch_at}" in \
                h.node_status.text
            await cycles(h, distributor, "2000", 299)
            assert not heater.load.on
            assert switch_at in h.node_status.text
            await h.advance(1_000)
            await eventually(lambda: heater.load.on, 3)
            await eventually(lambda: h.node_status.text.startswith("on;"), 3)
            await allowance(h, distributor, "0")
            assert "waiting for the min on time to switch off" in h.node_status.text
            await cycles(h, distributor, "0", 299)
            assert heater.load.on
            await h.advance(1_000)
            await eventually(lambda: not heater.load.on, 3)
    run(scenario())


def test_the_request_is_announced_every_30_s(mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        async with harness(mosquitto) as (h, _, distributor):
            await eventually(lambda: len(distributor.payloads(R + "Request")) == 1, 3)
            await h.advance(60_000)
            await eventually(lambda: len(distributor.payloads(R + "Request")) == 3, 3)
            assert distributor.payloads(R + "StepSize") == ["2000"] * 3
    run(scenario())


def test_no_allowance_for_180_s_switches_off_despite_min_on(mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        async with harness(mosquitto) as (h, heater, distributor):
            await h.advance(300_000)  # min off since the start is over
            await allowance(h, distributor, "2000")
            await eventually(lambda: heater.load.on, 3)
            await h.advance(179_000)
            assert heater.load.on
            await h.advance(1_000)
            await eventually(lambda: not heater.load.on, 3)
            assert "allowance lost" in h.node_status.text
            assert h.node_status.level == "warning"
    run(scenario())
