"""The guardian keeps the safe states when the runtime cannot: kill -9, a blocked loop,
a power loss (kill -9 of both), a runtime that crashes at start, and a clean stop.

Everything is real: `esess-flowctl run --guardian` in a subprocess, a private
dbus-daemon with a velib-like settings service, mosquitto for the MQTT safe publish.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

from conftest import eventually, run
from testkit.guarded import Guarded, plugin_path, rss_kb
from testkit.mosquitto import Mosquitto
from testkit.mqtt import client

from flowengine.guardian.store import PendingStore

from .victron import VeService

SETTINGS = "com.victronenergy.settings"
SETPOINT = "/Settings/CGwacs/AcPowerSetPoint"
PENDING = "guardian-pending.json"


def setpoint_flow(path: Path, value: int, *, extra: str = "") -> Path:
    """A flow that holds the grid setpoint at `value` (safe value 0)."""
    path.write_text(textwrap.dedent(f"""\
        id: hold
        nodes:
          - id: every
            type: timer
            interval_ms: 300
            at_start: true
            value: {value}
            to: [setpoint]
          - id: setpoint
            type: dbus.write
            service: {SETTINGS}
            path: {SETPOINT}
            min_interval_ms: 0
            safe_value: 0
        """) + textwrap.indent(textwrap.dedent(extra), "  "), encoding="utf-8")
    return path


def freezing_flow(tmp_path: Path, value: int) -> tuple[Path, Path]:
    """The setpoint flow plus a node that blocks the loop 1.5 s after the start (once:
    it creates the marker file returned, and a later runtime does not block)."""
    marker = tmp_path / "blocked-once"
    return setpoint_flow(tmp_path / "hold.yaml", value, extra=f"""\
          - id: freeze
            type: test.block
            after_ms: 1500
            once_file: {marker}
        """), marker


def settings(address: str) -> VeService:
    return VeService(address, SETTINGS, {SETPOINT: 50}, writable={SETPOINT: 0})


def test_kill_9_of_the_runtime_writes_the_safe_setpoint_and_a_new_runtime_starts(
        bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        flow = setpoint_flow(tmp_path / "hold.yaml", -3000)
        async with settings(bus_address) as svc, Guarded(
                flow, address=bus_address, state_dir=tmp_path / "state",
                plugins=plugin_path(tmp_path / "plugins")) as g:
            first = await g.runtime_pid()
            await eventually(lambda: svc.values[SETPOINT] == -3000, timeout=15)
            pending = json.loads((tmp_path / "state" / PENDING).read_text())
            assert pending["actions"]["hold/setpoint"]["value"] == 0
            guardian_kb = rss_kb(g.proc.pid)  # type: ignore[union-attr]
            os.kill(first, signal.SIGKILL)
            killed = time.monotonic()
            await eventually(lambda: svc.values[SETPOINT] == 0, timeout=5)
            print(f"kill -9 -> safe value in {time.monotonic() - killed:.3f} s; "
                  f"guardian RSS {guardian_kb} KiB")
            await g.wait_for("hold/setpoint: applied D-Bus")
            second = await g.runtime_pid(other_than=first, timeout=10)
            assert second != first
            await eventually(lambda: svc.values[SETPOINT] == -3000, timeout=15)
            assert guardian_kb < 24 * 1024, f"the guardian takes {guardian_kb} KiB"
            assert await g.stop() == 0
            assert svc.values[SETPOINT] == 0  # the runtime's own safe state on SIGTERM
            assert not (tmp_path / "state" / PENDING).exists()

    run(scenario())


def test_a_blocked_event_loop_is_killed_after_the_timeout_with_the_safe_value_written(
        bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        flow, marker = freezing_flow(tmp_path, -2500)
        async with settings(bus_address) as svc, Guarded(
                flow, address=bus_address, state_dir=tmp_path / "state",
                plugins=plugin_path(tmp_path / "plugins")) as g:
            first = await g.runtime_pid()
            await eventually(lambda: svc.values[SETPOINT] == -2500, timeout=15)
            await eventually(marker.exists, timeout=10)
            blocked = time.monotonic()
            await eventually(lambda: svc.values[SETPOINT] == 0, timeout=15)
            print(f"blocked loop -> safe value in {time.monotonic() - blocked:.3f} s")
            # the runtime's own watchdog named the culprit while the loop was stuck
            line = g.lines[await g.wait_for("the event loop has been blocked")]
            assert "timer hold/freeze:block" in line
            await g.wait_for("no heartbeat from the runtime for 10 s")
            await g.runtime_pid(other_than=first, timeout=10)
            await eventually(lambda: svc.values[SETPOINT] == -2500, timeout=15)
            assert await g.stop() == 0

    run(scenario())


def test_sigterm_to_a_service_whose_runtime_hangs_still_ends_with_the_safe_value(
        bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        flow, marker = freezing_flow(tmp_path, -2000)
        async with settings(bus_address) as svc, Guarded(
                flow, address=bus_address, state_dir=tmp_path / "state",
                plugins=plugin_path(tmp_path / "plugins")) as g:
            await eventually(lambda: svc.values[SETPOINT] == -2000, timeout=15)
            await eventually(marker.exists, timeout=10)
            began = time.monotonic()
            assert await g.stop(timeout=20) == 0  # the hung runtime cannot act on SIGTERM
            assert time.monotonic() - began < 13
            assert svc.values[SETPOINT] == 0
            assert len(g.runtime_pids()) == 1  # stopping: no new runtime

    run(scenario())


def test_power_loss_the_pending_safe_value_is_written_before_any_flow_starts(
        bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        state, plugins = tmp_path / "state", plugin_path(tmp_path / "plugins")
        async with settings(bus_address) as svc:
            async with Guarded(setpoint_flow(tmp_path / "hold.yaml", -4000),
                               address=bus_address, state_dir=state, plugins=plugins) as g:
                await g.runtime_pid()
                await eventually(lambda: svc.values[SETPOINT] == -4000, timeout=15)
                g.kill_all()  # the power goes: neither process applies anything
                await asyncio.wait_for(g.proc.wait(), 5)  # type: ignore[union-attr]
            await asyncio.sleep(0.5)
            assert svc.values[SETPOINT] == -4000  # held, as localsettings keeps it
            assert (state / PENDING).exists()
            svc.writes.clear()
            async with Guarded(setpoint_flow(tmp_path / "hold.yaml", -1000),
                               address=bus_address, state_dir=state, plugins=plugins) as g:
                await eventually(lambda: (SETPOINT, -1000) in svc.writes, timeout=15)
                assert svc.writes[0] == (SETPOINT, 0)  # before the flow wrote anything
                applied = await g.wait_for("hold/setpoint: applied D-Bus")
                started = await g.wait_for("runtime started")
                assert applied < started
                assert await g.stop() == 0

    run(scenario())


def test_a_pending_safe_value_is_written_even_when_the_flow_file_has_an_error_now(
        bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        PendingStore(tmp_path / "state").save({"hold/setpoint": {
            "type": "dbus.set_value", "bus": bus_address, "service": SETTINGS,
            "path": SETPOINT, "signature": "i", "value": 0}})
        broken = tmp_path / "hold.yaml"
        broken.write_text("id: hold\nnodes:\n  - {id: x, type: dbus.wirte}\n")
        async with settings(bus_address) as svc, Guarded(
                broken, address=bus_address, state_dir=tmp_path / "state",
                plugins=plugin_path(tmp_path / "plugins")) as g:
            await eventually(lambda: svc.values[SETPOINT] == 0, timeout=10)
            await g.wait_for("unknown node type 'dbus.wirte'")
            await g.wait_for("starting the runtime again in 1 s")
            assert await g.stop() == 0
        assert not (tmp_path / "state" / PENDING).exists()

    run(scenario())


def test_a_runtime_that_crashes_at_start_is_restarted_with_backoff(tmp_path: Path) -> None:
    async def scenario() -> None:
        crash = [sys.executable, "-c", "import os; os.abort()"]  # a crash in C code
        command = [sys.executable, "-m", "flowengine.guardian", "--state-dir",
                   str(tmp_path / "state"), "--", *crash]
        async with Guarded(tmp_path / "none.yaml", address=None, state_dir=tmp_path,
                           plugins=plugin_path(tmp_path / "plugins"), command=command) as g:
            await asyncio.sleep(6.5)
            starts = len(g.runtime_pids())
            began = time.monotonic()
            assert await g.stop(timeout=5) == 0  # SIGTERM during a backoff ends it at once
            assert time.monotonic() - began < 2
        # starts at 0, 1, 3 and 7 s: no busy restarting
        assert 3 <= starts <= 4, g.output
        assert "ended (signal SIGABRT)" in g.output
        assert "again in 4 s (failure 3)" in g.output

    run(scenario())


def test_kill_9_publishes_the_mqtt_safe_payload_without_a_password_on_disk_or_in_logs(
        tmp_path: Path) -> None:
    password = "s3cret-Pa55word"

    async def scenario() -> None:
        (tmp_path / "mqtt").mkdir()
        broker = Mosquitto(tmp_path / "mqtt")
        broker.start()
        try:
            (tmp_path / "heater.yaml").write_text(textwrap.dedent("""\
                id: heater
                nodes:
                  - {id: every, type: timer, interval_ms: 300, at_start: true, value: 1500,
                     to: [allowance]}
                  - {id: allowance, type: mqtt.out, broker: main, topic: heater/allowance,
                     qos: 1, retain: true, safe_payload: "0"}
                """))
            site = tmp_path / "site.yaml"
            site.write_text(textwrap.dedent(f"""\
                connections:
                  mqtt:
                    main: {{host: {broker.host}, port: {broker.port}, username: esess,
                            password: !secret mqtt_password}}
                flows:
                  - file: heater.yaml
                """))
            async with client(broker) as sub, Guarded(
                    site, address=None, state_dir=tmp_path / "state",
                    plugins=plugin_path(tmp_path / "plugins"),
                    env={"ESESS_SECRET_MQTT_PASSWORD": password}) as g:
                sub.listen("heater/allowance")
                first = await g.runtime_pid()
                await eventually(lambda: sub.last("heater/allowance") == "1500", timeout=15)
                stored = (tmp_path / "state" / PENDING).read_text()
                assert '"payload": "0"' in stored and password not in stored
                os.kill(first, signal.SIGKILL)
                await eventually(lambda: sub.last("heater/allowance") == "0", timeout=5)
                await g.wait_for("heater/allowance: applied MQTT")
                await g.runtime_pid(other_than=first)
                assert await g.stop() == 0
            assert sub.last("heater/allowance") == "0"  # the runtime's own, on SIGTERM
            assert password not in g.output
        finally:
            broker.stop()

    run(scenario())
