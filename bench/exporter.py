"""Exporter benchmark: D-Bus changes -> MQTT, the shipped mqtt-exporter flow against the floor.

A publisher process (raw dbus-fast) owns com.victronenergy.vebus.ttyS4 on a private
dbus-daemon, with 50 paths of a Multiplus, and changes them at `--rate` changes/s spread
over the paths (each change a new value), in ticks of 10 ms as a velib service updates:
`--signals mixed` (default) sends half of each tick's changes as one ItemsChanged on `/`
(velib inside `with service as s:`, aiovelib always) and the other half as one
PropertiesChanged on each path (velib's plain `service[path] = v`); `items` and
`properties` send only the one kind. Contenders, each in its own process, in the same
run, on the same bus and against the same mosquitto:

- runtime: `esess-flowctl run` on a site file that enables the shipped
  `flows/mqtt-exporter.yaml` for the 50 paths (topic `bench/runtime/*`);
- floor: a bare dbus-fast + gmqtt script: one match rule, GetItems once, and for each
  signalled change of a followed path a retained QoS 0 publish with the topic and the
  plain payload the flow writes (`bench/floor/Ac/Out/L1/P`, `-1234.5`).

The changes start 1 s after both contenders have published the first values (read
with GetItems), when the runtime has finished starting. An MQTT subscriber here counts
what arrives of each contender: every change must be forwarded. CPU (user + system) is
read from /proc/PID/stat of each contender at the end of the warm-up (`--warmup` s) and
when it has forwarded the last change; CPU microseconds per change is the difference
over the changes sent after the warm-up (/proc counts in 10 ms ticks: a contender
spends some 0.6 s of CPU in a 20 s round, read to about 3 %). Two processes of the very
same code differ by up to 10 % in one round on a shared machine, so `--rounds` (3) runs
it all again with fresh processes, and the median of the rounds' ratios counts.
Printed: forwarded/sent, CPU per change, share of a core and wake-ups per change for
each contender and round, and runtime / floor against the goal (<= 1.15x, issue 17).
`--baseline DIR` runs the runtime of another checkout too, side by side (a change
measured against what it changes, in the same rounds). ESESS_BENCH_PROFILE=FILE runs
the runtime under cProfile (`-m cProfile -o FILE`, written when it stops; the last
round's). Linux only (/proc).

    .venv/bin/python bench/exporter.py [--seconds 20] [--rounds 3] [--warmup 2]
        [--rate 2000] [--signals mixed|items|properties] [--baseline DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gmqtt  # type: ignore[import-untyped]  # noqa: E402
from dbus_fast import Message, MessageType, NameFlag, Variant  # noqa: E402
from dbus_fast.aio import MessageBus  # noqa: E402
from procs import cpu_s, mosquitto  # noqa: E402  # bench/procs.py, beside this file

from nodes.dbus.daemon import PrivateBus  # noqa: E402

SERVICE = "com.victronenergy.vebus.ttyS4"
BUSITEM = "com.victronenergy.BusItem"
GOAL = 1.15  # runtime / floor, CPU per change (issue 17)
TICK_S = 0.01
SETTLE_S = 1.0  # after the first values, for the runtime to finish starting (it may block)
INITIAL = -1  # the change number of the values before the run (-1, or -0.5 for a float)

# 50 paths of a Multiplus (vebus), float unless listed in INTEGERS
PATHS = [f"/Ac/{where}/{phase}/{quantity}" for where in ("ActiveIn", "Out")
         for phase in ("L1", "L2", "L3") for quantity in ("V", "I", "F", "P", "S")] + [
    "/Ac/ActiveIn/P", "/Ac/ActiveIn/S", "/Ac/Out/P", "/Ac/Out/S",
    "/Dc/0/Voltage", "/Dc/0/Current", "/Dc/0/Power", "/Dc/0/Temperature", "/Soc",
    "/State", "/Mode", "/VebusChargeState", "/Ac/ActiveIn/CurrentLimit",
    "/Ac/NumberOfPhases", "/Ac/ActiveIn/ActiveInput", "/Energy/AcIn1ToAcOut",
    "/Energy/AcIn1ToInverter", "/Energy/InverterToAcOut", "/Energy/OutToInverter",
    "/Hub4/L1/AcPowerSetpoint"]
INTEGERS = frozenset({"/State", "/Mode", "/VebusChargeState", "/Ac/NumberOfPhases",
                      "/Ac/ActiveIn/ActiveInput"})
OTHERS = {"/DeviceInstance": 276, "/ProductName": "MultiPlus-II 48/5000/70-50",
          "/Connected": 1, "/Mgmt/ProcessName": "mk2-dbus"}  # not exported


def value_of(path: str, change: int) -> float | int:
    """The value a path has after change number `change` (each one new)."""
    return change if path in INTEGERS else change + 0.5


def payload_of(value: Any) -> str:
    """The plain payload mqtt.out writes: texts as they are, other values as JSON."""
    kind = type(value)
    if kind is str:
        return str(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


# -- the publisher (a process of its own) -------------------------------------------------------

def busitem(value: Any) -> dict[str, Variant]:
    variant = Variant("i", value) if type(value) is int else \
        Variant("s", value) if type(value) is str else Variant("d", value)
    return {"Value": variant, "Text": Variant("s", str(value))}


async def stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def publish(address: str, args: argparse.Namespace) -> None:
    """Own SERVICE, answer GetItems; on "go": warm-up, print "mark N", run, print "sent N"."""
    bus = await MessageBus(bus_address=address).connect()
    paths = PATHS[:args.paths]
    values: dict[str, Any] = {p: value_of(p, INITIAL) for p in paths} | OTHERS

    def answer(msg: Message) -> Message | None:
        if msg.message_type is MessageType.METHOD_CALL and msg.member == "GetItems":
            return Message.new_method_return(
                msg, "a{sa{sv}}", [{p: busitem(v) for p, v in values.items()}])
        return None

    bus.add_message_handler(answer)
    sock = bus._sock  # a wide send buffer, as bench/dbus.py: a slow tick stays in the kernel
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024 * 1024)
    await bus.request_name(SERVICE, NameFlag.DO_NOT_QUEUE)
    commands = await stdin_lines()
    print("ready", flush=True)
    if (await commands.readline()).strip() != b"go":
        bus.disconnect()
        return
    ticks = round((args.warmup + args.seconds) / TICK_S)
    mark = round(args.warmup / TICK_S)
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    for tick in range(ticks):
        if tick == mark:
            print(f"mark {sent}", flush=True)
        delay = start + tick * TICK_S - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        due = round(args.rate * (tick + 1) * TICK_S)
        changes = [(paths[n % len(paths)], n) for n in range(sent, due)]
        sent = due
        batch = len(changes) // 2 if args.signals == "mixed" else \
            len(changes) if args.signals == "items" else 0
        for path, n in changes:
            values[path] = value_of(path, n)
        if batch:
            bus.send(Message.new_signal("/", BUSITEM, "ItemsChanged", "a{sa{sv}}", [
                {path: busitem(values[path]) for path, _ in changes[:batch]}]))
        done = None
        for path, _ in changes[batch:]:
            done = bus.send(Message.new_signal(path, BUSITEM, "PropertiesChanged", "a{sv}",
                                               [busitem(values[path])]))
        if done is not None:
            await done  # keep our own write buffer small
    print(f"sent {sent}", flush=True)
    await commands.readline()  # until the benchmark is done with us
    bus.disconnect()


# -- the floor: dbus-fast + gmqtt, nothing else (a process of its own) ---------------------------

async def floor(address: str, port: int, args: argparse.Namespace) -> None:
    """Publish each change of the followed paths, retained, as the flow does."""
    wanted = frozenset(PATHS[:args.paths])
    prefix = "bench/floor/"
    last: dict[str, str] = {}
    client = gmqtt.Client(f"bench-floor-{os.getpid()}")
    await client.connect("127.0.0.1", port, version=4)
    bus = await MessageBus(bus_address=address).connect()

    def forward(path: str, variant: Variant) -> None:
        if path in wanted:
            value = variant.value
            if variant.signature == "ai" and not value:
                value = None  # invalid
            topic, payload = prefix + path[1:], payload_of(value)
            if last.get(topic) != payload:
                last[topic] = payload
                client.publish(topic, payload, qos=0, retain=True)

    def on_message(msg: Message) -> None:
        if msg.message_type is not MessageType.SIGNAL or msg.interface != BUSITEM:
            return
        if msg.member == "PropertiesChanged":
            forward(msg.path or "/", msg.body[0]["Value"])
        elif msg.member == "ItemsChanged":
            for path, item in msg.body[0].items():
                forward(path, item["Value"])

    bus.add_message_handler(on_message)
    await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                           interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                           body=[f"type='signal',sender='{SERVICE}',interface='{BUSITEM}'"]))
    reply = await bus.call(Message(destination=SERVICE, path="/", interface=BUSITEM,
                                   member="GetItems"))
    assert reply is not None and reply.message_type is MessageType.METHOD_RETURN, reply
    for path, item in reply.body[0].items():
        forward(path, item["Value"])
    await asyncio.Event().wait()  # until terminated


# -- the benchmark ----------------------------------------------------------------------------

def wakeups(pid: int) -> int:
    """How often the process went to sleep and was woken (voluntary context switches)."""
    for text in Path(f"/proc/{pid}/status").read_text().splitlines():
        if text.startswith("voluntary_ctxt_switches:"):
            return int(text.split()[1])
    return 0


@dataclass(frozen=True)
class Reading:
    """A contender's process at one moment: CPU seconds, its wake-ups, the clock."""

    cpu: float
    wakeups: int
    wall: float

    @classmethod
    def of(cls, pid: int) -> Reading:
        return cls(cpu_s(pid), wakeups(pid), time.monotonic())


