"""dbus.write against a velib-like settings service: limits, pacing, errors, safe value."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from conftest import ROOT, eventually, run

from flowengine.errors import ConfigErrors
from flowengine.testing import NodeHarness

from .victron import VeService

SETTINGS = "com.victronenergy.settings"
SETPOINT = "/Settings/CGwacs/AcPowerSetPoint"
WRITE = """
id: setpoint
type: dbus.write
service: com.victronenergy.settings
path: /Settings/CGwacs/AcPowerSetPoint
minimum: -5000
maximum: 5000
min_interval_ms: 1000
safe_value: 0
"""


def settings(address: str, code: int = 0) -> VeService:
    return VeService(address, SETTINGS, {SETPOINT: 50}, writable={SETPOINT: code})


def test_writes_clamped_values_on_change_at_most_once_per_interval(bus_address: str) -> None:
    async def scenario() -> None:
        async with settings(bus_address) as svc:
            async with NodeHarness(WRITE) as h:
                await h.send("grid", 100)
                await eventually(lambda: svc.writes == [(SETPOINT, 100)])
                await h.advance(2000)
                await h.send("grid", 100)  # unchanged: not written
                await h.send("grid", 9000)  # clamped to 5000
                await eventually(lambda: len(svc.writes) == 2)
                await h.send("grid", 200)  # too soon: waits ...
                await h.send("grid", 300)  # ... and the latest wins
                await h.advance(500)
                assert len(svc.writes) == 2
                await h.advance(600)
                await eventually(lambda: len(svc.writes) == 3)
                # the status follows the reply, a moment after the service saw the write
                await eventually(lambda: h.node_status.text == f"{SETPOINT} = 300")
            assert svc.writes == [(SETPOINT, 100), (SETPOINT, 5000.0), (SETPOINT, 300),
                                  (SETPOINT, 0.0)]  # the safe value on stop
            assert svc.values[SETPOINT] == 0.0

    run(scenario())


def test_a_refused_write_and_an_absent_service_are_errors_and_tried_again(
        bus_address: str) -> None:
    """A setpoint that does not change still arrives once the service takes it: the
    failed value is tried again after 1 s, 2 s, ... without a new input."""
    async def scenario() -> None:
        async with NodeHarness(WRITE) as h:
            await h.send("grid", 100)
            await eventually(lambda: h.node_status.level == "error")
            assert h.node_status.text == f"{SETTINGS} is not on the bus"
            async with settings(bus_address, code=2) as svc:
                await h.advance(1000)  # first retry: the service is there, but refuses
                await eventually(lambda: "refused" in h.node_status.text)
                assert h.node_status.text == f"{SETTINGS} {SETPOINT} refused 100 (code 2)"
                assert svc.writes == [(SETPOINT, 100)]
                svc.writable[SETPOINT] = 0
                await h.advance(1000)  # the next retry is 2 s after the last one
                assert len(svc.writes) == 1
                await h.advance(1000)
                await eventually(lambda: h.node_status.level == "ok")
                assert svc.values[SETPOINT] == 100 and len(svc.writes) == 2
                await h.advance(30_000)  # accepted: no more retries
                assert len(svc.writes) == 2
                await h.send("grid", 101)
                await eventually(lambda: svc.values[SETPOINT] == 101)

    run(scenario())


def test_a_failing_node_applies_its_safe_value(bus_address: str) -> None:
    async def scenario() -> None:
        async with settings(bus_address) as svc, NodeHarness(WRITE) as h:
            await h.send("grid", -700)
            await eventually(lambda: svc.writes == [(SETPOINT, -700)])
            h.runner("setpoint").fail(RuntimeError("broken"), "test")  # the supervisor's path
            await eventually(lambda: len(svc.writes) == 2)
            assert svc.writes[-1] == (SETPOINT, 0.0)

    run(scenario())


FLOW = """
id: sigterm
nodes:
  - {id: tick, type: timer, interval_ms: 50, value: 1234, at_start: true, to: [setpoint]}
  - id: setpoint
    type: dbus.write
    service: com.victronenergy.settings
    path: /Settings/CGwacs/AcPowerSetPoint
    min_interval_ms: 0
    safe_value: -1
