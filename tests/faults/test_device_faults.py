"""A Shelly grid meter fails under the running shipped flow shelly3em-grid: it drops off
the network, answers garbage or a reply nested 50000 deep, reports invalid phases, and
recovers. Read as VRM reads it: the values of com.victronenergy.grid.<name> on D-Bus."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import run
from dbus_fast.aio import MessageBus
from testkit.dbus import value, wait_for
from testkit.flowctl import site
from testkit.process import RuntimeProcess

from sim import mixed_phases_noon
from sim.devices import Shelly3EMGen1

PASSWORD = "fault-pass"
GRID = "com.victronenergy.grid.faulty"
POLL_S = 0.2


def present(v: object) -> bool:
    return v not in ("absent", None)


def test_a_shelly_that_fails_in_every_way_goes_invalid_and_comes_back(
        tmp_path: Path, bus_address: str) -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(mixed_phases_noon(seed=3, settle_s=60),
                                 password=PASSWORD) as shelly:
            path = site(tmp_path, f"""
                state_dir: {tmp_path / 'state'}
                flows:
                  - use: shelly3em-grid
                    vars: {{host: "{shelly.url.removeprefix('http://')}",
                            password: !secret shelly, poll_ms: {int(POLL_S * 1000)},
                            service_name: faulty}}
            """)
            runtime = RuntimeProcess(path, tmp_path, env={
                "DBUS_SYSTEM_BUS_ADDRESS": bus_address, "ESESS_SECRET_SHELLY": PASSWORD})
            await runtime.start()
            bus = await MessageBus(bus_address=bus_address).connect()
            try:
                await wait_for(bus, GRID, "/Ac/L1/Power", present)
                assert await value(bus, GRID, "/Connected") == 1

                # off the network: refused connections, 3 failed polls, then invalid
                await shelly.go_away()
                await wait_for(bus, GRID, "/Connected", lambda v: v == 0)
                assert await value(bus, GRID, "/Ac/L1/Power") is None
                assert await value(bus, GRID, "/Ac/Power") is None
                assert "offline after 3 failed polls" in runtime.output()
                await shelly.come_back()
                await wait_for(bus, GRID, "/Ac/L1/Power", present)
                assert await value(bus, GRID, "/Connected") == 1

                # broken answers are failed polls too, and never fail the node
                for fault in (shelly.faults.garbage, shelly.faults.deep):
                    fault()
                    await wait_for(bus, GRID, "/Connected", lambda v: v == 0)
                    assert await value(bus, GRID, "/Ac/L2/Power") is None
                    shelly.faults.clear()
                    healthy = time.monotonic()
                    await wait_for(bus, GRID, "/Ac/L2/Power", present)
                    # the next poll, one interval later (plus the answer and D-Bus reads)
                    assert time.monotonic() - healthy < POLL_S + 1.0
                    assert await value(bus, GRID, "/Connected") == 1

                # a phase the meter marks invalid is invalid, the others go on
                status = shelly.status()
                status["emeters"][0]["is_valid"] = False
                shelly.faults.answer(json.dumps(status).encode())
                await wait_for(bus, GRID, "/Ac/L1/Power", lambda v: v is None)
                assert await value(bus, GRID, "/Connected") == 1
                assert await value(bus, GRID, "/Ac/L2/Power") == pytest.approx(
                    status["emeters"][1]["power"])
                shelly.faults.clear()
                await wait_for(bus, GRID, "/Ac/L1/Power", present)
            finally:
                bus.disconnect()
            assert await runtime.stop() == 0, runtime.output()
            log = runtime.output()
            assert "restarting in" not in log and "Traceback" not in log, log
            assert log.count("offline after 3 failed polls") == 3, log
            assert log.count("back online") == 3, log

    run(scenario())