@dataclass
class Tally:
    """What one contender's process did, as the subscriber and /proc see it."""

    pid: int = 0
    forwarded: int = 0
    last: dict[str, str] = field(default_factory=dict)
    mark: Reading | None = None  # at the end of the warm-up
    done: Reading | None = None  # when it had forwarded the last change (or gave up)


class Subscriber:
    """Counts every message of `bench/<contender>/...`; notes each contender's CPU the
    moment its forwarded count reaches `expected`."""

    def __init__(self, port: int, names: list[str]) -> None:
        self.port = port
        self.tallies = {name: Tally() for name in names}
        self.expected: int | None = None
        self.finished = asyncio.Event()
        self._client: Any = None

    async def __aenter__(self) -> Subscriber:
        self._client = gmqtt.Client(f"bench-subscriber-{os.getpid()}")
        self._client.on_message = self._on_message
        await self._client.connect("127.0.0.1", self.port, version=4)
        self._client.subscribe("bench/#")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.disconnect()

    def _on_message(self, _c: Any, topic: str, payload: bytes, _q: int, _p: Any) -> int:
        name = topic.split("/", 2)[1]
        tally = self.tallies.get(name)
        if tally is None:
            return 0
        tally.forwarded += 1
        tally.last[topic] = payload.decode()
        if tally.forwarded == self.expected and tally.done is None:
            tally.done = Reading.of(tally.pid)
            if all(t.done is not None for t in self.tallies.values()):
                self.finished.set()
        return 0

    def initial_seen(self, paths: list[str]) -> bool:
        want = payload_of
        return all(t.last.get(f"bench/{name}/{p[1:]}") == want(value_of(p, INITIAL))
                   for name, t in self.tallies.items() for p in paths)

    def reset(self) -> None:
        for tally in self.tallies.values():
            tally.forwarded = 0


