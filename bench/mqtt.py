"""MQTT benchmark: a bridge in/+ -> value * 1.5 + 3 -> out/+ against one mosquitto.

Contenders, each in its own process, measured one after another in the same run
against the same broker (the script starts its own mosquitto on a free port):

- runtime: `esess-flowctl run` with mqtt.in -> change (scale 1.5, offset 3) -> mqtt.out
  (the change node is the per-topic formula); the mqtt.in is a telemetry input
  (`keep: latest`, the default);
- runtime-events: the same flow with `keep: every` on the mqtt.in, an event input (every
  message in order, at most its `queue_size`, 10000, waiting; beyond that the oldest is
  dropped and counted);
- gmqtt: a bare gmqtt loop doing the same transform (the floor for our adapter);
- aiomqtt: a bare aiomqtt loop, when aiomqtt is installed;
- node-red: Node-RED 4 with mqtt in -> function -> mqtt out (the peer), when `node` and
  `npm` are on PATH.

The load is a gmqtt client in this process. It spreads its messages over 64 topics and
counts every answer on out/+. Each contender goes through three phases:

1. full rate: `--messages` messages with `--window` (64) in flight, one per topic:
   messages/s and the contender's CPU µs per message;
2. fixed rate: `--rate` msg/s (1000) for `--seconds`: CPU µs per delivered message over
   the whole run, the share of the sent messages that arrived (100 % for a lossless
   contender), and p50/p99 latency;
3. burst (`--burst N`, 0 skips it): N messages sent as fast as the load can, without
   waiting for answers, then 2N; each is counted until the output has been quiet for
   1 s. Printed: the delivered fraction, whether the last value of each topic arrived,
   CPU µs per sent and per delivered message, and RSS before, at its peak (VmHWM, reset
   before each burst) and after. A telemetry input that falls behind delivers the latest value per
   topic, so its fraction is below 100 % by design; an event input delivers every
   message up to its bound. Memory is bounded when the peak above the RSS before the
   first burst does not grow with the burst (less than 1.5 times as much for 2N as for
   N, or under 1 MB).

CPU is user + system time of the contender's process and its children (/proc, in clock
ticks); RSS is summed over the same processes. Two runs of the same code differ by up to
a fifth at 1000 msg/s on a shared machine, so `--rounds` (3) measures every contender
again in fresh processes, each round starting one contender later in the list; the
tables show each figure's median over the rounds (the bursts: the first round's), and
each ratio that counts is the median of the rounds' ratios, as in bench/exporter.py,
printed with every round's. At the end the runtime's ratios against
every other contender are printed (CPU per message at the fixed and at full rate,
msg/s, RSS after the fixed-rate run), those against the floor (gmqtt) and the peer
(node-red) beside the goals of issue 17 with "meets" or "misses" (the fixed-rate goals
are for 1000 msg/s). `--json` prints the same figures as {settings, contenders,
ratios}. Linux only.

    .venv/bin/python bench/mqtt.py --setup    # once: Node-RED and aiomqtt, then exits
    .venv/bin/python bench/mqtt.py [--messages 50000] [--rate 1000] [--seconds 5]
        [--burst 20000] [--rounds 3] [--only runtime --only gmqtt ...] [--json]

`--setup` npm-installs node-red@4 into ~/.cache/esess-bench (ESESS_BENCH_CACHE moves
it; needs node and npm on PATH and the npm registry) unless it is there, and aiomqtt
with `pip install` of the `bench` extra's packages (pyproject.toml; needs PyPI) unless it
imports. It installs just those: reinstalling the project (`-e '.[bench]'`) would point
the virtual environment at whichever checkout ran the bench (a git worktree, say).
A run without `--setup` still installs Node-RED on first use. ESESS_BENCH_PROFILE=FILE
runs the runtime contenders under cProfile (their CPU figures grow) and writes the
profile to FILE; with both, the one run last wins, so pick one with `--only`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gmqtt  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))  # bench/procs.py, also when loaded from a file path

from procs import free_port, mosquitto, peak_rss_mb, reset_peak, rss_mb, total_cpu  # noqa: E402

CACHE = Path(os.environ.get("ESESS_BENCH_CACHE", Path.home() / ".cache" / "esess-bench"))
RED = CACHE / "node_modules" / "node-red"
CONTENDERS = ("runtime", "runtime-events", "gmqtt", "aiomqtt", "node-red")
TOPICS = 64
QUIET = 1.0  # seconds without an answer that end a phase which lost messages

# issue 17's goals: figure -> {contender: the most runtime / contender may be}
GOALS: dict[str, dict[str, float]] = {
    "rate_cpu_us_per_msg": {"gmqtt": 1.2, "node-red": 0.8},  # at 1000 msg/s
    "cpu_us_per_msg": {"gmqtt": 1.3, "node-red": 0.8},  # at full rate
}
ROLES = {"gmqtt": "floor", "node-red": "peer"}

FLOW = """
id: bench
nodes:
  - {{id: source, type: mqtt.in, topic: "in/+", wildcards: [n], keep: {keep}, to: [calc]}}
  - {{id: calc, type: change, scale: 1.5, offset: 3, to: [sink]}}
  - {{id: sink, type: mqtt.out, topic: "out/{{n}}"}}
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


