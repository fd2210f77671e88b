"""Scripted solar overhead consumer: its retained request, the allowance it draws, leaving."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from conftest import eventually, run
from testkit.mosquitto import Mosquitto

from nodes.mqtt.broker import Broker, MqttBrokerConfig
from sim import EnergyModel, ModelParams
from sim.broker import MqttBroker
from sim.devices.scripted_consumer import ScriptedConsumer, feasible_w

R = "es-ESS/SolarOverheadDistributor/Requests"


def evening() -> EnergyModel:
    """No sun, battery at its limit: the grid carries every extra watt."""
    return EnergyModel(ModelParams(seed=3, start_hour=21.0, initial_soc=10.0))


@asynccontextmanager
async def site(model: EnergyModel, **options: object) -> AsyncIterator[
        tuple[MqttBroker, ScriptedConsumer, Broker, dict[str, str]]]:
    """A broker, an EV charger consumer on it, and a client that plays the distributor."""
    config: dict[str, object] = {"key": "EV", "custom_name": "EV charger", "request_w": 3680,
                                 "minimum_w": 1380, "step_w": 230, "priority": 35,
                                 "priority_shift": 1, "vrm_instance": 1020, **options}
    async with MqttBroker() as broker, ScriptedConsumer(
            model, port=broker.port, **config) as ev:  # type: ignore[arg-type]
        client = Broker("distributor", MqttBrokerConfig(host="127.0.0.1", port=broker.port,
                                                        status_topic=None))
        seen: dict[str, str] = {}
        client.subscribe(f"{R}/EV/#", lambda t, p, r: seen.__setitem__(t, p.decode()))
        await client.start()
        await client.wait_connected(5)
        await ev.wait_connected()
        try:
            yield broker, ev, client, seen
        finally:
            await client.close()


def test_it_publishes_its_request_retained_at_start() -> None:
    async def scenario() -> None:
        async with site(evening()) as (broker, _ev, _client, _seen):
            await eventually(lambda: f"{R}/EV/Consumption" in broker.retained)
            retained = {topic.removeprefix(f"{R}/EV/"): msg.payload.decode()
                        for topic, msg in broker.retained.items()}
            assert retained == {
                "IsScriptedConsumer": "true", "IsAutomatic": "true",
                "CustomName": "EV charger", "Request": "3680", "StepSize": "230",
                "Minimum": "1380", "Priority": "35", "PriorityShift": "1",
                "IgnoreBatReservation": "false", "VRMInstanceID": "1020",
                "Consumption": "0"}
    run(scenario())


def test_it_draws_its_allowance_and_reports_the_consumption() -> None:
    async def scenario() -> None:
        model = evening()
        async with site(model) as (_broker, ev, client, seen):
            grid_before = model.snapshot.grid_l[0]
            client.publish(f"{R}/EV/Allowance", "1610", qos=1)
            await eventually(lambda: seen.get(f"{R}/EV/Consumption") == "1610")
            assert ev.draw_w == 1610.0
            assert model.snapshot.extra_w["EV"] == 1610.0
            assert model.snapshot.grid_l[0] - grid_before == pytest.approx(1610.0)
            client.publish(f"{R}/EV/Allowance", "0", qos=1)
            await eventually(lambda: seen.get(f"{R}/EV/Consumption") == "0")
            assert model.snapshot.grid_l[0] == pytest.approx(grid_before)
    run(scenario())


def test_the_allowance_is_rounded_down_to_minimum_and_whole_steps() -> None:
    async def scenario() -> None:
        async with site(evening()) as (_broker, ev, client, seen):
            for allowance, drawn in (("1365.5", "0"), ("1500", "1380"), ("2069.9", "1840"),
                                     ("11000", "3680"), ("garbage", "0")):
                client.publish(f"{R}/EV/Allowance", allowance, qos=1)
                count = ev.allowances
                await eventually(lambda count=count: ev.allowances > count)
                await eventually(lambda drawn=drawn: seen.get(
                    f"{R}/EV/Consumption") == drawn)
    run(scenario())


def test_feasible_power_without_a_minimum_or_steps() -> None:
    assert feasible_w(2500, request_w=3000, minimum_w=0, step_w=1000) == 2000
    assert feasible_w(999, request_w=3000, minimum_w=0, step_w=1000) == 0
    assert feasible_w(3000, request_w=3000, minimum_w=0, step_w=1000) == 3000
    assert feasible_w(1234.5, request_w=3000, minimum_w=0, step_w=0) == 1234.5
    assert feasible_w(float("nan"), request_w=3000, minimum_w=0, step_w=0) == 0


def test_manual_publishes_is_automatic_false_and_draws_0_after_allowance_0() -> None:
    async def scenario() -> None:
        async with site(evening()) as (broker, ev, client, seen):
            client.publish(f"{R}/EV/Allowance", "3680", qos=1)
            await eventually(lambda: ev.draw_w == 3680)
            ev.set_automatic(False)
            await eventually(lambda: broker.retained[f"{R}/EV/IsAutomatic"].payload == b"false")
            client.publish(f"{R}/EV/Allowance", "0", qos=1)  # what the distributor sends
            await eventually(lambda: seen.get(f"{R}/EV/Consumption") == "0")
            assert ev.draw_w == 0
    run(scenario())


def test_a_smaller_request_cuts_the_draw_at_once() -> None:
    async def scenario() -> None:
        async with site(evening()) as (broker, ev, client, seen):
            client.publish(f"{R}/EV/Allowance", "3680", qos=1)
            await eventually(lambda: ev.draw_w == 3680)
            ev.set_request(2000)
            await eventually(lambda: seen.get(f"{R}/EV/Consumption") == "1840")
            assert broker.retained[f"{R}/EV/Request"].payload == b"2000"
    run(scenario())


def test_consumption_is_repeated_every_interval_and_silent_stops_it() -> None:
    async def scenario() -> None:
        async with site(evening(), interval_s=0.05) as (_broker, ev, client, _seen):
            reports: list[str] = []
            client.subscribe(f"{R}/EV/Consumption", lambda t, p, r: reports.append(p.decode()))
            await eventually(lambda: len(reports) >= 3)
            client.publish(f"{R}/EV/Allowance", "1380", qos=1)
            await eventually(lambda: reports[-1] == "1380")
            ev.silent()
            count = len(reports)
            client.publish(f"{R}/EV/Allowance", "1610", qos=1)
            await eventually(lambda: ev.draw_w == 1610)  # it still follows, but says nothing
            await eventually(lambda: ev.allowances == 2)
            assert len(reports) == count
            ev.clear()
            await eventually(lambda: reports[-1] == "1610")
    run(scenario())


def test_leave_stops_drawing_and_clears_its_retained_topics() -> None:
    async def scenario() -> None:
        model = evening()
        async with site(model) as (broker, ev, client, _seen):
            client.publish(f"{R}/EV/Allowance", "1380", qos=1)
            await eventually(lambda: ev.draw_w == 1380)
            await ev.leave()
            assert model.snapshot.extra_w["EV"] == 0
            await eventually(lambda: not [t for t in broker.retained if t.startswith(R)])
            client.publish(f"{R}/EV/Allowance", "3680", qos=1)  # nobody listens any more
            assert not ev.running
            assert ev.draw_w == 0
    run(scenario())


def test_es_ess_going_offline_stops_it() -> None:
    async def scenario() -> None:
        async with site(evening()) as (_broker, ev, client, seen):
            client.publish(f"{R}/EV/Allowance", "1380", qos=1)
            await eventually(lambda: ev.draw_w == 1380)
            client.publish("es-ESS/$SYS/Status", "Offline", qos=1, retain=True)
            await eventually(lambda: seen.get(f"{R}/EV/Consumption") == "0")
    run(scenario())


def test_a_retained_allowance_is_stale_and_ignored() -> None:
    async def scenario() -> None:
        model = evening()
        async with MqttBroker() as broker:
            broker.publish(f"{R}/EV/Allowance", b"3680", retain=True)
            async with ScriptedConsumer(model, port=broker.port, key="EV", request_w=3680,
                                        step_w=230, vrm_instance=1020) as ev:
                await ev.wait_connected()
                await eventually(lambda: f"{R}/EV/Consumption" in broker.retained)
                assert ev.allowances == 0 and ev.draw_w == 0
    run(scenario())


def test_keys_that_are_not_one_topic_level_are_refused() -> None:
    for key in ("", "a/b", "EV+", " EV"):
        with pytest.raises(ValueError, match="one topic level"):
            ScriptedConsumer(evening(), key=key, request_w=1, step_w=1, vrm_instance=1)


def test_on_mosquitto_a_late_subscriber_gets_the_whole_request_and_leave_clears_it(
        tmp_path: Path) -> None:
    """What a restarted distributor sees: the request, retained; nothing once it left."""
    mosquitto = Mosquitto(tmp_path)
    mosquitto.start()

    async def retained_now() -> dict[str, str]:
        """The retained request topics a new subscriber gets (all of them: mosquitto sends
        them on the subscription, before it handles the subscriber's own echo)."""
        seen: dict[str, str] = {}
        echoed: list[bytes] = []
        late = Broker("late", MqttBrokerConfig(host="127.0.0.1", port=mosquitto.port,
                                               status_topic=None))
        late.subscribe(f"{R}/#", lambda t, p, r: seen.__setitem__(t, p.decode()))
        late.subscribe("test/echo", lambda t, p, r: echoed.append(p))
        await late.start()
        await late.wait_connected(5)
        late.publish("test/echo", "ping", qos=1)
        await eventually(lambda: bool(echoed))
        await late.close()
        return seen

    async def retained_until(done: Callable[[dict[str, str]], bool]) -> dict[str, str]:
        """What a new subscriber gets, asked again until `done` (the broker is handling
        the consumer's messages meanwhile), at most for 2 s."""
        deadline = time.monotonic() + 2.0
        seen = await retained_now()
        while not done(seen) and time.monotonic() < deadline:
            seen = await retained_now()
        return seen

    async def scenario() -> None:
        model = evening()
        async with ScriptedConsumer(model, port=mosquitto.port, key="PoolHeater",
                                    request_w=3000, step_w=1000, priority=40,
                                    priority_shift=5, vrm_instance=1021) as heater:
            await heater.wait_connected()
            seen = await retained_until(lambda seen: len(seen) == 11)
            assert seen[f"{R}/PoolHeater/Request"] == "3000"
            assert seen[f"{R}/PoolHeater/StepSize"] == "1000"
            assert seen[f"{R}/PoolHeater/IsScriptedConsumer"] == "true"
            assert len(seen) == 11
            await heater.leave()
            assert await retained_until(lambda seen: not seen) == {}
    try:
        run(scenario())
    finally:
        mosquitto.stop()
