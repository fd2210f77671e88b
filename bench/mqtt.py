"""MQTT benchmark: a bridge in/# -> value * 1.5 + 3 -> out/# against one mosquitto.

Contenders, each in its own process, measured in the same run against the same broker:

- runtime: `esess-flowctl run` with mqtt.in -> change (scale 1.5, offset 3) -> mqtt.out
  (the change node is the per-topic formula; `formula` combines inputs by name);
- gmqtt: a bare gmqtt loop doing the same transform (the floor for our adapter);
- aiomqtt: a bare aiomqtt loop (`pip install -e '.[bench]'` installs it);
- node-red: Node-RED 4 with mqtt in -> function -> mqtt out, when `node` and `npm` are
  on the machine (installed from the npm registry into ~/.cache/esess-bench).

For each: messages/s with `--window` messages in flight, CPU microseconds per message
of the contender's process (from /proc), p50/p99 latency at a fixed `--rate` msg/s, and
resident memory idle and after the run. Linux only (reads /proc).

    .venv/bin/python bench/mqtt.py [--messages 50000] [--rate 1000] [--seconds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gmqtt  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("ESESS_BENCH_CACHE", Path.home() / ".cache" / "esess-bench"))
TOPICS = 64
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

FLOW = """
id: bench
nodes:
  - {id: source, type: mqtt.in, topic: "in/+", wildcards: [n], to: [calc]}
  - {id: calc, type: change, scale: 1.5, offset: 3, to: [sink]}
  - {id: sink, type: mqtt.out, topic: "out/{n}"}
"""

GMQTT_BRIDGE = """
import asyncio, sys, gmqtt
from gmqtt.mqtt.constants import MQTTv311
async def main():
    c = gmqtt.Client("bench-gmqtt")
    def on_message(client, topic, payload, qos, props):
        client.publish("out/" + topic[3:], str(float(payload) * 1.5 + 3))
        return 0
    c.on_message = on_message
    await c.connect("127.0.0.1", int(sys.argv[1]), version=MQTTv311)
    c.subscribe("in/+")
    await asyncio.Event().wait()
