"""energy.distributor in a running flow against a real mosquitto: consumers speak the
request protocol over MQTT, the system values come over MQTT too (the shipped flow takes
them from D-Bus; tests/e2e runs that), and what a consumer sees is read as it would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from conftest import eventually, run
from testkit.mqtt import Listener

from flowengine.runtime import FlowRun

from .mqttkit import Mosquitto, client, running

ROOT = "es-ESS/SolarOverheadDistributor"


def flow(reservation: str = "0", cycle_s: float = 60, rerun_ms: float = 50,
         **extra: object) -> str:
    options = "".join(f"\n            {k}: {v}" for k, v in extra.items())
    return f"""
        id: sod
        nodes:
          - id: system
            type: mqtt.in
            topic: test/system/+
            wildcards: [name]
            output: "{{name}}"
            payload: json
            to: [distributor]
          - id: requests
            type: mqtt.in
            topic: {ROOT}/Requests/+/+
            payload: string
            on_empty: invalid
            to: [distributor]
          - id: distributor
            type: energy.distributor
            reservation: "{reservation}"
            cycle_s: {cycle_s}
            rerun_ms: {rerun_ms}
            fake_bms: false{options}
            to: {{out: [calc], consumers: [per-consumer], energy: [energy]}}
          - {{id: calc, type: mqtt.out, topic: "{ROOT}{{topic}}"}}
          - {{id: per-consumer, type: mqtt.out, topic: "{ROOT}/Requests/{{topic}}"}}
          - {{id: energy, type: mqtt.out, topic: "{ROOT}/Requests/{{topic}}"}}
    """


def system(listener: Listener, l1: object, battery: object = 0.0, soc: object = 50.0,
           **more: object) -> None:
    """Publish the system values (`None` is invalid; L2/L3 only when given)."""
    values = {"grid_l1": l1, "battery_power": battery, "soc": soc, **more}
    for name, value in values.items():
        text = "null" if value is None else str(value)
        listener.broker.publish(f"test/system/{name}", text, qos=1)


def consumer(listener: Listener, key: str, **fields: object) -> None:
    for name, value in fields.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        listener.broker.publish(f"{ROOT}/Requests/{key}/{name}", text, qos=1)


def allowance(listener: Listener, key: str) -> float | None:
    last = listener.last(f"{ROOT}/Requests/{key}/Allowance")
    return None if last is None else float(last)


def explanation(listener: Listener, key: str) -> str:
    return listener.last(f"{ROOT}/Requests/{key}/Explanation") or ""


@contextlib.asynccontextmanager
async def site(server: Mosquitto, directory: Path, text: str
               ) -> AsyncIterator[tuple[FlowRun, Listener]]:
    async with running(text, server, directory) as (_, flow_run), \
            client(server, f"consumers-{directory.name}") as listener:
        listener.listen(f"{ROOT}/#")
        yield flow_run, listener


def test_the_worked_example_gives_a_1000_and_b_1000_and_explains_why(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with site(mosquitto, tmp_path, flow(reservation="500")) as (flow_run, mqtt):
            system(mqtt, l1=-3000.0)
            consumer(mqtt, "A", IsAutomatic=True, Priority=10, StepSize=500, Request=1000)
            consumer(mqtt, "B", IsAutomatic=True, Priority=20, StepSize=1000, Request=2000)
            await eventually(lambda: allowance(mqtt, "A") == 1000 and
                             allowance(mqtt, "B") == 1000, timeout=5)
            await eventually(lambda: mqtt.last(f"{ROOT}/Calculations/OverheadRemaining")
                             == "1000.0", timeout=2)  # another publisher than the allowances
            assert mqtt.last(f"{ROOT}/Calculations/OverheadAvailable") == "3000.0"
            assert mqtt.last(f"{ROOT}/Calculations/Battery/Reservation") == "500.0"
            await eventually(lambda: explanation(mqtt, "A").startswith("granted 1000 W") and
                             "reservation" in explanation(mqtt, "B"), timeout=2)
            status = flow_run.runners["distributor"].status
            assert status.level == "ok" and "A 1000 W, B 1000 W" in status.text, status
            assert f"B: {explanation(mqtt, 'B')}" in status.text, status
    run(scenario())


def test_a_consumer_set_to_manual_loses_its_allowance_at_once(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with site(mosquitto, tmp_path, flow()) as (_, mqtt):
            system(mqtt, l1=-2000.0)
            consumer(mqtt, "heater", IsAutomatic=True, StepSize=1000, Request=2000)
            await eventually(lambda: allowance(mqtt, "heater") == 1000, timeout=5)
            consumer(mqtt, "heater", IsAutomatic=False)
            await eventually(lambda: allowance(mqtt, "heater") == 0 and
                             explanation(mqtt, "heater") == "0 W: manual", timeout=2)
    run(scenario())


def test_a_malformed_request_is_reported_and_gets_nothing_until_fixed(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with site(mosquitto, tmp_path, flow(lost_inputs_s=0.3)) as (flow_run, mqtt):
            system(mqtt, l1=-2000.0)
            consumer(mqtt, "pump", IsAutomatic=True, StepSize=500, Request="-5")
            consumer(mqtt, "fountain", IsAutomatic=True, StepSize=500, Request=500)
            await eventually(lambda: allowance(mqtt, "fountain") == 500 and
                             allowance(mqtt, "pump") == 0, timeout=5)
            await eventually(lambda: "malformed" in explanation(mqtt, "pump"), timeout=2)
            assert "Request" in explanation(mqtt, "pump") and "-5" in explanation(mqtt, "pump")
            status = flow_run.runners["distributor"].status
            assert status.level == "warning" and "pump" in status.text, status
            consumer(mqtt, "pump", Request=1000, Prioity=5)  # a typo is said once, ignored
            await eventually(lambda: allowance(mqtt, "pump") == 1000, timeout=5)
            system(mqtt, l1=-2000.0, soc=150.0)  # out of range: no grants, and it says so
            await eventually(lambda: allowance(mqtt, "pump") == 0, timeout=5)
            await eventually(lambda: "invalid input: soc" in
                             flow_run.runners["distributor"].status.text, timeout=2)
            assert flow_run.runners["distributor"].status.level == "error"
    run(scenario())


def test_keys_that_are_no_bus_name_are_served(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with site(mosquitto, tmp_path, flow()) as (_, mqtt):
            system(mqtt, l1=-3500.0)  # a grant must be < what is left: 3 x 1000 fit
            for key in ("Pool heater", "Küche", "1.5kW"):
                consumer(mqtt, key, IsAutomatic=True, StepSize=1000, Request=1000)
            await eventually(lambda: all(allowance(mqtt, k) == 1000 for k in
                                         ("Pool heater", "Küche", "1.5kW")), timeout=5)
    run(scenario())


def test_invalid_system_values_and_a_failing_formula_give_zero_and_say_why(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        text = flow(reservation="1000 / (SOC - 50)", cycle_s=0.5, lost_inputs_s=0.3,
                    expire_cycles=100)
        async with site(mosquitto, tmp_path, text) as (flow_run, mqtt):
            system(mqtt, l1=-1000.0, soc=60.0)
            consumer(mqtt, "ev", IsAutomatic=True, StepSize=250, Request=1000)
            # R = 1000 / (60 - 50) = 100: three 250 W steps fit below 1000 - 100
            await eventually(lambda: allowance(mqtt, "ev") == 750, timeout=5)
            system(mqtt, l1=None)
            await eventually(lambda: allowance(mqtt, "ev") == 0, timeout=3)
            status = flow_run.runners["distributor"].status
            assert status.level == "error" and "grid_l1" in status.text, status
            system(mqtt, l1=-1000.0, soc=60.0)
            await eventually(lambda: allowance(mqtt, "ev") == 750, timeout=3)
            system(mqtt, l1=-1000.0, soc=50.0)  # 1000 / 0
            await eventually(lambda: allowance(mqtt, "ev") == 0, timeout=3)
            await eventually(lambda: "reservation formula failed" in explanation(mqtt, "ev"),
                             timeout=2)
            assert "reservation formula failed" in flow_run.runners["distributor"].status.text
    run(scenario())


def test_a_single_phase_site_works_and_a_lost_phase_is_invalid(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with site(mosquitto, tmp_path, flow(cycle_s=0.5, expire_cycles=100)) as (_, mqtt):
            system(mqtt, l1=-1500.0, grid_l2=None, grid_l3=None)
            consumer(mqtt, "one-phase", IsAutomatic=True, StepSize=500, Request=1500)
            await eventually(lambda: allowance(mqtt, "one-phase") == 1000, timeout=5)
            system(mqtt, l1=-1500.0, grid_l2=-500.0, grid_l3=None)
            await eventually(lambda: allowance(mqtt, "one-phase") == 1500, timeout=3)
            system(mqtt, l1=-1500.0, grid_l2=None, grid_l3=None)  # L2 had a value: lost
            await eventually(lambda: allowance(mqtt, "one-phase") == 0, timeout=3)
            await eventually(lambda: "grid_l2" in explanation(mqtt, "one-phase"), timeout=2)
    run(scenario())


def test_a_silent_consumer_expires_and_a_cleared_one_leaves(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with site(mosquitto, tmp_path, flow(cycle_s=0.5, expire_cycles=3)) \
                as (flow_run, mqtt):
            system(mqtt, l1=-3000.0)
            consumer(mqtt, "script", IsAutomatic=True, StepSize=1000, Request=1000)
            consumer(mqtt, "alive", IsAutomatic=True, StepSize=1000, Request=1000)
            await eventually(lambda: allowance(mqtt, "script") == 1000, timeout=5)
            distributor = flow_run.runners["distributor"]
            deadline = asyncio.get_running_loop().time() + 5
            while allowance(mqtt, "script") != 0:  # "alive" keeps talking, "script" not
                consumer(mqtt, "alive", Consumption=0)
                assert asyncio.get_running_loop().time() < deadline, "did not expire"
                await asyncio.sleep(0.2)
            assert "script" not in distributor.children and \
                "allowance-alive" in distributor.children
            assert allowance(mqtt, "alive") == 1000
            for name in ("IsAutomatic", "StepSize", "Request", "Consumption"):
                mqtt.broker.publish(f"{ROOT}/Requests/alive/{name}", "", qos=1)
            await eventually(lambda: allowance(mqtt, "alive") == 0, timeout=3)
            await eventually(lambda: distributor.children == {}, timeout=3)
    run(scenario())


def test_stopping_the_flow_publishes_zero_to_every_consumer(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with client(mosquitto, "watcher") as watcher:
            watcher.listen(f"{ROOT}/Requests/+/Allowance")
            async with site(mosquitto, tmp_path, flow()) as (_, mqtt):
                system(mqtt, l1=-3500.0)
                consumer(mqtt, "ev", IsAutomatic=True, StepSize=1000, Request=2000)
                consumer(mqtt, "heater", IsAutomatic=True, StepSize=1000, Request=1000)
                await eventually(lambda: allowance(watcher, "ev") == 2000 and
                                 allowance(watcher, "heater") == 1000, timeout=5)
            await eventually(lambda: allowance(watcher, "ev") == 0 and
                             allowance(watcher, "heater") == 0, timeout=2)
    run(scenario())


def test_energy_and_runtime_are_counted_per_consumer(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with site(mosquitto, tmp_path, flow(cycle_s=0.5, expire_cycles=100)) as (_, mqtt):
            system(mqtt, l1=-3000.0)
            consumer(mqtt, "heater", IsAutomatic=True, StepSize=1000, Request=1000,
                     Consumption=3600)  # 1 Wh per second

            def energy() -> float:
                return float(mqtt.last(f"{ROOT}/Requests/heater/Energy/energyToday") or 0)

            await eventually(lambda: energy() >= 1.0, timeout=5)
            today, total = energy(), mqtt.last(f"{ROOT}/Requests/heater/Energy/energyTotal")
            assert total is not None and abs(float(total) - today) < 1.0
            runtime = float(mqtt.last(f"{ROOT}/Requests/heater/Energy/runtimeToday") or 0)
            assert runtime >= 1
    run(scenario())


def test_a_lost_broker_gives_every_allowance_zero_first_when_it_is_back(
        own_mosquitto: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with site(own_mosquitto, tmp_path, flow(rerun_ms=2000)) as (flow_run, mqtt):
            system(mqtt, l1=-3000.0)
            consumer(mqtt, "heater", IsAutomatic=True, StepSize=1000, Request=2000)
            await eventually(lambda: allowance(mqtt, "heater") == 2000, timeout=5)
            distributor = flow_run.runners["distributor"]
            own_mosquitto.stop()
            await eventually(lambda: "not connected" in distributor.status.text, timeout=5)
            assert distributor.status.level == "error"
            own_mosquitto.start()  # the runtime waits >= 0.25 s before it reconnects
            async with client(own_mosquitto, "after") as after:
                after.listen(f"{ROOT}/Requests/heater/Allowance")
                # the 0 waiting in the outbox goes first, then the re-run grants again
                await eventually(lambda: after.payloads(
                    f"{ROOT}/Requests/heater/Allowance")[:1] == ["0"], timeout=10)
                await eventually(lambda: allowance(after, "heater") == 2000, timeout=10)
    run(scenario())
