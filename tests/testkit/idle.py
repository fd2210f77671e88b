"""Every shipped flow against the simulator, and which of the runtime's wake-ups the
configured polls explain. Used by bench/soak.py, bench/idle.py and tests/e2e/test_idle.py.

`write_site(directory, where)` writes a site file that enables every flow in flows/
against a simulated site (`where`: the addresses `esess-flowctl sim` prints, or
`where_of(SimSite)`), with the vars a flow requires and the shipped defaults otherwise.

`budget(site_file)` reads that site as `run` does and lists what may wake an idle
runtime, each with its period from the configuration: the timers of the nodes (a poll
every `interval_ms`, an announce every `announce_s`, ...), the MQTT keep-alive of each
connection, the Wattpilot client's liveness probe, the state store's throttled writes,
the observer's waiting status texts; and what their requests bring back (HTTP
answers, MQTT echoes of the runtime's own announcements and allowances, the charger's
status). `explain(report, budget)` compares the sources of a wake-up report
(`flowengine.watchdog.WakeupCounter`, `ESESS_WAKEUPS`) with it: a source no line
explains, or one that woke the loop more often than its line allows, is a finding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FLOWS_DIR", "WATTPILOT_PASSWORD", "Budget", "Finding", "Line", "budget",
           "explain", "where_of", "write_site"]

ROOT = Path(__file__).resolve().parents[2]
FLOWS_DIR = ROOT / "flows"
WATTPILOT_PASSWORD = "demo-wattpilot"  # sim.site.WATTPILOT_PASSWORD
WHERE_KEYS = ("bus", "broker", "grid", "pv", "boiler", "heater", "sensor", "evcharger",
              "wattpilot")

# what the runtime's libraries do on their own, with its period in seconds
WATTPILOT_PROBE_S = 30.0  # the client asks for the status after idle_timeout_s / 2 (60 s) quiet
STATE_FLUSH_S = 60.0  # StateStore(min_interval_s=60): changed node states, written at most so


def where_of(site: Any) -> dict[str, str]:
    """The addresses of an in-process `sim.site.SimSite`, as `esess-flowctl sim` prints them."""
    pv, grid = site.flow_vars["shellypm-inverter"], site.flow_vars["shelly3em-grid"]
    heater = site.heater.command_topic.removesuffix("/set")
    sensor = str(site.flow_vars["mqtt-temperature"]["topic"]).removesuffix("/temperature")
    return {"bus": site.bus_address, "broker": str(site.broker_port),
            "grid": str(grid["host"]), "pv": str(pv["host"]), "boiler": site.boiler.url,
            "heater": heater, "sensor": sensor,
            "evcharger": site.venus.evcharger.name, "wattpilot": str(site.wattpilot.port)}


def write_site(directory: Path, where: Mapping[str, str]) -> Path:
    """site.yaml (and secrets.yaml) in `directory`: every shipped flow against `where`."""
    missing = [key for key in WHERE_KEYS if key not in where]
    if missing:
        raise ValueError(f"the simulator's addresses lack {missing}")
    port, sensor, heater, boiler = where["broker"], where["sensor"], where["heater"], \
        where["boiler"]
    (directory / "secrets.yaml").write_text(f"wattpilot_password: {WATTPILOT_PASSWORD}\n")
    site = directory / "site.yaml"
    site.write_text(f"""
state_dir: {directory / "state"}
connections:
  mqtt:
    main: {{host: 127.0.0.1, port: {port}}}
    local: {{host: 127.0.0.1, port: {port}, status_topic: null}}
observe: [mqtt.main]
flows:
  - use: shelly3em-grid
    vars: {{host: "{where['grid']}", metering: net}}
  - use: shellypm-inverter
    vars: {{host: "{where['pv']}", phase: 2}}
  - use: time-to-go
    vars: {{capacity_wh: 28000, portal_id: soak}}
  - use: mqtt-temperature
    vars: {{topic: {sensor}/temperature, humidity_topic: {sensor}/humidity,
            pressure_topic: {sensor}/pressure}}
  - use: mqtt-exporter
    vars: {{service: com.victronenergy.system, topic: "soak/*",
            paths: [/Dc/Battery/Soc, /Dc/Battery/Power, /Ac/Grid/L1/Power,
                    /Ac/Grid/L2/Power, /Ac/Grid/L3/Power, /Dc/Pv/Power]}}
  - use: mqtt-pvinverter
    vars: {{l1_power_topic: soak/pvinverter/L1/Power,
            l1_energy_topic: soak/pvinverter/L1/Energy}}
  - use: no-bat-to-ev
    vars: {{evcharger: {where['evcharger']}}}
  - use: charge-current-reducer
    vars: {{max_feed_in_w: 3000}}
  - use: solar-overhead-distributor
  - use: switched-consumer-http
    vars: {{key: boiler, request_w: 2000, on_url: "{boiler}/relay/0?turn=on",
            off_url: "{boiler}/relay/0?turn=off", status_url: "{boiler}/status",
            on_keyword_regex: '"ison":\\\\s*true',
            power_extract_regex: '"power":\\\\s*([0-9.]+)'}}
  - use: switched-consumer-mqtt
    vars: {{key: heater, request_w: 3000, on_topic: {heater}/set, off_topic: {heater}/set,
            on_value: "on", off_value: "off", status_topic: {heater}/state,
            on_keyword_regex: "^on$", power_topic: {heater}/power}}
  - use: fronius-wattpilot
    vars: {{host: 127.0.0.1, port: {where['wattpilot']}, password: !secret wattpilot_password}}
