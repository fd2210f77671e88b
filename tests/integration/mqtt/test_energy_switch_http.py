"""energy.switch over HTTP: a simulated Shelly 1PM relay (real sockets) switched by the
allowance a test publishes on a real mosquitto, as the distributor would."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from conftest import eventually, run

from flowengine.runtime import FlowRun
from sim import EnergyModel, ModelParams
from sim.devices import ShellyRelayGen1

from .mqttkit import Listener, Mosquitto, client, running

R = "es-ESS/SolarOverheadDistributor/Requests/boiler/"
PASSWORD = "relay-Secret-42"


def model() -> EnergyModel:
    return EnergyModel(ModelParams(seed=3))


def flow(relay: ShellyRelayGen1, *, power: bool = False, auth: bool = False,
         **options: object) -> str:
    settings = {"min_on_s": 1, "min_off_s": 1, "request_w": 1800, **options}
    lines = "\n".join(f"    {k}: {v}" for k, v in settings.items())
    extra = "      power_extract_regex: '\"power\":\\s*([0-9.]+)'\n" if power else ""
    if auth:
        extra += f"      auth: basic\n      password: {PASSWORD}\n"
    return f"""
id: switched
nodes:
  - id: boiler
    type: energy.switch
    key: boiler
    custom_name: Boiler
    vrm_instance: 1010
    priority: 40
{lines}
    http:
      on_url: {relay.url}/relay/0?turn=on
      off_url: {relay.url}/relay/0?turn=off
      status_url: {relay.url}/status
      on_keyword_regex: '"ison":\\s*true'
      timeout_ms: 300
      status_interval_s: 1
{extra}"""


@asynccontextmanager
async def switched(mosquitto: Mosquitto, tmp_path: Path, relay: ShellyRelayGen1,
                   **options: object) -> AsyncIterator[tuple[Listener, FlowRun]]:
    async with client(mosquitto, "distributor") as distributor:
        distributor.listen(R + "#")
        async with running(flow(relay, **options), mosquitto, tmp_path) as (_, run_):
            yield distributor, run_


def status(run_: FlowRun) -> str:
    return next(r for r in run_.all_runners() if r.node_id == "boiler").status.text


def test_request_published_then_on_at_the_request_and_off_at_zero_after_min_on(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ShellyRelayGen1(model(), power_w=2000.0) as relay, \
                switched(mosquitto, tmp_path, relay) as (distributor, run_):
            await eventually(lambda: distributor.last(R + "Consumption") == "0", 5)  # the last
            sent = {r.topic.removeprefix(R): r.payload for r in distributor.received}
            assert sent == {"IsHttpConsumer": "true", "IsAutomatic": "true",
                            "CustomName": "Boiler", "Request": "1800", "StepSize": "1800",
                            "Priority": "40", "PriorityShift": "0",
                            "IgnoreBatReservation": "false", "VRMInstanceID": "1010",
                            "Consumption": "0"}
            assert not any(r.retained for r in distributor.received)
            distributor.broker.publish(R + "Allowance", "1365.5", qos=1)  # less: stays off
            await eventually(lambda: "allowance 1365.5 W" in status(run_), 3)
            assert relay.load.on is False
            distributor.broker.publish(R + "Allowance", "1800", qos=1)
            await eventually(lambda: relay.load.on, 3)
            on_at = time.monotonic()
            # no power source: the consumption is the request while it is on
            await eventually(lambda: distributor.last(R + "Consumption") == "1800", 3)
            await eventually(lambda: status(run_).startswith("on;"), 3)
            distributor.broker.publish(R + "Allowance", "0", qos=1)
            await eventually(lambda: "min on time" in status(run_) or not relay.load.on, 3)
            await eventually(lambda: not relay.load.on, 3)
            assert time.monotonic() - on_at >= 0.9  # min_on_s 1
            await eventually(lambda: distributor.last(R + "Consumption") == "0", 3)
    run(scenario())


def test_min_off_time_holds_a_new_switch_on_back(mosquitto: Mosquitto,
                                                 tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ShellyRelayGen1(model()) as relay, \
                switched(mosquitto, tmp_path, relay, min_on_s=0, min_off_s=2) as (
                    distributor, run_):
            await eventually(lambda: distributor.last(R + "Request") == "1800", 5)
            started = time.monotonic()
            distributor.broker.publish(R + "Allowance", "2000", qos=1)
            # the start counts as a switch-off: on only 2 s after it
            await eventually(lambda: "min off time" in status(run_), 3)
            await eventually(lambda: relay.load.on, 4)
            assert time.monotonic() - started >= 1.5
            distributor.broker.publish(R + "Allowance", "0", qos=1)
            await eventually(lambda: not relay.load.on, 3)
            off_at = time.monotonic()
            distributor.broker.publish(R + "Allowance", "2000", qos=1)
            await eventually(lambda: "min off time" in status(run_), 3)
            await eventually(lambda: relay.load.on, 4)
            assert time.monotonic() - off_at >= 1.9
    run(scenario())


def test_consumption_is_the_measured_power_with_basic_auth(mosquitto: Mosquitto,
                                                           tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ShellyRelayGen1(model(), power_w=2000.0, password=PASSWORD) as relay, \
                switched(mosquitto, tmp_path, relay, power=True, auth=True, min_off_s=0) as (
                    distributor, _):
            distributor.broker.publish(R + "Allowance", "1800", qos=1)
            await eventually(lambda: relay.load.on, 3)
            watts = f"{relay.load.draw_w:.3f}".rstrip("0").rstrip(".")
            await eventually(lambda: distributor.last(R + "Consumption") == watts, 3)
            assert watts != "1800"
    run(scenario())


def test_a_device_that_does_not_answer_counts_as_off_and_is_reported(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "flowengine.node")

    async def scenario() -> None:
        async with ShellyRelayGen1(model()) as relay, \
                switched(mosquitto, tmp_path, relay, min_off_s=0) as (distributor, run_):
            distributor.broker.publish(R + "Allowance", "1800", qos=1)
            await eventually(lambda: distributor.last(R + "Consumption") == "1800", 3)
            caplog.clear()
            relay.faults.hang()
            await eventually(lambda: "does not answer" in caplog.text, 4)
            await eventually(lambda: distributor.last(R + "Consumption") == "0", 3)
            assert "counted as off" in status(run_)
            assert caplog.text.count("does not answer") == 1  # once, not every poll
            relay.faults.clear()
            await eventually(lambda: distributor.last(R + "Consumption") == "1800", 4)
            assert "answers: on" in caplog.text
    run(scenario())


def test_a_lost_allowance_switches_off_without_waiting_for_min_on(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ShellyRelayGen1(model()) as relay, \
                switched(mosquitto, tmp_path, relay, min_off_s=0, min_on_s=600,
                         allowance_timeout_s=1) as (distributor, run_):
            distributor.broker.publish(R + "Allowance", "1800", qos=1)
            await eventually(lambda: relay.load.on, 3)
            await eventually(lambda: not relay.load.on, 3)
            assert "allowance lost" in status(run_)
    run(scenario())


def test_a_malformed_allowance_is_ignored_and_counted(mosquitto: Mosquitto,
                                                      tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ShellyRelayGen1(model()) as relay, \
                switched(mosquitto, tmp_path, relay, min_off_s=0, min_on_s=0) as (
                    distributor, run_):
            distributor.broker.publish(R + "Allowance", "1800", qos=1)
            await eventually(lambda: relay.load.on, 3)
            for junk in ("lots", "-5", "nan", ""):
                distributor.broker.publish(R + "Allowance", junk, qos=1)
            await eventually(lambda: "4 bad allowance(s) ignored" in status(run_), 3)
            assert relay.load.on
    run(scenario())


def test_stop_switches_off_and_a_lost_broker_too(own_mosquitto: Mosquitto,
                                                 tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ShellyRelayGen1(model()) as relay, \
                client(own_mosquitto, "distributor") as distributor:
            distributor.listen(R + "#")
            async with running(flow(relay, min_off_s=0, min_on_s=600), own_mosquitto,
                               tmp_path) as (_, run_):
                distributor.broker.publish(R + "Allowance", "1800", qos=1)
                await eventually(lambda: relay.load.on, 3)
                own_mosquitto.stop()
                await eventually(lambda: not relay.load.on, 3)
                assert "not connected" in status(run_)
                own_mosquitto.start()
                await distributor.broker.wait_connected(5)
                await eventually(lambda: "not connected" not in status(run_), 6)
                # back: it waits for a new allowance
                distributor.broker.publish(R + "Allowance", "1800", qos=1)
                await eventually(lambda: relay.load.on, 5)
                distributor.received.clear()
            assert relay.load.on is False  # the flow stopped: the safe state
            # and the distributor is told at once (it would wait three cycles)
            await eventually(lambda: distributor.last(R + "IsAutomatic") == "false", 3)
            assert distributor.last(R + "Consumption") == "0"
    run(scenario())


def test_a_node_failure_switches_off_and_the_restart_waits_for_an_allowance(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ShellyRelayGen1(model()) as relay, \
                switched(mosquitto, tmp_path, relay, min_off_s=0, min_on_s=600) as (
                    distributor, run_):
            distributor.broker.publish(R + "Allowance", "1800", qos=1)
            await eventually(lambda: relay.load.on, 3)
            runner = next(r for r in run_.all_runners() if r.node_id == "boiler")
            runner.fail(RuntimeError("injected"), "test")  # as a raising callback does
            await eventually(lambda: not relay.load.on, 2)  # min_on_s 600 or not
            await eventually(lambda: runner.restarts == 1 and runner.phase == "running", 4)
            await eventually(lambda: "no allowance yet" in status(run_), 3)
            assert not relay.load.on
            distributor.broker.publish(R + "Allowance", "1800", qos=1)
            await eventually(lambda: relay.load.on, 3)
    run(scenario())
