"""`esess-flowctl demo` and `esess-flowctl sim`: the whole system on any Linux machine.

demo: a private dbus-daemon, an MQTT broker (embedded, or `--broker host:port`), the
simulated Venus OS and devices (`sim.site`), and the runtime with every shipped flow
(flows/*.yaml) and examples/demo.yaml enabled against them. It says what runs and
where to watch, then once a second the site's line (time, SoC, PV, grid, battery,
load), the solar overhead distributor's figures whenever they change (overhead
available, battery reservation, each consumer's allowance: `[distributor]`, read from its
MQTT topics), the grid setpoint whenever it, the arbiter's requests or the EV change
(`[setpoint]`: the setting on the simulated settings service, the arbiter's default and
requests from its MQTT topics, battery power and current, the EV while it charges), the
Wattpilot's VRM mode, status and power whenever they change (`[wattpilot]`, from the
flow's MQTT mirror es-ESS/FroniusWattpilot/...), and under them each flow whose news
changed (its problems, or what reached its outputs). Half a simulated hour after the
start a car is plugged into the simulated Fronius Wattpilot (flow fronius-wattpilot; it
charges when the distributor grants it surplus), an hour after the start one arrives at
the simulated EV charging station.
Ctrl-C, SIGTERM or `--duration` stop it: the flows first (safe states applied), then
the devices, the simulated Venus OS, the broker and the dbus-daemon.

sim: only the simulated site, for developing a flow with `esess-flowctl run` in
another shell; it prints the addresses to use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from flowengine.connections import Connections
from flowengine.errors import ConfigError
from flowengine.log import configure_logging
from flowengine.model import JsonValue, Message
from flowengine.plan import FlowPlan
from flowengine.preflight import check_claims, load_files
from flowengine.registry import Registry
from flowengine.runner import NodeRunner
from flowengine.runtime import Runtime
from flowengine.state import StateStore
from flowengine.threads import install as install_executor
from nodes.dbus.daemon import DaemonMissing
from sim.overhead import OverheadWatch
from sim.setpoint_watch import SetpointWatch
from sim.site import FLOW_VARS, SimSite, SiteOptions, parse_broker
from sim.venus.settings import SETPOINT
from sim.wattpilot_watch import WattpilotWatch

__all__ = ["demo_files", "run_demo", "run_sim"]

REPO = Path(__file__).resolve().parent.parent
DEMO_FLOW = REPO / "examples" / "demo.yaml"
OUTPUT_TYPES = ("mqtt.out", "dbus.write", "dbus.service", "http.request")
STATUS_NEWS = {"fronius-wattpilot": "wattpilot"}
"""flow -> the node whose status text is the flow's news (its outputs mirror every path,
one of them a clock)"""

log = logging.getLogger("sim.demo")


def _options(args: argparse.Namespace) -> SiteOptions:
    if args.speed <= 0:
        raise SystemExit("--speed must be > 0")
    try:
        broker = parse_broker(args.broker) if args.broker else None
    except ValueError as exc:
        raise SystemExit(f"--broker: {exc}") from None
    return SiteOptions(speed=args.speed, seed=args.seed, start_hour=args.start_hour,
                       broker=broker, freeze=getattr(args, "freeze", False))


def _demo_options(args: argparse.Namespace) -> SiteOptions:
    """The demo's site: half an hour after the start a car is plugged into the Wattpilot
    (it charges from solar surplus), an hour after it one comes to the EV charging station
    (it charges from the grid)."""
    options = _options(args)
    return dataclasses.replace(options, ev_start_hour=(options.start_hour + 1.0) % 24.0,
                               wattpilot_start_hour=(options.start_hour + 0.5) % 24.0)


def demo_files(repo: Path = REPO) -> list[Path]:
    """Every shipped flow, then the demo's own flow."""
    return [*sorted((repo / "flows").glob("*.yaml")), repo / "examples" / "demo.yaml"]


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _wait(stop: asyncio.Event, duration: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(duration):
            await stop.wait()


def _say(out: TextIO, text: str = "") -> None:
    print(text, file=out, flush=True)


# -- sim --------------------------------------------------------------------------------------

def run_sim(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        return asyncio.run(_sim(_options(args), args.duration, out))
    except DaemonMissing as exc:
        print(f"esess-flowctl sim: {exc}", file=sys.stderr)
        return 2


async def _sim(options: SiteOptions, duration: float | None, out: TextIO) -> int:
    stop = asyncio.Event()
    with _stop_on_signals(stop):
        async with SimSite(options) as site:
            _say(out, "es-ESS flows simulator: a Venus OS and devices, nothing real.")
            for line in site.describe():
                _say(out, line)
            _say(out)
            broker = f"host: {site.broker_host}, port: {site.broker_port}"
            _say(out, "In another shell, run a site file against it (docs/development.md):")
            _say(out, f"  export DBUS_SYSTEM_BUS_ADDRESS='{site.bus_address}'")
            _say(out, "  ./esess-flowctl run SITE")
            _say(out, "with both brokers, yours (main) and the GX's own (local), at the "
                      "simulator's in the site file:")
            _say(out, f"  connections: {{mqtt: {{main: {{{broker}}}, "
                      f"local: {{{broker}, status_topic: null}}}}}}")
            _say(out, "Ctrl-C stops the simulator.")
            while not stop.is_set():
                await _wait(stop, 5.0 if duration is None else min(5.0, duration))
                _say(out, f"[sim] {site.summary()}")
                if duration is not None:
                    duration -= 5.0
                    if duration <= 0:
                        break
    _say(out, "simulator stopped: devices, Venus OS, broker and dbus-daemon are gone")
    return 0


# -- demo -------------------------------------------------------------------------------------

def run_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    options = _demo_options(args)
    registry = Registry.default()
    files = demo_files()
    errors = _validate(registry, files)
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        print("the demo's flows do not validate; nothing was started", file=sys.stderr)
        return 1
    configure_logging(args.log_level)
    try:
        return asyncio.run(_demo(registry, files, options, args.duration, out))
    except DaemonMissing as exc:
        print(f"esess-flowctl demo: {exc}", file=sys.stderr)
        return 2


def _validate(registry: Registry, files: Sequence[Path]) -> list[ConfigError]:
    """Every file with the demo's vars (examples where the site's addresses go), and no
    two of them claiming the same thing (a D-Bus name, a consumer key)."""
    errors: list[ConfigError] = []
    plans: list[FlowPlan] = []
    for file in files:
        loaded = load_files([str(file)], registry, variables=FLOW_VARS.get(file.stem, {}),
                            for_run=False)
        errors.extend(loaded.errors)
        plans.extend(loaded.plans)
    return errors + check_claims(plans)


def _plans(registry: Registry, files: Sequence[Path], site: SimSite,
           out: TextIO) -> list[FlowPlan]:
    """Each flow with the vars that point it at the simulated devices (examples elsewhere)."""
    plans: list[FlowPlan] = []
    for file in files:
        loaded = load_files([str(file)], registry, variables=site.flow_vars.get(file.stem, {}),
                            for_run=False)
        for error in loaded.errors:
            _say(out, f"not started: {error}")
        plans.extend(loaded.plans)
    return plans


def _connections(registry: Registry, site: SimSite) -> Connections:
    broker = {"host": site.broker_host, "port": site.broker_port}
    return Connections(registry.connection_kinds, {
        "dbus": {"system": {"address": site.bus_address}},
        "mqtt": {"main": {**broker, "client_id": f"esess-demo-main-{os.getpid()}"},
                 "local": {**broker, "client_id": f"esess-demo-local-{os.getpid()}",
                           "status_topic": None}},
    })


async def _demo(registry: Registry, files: Sequence[Path], options: SiteOptions,
                duration: float | None, out: TextIO) -> int:
    install_executor()  # as `run` does: a lookup or a password hash leaves no idle thread
    stop = asyncio.Event()
    started: list[FlowPlan] = []
    plans: list[FlowPlan] = []
    with _stop_on_signals(stop):
        async with SimSite(options) as site, \
                OverheadWatch(site.broker_host, site.broker_port) as overhead, \
                SetpointWatch(site.broker_host, site.broker_port) as setpoint, \
                WattpilotWatch(site.broker_host, site.broker_port) as wattpilot:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = site.bus_address
            plans = _plans(registry, files, site, out)
            runtime = Runtime(registry, state=StateStore(None),
                              connections=_connections(registry, site))
            try:
                watches: list[_FlowWatch] = []
                for plan in plans:
                    watch = _FlowWatch(plan)
                    try:
                        await runtime.start_flow(plan, tap=watch.tap)
                        started.append(plan)
                        watches.append(watch)
                    except Exception as exc:  # a flow that fails to start is reported
                        _say(out, f"flow '{plan.spec.id}' did not start: {exc}")
                _banner(out, site, started)
                await _live(out, site, _Watches(overhead, setpoint, wattpilot), runtime,
                            watches, stop, duration)
            finally:
                _say(out, "stopping: flows first (safe states applied) ...")
                await runtime.stop("shutdown")
        _say(out, "stopped: flows, simulated devices and Venus OS, "
                  + ("the embedded broker " if options.broker is None else "")
                  + "and the dbus-daemon; nothing is left running")
    return 0 if plans and len(started) == len(plans) == len(files) else 1


def _banner(out: TextIO, site: SimSite, plans: Sequence[FlowPlan]) -> None:
    host, port = site.broker_host, site.broker_port
    _say(out, "es-ESS flows demo: the runtime with its flows against a simulated "
              "Venus OS, on this machine only.")
    for line in site.describe():
        _say(out, line)
    for plan in plans:
        where = os.path.relpath(plan.spec.file, REPO) if plan.spec.file else "?"
        _say(out, f"  flow      {plan.spec.id} ({where}): {plan.spec.description or ''}")
    _say(out)
    _say(out, "Watch it on MQTT (topics es-ESS/#; the demo flow publishes es-ESS/demo/...):")
    _say(out, f"  mosquitto_sub -h {host} -p {port} -t 'es-ESS/#' -v")
    _say(out, "Ctrl-C stops everything cleanly.")
    _say(out)


@dataclasses.dataclass(frozen=True)
class _Watches:
    overhead: OverheadWatch
    setpoint: SetpointWatch
    wattpilot: WattpilotWatch


def _setpoint_line(site: SimSite, watch: SetpointWatch) -> tuple[str, str] | None:
    """(the line, what decides whether it changed: all but the battery) or None."""
    venus = site.venus
    if venus is None:
        return None
    system, ev = venus.system.values, venus.evcharger

    def number(values: dict[str, JsonValue], path: str) -> float | None:
        value = values.get(path)
        return float(value) if isinstance(value, int | float) else None
    setting = number(venus.settings.values, SETPOINT)
    ev_w = number(ev.values, "/Ac/Power") if ev is not None else None
    ev_w = ev_w if ev is not None and ev.values.get("/Status") == 2 else None
    line = watch.line(setting_w=setting, ev_w=ev_w,
                      battery_w=number(system, "/Dc/Battery/Power"),
                      battery_a=number(system, "/Dc/Battery/Current"))
    key = watch.line(setting_w=setting, ev_w=None if ev_w is None else round(ev_w, -2),
                     battery_w=None, battery_a=None)
    return line, key


async def _live(out: TextIO, site: SimSite, watching: _Watches, runtime: Runtime,
                watches: Sequence[_FlowWatch], stop: asyncio.Event,
                duration: float | None) -> None:
    """Once a second: the site's line, the distributor's, the setpoint's and the
    Wattpilot's when they changed, and under them each flow whose news changed."""
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    width = max((len(w.flow_id) for w in watches), default=0) + 2
    said: dict[str, str] = {}
    while not stop.is_set():
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            return
        await _wait(stop, 1.0 if left is None else min(1.0, left))
        _say(out, f"[site] {site.summary()}")
        figures = watching.overhead.line()
        if figures is not None and said.get("[distributor]") != figures:
            said["[distributor]"] = figures
            _say(out, f"[distributor] {figures}")
        setpoint = _setpoint_line(site, watching.setpoint)
        if setpoint is not None and said.get("[setpoint]") != setpoint[1]:
            said["[setpoint]"] = setpoint[1]
            _say(out, f"[setpoint] {setpoint[0]}")
        charger, charger_key = watching.wattpilot.line(), watching.wattpilot.key()
        if charger is not None and said.get("[wattpilot]") != charger_key:
            said["[wattpilot]"] = charger_key or ""
            _say(out, f"[wattpilot] {charger}")
        for watch in watches:
            news = watch.doing(runtime)
            if said.get(watch.flow_id) != news:
                said[watch.flow_id] = news
                _say(out, f"  {'[' + watch.flow_id + ']':<{width}} {news}")


class _FlowWatch:
    """What one flow does: problems first, else the status of its node in STATUS_NEWS,
    else what reached its output nodes (seen by the flow's tap, per output port: a node
    that feeds several outputs counts for each only what it sent there)."""

    def __init__(self, plan: FlowPlan) -> None:
        self.flow_id = plan.spec.id
        self.outputs = [nid for nid, p in plan.nodes.items() if p.spec.type in OUTPUT_TYPES]
        self._reaches = {(nid, port): [target for target, _ in targets
                                       if target in self.outputs]
                         for nid, p in plan.nodes.items()
                         for port, targets in p.routes.items()}
        self.last: dict[str, Message] = {}
        self.topics: dict[str, set[str]] = {out: set() for out in self.outputs}

    def tap(self, runner: NodeRunner, port: str, msg: Message) -> None:
        for out in self._reaches.get((runner.node_id, port), ()):
            self.last[out] = msg
            self.topics[out].add(msg.topic)

    def doing(self, runtime: Runtime) -> str:
        run = runtime.flows.get(self.flow_id)
        if run is None:
            return "not running"
        runners = {r.node_id: r for r in run.all_runners()}
        problems = [f"{nid}: {r.status.level} {r.status.text}" for nid, r in runners.items()
                    if r.status.level in ("warning", "error")]
        if problems:
            return "; ".join(problems)
        told = runners.get(STATUS_NEWS.get(self.flow_id, ""))
        if told is not None and told.status.text:
            return f"{told.node_id}: {told.status.text}"
        parts = []
        for out in self.outputs:
            last = self.last.get(out)
            said = "nothing yet" if last is None else (
                f"{len(self.topics[out])} topics, last {last.topic} = {last.value}")
            parts.append(f"{out} ({runners[out].cls.type_name}): {said}"
                         if out in runners else out)
        return "; ".join(parts) or f"{len(runners)} nodes ok"