""")
    return site


# -- what may wake an idle runtime -----------------------------------------------------------

@dataclass(frozen=True)
class Line:
    """Sources matching `pattern` wake the loop once per `period_s` each of `times` (a
    timer), or once per firing of the lines named in `follows` (what their requests
    bring back), up to `up_to` times per firing (an answer may come in several reads);
    plus `extra`."""

    why: str
    pattern: str
    period_s: float | None = None
    times: int = 1
    follows: tuple[str, ...] = ()
    up_to: int = 1
    extra: int = 0

    def allowed(self, window_s: float, fired: Mapping[str, int]) -> int:
        if self.period_s is not None:  # a timer due as the window opens counts as well
            return self.times * (math.floor(window_s / self.period_s) + 1) + self.extra
        return self.up_to * sum(fired.get(why, 0) for why in self.follows) + self.extra

    def per_minute(self, rates: Mapping[str, float]) -> float:
        """Wake-ups a minute to expect: one per period, one answer per request."""
        if self.period_s is not None:
            return self.times * 60.0 / self.period_s
        return sum(rates.get(why, 0.0) for why in self.follows)


@dataclass
class Budget:
    lines: list[Line] = field(default_factory=list)

    def add(self, line: Line) -> None:
        self.lines.append(line)

    def per_minute(self) -> float:
        """The wake-ups a minute the configuration explains: every timer of a node or
        library once per period, and one answer to each request."""
        rates: dict[str, float] = {}
        for line in self.lines:
            rates[line.why] = line.per_minute(rates)
        return sum(rates.values())


# (node type, task role) -> the period of that node's timer, in seconds, from its config
TIMERS: dict[tuple[str, str], Callable[[Any], float | None]] = {
    ("shelly.meter", "poll"): lambda c: c.interval_ms / 1000,
    ("http.poll", "poll"): lambda c: c.interval_ms / 1000,
    ("energy.counter", "emit"): lambda c: c.emit_every_ms / 1000,
    ("energy.counter", "persist"): lambda c: c.persist_every_s,
    ("join", "every"): lambda c: None if c.every_ms is None else c.every_ms / 1000,
    ("timer", "interval"): lambda c: None if c.interval_ms is None else c.interval_ms / 1000,
    ("energy.nobattoev", "cycle"): lambda c: c.interval_ms / 1000,
    ("energy.charge_reducer", "cycle"): lambda c: c.interval_ms / 1000,
    ("energy.distributor", "cycle"): lambda c: c.cycle_s,
    ("energy.switch", "announce"): lambda c: c.announce_s,
    ("energy.switch", "status"): lambda c: c.http.status_interval_s if c.http else None,
    ("energy.wattpilot", "announce"): lambda c: c.announce_s,
}
HTTP_TIMERS = {("shelly.meter", "poll"), ("http.poll", "poll"), ("energy.switch", "status")}
MQTT_TIMERS = {("energy.switch", "announce"), ("energy.wattpilot", "announce"),
               ("energy.distributor", "cycle")}  # requests and allowances come back to us


def budget(site_file: Path) -> Budget:
    """What may wake the runtime of `site_file` while nothing changes (loads it as `run`)."""
    from flowengine.preflight import load_files
    from flowengine.registry import Registry

    loaded = load_files([str(site_file)], Registry.default(), variables={}, for_run=True)
    if loaded.errors:
        raise ValueError("\n".join(str(e) for e in loaded.errors))
    out = Budget()
    http, mqtt, wattpilots = [], [], []
    for plan in loaded.plans:
        for node_id, planned in plan.nodes.items():
            kind = planned.cls.type_name
            for (type_name, role), period in TIMERS.items():
                seconds = period(planned.config) if type_name == kind else None
                if seconds:
                    why = f"{plan.spec.id}/{node_id}:{role} every {seconds:g} s"
                    name = re.escape(f"{plan.spec.id}/{node_id}:{role}")
                    out.add(Line(why, rf"(task|timer) {name}", seconds))
                    (http if (kind, role) in HTTP_TIMERS else
                     mqtt if (kind, role) in MQTT_TIMERS else []).append(why)
            if kind == "energy.wattpilot":
                host = planned.config.host
                why = f"Wattpilot {host}: status asked after {WATTPILOT_PROBE_S:g} s quiet"
                out.add(Line(why, rf"task wattpilot {re.escape(host)}:connect \(Timeout\)",
                             WATTPILOT_PROBE_S))
                wattpilots.append(why)
    site = loaded.site
    brokers = (site.connections.get("mqtt", {}) if site else {}) or {"default": {}}
    keepalives: dict[float, list[str]] = {}
    for name, conf in brokers.items():
        keepalive = conf.get("keepalive_s", 60) if isinstance(conf, Mapping) \
            else conf.keepalive_s
        keepalives.setdefault(float(keepalive), []).append(name)
    for keepalive, names in keepalives.items():  # gmqtt's timer does not say whose it is
        why = f"MQTT {', '.join(names)}: keep-alive check every {keepalive / 2:g} s"
        out.add(Line(why, r"gmqtt\.mqtt\.connection\.MQTTConnection\._keep_connection",
                     keepalive / 2, times=len(names)))
        mqtt.append(why)  # a ping's answer
    if site is not None and site.observe:
        from nodes.mqtt.observe import STATUS_TEXT_EVERY_S
        out.add(Line(f"observe: status texts that waited, sent at most every "
                     f"{STATUS_TEXT_EVERY_S:g} s",
                     r"nodes\.mqtt\.observe\.Observer\._send_waiting", STATUS_TEXT_EVERY_S))
    out.add(Line(f"node states written at most every {STATE_FLUSH_S:g} s",
                 r"task runtime:state-flush", STATE_FLUSH_S))
    # what the requests bring back
    out.add(Line("HTTP answers to the polls", r"nodes\.http\.connection\.Connection ",
                 follows=tuple(http), up_to=2))
    out.add(Line("MQTT: announcements, allowances and pings coming back",
                 r"gmqtt\.mqtt\.protocol\.MQTTProtocol ", follows=tuple(mqtt), up_to=3))
    out.add(Line("Wattpilot: the status parts it answers with",
                 r"nodes\.devices\.wsclient\.WebSocket ", follows=tuple(wattpilots),
                 up_to=4))
    out.add(Line("the signal that ends the window (SIGUSR1)",
                 r"asyncio\.unix_events\._UnixSelectorEventLoop\._read_from_self", extra=1))
    return out


@dataclass(frozen=True)
class Finding:
    source: str
    count: int
    allowed: int
    why: str | None  # the line it exceeded; None: nothing configured explains it


def explain(report: Mapping[str, Any], plan: Budget) -> tuple[dict[str, list[str]],
                                                           list[Finding]]:
    """(line -> the sources it explains, findings) for a wake-up report."""
    window = float(report["window_s"])
    sources: dict[str, int] = dict(report["sources"])
    matched: dict[str, list[str]] = {line.why: [] for line in plan.lines}
    fired: dict[str, int] = {}
    unexplained = dict(sources)
    for line in plan.lines:  # timers first: what they bring back is counted from them
        for source in list(unexplained):
            if re.match(line.pattern, source):
                matched[line.why].append(source)
                fired[line.why] = fired.get(line.why, 0) + unexplained.pop(source)
    findings = [Finding(s, n, 0, None) for s, n in unexplained.items()]
    for line in plan.lines:
        count, allowed = fired.get(line.why, 0), line.allowed(window, fired)
        if count > allowed:
            findings.append(Finding(", ".join(matched[line.why]), count, allowed, line.why))
    return matched, findings


def lines_of(plan: Budget, report: Mapping[str, Any]) -> Iterable[tuple[str, int, int]]:
    """(why, woke, allowed) for each line, in the budget's order."""
    matched, _ = explain(report, plan)
    sources = report["sources"]
    fired = {why: sum(sources[s] for s in found) for why, found in matched.items()}
    for line in plan.lines:
        yield line.why, fired[line.why], line.allowed(float(report["window_s"]), fired)
