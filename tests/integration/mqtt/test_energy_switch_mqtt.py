"""energy.switch over MQTT: a simulated MQTT-switched heater on a real mosquitto, switched
by the allowance a test publishes there as the distributor would."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import eventually, run

from flowengine.runtime import FlowRun
from sim import EnergyModel, ModelParams
from sim.devices.mqtt_consumer import MqttConsumer

from .mqttkit import Mosquitto, client, running

R = "es-ESS/SolarOverheadDistributor/Requests/heater/"


def flow(*, power: bool | str, **options: object) -> str:
    settings = {"min_on_s": 1, "min_off_s": 0, "request_w": 1800, **options}
    lines = "\n".join(f"    {k}: {v}" for k, v in settings.items())
    topic = power if isinstance(power, str) else "sim/heater/power"
    extra = f"      power_topic: {topic}\n" if power else ""
    return f"""
id: switched
nodes:
  - id: heater
    type: energy.switch
    key: heater
    ignore_bat_reservation: true
    minimum_w: 1800
{lines}
    mqtt:
      on_topic: sim/heater/set
      on_value: "on"
      off_topic: sim/heater/set
      off_value: "off"
      status_topic: sim/heater/state
      is_on_keyword_regex: ^on$
{extra}"""


def status(run_: FlowRun) -> str:
    return next(r for r in run_.all_runners() if r.node_id == "heater").status.text


def test_on_at_the_request_off_at_zero_and_consumption_is_the_request_without_power(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=3))
        async with client(mosquitto, "distributor") as distributor, MqttConsumer(
                model, port=mosquitto.port, power_w=2000.0) as heater:
            await heater.wait_connected()
            distributor.listen(R + "#")
            async with running(flow(power=False), mosquitto, tmp_path) as (_, run_):
                await eventually(lambda: distributor.last(R + "Consumption") == "0", 5)
                assert distributor.last(R + "Minimum") == "1800"
                assert distributor.last(R + "IsMqttConsumer") == "true"
                assert distributor.last(R + "IgnoreBatReservation") == "true"
                assert distributor.last(R + "IsHttpConsumer") is None
                await eventually(lambda: status(run_).startswith("off;"), 3)  # retained state
                distributor.broker.publish(R + "Allowance", "1800", qos=1)
                await eventually(lambda: heater.load.on, 3)
                on_at = time.monotonic()
                # es-ESS counted 0 here (and flapped): the request it is, while on
                await eventually(lambda: distributor.last(R + "Consumption") == "1800", 3)
                distributor.broker.publish(R + "Allowance", "0", qos=1)
                await eventually(lambda: not heater.load.on, 3)
                assert time.monotonic() - on_at >= 0.9
                await eventually(lambda: distributor.last(R + "Consumption") == "0", 3)
                assert heater.commands == 2
                distributor.broker.publish(R + "Allowance", "1800", qos=1)
                await eventually(lambda: heater.load.on, 3)
            # the flow stopped: the off went out
            await eventually(lambda: not heater.load.on, 3)
    run(scenario())


def test_consumption_follows_the_power_topic(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=3))
        async with client(mosquitto, "distributor") as distributor, MqttConsumer(
                model, port=mosquitto.port, power_w=2000.0) as heater:
            await heater.wait_connected()
            distributor.listen(R + "Consumption")
            async with running(flow(power=True), mosquitto, tmp_path) as (_, run_):
                distributor.broker.publish(R + "Allowance", "2500", qos=1)
                await eventually(lambda: heater.load.on, 3)
                watts = f"{heater.load.draw_w:.3f}".rstrip("0").rstrip(".")
                await eventually(lambda: distributor.last(R + "Consumption") == watts, 3)
                assert "consumption 2000 W" in status(run_)
    run(scenario())


def test_a_silent_device_is_switched_again_but_not_at_every_message(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=3))
        async with client(mosquitto, "distributor") as distributor, MqttConsumer(
                model, port=mosquitto.port, power_w=2000.0) as heater:
            await heater.wait_connected()
            heater.silent()
            async with running(flow(power=False), mosquitto, tmp_path) as (_, run_):
                for _ in range(5):
                    distributor.broker.publish(R + "Allowance", "1800", qos=1)
                await eventually(lambda: heater.load.on, 3)
                await eventually(lambda: "switched on, not confirmed" in status(run_), 3)
                assert heater.commands == 1
                assert "consumption 0 W" in status(run_)  # not confirmed: counted as off
    run(scenario())


def test_a_power_reading_from_before_the_switch_on_is_not_the_consumption(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A device that sends its power every few minutes: until it does after the switch-on,
    the request counts (a 0 W from before would look like missing overhead)."""
    async def scenario() -> None:
        model = EnergyModel(ModelParams(seed=3))
        async with client(mosquitto, "distributor") as distributor, MqttConsumer(
                model, port=mosquitto.port, power_w=2000.0) as heater:
            await heater.wait_connected()
            distributor.listen(R + "Consumption")
            async with running(flow(power="test/heater/power"), mosquitto, tmp_path) as (
                    _, run_):
                distributor.broker.publish("test/heater/power", "0.0", qos=1)
                distributor.broker.publish(R + "Allowance", "1800", qos=1)
                await eventually(lambda: heater.load.on, 3)
                await eventually(lambda: distributor.last(R + "Consumption") == "1800", 3)
                distributor.broker.publish("test/heater/power", "1750.5", qos=1)
                await eventually(lambda: distributor.last(R + "Consumption") == "1750.5", 3)
                assert "consumption 1750.5 W" in status(run_)
    run(scenario())
