"""The grid setpoint arbiter and its requesters (`energy.setpoint`) against a velib-like
settings service on a private bus: requests add up, revoking returns to the default,
bounds and pacing hold, a change behind its back is written over, nothing is written
while nothing is requested, and a failing or stopped requester leaves the default."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import eventually, run
from testkit.guarded import Guarded, plugin_path
from testkit.mosquitto import Mosquitto
from testkit.mqtt import client
from testkit.process import RuntimeProcess

from flowengine.connections import Connections
from flowengine.testing import FlowHarness

from .victron import VeService

SETTINGS = "com.victronenergy.settings"
SETPOINT = "/Settings/CGwacs/AcPowerSetPoint"

TWO = """
id: features
nodes:
  - {id: a, type: energy.setpoint}
  - {id: b, type: energy.setpoint}
"""


def harness(arbiter: Mapping[str, Any] | None = None) -> FlowHarness:
    h = FlowHarness(TWO)
    config = {"broker": None, "interval_ms": 100, **(arbiter or {})}
    h.runtime.connections = Connections(h.registry.connection_kinds,
                                        {"setpoint": {"default": config}})
    return h


def settings(address: str, value: float = 75.0) -> VeService:
    """As localsettings: an accepted write is signalled, before the reply."""
    return VeService(address, SETTINGS, {SETPOINT: value}, writable={SETPOINT: 0},
                     signal_writes=True)


def written(svc: VeService) -> list[float]:
    return [v for p, v in svc.writes if p == SETPOINT]


def test_nothing_is_written_while_nothing_is_requested(bus_address: str) -> None:
    async def scenario() -> None:
        async with settings(bus_address) as svc, harness({"default_w": 0}) as h:
            await h.send("a", "request", None)  # a revoke of nothing
            await asyncio.sleep(0.3)
            assert svc.writes == [] and svc.values[SETPOINT] == 75.0
            assert "no request" in h.status("a").text
        assert svc.writes == []  # nor at the stop
    run(scenario())


def test_two_requests_add_up_and_revoking_both_returns_to_the_default(
        bus_address: str, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with settings(bus_address) as svc, harness({"default_w": 50}) as h:
            await h.send("a", "request", 700)
            await eventually(lambda: svc.values[SETPOINT] == 750.0)
            await h.send("b", "request", -300.0)
            await eventually(lambda: svc.values[SETPOINT] == 450.0)
            text = h.status("a").text
            assert "requesting +700 W" in text and "features/b -300" in text, text
            await h.send("a", "request", None)
            await eventually(lambda: svc.values[SETPOINT] == -250.0)
            await h.send("b", "request", None)
            await eventually(lambda: svc.values[SETPOINT] == 50.0)
            assert written(svc) == [750.0, 450.0, -250.0, 50.0]
    run(scenario())
    assert "someone else" not in caplog.text  # its own writes' signals are not a change


def test_the_default_is_the_users_setting_when_none_is_configured(bus_address: str) -> None:
    async def scenario() -> None:
        async with settings(bus_address, 75.0) as svc, harness() as h:
            await h.send("a", "request", 1000)
            await eventually(lambda: svc.values[SETPOINT] == 1075.0)
            await h.send("a", "request", None)
            await eventually(lambda: svc.values[SETPOINT] == 75.0)
    run(scenario())


def test_bounds_hold_and_a_large_move_is_paced_in_steps(bus_address: str) -> None:
    async def scenario() -> None:
        config = {"default_w": 0, "max_setpoint_w": 2000, "min_setpoint_w": -1500,
                  "max_step_w": 500, "interval_ms": 200}
        async with settings(bus_address, 0.0) as svc, harness(config) as h:
            start = time.monotonic()
            await h.send("a", "request", 5000)
            await eventually(lambda: svc.values[SETPOINT] == 2000.0, timeout=5)
            took = time.monotonic() - start
            assert written(svc) == [500.0, 1000.0, 1500.0, 2000.0]
            assert took >= 3 * 0.2 - 0.05, took  # one write per interval at most
            await h.send("a", "request", -9000)
            await eventually(lambda: svc.values[SETPOINT] == -1500.0, timeout=5)
            steps = written(svc)[4:]
            assert all(abs(y - x) <= 500 for x, y in zip([2000.0, *steps[:-1]], steps,
                                                          strict=True)), steps
            await h.send("a", "request", None)  # the safe state is not paced
            await eventually(lambda: svc.values[SETPOINT] == 0.0, timeout=1)
            assert written(svc)[-1] == 0.0 and written(svc)[-2] == -1500.0
    run(scenario())


def test_a_change_behind_its_back_is_written_over_while_a_request_is_active(
        bus_address: str) -> None:
    async def scenario() -> None:
        async with settings(bus_address, 0.0) as svc, harness({"default_w": 0}) as h:
            await h.send("a", "request", -800)
            await eventually(lambda: svc.values[SETPOINT] == -800.0)
            svc.set({SETPOINT: 300.0})  # the GUI, VRM or another program
            # written over, paced (1000 W per write at most) from where it was put
            await eventually(lambda: written(svc) == [-800.0, -700.0, -800.0])
            await h.send("a", "request", None)
            await eventually(lambda: svc.values[SETPOINT] == 0.0)
            svc.set({SETPOINT: 300.0})  # nothing requested: left alone
            await asyncio.sleep(0.3)
            assert svc.values[SETPOINT] == 300.0
            assert written(svc) == [-800.0, -700.0, -800.0, 0.0]
    run(scenario())


def test_a_change_that_lands_while_its_own_write_waits_for_the_reply_is_written_over(
        bus_address: str) -> None:
    async def scenario() -> None:
        async with settings(bus_address, 0.0) as svc, harness({"default_w": 0}) as h:
            def meddle(path: str, value: Any) -> None:
                svc.before_reply = None
                svc.set({SETPOINT: 300.0})  # after ours is signalled, before the reply
            svc.before_reply = meddle
            await h.send("a", "request", -800)
            await eventually(lambda: written(svc) == [-800.0, -700.0, -800.0])
            await eventually(lambda: svc.values[SETPOINT] == -800.0)
    run(scenario())


def test_a_failing_requester_and_the_stop_leave_the_default(bus_address: str) -> None:
    async def scenario() -> None:
        async with settings(bus_address, 0.0) as svc:
            async with harness({"default_w": 25}) as h:
                await h.send("a", "request", 900)
                await h.send("b", "request", 100)
                await eventually(lambda: svc.values[SETPOINT] == 1025.0)
                h.runner("a").fail(RuntimeError("broken"), "test")  # the supervisor's path
                await eventually(lambda: svc.values[SETPOINT] == 125.0)
                assert "failed" in h.status("a").text
            assert svc.values[SETPOINT] == 25.0 and written(svc)[-1] == 25.0
    run(scenario())


def test_an_invalid_request_revokes(bus_address: str) -> None:
    async def scenario() -> None:
        async with settings(bus_address, 0.0) as svc, harness({"default_w": 0}) as h:
            await h.send("a", "request", 400)
            await eventually(lambda: svc.values[SETPOINT] == 400.0)
            await h.send("a", "request", "lots")
            # the setting changes (and is signalled) before the arbiter has the reply
            await eventually(lambda: svc.values[SETPOINT] == 0.0 and
                             h.status("a").level == "error")
            assert "revoked" in h.status("a").text
            await h.send("a", "request", 400)
            await eventually(lambda: svc.values[SETPOINT] == 400.0)
            await h.send("a", "request", float("nan"))
            await eventually(lambda: svc.values[SETPOINT] == 0.0)
    run(scenario())


def test_a_refused_write_is_an_error_and_tried_again(bus_address: str) -> None:
    async def scenario() -> None:
        async with settings(bus_address, 0.0) as svc, harness({"default_w": 0}) as h:
            svc.writable[SETPOINT] = 2
            await h.send("a", "request", 600)
            await eventually(lambda: "refused" in h.status("a").text)
            assert h.status("a").level == "error"
            svc.writable[SETPOINT] = 0
            await eventually(lambda: svc.values[SETPOINT] == 600.0, timeout=5)
            await eventually(lambda: h.status("a").level == "ok")
    run(scenario())


def requester_site(tmp_path: Path, broker: Mosquitto, *, default_w: float = 0.0) -> Path:
    """A site whose flow requests what arrives on MQTT `test/request/<name>`."""
    (tmp_path / "want.yaml").write_text(textwrap.dedent("""\
        id: want
        nodes:
          - {id: ev, type: mqtt.in, topic: test/request/ev, payload: json, to: [ev-share]}
          - {id: ev-share, type: energy.setpoint}
          - {id: pv, type: mqtt.in, topic: test/request/pv, payload: json, to: [pv-share]}
          - {id: pv-share, type: energy.setpoint}
        """))
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(f"""\
        connections:
          mqtt: {{main: {{host: {broker.host}, port: {broker.port}}}}}
          setpoint: {{default: {{default_w: {default_w}, interval_ms: 100}}}}
        flows: [{{file: want.yaml}}]
        """))
    return path


def test_the_state_is_on_mqtt_and_sigterm_restores_the_default(
        bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Mosquitto(tmp_path)
        broker.start()
        try:
            async with settings(bus_address, 0.0) as svc, client(broker) as mqtt:
                mqtt.listen("es-ESS/Setpoint/#")
                runtime = RuntimeProcess(requester_site(tmp_path, broker, default_w=30),
                                         tmp_path, env={"DBUS_SYSTEM_BUS_ADDRESS": bus_address})
                await runtime.start()
                await runtime.until(lambda: mqtt.broker.connected, 10, "connected")
                await asyncio.sleep(1.0)  # started; nothing requested: nothing written
                assert svc.writes == []
                mqtt.broker.publish("test/request/ev", "2500", qos=1)
                mqtt.broker.publish("test/request/pv", "-400", qos=1)
                await runtime.until(lambda: svc.values[SETPOINT] == 2130.0, 10, "2130 W")
                await runtime.until(lambda: mqtt.last("es-ESS/Setpoint/Setpoint") == "2130",
                                    5, "the setpoint on MQTT")
                assert mqtt.last("es-ESS/Setpoint/Default") == "30"
                assert mqtt.last("es-ESS/Setpoint/Requests/want/ev-share") == "2500"
                assert mqtt.last("es-ESS/Setpoint/Requests/want/pv-share") == "-400"
                mqtt.broker.publish("test/request/pv", "null", qos=1)  # invalid: revoked
                await runtime.until(lambda: svc.values[SETPOINT] == 2530.0, 10, "2530 W")
                await runtime.until(
                    lambda: mqtt.last("es-ESS/Setpoint/Requests/want/pv-share") == "", 5,
                    "the revoked request emptied")
                assert await runtime.stop() == 0, runtime.output()
                assert svc.values[SETPOINT] == 30.0 and written(svc)[-1] == 30.0
                assert "Traceback" not in runtime.output()
        finally:
            broker.stop()
    run(scenario())


def test_kill_9_the_guardian_restores_the_default_and_holds_nothing_without_a_request(
        bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        broker = Mosquitto(tmp_path)
        broker.start()
        try:
            async with settings(bus_address, 0.0) as svc, client(broker) as mqtt, Guarded(
                    requester_site(tmp_path, broker, default_w=-50), address=bus_address,
                    state_dir=tmp_path / "state",
                    plugins=plugin_path(tmp_path / "plugins")) as g:
                first = await g.runtime_pid()
                await g.wait_for("runtime", timeout=15)
                await asyncio.sleep(1.0)
                assert "holding for" not in g.output  # nothing requested: nothing held
                mqtt.broker.publish("test/request/ev", "3000", qos=1)
                await eventually(lambda: svc.values[SETPOINT] == 2950.0, timeout=15)
                await g.wait_for("holding for want/ev-share: D-Bus", timeout=5)
                mqtt.broker.publish("test/request/ev", "null", qos=1)
                await eventually(lambda: svc.values[SETPOINT] == -50.0, timeout=5)
                released = await g.wait_for("released want/ev-share", timeout=5)
                mqtt.broker.publish("test/request/ev", "3000", qos=1)
                await eventually(lambda: svc.values[SETPOINT] == 2950.0, timeout=5)
                await g.wait_for("holding for want/ev-share: D-Bus", timeout=5,
                                 after=released)
                os.kill(first, signal.SIGKILL)
                killed = time.monotonic()
                await eventually(lambda: svc.values[SETPOINT] == -50.0, timeout=5)
                assert time.monotonic() - killed < 5
                await g.wait_for("want/ev-share: applied D-Bus")
                await g.runtime_pid(other_than=first, timeout=10)
                assert await g.stop() == 0
        finally:
            broker.stop()
    run(scenario())


def test_removing_the_requesting_flow_returns_to_the_default(bus_address: str) -> None:
    """A redeploy or a removal stops the flow: its requests go, the default is written."""
    async def scenario() -> None:
        async with settings(bus_address, 0.0) as svc, harness({"default_w": 10}) as h:
            await h.send("a", "request", 1200)
            await eventually(lambda: svc.values[SETPOINT] == 1210.0)
            await h.runtime.stop_flow("features", reason="removed")
            await eventually(lambda: svc.values[SETPOINT] == 10.0, timeout=2)
            assert written(svc)[-1] == 10.0
    run(scenario())