"""


def test_sigterm_writes_the_safe_value_before_exit(bus_address: str, tmp_path) -> None:
    async def scenario() -> None:
        flow = tmp_path / "flow.yaml"
        flow.write_text(FLOW)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        async with settings(bus_address) as svc:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "esess-flowctl"), "run", str(flow), env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            try:
                await eventually(lambda: (SETPOINT, 1234.0) in svc.writes, timeout=20)
                proc.send_signal(signal.SIGTERM)
                output, _ = await asyncio.wait_for(proc.communicate(), 10)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert proc.returncode == 0, output.decode()
            assert svc.writes[-1] == (SETPOINT, -1.0)
            assert svc.values[SETPOINT] == -1.0
            assert "safe state applied (shutdown)" in output.decode()

    run(scenario())


def test_a_shown_value_is_made_invalid_when_unknown_and_on_stop(bus_address: str) -> None:
    """For a value users read (a time to go), not a setpoint: invalid in, invalid out, and
    nothing left standing after the flow stops."""
    shown = """
        id: time-to-go
        type: dbus.write
        service: com.victronenergy.battery.lynx
        path: /TimeToGo
        min_interval_ms: 0
        on_invalid: invalid
        safe_value: invalid
    """

    async def scenario() -> None:
        async with VeService(bus_address, "com.victronenergy.battery.lynx",
                             {"/TimeToGo": None}, writable={"/TimeToGo": 0}) as svc:
            async with NodeHarness(shown) as h:
                await h.send("ttg", 3600)
                await eventually(lambda: svc.writes == [("/TimeToGo", 3600)])
                await h.send("ttg", None)
                await eventually(lambda: len(svc.writes) == 2)
                await eventually(lambda: h.node_status.text == "/TimeToGo = invalid")
                await h.send("ttg", None)  # invalid already: not written again
                await h.send("ttg", 1800)
                await eventually(lambda: len(svc.writes) == 3)
            assert svc.writes == [("/TimeToGo", 3600), ("/TimeToGo", None),
                                  ("/TimeToGo", 1800), ("/TimeToGo", None)]  # at stop
            assert svc.values["/TimeToGo"] is None

    run(scenario())


def test_on_invalid_invalid_with_a_numeric_safe_value_is_refused() -> None:
    async def scenario() -> None:
        async with NodeHarness(WRITE + "on_invalid: invalid\n"):
            pass

    with pytest.raises(ConfigErrors, match="on_invalid: invalid with a numeric safe_value"):
        run(scenario())


def test_a_service_refusing_every_value_is_logged_once_not_per_value(
        bus_address: str, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with settings(bus_address, code=1), NodeHarness(WRITE) as h:
            for value in (100, 200, 300):
                await h.send("grid", value)
                for _ in range(100):  # paced and retried on the manual clock; the
                    if f"refused {value}" in h.node_status.text:  # replies in real time
                        break
                    await h.advance(500)
                    await asyncio.sleep(0.01)
                assert f"refused {value}" in h.node_status.text
            warnings = [r for r in caplog.records if r.levelname == "WARNING"
                        and "refused" in r.getMessage()]
            assert len(warnings) == 1

    run(scenario())


def retry_armed(h: NodeHarness) -> bool:
    """The node has the refusal back and its retry timer set (the manual clock must not
    move on before: replies come in real time)."""
    node = h.node
    return bool(node._retrying and node._release is not None and node._release.active)


def test_a_new_value_does_not_wait_out_the_backoff_of_a_failed_one(bus_address: str) -> None:
    async def scenario() -> None:
        async with settings(bus_address, code=2) as svc, NodeHarness(WRITE) as h:
            await h.send("grid", 100)
            await eventually(lambda: len(svc.writes) == 1 and retry_armed(h))
            for expected, step in ((2, 1000), (3, 2000), (4, 4000)):  # backing off
                await h.advance(step)
                await eventually(lambda n=expected: len(svc.writes) == n and retry_armed(h))
            svc.writable[SETPOINT] = 0
            await h.send("grid", 200)  # the next retry would be 8 s away
            await h.advance(1000)  # min_interval_ms after the last attempt
            await eventually(lambda: svc.values[SETPOINT] == 200)
            assert svc.writes[-1] == (SETPOINT, 200)

    run(scenario())