def index_of(payload: bytes) -> int:
    """The load's message number from an answer's payload (value * 1.5 + 3)."""
    return round((float(payload) - 3) / 1.5)


class Load:
    """The load generator: a gmqtt client in this process.

    A phase's keys start with one letter; answers to another phase's keys (late probes)
    are ignored. In a counted phase every answer carries the number of its message.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.client: Any = None
        self.phase = "p"
        self._counted = False
        self.total = 0  # messages a counted phase sends
        self.sent = 0
        self.count = 0  # answers in this phase
        self.last = 0.0  # perf_counter() of the last one
        self.sent_at: list[float] = []  # a counted phase: when message i was sent
        self.latencies: list[float] = []
        self.last_per_topic: set[int] = set()  # numbers of each topic's last message seen
        self.keys: asyncio.Queue[str] = asyncio.Queue()  # uncounted phases: who answered

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
        if not key.startswith(self.phase):
            return 0
        now = time.perf_counter()
        self.count += 1
        self.last = now
        if not self._counted:
            self.keys.put_nowait(key)
            return 0
        with contextlib.suppress(ValueError):
            i = index_of(payload)
            if 0 <= i < len(self.sent_at):
                self.latencies.append(now - self.sent_at[i])
            if self.total - TOPICS <= i < self.total:
                self.last_per_topic.add(i)
        return 0

    def begin(self, phase: str, counted: bool, total: int = 0) -> None:
        self.phase, self.total, self.sent, self.count = phase, total, 0, 0
        self.sent_at, self.latencies, self.last_per_topic = [], [], set()
        self.keys = asyncio.Queue()
        self._counted = counted

    def send(self, key: str, value: float) -> None:
        if self._counted:
            self.sent_at.append(time.perf_counter())
        self.sent += 1
        self.client.publish("in/" + key, str(value))

    async def ready(self, timeout: float = 60) -> None:
        """Probe until the contender answers (it has subscribed)."""
        self.begin("p", counted=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send("probe", 1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self.keys.get()
                    return
        raise SystemExit("contender never answered")

    async def throughput(self, total: int, window: int) -> float:
        """Seconds for `total` answers with `window` messages in flight, one per topic."""
        self.begin("t", counted=False)
        start = time.perf_counter()
        for slot in range(min(window, TOPICS, total)):
            self.send(f"t{slot}", float(self.sent))
        for _ in range(total):
            try:
                async with asyncio.timeout(30):
                    key = await self.keys.get()
            except TimeoutError:
                raise SystemExit(f"full rate: no answer for 30 s after {self.count} "
                                 f"of {total}") from None
            if self.sent < total:
                self.send(key, float(self.sent))
        return time.perf_counter() - start

    async def fixed_rate(self, rate: float, seconds: float, cpu: Callable[[], float]) -> float:
        """Send `rate` msg/s over the topics; the contender's CPU seconds until answered."""
        n = max(1, int(rate * seconds))
        self.begin("l", counted=True, total=n)
        used = cpu()
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.send(f"l{i % TOPICS}", i)
        return await self.settle(cpu) - used

    async def burst(self, phase: str, n: int, cpu: Callable[[], float]) -> float:
        """Send n messages without waiting; the contender's CPU seconds until quiet."""
        self.begin(phase, counted=True, total=n)
        used = cpu()
        for i in range(n):
            self.send(f"{phase}{i % TOPICS}", i)
            if i % TOPICS == TOPICS - 1:
                await asyncio.sleep(0)  # let the socket drain and the answers in
        return await self.settle(cpu) - used

    async def settle(self, cpu: Callable[[], float]) -> float:
        """Wait for every answer, or until none came for QUIET s; CPU at the last one."""
        since = time.perf_counter()
        seen, used = -1, cpu()
        while self.count < self.sent:
            if self.count != seen:
                seen, used = self.count, cpu()
            elif time.perf_counter() - max(self.last, since) > QUIET:
                return used
            await asyncio.sleep(0.02)
        return cpu()


