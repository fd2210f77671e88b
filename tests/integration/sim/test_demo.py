"""`esess-flowctl demo` as a user runs it: values on MQTT, a clean exit, nothing left behind."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import sys
from pathlib import Path

from conftest import ROOT, eventually, run

from nodes.mqtt.broker import Broker, MqttBrokerConfig

WATCH = re.compile(r"mosquitto_sub -h (\S+) -p (\d+) -t 'es-ESS/#' -v")


def children(pid: int) -> dict[int, str]:
    """pid -> command name of every live child process of `pid`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid:
            found[int(entry.name)] = name
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


async def start_demo(*args: str) -> tuple[asyncio.subprocess.Process, str, int, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowengine.cli", "demo", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            assert line, "the demo ended before it said where to watch:\n" + "".join(lines)
            lines.append(line)
            found = WATCH.search(line)
            if found:
                return proc, found.group(1), int(found.group(2)), lines


async def read_rest(proc: asyncio.subprocess.Process, lines: list[str]) -> None:
    assert proc.stdout is not None
    async for line in proc.stdout:
        lines.append(line.decode())


async def watch_values(host: str, port: int) -> dict[str, bytes]:
    seen: dict[str, bytes] = {}
    client = Broker("test-watch", MqttBrokerConfig(host=host, port=port, status_topic=None))
    client.subscribe("es-ESS/#", lambda topic, payload, _r: seen.__setitem__(topic, payload))
    await client.start()
    try:
        await eventually(lambda: {"es-ESS/demo/Battery/Soc", "es-ESS/demo/Pv/Power",
                                  "es-ESS/demo/Grid/Power", "es-ESS/demo/Battery/Power"}
                         <= set(seen), timeout=15)
    finally:
        await client.close()
    return seen


def test_demo_shows_values_on_mqtt_and_exits_0_after_its_duration() -> None:
    async def scenario() -> None:
        proc, host, port, lines = await start_demo("--duration", "20", "--speed", "60")
        reader = asyncio.create_task(read_rest(proc, lines))
        daemons = [pid for pid, name in children(proc.pid).items() if name == "dbus-daemon"]
        assert len(daemons) == 1, children(proc.pid)
        text = "".join(lines)
        assert "D-Bus     private dbus-daemon at unix:" in text
        assert "flow      demo (examples/demo.yaml)" in text
        seen = await watch_values(host, port)
        soc = float(seen["es-ESS/demo/Battery/Soc"])
        assert 0 <= soc <= 100
        async with asyncio.timeout(40):
            assert await proc.wait() == 0, "".join(lines)
            await reader
        text = "".join(lines)
        sites = [line for line in lines if line.startswith("[site] ")]
        assert len(sites) >= 10  # one a second
        assert "SoC" in sites[-1]
        news = [line for line in lines if line.startswith("  [")]
        assert not [line for line in news if "SoC" in line]  # the site once, not per flow
        said: dict[str, str] = {}
        for line in news:  # a flow's line comes again only when its news changed
            flow, _, doing = line.strip().partition("] ")
            assert said.get(flow) != doing.strip(), line
            said[flow] = doing.strip()
        demo = [line for line in news if line.startswith("  [demo] ")]
        assert demo and "publish (mqtt.out)" in demo[-1]
        # the distributor at work: its figures from MQTT, again only when they changed
        assert "consumer  EV, EV charger (scripted" in text
        shares = [line for line in lines if line.startswith("[distributor] overhead ")]
        assert shares, text
        assert all(a != b for a, b in itertools.pairwise(shares))
        assert re.match(r"\[distributor\] overhead \d+ W  reservation \d+ W  allowance "
                        r"boiler \d+ W.*, EV \d+ W.*, heater \d+ W.*, PoolHeater \d+ W",
                        shares[-1]), shares[-1]
        assert any("boiler 2000 W" in line for line in shares), shares  # ignores the reservation
        # the grid setpoint: the setting, the battery; again only when something changed
        setpoints = [line for line in lines if line.startswith("[setpoint] setting ")]
        assert setpoints, text
        assert re.match(r"\[setpoint\] setting -?\d+ W  .*battery [+-]\d+ W \([+-]\d+\.\d A\)",
                        setpoints[0]), setpoints[0]
        assert "device    EV charging station on AC-out (D-Bus): " \
            "com.victronenergy.evcharger.sim_ev, a car from 10.00 h" in text
        assert "nothing is left running" in text
        assert not alive(daemons[0])
        # the embedded broker went with the demo process
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            pass
        else:
            writer.close()
            raise AssertionError("something still listens on the demo's broker port")
    run(scenario())


def test_sigterm_stops_the_demo_cleanly() -> None:
    async def scenario() -> None:
        proc, host, port, lines = await start_demo("--speed", "600")
        reader = asyncio.create_task(read_rest(proc, lines))
        daemons = [pid for pid, name in children(proc.pid).items() if name == "dbus-daemon"]
        await watch_values(host, port)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0, "".join(lines)
            await reader
        assert "stopping: flows first (safe states applied)" in "".join(lines)
        assert daemons and not any(alive(pid) for pid in daemons)
    run(scenario())