def contenders(args: argparse.Namespace) -> list[str]:
    return ["runtime", "floor", *(["baseline"] if args.baseline else [])]


def contender_command(name: str, address: str, port: int, work: Path,
                      args: argparse.Namespace) -> tuple[list[str], Path]:
    """The command line of a contender, and the checkout it runs from."""
    if name == "floor":
        return [sys.executable, __file__, "--floor", address, str(port),
                "--paths", str(args.paths)], ROOT
    root = ROOT if name == "runtime" else Path(args.baseline).resolve()
    paths = ", ".join(PATHS[:args.paths])
    work = work / name
    work.mkdir()
    (work / "site.yaml").write_text(textwrap.dedent(f"""\
        connections:
          mqtt:
            main: {{host: 127.0.0.1, port: {port}, client_id: bench-{name}}}
          dbus:
            system: {{address: "{address}"}}
        state_dir: {work / "state"}
        log: {{level: WARNING}}
        flows:
          - use: mqtt-exporter
            instance: bench
            vars: {{service: {SERVICE}, topic: "bench/{name}/*", paths: [{paths}]}}
    """))
    profile = os.environ.get("ESESS_BENCH_PROFILE") if name == "runtime" else None
    prefix = ["-m", "cProfile", "-o", profile] if profile else []  # written when it stops
    return [sys.executable, *prefix, str(root / "esess-flowctl"), "run", "--no-guardian",
            str(work / "site.yaml")], root


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {what}")
        await asyncio.sleep(0.05)