def contender_command(name: str, port: int, work: Path) -> list[str] | None:
    if name in ("runtime", "runtime-events"):
        keep = "every" if name == "runtime-events" else "latest"
        (work / "bench.yaml").write_text(FLOW.format(keep=keep))
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
        if not has_aiomqtt():
            print("aiomqtt: skipped (not installed; `bench/mqtt.py --setup` adds it)",
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


def bench_requirements() -> list[str]:
    """The packages of the project's `bench` extra, as pyproject.toml lists them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["optional-dependencies"]["bench"])


def has_aiomqtt() -> bool:
    return importlib.util.find_spec("aiomqtt") is not None


def node_red() -> Path | None:
    """red.js in the cache, installed from the npm registry the first time."""
    if not (shutil.which("node") and shutil.which("npm")):
        print("node-red: skipped (node and npm are not on PATH)", file=sys.stderr)
        return None
    red = RED / "red.js"
    if not red.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"node-red: installing node-red@4 into {CACHE} (once)", file=sys.stderr)
        subprocess.run(["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund",
                        "node-red@4"], check=True, stdout=subprocess.DEVNULL)
    return red


def node_red_version() -> str:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return str(json.loads((RED / "package.json").read_text())["version"])
    return "?"


def setup() -> int:
    """Install what the optional contenders need; 0 when both are there."""
    if not has_aiomqtt():
        packages = bench_requirements()
        print(f"aiomqtt: pip install {' '.join(packages)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *packages], check=True)
    red = node_red()
    print(f"aiomqtt: {'ready' if has_aiomqtt() else 'missing'}; node-red: "
          f"{f'{node_red_version()} in {CACHE}' if red else 'missing'}")
    return 0 if red and has_aiomqtt() else 1


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


async def bursts(load: Load, pid: int, size: int) -> list[dict[str, Any]]:
    out = []
    for phase, n in (("b", size), ("c", 2 * size)):
        reset_peak(pid)
        before = rss_mb(pid)
        cpu = await load.burst(phase, n, functools.partial(total_cpu, pid))
        out.append({"sent": n, "delivered": load.count,
                    "last_per_topic": len(load.last_per_topic),
                    "cpu_us_per_sent": cpu / n * 1e6,
                    "cpu_us_per_delivered": cpu / max(load.count, 1) * 1e6,
                    "rss_before_mb": before, "rss_peak_mb": peak_rss_mb(pid),
                    "rss_after_mb": rss_mb(pid)})
    return out


async def measure(name: str, port: int, args: argparse.Namespace, *,
                  burst: bool = True) -> dict[str, Any] | None:
    """One round of one contender in a fresh process: full rate, fixed rate and (with
    `burst`) the two bursts."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        command = contender_command(name, port, Path(tmp))
        if command is None:
            return None
        log = Path(tmp) / "stderr.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err,
                                    env=dict(os.environ, PYTHONPATH=str(ROOT)))
        cpu = functools.partial(total_cpu, proc.pid)
        try:
            async with Load(port) as load:
                await load.ready()
                await load.throughput(min(2000, args.messages), args.window)  # warm up
                idle = rss_mb(proc.pid)
                cpu0 = cpu()
                wall = await load.throughput(args.messages, args.window)
                full = cpu() - cpu0
                fixed = await load.fixed_rate(args.rate, args.seconds, cpu)
                lat = sorted(load.latencies) or [float("nan")]
                result: dict[str, Any] = {
                    "msg_per_s": args.messages / wall,
                    "cpu_us_per_msg": full / args.messages * 1e6,
                    "rate_sent": load.sent, "rate_arrived": load.count,
                    "rate_cpu_us_per_msg": fixed / max(load.count, 1) * 1e6,
                    "p50_ms": lat[len(lat) // 2] * 1e3,
                    "p99_ms": lat[int(len(lat) * 0.99)] * 1e3,
                    "rss_idle_mb": idle, "rss_mb": rss_mb(proc.pid),
                }
                if burst and args.burst:
                    result["burst"] = await bursts(load, proc.pid, args.burst)
                return result
        except BaseException:
            tail = log.read_text(errors="replace").strip().splitlines()[-20:]
            print(f"{name} failed; its last output:", *tail, sep="\n  ", file=sys.stderr)
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def ratios(results: dict[str, Any], rate: float) -> dict[str, Any]:
    """runtime / each other contender, with issue 17's goal where it sets one (its
    fixed-rate goals are for 1000 msg/s)."""
    base = results.get("runtime")
    if not base:
        return {}
    out: dict[str, Any] = {}
    for name, r in results.items():
        if name == "runtime":
            continue
        row: dict[str, Any] = {}
        for figure, goals in GOALS.items():
            ratio = base[figure] / r[figure] if r[figure] else float("nan")
            goal = goals.get(name) if figure != "rate_cpu_us_per_msg" or rate == 1000 else None
            row[figure] = {"ratio": ratio, "goal": goal,
                           "meets": None if goal is None else ratio <= goal}
        row["msg_per_s"] = base["msg_per_s"] / r["msg_per_s"]
        row["rss_mb"] = base["rss_mb"] / r["rss_mb"]
        out[name] = row
    return out


def memory_bounded(burst: list[dict[str, Any]]) -> tuple[float, float, bool]:
    """Peak RSS above the RSS before the first burst, for N and 2N; bounded or not."""
    base = burst[0]["rss_before_mb"]
    first, second = (b["rss_peak_mb"] - base for b in burst[:2])
    return first, second, second < 1.5 * first or second < 1.0


def show(rounds: list[dict[str, Any]], args: argparse.Namespace) -> None:
    results = combine(rounds)
    print(f"bridge in/+ -> x*1.5+3 -> out/+ over {TOPICS} topics, one mosquitto; "
          f"full rate: {args.messages} messages, {args.window} in flight; "
          f"fixed rate: {args.rate:.0f} msg/s for {args.seconds:g} s; "
          f"{len(rounds)} round(s), medians")
    print(f"{'':16}{'full rate':^20}  {f'at {args.rate:.0f} msg/s':^36}  {'RSS MB':^13}"
          .rstrip())
    print(f"{'':16}{'msg/s':>8}{'CPU µs/msg':>12}  {'CPU µs/msg':>11}{'arrived':>9}"
          f"{'p50 ms':>8}{'p99 ms':>8}  {'idle':>6}{'after':>7}")
    for name, r in results.items():
        arrived = r["rate_arrived"] / r["rate_sent"]
        print(f"{name:16}{r['msg_per_s']:>8.0f}{r['cpu_us_per_msg']:>12.1f}  "
              f"{r['rate_cpu_us_per_msg']:>11.1f}{arrived:>9.1%}{r['p50_ms']:>8.2f}"
              f"{r['p99_ms']:>8.2f}  {r['rss_idle_mb']:>6.1f}{r['rss_mb']:>7.1f}")
    bursts = {name: r["burst"] for name, r in results.items() if "burst" in r}
    if bursts:
        show_bursts(bursts)
    if "runtime" in results and len(results) > 1:
        show_ratios(round_ratios(rounds, args.rate), args.rate)


def show_bursts(bursts: dict[str, list[dict[str, Any]]]) -> None:
    print(f"\nburst: sent without waiting over {TOPICS} topics, counted until the output "
          f"is quiet for {QUIET:g} s")
    print(f"{'':45}{'CPU µs per':^18}{'RSS MB':^23}".rstrip())
    print(f"{'':16}{'sent':>7}{'delivered':>11}{'last/topic':>12}{'sent':>7}{'delivered':>11}"
          f"{'before':>9}{'peak':>7}{'after':>7}")
    for name, runs in bursts.items():
        for b in runs:
            print(f"{name:16}{b['sent']:>7}{b['delivered'] / b['sent']:>11.1%}"
                  f"{b['last_per_topic']:>9}/{TOPICS}{b['cpu_us_per_sent']:>7.1f}"
                  f"{b['cpu_us_per_delivered']:>11.1f}{b['rss_before_mb']:>9.1f}"
                  f"{b['rss_peak_mb']:>7.1f}{b['rss_after_mb']:>7.1f}")
    print("peak RSS above the RSS before the first burst:")
    for name, runs in bursts.items():
        first, second, bounded = memory_bounded(runs)
        print(f"{name:16}{first:+7.1f} MB for {runs[0]['sent']}, {second:+.1f} MB for "
              f"{runs[1]['sent']}: {'bounded' if bounded else 'grows with the burst'}")


def show_ratios(table: dict[str, Any], rate: float) -> None:
    print(f"\nruntime / other{f'CPU at {rate:.0f} msg/s':>30}{'CPU at full rate':>28}"
          f"{'msg/s':>8}{'RSS':>8}")
    for name, row in sorted(table.items(), key=lambda item: item[0] not in ROLES):
        label = f"{name} ({ROLES[name]})" if name in ROLES else name
        cells = []
        for figure in GOALS:
            cell = row[figure]
            text = f"{cell['ratio']:.2f}x"
            if cell["goal"] is not None:
                text += f" ≤ {cell['goal']:.1f}x {'meets' if cell['meets'] else 'misses'}"
            cells.append(f"{text:>28}")
        print(f"{label:17}{''.join(cells)}{row['msg_per_s']:>7.2f}x{row['rss_mb']:>7.2f}x")
    rounds = next(iter(table.values()))["cpu_us_per_msg"].get("rounds", [])
    if len(rounds) > 1:
        print(f"each ratio: the median of {len(rounds)} rounds'; the rounds' against the "
              "floor and the peer:")
        for name in (n for n in ROLES if n in table):
            for figure, what in zip(GOALS, (f"at {rate:.0f} msg/s", "at full rate"),
                                    strict=True):
                values = ", ".join(f"{v:.2f}" for v in table[name][figure]["rounds"])
                print(f"  {name:9} {what:>14}: {values}")


async def run_all(args: argparse.Namespace, port: int) -> list[dict[str, Any]]:
    """`--rounds` rounds, each contender in a fresh process; each round starts one
    contender later in the list, so none is always measured first or last. The bursts run
    in the first round only (they show what happens, not a ratio)."""
    names = list(args.only or CONTENDERS)
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        shift = number % len(names)
        one: dict[str, Any] = {}
        for name in names[shift:] + names[:shift]:
            result = await measure(name, port, args, burst=number == 0)
            if result is not None:
                one[name] = result
        rounds.append({name: one[name] for name in names if name in one})
    return rounds


MEDIANS = ("msg_per_s", "cpu_us_per_msg", "rate_cpu_us_per_msg", "p50_ms", "p99_ms",
           "rss_idle_mb", "rss_mb")
SUMS = ("rate_sent", "rate_arrived")


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each contender's figures over the rounds: the median of each, the fixed-rate
    messages summed (a loss in any round shows), the bursts of the first round."""
    out: dict[str, Any] = {}
    for name in rounds[0]:
        runs = [r[name] for r in rounds if name in r]
        figures: dict[str, Any] = {k: statistics.median(run[k] for run in runs)
                                   for k in MEDIANS}
        figures.update({k: sum(run[k] for run in runs) for k in SUMS})
        if "burst" in runs[0]:
            figures["burst"] = runs[0]["burst"]
        out[name] = figures
    return out


def round_ratios(rounds: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    """`ratios` of each round, and of the rounds together the median of each ratio (the
    ratio that counts, as in bench/exporter.py), with its goal, and every round's."""
    each = [ratios(r, rate) for r in rounds]
    table: dict[str, Any] = {}
    for name, first in each[0].items():
        rows = [one[name] for one in each if name in one]
        row: dict[str, Any] = {}
        for figure, cell in first.items():
            if isinstance(cell, dict):
                values = [one[figure]["ratio"] for one in rows]
                ratio = statistics.median(values)
                goal = cell["goal"]
                row[figure] = {"ratio": ratio, "goal": goal, "rounds": values,
                               "meets": None if goal is None else ratio <= goal}
            else:
                row[figure] = statistics.median(one[figure] for one in rows)
        table[name] = row
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000, help="full-rate run")
    parser.add_argument("--window", type=int, default=64, help="messages in flight")
    parser.add_argument("--rate", type=float, default=1000, help="msg/s of the fixed-rate run")
    parser.add_argument("--seconds", type=float, default=5, help="length of the fixed-rate run")
    parser.add_argument("--burst", type=int, default=20_000,
                        help=f"messages in the first burst (0: none, else at least {TOPICS})")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, each contender in a fresh process; the ratios that "
                             "count are the medians of the rounds'")
    parser.add_argument("--only", action="append", choices=CONTENDERS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--setup", action="store_true",
                        help="install Node-RED and aiomqtt if missing, then exit")
    args = parser.parse_args()
    if args.setup:
        raise SystemExit(setup())
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    if 0 < args.burst < TOPICS:
        parser.error(f"--burst: 0 or at least {TOPICS}")
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as port:
        rounds = asyncio.run(run_all(args, port))
    if args.json:
        settings = {k: getattr(args, k)
                    for k in ("messages", "window", "rate", "seconds", "burst", "rounds")}
        print(json.dumps({"settings": settings, "contenders": combine(rounds),
                          "ratios": round_ratios(rounds, args.rate), "rounds": rounds},
                         indent=2))
        return
    show(rounds, args)
    if "node-red" in rounds[0]:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
        print(f"(node-red {node_red_version()} on node {node.strip()})")


if __name__ == "__main__":
    main()
