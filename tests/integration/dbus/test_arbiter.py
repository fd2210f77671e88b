"""The grid setpoint arbiter and its requesters (`energy.setpoint`) against a velib-like
settings service on a private bus: requests add up, revoking returns to the default,
bounds and pacing hold, a change behind its back is written over, nothing is written
while nothing is requested, and a failing or stopped requester leaves the default."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from conftest import eventually, run

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
    return VeService(address, SETTINGS, {SETPOINT: value}, writable={SETPOINT: 0})


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
        bus_address: str) -> None:
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
            await eventually(lambda: svc.values[SETPOINT] == 0.0)
            assert h.status("a").level == "error" and "revoked" in h.status("a").text
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