async def line(stream: asyncio.StreamReader | None, timeout: float = 30) -> str:
    assert stream is not None
    async with asyncio.timeout(timeout):
        return (await stream.readline()).decode().strip()


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            async with asyncio.timeout(15):  # a runtime under cProfile writes its profile
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def run_round(args: argparse.Namespace, address: str, port: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DBUS_SYSTEM_BUS_ADDRESS=address)
    paths = PATHS[:args.paths]
    names = contenders(args)
    with tempfile.TemporaryDirectory(prefix="bench-exporter-") as tmp:
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--publish", address, "--paths", str(args.paths),
            "--rate", str(args.rate), "--seconds", str(args.seconds),
            "--warmup", str(args.warmup), "--signals", args.signals,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        procs: list[asyncio.subprocess.Process] = []
        try:
            if await line(publisher.stdout) != "ready":
                raise SystemExit("the publisher did not start")
            async with Subscriber(port, names) as sub:
                for name in names:
                    command, root = contender_command(name, address, port, Path(tmp), args)
                    proc = await asyncio.create_subprocess_exec(
                        *command, stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.DEVNULL, env=env | {"PYTHONPATH": str(root)})
                    procs.append(proc)
                    sub.tallies[name].pid = proc.pid
                await wait_for(lambda: sub.initial_seen(paths), 60,
                               "the contenders' first values")
                await asyncio.sleep(SETTLE_S)
                sub.reset()
                assert publisher.stdin is not None
                publisher.stdin.write(b"go\n")
                await publisher.stdin.drain()
                mark = await line(publisher.stdout)
                for tally in sub.tallies.values():
                    tally.mark = Reading.of(tally.pid)
                warm = int(mark.split()[1])
                sent = int((await line(publisher.stdout,
                                       args.warmup + args.seconds + 60)).split()[1])
                sub.expected = sent
                for tally in sub.tallies.values():
                    if tally.done is None and tally.forwarded >= sent:
                        tally.done = Reading.of(tally.pid)  # before `expected` was known
                if any(t.done is None for t in sub.tallies.values()):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(10):
                            await sub.finished.wait()
                for tally in sub.tallies.values():
                    if tally.done is None:  # it lost some: up to now
                        tally.done = Reading.of(tally.pid)
                final = {p: payload_of(value_of(p, n)) for n, p in
                         ((n, paths[n % len(paths)]) for n in range(max(0, sent - len(paths)),
                                                                    sent))}
                result = summarize(sub, sent, warm, final)
        finally:
            for proc in procs:
                await stop(proc)
            if publisher.stdin is not None:
                publisher.stdin.close()
            await stop(publisher)
    return result


async def run_all(args: argparse.Namespace, address: str, port: int) -> dict[str, Any]:
    return combine([await run_round(args, address, port) for _ in range(args.rounds)], args)


def summarize(sub: Subscriber, sent: int, warm: int, final: dict[str, str]
              ) -> dict[str, Any]:
    """One round: per contender what it forwarded and what it cost."""
    measured = sent - warm
    result: dict[str, Any] = {"sent": sent, "measured_changes": measured}
    for name, t in sub.tallies.items():
        assert t.mark is not None and t.done is not None
        cpu, wall = t.done.cpu - t.mark.cpu, t.done.wall - t.mark.wall
        latest = all(t.last.get(f"bench/{name}/{p[1:]}") == v for p, v in final.items())
        result[name] = {"forwarded": t.forwarded, "latest_values_right": latest,
                        "cpu_s": cpu, "cpu_us_per_change": cpu / measured * 1e6,
                        "cpu_percent": cpu / wall * 100 if wall > 0 else 0.0,
                        "wakeups_per_change": (t.done.wakeups - t.mark.wakeups) / measured}
    floor = result["floor"]["cpu_us_per_change"]
    result["ratio"] = result["runtime"]["cpu_us_per_change"] / floor
    if "baseline" in result:
        result["baseline_ratio"] = result["baseline"]["cpu_us_per_change"] / floor
    result["every_change_forwarded"] = all(
        result[n]["forwarded"] == sent and result[n]["latest_values_right"]
        for n in sub.tallies)
    return result


