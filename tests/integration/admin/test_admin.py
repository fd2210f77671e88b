"""The admin API against a running runtime: `esess-flowctl run` in a subprocess on a
private bus, and the commands a user types (status, deploy, watch, stop, start).

A flow with a `dbus.service` node has a bus connection of its own, so its service's
unique name tells whether the flow was restarted."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from conftest import ROOT, free_port, run
from testkit.process import RuntimeProcess

from nodes.dbus.bus import BusConnection, open_bus

A = "com.victronenergy.temperature.esess_a"
B = "com.victronenergy.temperature.esess_b"
TAKEN = "com.victronenergy.temperature.esess_taken"
SENSOR = """\
id: {id}
vars:
  name: {{type: string}}
  instance: {{type: integer, default: 20}}
nodes:
  - {{id: svc, type: dbus.service, preset: temperature, name: "${{name}}",
      device_instance: "${{instance}}"}}
"""
TICK = """\
id: tick
nodes:
  - {id: t, type: timer, interval_ms: 50, to: [show]}
  - {id: show, type: log, level: DEBUG}
"""


class Site:
    """A site file with sensor-a, sensor-b and tick; `write(...)` changes it."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.file = directory / "site.yaml"
        (directory / "sensor-a.yaml").write_text(SENSOR.format(id="sensor-a"))
        (directory / "sensor-b.yaml").write_text(SENSOR.format(id="sensor-b"))
        (directory / "tick.yaml").write_text(TICK)
        self.write()

    def write(self, a: str = "name: esess_a", extra: str = "", last: str = "tick") -> None:
        self.file.write_text(textwrap.dedent(f"""\
            state_dir: {self.dir / 'state'}
            flows:
              - {{file: sensor-a.yaml, vars: {{{a}}}}}
              - {{file: sensor-b.yaml, vars: {{name: esess_b, instance: 21}}}}
              - {{file: {last}.yaml}}
            """) + extra)


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[Site, RuntimeProcess]]:
    site = Site(tmp_path)
    runtime = RuntimeProcess(site.file, tmp_path)
    await runtime.start()
    try:
        await runtime.until(lambda: "admin API on" in runtime.output(), 15, "the admin API")
        yield site, runtime
    finally:
        await runtime.stop()


async def flowctl(*args: str | Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "esess-flowctl"), *map(str, args),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def owners(bus: BusConnection) -> tuple[str | None, str | None]:
    return await bus.name_owner(A), await bus.name_owner(B)


def raw_status(site: Site, token: str | None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("localhost", timeout=5)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(site.dir / "state" / "admin.sock"))
    connection.sock = sock
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    connection.request("GET", "/status", headers=headers)
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    return response.status, body