asyncio.run(main())
"""

AIOMQTT_BRIDGE = """
import asyncio, sys, aiomqtt
async def main():
    async with aiomqtt.Client("127.0.0.1", int(sys.argv[1]), identifier="bench-aio") as c:
        await c.subscribe("in/+")
        async for m in c.messages:
            await c.publish("out/" + m.topic.value[3:], str(float(m.payload) * 1.5 + 3))
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mosquitto(directory: Path) -> Iterator[int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\n"
                    "allow_anonymous true\npersistence false\nmax_queued_messages 100000\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            if time.monotonic() > deadline:
                raise SystemExit("mosquitto did not start (scripts/system-deps installs it)")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    """RSS of a process and its children (Node-RED runs under npm's node)."""
    total = 0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
    return total / 1e6


def children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = [int(k) for k in kids]
    for k in list(out):
        out += children(k)
    return out


def total_cpu(pid: int) -> float:
    total = 0.0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            total += cpu_s(p)
    return total


class Load:
    """The load generator: a gmqtt client in this process."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client: Any = None
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.arrived: asyncio.Queue[str] = asyncio.Queue()

    async def __aenter__(self) -> Load:
        self.client = gmqtt.Client(f"bench-load-{os.getpid()}")
        self.client.on_message = self._on_message
        await self.client.connect("127.0.0.1", self.port, version=4)
        self.client.subscribe("out/+")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    def _on_message(self, _c: Any, topic: str, payload: bytes, _q: int, _p: Any) -> int:
        key = topic[4:]
        sent = self.sent_at.pop(key, None)
        if sent is not None:
            self.latencies.append(time.perf_counter() - sent)
        self.arrived.put_nowait(key)
        return 0

    def send(self, key: str, value: float) -> None:
        self.sent_at[key] = time.perf_counter()
        self.client.publish("in/" + key, str(value))

    async def ready(self, timeout: float = 60) -> None:
        """Probe until the contender answers (it has subscribed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send("probe", 1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    while await self.arrived.get() != "probe":
                        pass
                    return
        raise SystemExit("contender never answered")

    def drain(self) -> None:
        while not self.arrived.empty():
            self.arrived.get_nowait()
        self.latencies.clear()
        self.sent_at.clear()

    async def throughput(self, total: int, window: int) -> float:
        self.drain()
        start = time.perf_counter()
        sent = 0
        for slot in range(min(window, TOPICS)):
            self.send(f"t{slot}", float(sent))
            sent += 1
        for _ in range(total):
            async with asyncio.timeout(30):
                key = await self.arrived.get()
            if sent < total:
                self.send(key, float(sent))
                sent += 1
        return time.perf_counter() - start

    async def latency(self, rate: float, seconds: float) -> list[float]:
        self.drain()
        n = int(rate * seconds)
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.send(f"l{i % TOPICS}", float(i))
        async with asyncio.timeout(10):
            while len(self.latencies) < n:
                await asyncio.sleep(0.05)
        return sorted(self.latencies)


def contender_command(name: str, port: int, work: Path) -> list[str] | None:
    if name == "runtime":
        (work / "bench.yaml").write_text(FLOW)
        (work / "site.yaml").write_text(textwrap.dedent(f"""
            connections:
              mqtt:
                main: {{host: 127.0.0.1, port: {port}, client_id: bench-runtime}}
            state_dir: {work / "state"}
            log: {{level: WARNING}}
            flows: [{{file: bench.yaml}}]
        """))
        profile = os.environ.get("ESESS_BENCH_PROFILE")  # a cProfile of the runtime's run
        prefix = ["-m", "cProfile", "-o", profile] if profile else []
        return [sys.executable, *prefix, str(ROOT / "esess-flowctl"), "run",
                str(work / "site.yaml")]
    if name == "gmqtt":
        return [sys.executable, "-c", GMQTT_BRIDGE, str(port)]
    if name == "aiomqtt":
        try:
            import aiomqtt  # type: ignore[import-not-found] # noqa: F401
        except ImportError:
            print("aiomqtt: not installed; `.venv/bin/pip install -e '.[bench]'` adds it",
                  file=sys.stderr)
            return None
        return [sys.executable, "-c", AIOMQTT_BRIDGE, str(port)]
    if name == "node-red":
        red = node_red()
        if red is None:
            return None
        user = work / "node-red"
        user.mkdir(exist_ok=True)
        (user / "flows.json").write_text(json.dumps(node_red_flow(port)))
        return ["node", str(red), "--userDir", str(user), "--port", str(free_port()),
                str(user / "flows.json")]
    raise ValueError(name)


def node_red() -> Path | None:
    if not (shutil.which("node") and shutil.which("npm")):
        print("node-red: skipped (node and npm are not on this machine)", file=sys.stderr)
        return None
    red = CACHE / "node_modules" / "node-red" / "red.js"
    if not red.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"node-red: installing into {CACHE} (once)", file=sys.stderr)
        subprocess.run(["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund",
                        "node-red@4"], check=True, stdout=subprocess.DEVNULL)
    return red


def node_red_flow(port: int) -> list[dict[str, Any]]:
    return [
        {"id": "broker", "type": "mqtt-broker", "broker": "127.0.0.1", "port": str(port),
         "clientid": "bench-node-red", "protocolVersion": "4", "keepalive": "60"},
        {"id": "tab", "type": "tab", "label": "bench"},
        {"id": "in", "type": "mqtt in", "z": "tab", "topic": "in/+", "qos": "0",
         "datatype": "utf8", "broker": "broker", "wires": [["calc"]]},
        {"id": "calc", "type": "function", "z": "tab", "outputs": 1, "wires": [["out"]],
         "func": "msg.payload = String(Number(msg.payload) * 1.5 + 3);\n"
                 "msg.topic = 'out/' + msg.topic.slice(3);\nreturn msg;"},
        {"id": "out", "type": "mqtt out", "z": "tab", "topic": "", "qos": "0",
         "broker": "broker", "wires": []},
    ]


async def measure(name: str, port: int, args: argparse.Namespace) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        command = contender_command(name, port, Path(tmp))
        if command is None:
            return None
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        try:
            async with Load(port) as load:
                await load.ready()
                await load.throughput(min(2000, args.messages), args.window)  # warm up
                idle = rss_mb(proc.pid)
                cpu0 = total_cpu(proc.pid)
                wall = await load.throughput(args.messages, args.window)
                cpu = total_cpu(proc.pid) - cpu0
                lat = await load.latency(args.rate, args.seconds)
                return {
                    "msg_per_s": args.messages / wall,
                    "cpu_us_per_msg": cpu / args.messages * 1e6,
                    "p50_ms": lat[len(lat) // 2] * 1e3,
                    "p99_ms": lat[int(len(lat) * 0.99)] * 1e3,
                    "rss_idle_mb": idle, "rss_mb": rss_mb(proc.pid),
                }
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def run_all(args: argparse.Namespace, port: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in args.only or ("runtime", "gmqtt", "aiomqtt", "node-red"):
        result = await measure(name, port, args)
        if result is not None:
            results[name] = result
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--window", type=int, default=64, help="messages in flight")
    parser.add_argument("--rate", type=float, default=1000, help="msg/s for the latency run")
    parser.add_argument("--seconds", type=float, default=5, help="length of the latency run")
    parser.add_argument("--only", action="append",
                        choices=["runtime", "gmqtt", "aiomqtt", "node-red"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as port:
        results = asyncio.run(run_all(args, port))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.messages} messages, bridge in/+ -> x*1.5+3 -> out/+, one mosquitto; "
          f"latency at {args.rate:.0f} msg/s for {args.seconds:.0f} s")
    print(f"{'':10}{'msg/s':>9}{'CPU µs/msg':>12}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'RSS idle MB':>13}{'RSS MB':>8}")
    for name, r in results.items():
        print(f"{name:10}{r['msg_per_s']:>9.0f}{r['cpu_us_per_msg']:>12.1f}{r['p50_ms']:>9.2f}"
              f"{r['p99_ms']:>9.2f}{r['rss_idle_mb']:>13.1f}{r['rss_mb']:>8.1f}")
    base = results.get("runtime")
    if base:
        for name, r in results.items():
            if name != "runtime":
                cpu = base["cpu_us_per_msg"] / r["cpu_us_per_msg"]
                print(f"runtime / {name}: CPU per message {cpu:.2f}x, "
                      f"msg/s {base['msg_per_s'] / r['msg_per_s']:.2f}x, "
                      f"RSS {base['rss_mb'] / r['rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