def combine(rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The rounds and their medians: the ratio that counts is the median of the rounds'."""
    ratio = statistics.median(r["ratio"] for r in rounds)
    forwarded = all(r["every_change_forwarded"] for r in rounds)
    result: dict[str, Any] = {
        "service": SERVICE, "paths": args.paths, "rate": args.rate, "signals": args.signals,
        "seconds": args.seconds, "warmup_s": args.warmup, "goal": GOAL,
        "rounds": rounds, "ratio": ratio, "every_change_forwarded": forwarded,
        "meets_goal": ratio <= GOAL and forwarded,
        "cpu_us_per_change": {name: statistics.median(r[name]["cpu_us_per_change"]
                                                      for r in rounds)
                              for name in contenders(args)}}
    if args.baseline:
        result["baseline"] = str(Path(args.baseline).resolve())
        result["baseline_ratio"] = statistics.median(r["baseline_ratio"] for r in rounds)
        result["runtime_per_baseline"] = statistics.median(
            r["ratio"] / r["baseline_ratio"] for r in rounds)
    return result


def report(r: dict[str, Any]) -> None:
    rounds = r["rounds"]
    print(f"{r['paths']} paths of {r['service']}, {r['rate']:.0f} changes/s ({r['signals']} "
          f"signals); {len(rounds)} round(s) of {r['seconds']:g} s measured after "
          f"{r['warmup_s']:g} s warm-up, fresh processes each; one dbus-daemon, one mosquitto")
    print(f"{'round':<6}{'':10}{'forwarded/sent':>16}{'CPU µs/change':>15}{'% of a core':>13}"
          f"{'wake-ups/change':>17}")
    for number, one in enumerate(rounds, 1):
        for name in ("runtime", "floor", "baseline"):
            c = one.get(name)
            if c is None:
                continue
            forwarded = f"{c['forwarded']}/{one['sent']}" + (
                "" if c["latest_values_right"] else " (wrong latest)")
            print(f"{number:<6}{name:10}{forwarded:>16}{c['cpu_us_per_change']:>15.1f}"
                  f"{c['cpu_percent']:>13.1f}{c['wakeups_per_change']:>17.2f}")
    medians = ", ".join(f"{name} {us:.1f}" for name, us in r["cpu_us_per_change"].items())
    print(f"median CPU µs/change: {medians}")
    verdict = "meets" if r["meets_goal"] else "misses"
    lost = "" if r["every_change_forwarded"] else "; not every change was forwarded"
    each = ", ".join(f"{one['ratio']:.2f}" for one in rounds)
    print(f"runtime / floor, CPU per change: {r['ratio']:.2f}x, median of {each} "
          f"(goal <= {r['goal']:.2f}x: {verdict}{lost})")
    if "baseline" in r:
        print(f"baseline / floor: {r['baseline_ratio']:.2f}x; runtime / baseline: "
              f"{r['runtime_per_baseline']:.2f}x (baseline: {r['baseline']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="measured part of a round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, each with fresh contender processes")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured start of the run")
    parser.add_argument("--rate", type=float, default=2000, help="changes per second")
    parser.add_argument("--paths", type=int, default=len(PATHS), choices=range(1, 51),
                        metavar="1..50", help="paths followed and changed")
    parser.add_argument("--signals", choices=["mixed", "items", "properties"],
                        default="mixed")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run the runtime of another checkout, side by side")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--publish", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--floor", nargs=2, metavar=("ADDRESS", "PORT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        asyncio.run(publish(args.publish, args))
        return
    if args.floor:
        asyncio.run(floor(args.floor[0], int(args.floor[1]), args))
        return
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as port, \
            PrivateBus() as address:
        result = asyncio.run(run_all(args, address, port))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