def test_a_request_without_the_right_token_is_refused(bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (site, _):
            token_file = site.dir / "state" / "admin.token"
            assert token_file.stat().st_mode & 0o777 == 0o600
            assert (site.dir / "state" / "admin.sock").stat().st_mode & 0o777 == 0o600
            for token in (None, "wrong", token_file.read_text().strip() + "x"):
                status, body = raw_status(site, token)
                assert status == 401
                assert json.loads(body) == {"error": "no valid token: send the text of "
                                            f"{token_file} as Authorization: Bearer <token>"}
            assert raw_status(site, token_file.read_text().strip())[0] == 200

    run(scenario())


def test_deploy_of_an_unchanged_site_restarts_nothing(bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_bus(bus_address) as bus, running(tmp_path) as (site, _):
            before = await owners(bus)
            assert None not in before
            code, out, err = await flowctl("deploy", site.file)
            assert (code, out) == (0, "sensor-a: unchanged\nsensor-b: unchanged\n"
                                      "tick: unchanged\n"), err
            assert await owners(bus) == before

    run(scenario())


def test_a_changed_var_restarts_that_flow_only(bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_bus(bus_address) as bus, running(tmp_path) as (site, _):
            old_a, old_b = await owners(bus)
            site.write(a="name: esess_a, instance: 30")
            code, out, err = await flowctl("deploy", site.file)
            assert (code, out) == (0, "sensor-a: restarted\nsensor-b: unchanged\n"
                                      "tick: unchanged\n"), err
            new_a, new_b = await owners(bus)
            assert new_b == old_b
            assert new_a not in (None, old_a)

    run(scenario())


def test_deploy_adds_and_removes_flows(bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_bus(bus_address) as bus, running(tmp_path) as (site, runtime):
            before = await owners(bus)
            (site.dir / "tock.yaml").write_text(TICK.replace("id: tick", "id: tock"))
            site.write(last="tock")
            code, out, err = await flowctl("deploy", site.file)
            assert (code, out) == (0, "tick: removed\nsensor-a: unchanged\n"
                                      "sensor-b: unchanged\ntock: added\n"), err
            assert await owners(bus) == before
            _, out, _ = await flowctl("status", "--json", "--site", site.file)
            assert list(json.loads(out)["flows"]) == ["sensor-a", "sensor-b", "tock"]
            assert "flow 'tick': stopped (removed by deploy)" in runtime.output()
        assert runtime.proc is not None and runtime.proc.returncode == 0  # as deployed

    run(scenario())


def test_a_new_version_that_does_not_start_rolls_back(bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_bus(bus_address) as bus, running(tmp_path) as (site, runtime):
            await bus.request_name(TAKEN)
            old_a, old_b = await owners(bus)
            site.write(a="name: esess_taken")
            code, out, err = await flowctl("deploy", site.file)
            assert code == 3, (out, err)
            line = out.splitlines()[0]
            assert line.startswith("sensor-a: rolled back: node 'svc' (dbus.service) did not "
                                   f"start: the bus name '{TAKEN}' is owned by "
                                   f"{bus.unique_name}"), out
            assert out.splitlines()[1:] == ["sensor-b: unchanged", "tick: unchanged"]
            new_a, new_b = await owners(bus)
            assert new_a not in (None, old_a) and new_b == old_b  # the old version again
            assert "sensor-a': new version failed to start; rolling back" in runtime.output()

    run(scenario())


def test_a_broken_file_changes_nothing_and_says_where(bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_bus(bus_address) as bus, running(tmp_path) as (site, _):
            before = await owners(bus)
            (site.dir / "sensor-b.yaml").write_text(
                SENSOR.format(id="sensor-b") + "  - {id: x, type: no.such.type}\n")
            site.write(a="name: esess_a, instance: 31")  # a good change beside it
            code, out, err = await flowctl("deploy", site.file)
            assert (code, out) == (1, "")
            assert f"{site.dir / 'sensor-b.yaml'}:8:13: flow 'sensor-b', node 'x' " \
                "(no.such.type): unknown node type 'no.such.type'" in err, err
            assert err.endswith("1 error(s); nothing was changed\n")
            assert await owners(bus) == before

    run(scenario())


def test_a_change_of_connections_is_refused(bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_bus(bus_address) as bus, running(tmp_path) as (site, _):
            before = await owners(bus)
            site.write(extra="connections:\n  mqtt: {main: {host: 127.0.0.1, port: 1884}}\n")
            code, out, err = await flowctl("deploy", site.file)
            assert (code, out) == (1, "")
            assert err == ("deploy refused: the site's connections changed: they cannot "
                           "change while the runtime runs; restart it (on a GX: svc -t "
                           "/service/es-ESS-flows) to apply them; nothing was changed\n")
            assert await owners(bus) == before

    run(scenario())


def test_watch_shows_the_messages_of_a_node(bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (site, _):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "esess-flowctl"), "watch", "tick/t",
                "--site", str(site.file), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
            assert proc.stdout is not None and proc.stderr is not None
            lines = [(await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
                     for _ in range(3)]
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            for line in lines:
                _, where, topic, equals, value = line.split()
                assert (where, topic, equals) == ("tick/t", "tick", "=")
                assert float(value) > 1e9  # the timer's wall-clock time
            assert (await proc.stderr.read()).decode().startswith(
                "watching flow 'tick', node 't'; Ctrl-C ends")

    run(scenario())


def test_stop_and_start_a_flow(bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_bus(bus_address) as bus, running(tmp_path) as (site, runtime):
            old_a, old_b = await owners(bus)
            assert await flowctl("stop", "sensor-b", "--site", site.file) == \
                (0, "sensor-b: stopped\n", "")
            assert await owners(bus) == (old_a, None)
            _, out, _ = await flowctl("status", "--site", site.file)
            assert "sensor-b  -     stopped: by `esess-flowctl stop`" in out
            assert await flowctl("start", "sensor-b", "--site", site.file) == \
                (0, "sensor-b: started\n", "")
            new_a, new_b = await owners(bus)
            assert new_a == old_a and new_b not in (None, old_b)
            _, out, _ = await flowctl("status", "--json", "--site", site.file)
            assert list(json.loads(out)["flows"]) == ["sensor-a", "sensor-b", "tick"]
            assert await flowctl("stop", "nope", "--site", site.file) == \
                (1, "", "esess-flowctl: no flow 'nope' (flows: sensor-a, sensor-b, tick)\n")
        assert runtime.proc is not None and runtime.proc.returncode == 0  # all ran at the end

    run(scenario())


def test_status_lists_every_flow_and_node(bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (site, _):
            code, out, err = await flowctl("status", "--json", "--site", site.file)
            assert code == 0, err
            body = json.loads(out)
            assert {f: sorted(v["nodes"]) for f, v in body["flows"].items()} == \
                {"sensor-a": ["svc"], "sensor-b": ["svc"], "tick": ["show", "t"]}
            t = body["flows"]["tick"]["nodes"]["t"]
            assert {k: t[k] for k in ("type", "status", "restarts", "dropped")} == \
                {"type": "timer", "status": "ok", "restarts": 0, "dropped": 0}
            assert body["guardian"]["state"] == "none"
            code, out, _ = await flowctl("status", "--state-dir", site.dir / "state")
            header, *rows, guardian = out.splitlines()
            assert header.split() == ["FLOW", "NODE", "STATUS", "LAST", "VALUE", "RESTARTS",
                                      "DROPPED"]
            assert [r.split()[:2] for r in rows] == [["sensor-a", "svc"], ["sensor-b", "svc"],
                                                    ["tick", "t"], ["tick", "show"]]
            assert guardian.startswith("guardian: not guarded")

    run(scenario())


def test_without_a_runtime_the_commands_say_so(tmp_path: Path) -> None:
    async def scenario() -> None:
        for args in (("status",), ("stop", "x"), ("watch", "x")):
            code, out, err = await flowctl(*args, "--state-dir", tmp_path)
            assert (code, out) == (4, "")
            assert err == f"esess-flowctl: no runtime answers at {tmp_path / 'admin.sock'}: " \
                "is `esess-flowctl run` running? (no token in " \
                f"{tmp_path / 'admin.token'})\n"

    run(scenario())


def test_the_admin_api_listens_on_loopback_tcp_when_the_site_says_so(
        bus_address: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        port = free_port()
        site = Site(tmp_path)
        site.write(extra=f"admin: {{listen: tcp, port: {port}}}\n")
        runtime = RuntimeProcess(site.file, tmp_path)
        await runtime.start()
        try:
            await runtime.until(lambda: "admin API on" in runtime.output(), 15, "the API")
            assert f"admin API on 127.0.0.1:{port}" in runtime.output()
            assert not (tmp_path / "state" / "admin.sock").exists()
            code, out, err = await flowctl("status", "--site", site.file)
            assert code == 0 and "tick" in out, err
        finally:
            await runtime.stop()

    run(scenario())
