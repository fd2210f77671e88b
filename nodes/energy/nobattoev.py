"""energy.nobattoev: charge the EV from the grid, not from the home battery.

The es-ESS NoBatToEV as one node. Its output is a request for the grid setpoint
arbiter (wire it to an `energy.setpoint`): W this flow adds to the site's default
setpoint, or None to revoke.

    - id: nobattoev
      type: energy.nobattoev
      relay: null            # or n: active only while /Relay/n/State is on
      to: [setpoint]

**Inputs** (one port, by topic), from a `dbus.source` on com.victronenergy.system:
`consumption_l1` .. `consumption_l3` (/Ac/Consumption/L1..L3/Power), `pv_grid_l1` ..
`pv_grid_l3` (/Ac/PvOnGrid/L1..L3/Power), `pv_genset_l1` .. (/Ac/PvOnGenset/...),
`pv_output_l1` .. (/Ac/PvOnOutput/...), `pv_dc` (/Dc/Pv/Power), `input_phases`
(/Ac/ActiveIn/NumberOfPhases) and, with `relay: n`, `relay_<n>` (/Relay/<n>/State);
from a `dbus.source` on com.victronenergy.evcharger.*: `ev_power` (/Ac/Power; with
several chargers, the sum of them all, by `meta.service`).

**Every `interval_ms`**, from the latest values:

1. grid lost (`input_phases` invalid or 0) → revoke, warning status;
2. `relay` set and `relay_<n>` not on (0 or invalid) → revoke;
3. a consumption phase that had a value since the start and is now invalid → revoke,
   error status naming it; one that never had a value counts as 0 (L2/L3 of a
   single-phase site). An invalid PV path always counts as 0: systemcalc leaves
   /Ac/PvOnGenset etc. invalid where there is no such PV, and a PV inverter that
   leaves the bus at night gives nothing (counting it as 0 asks the grid for more,
   never the battery). `ev_power` must be valid;
4. consumption = L1 + L2 + L3, pv = the nine AC PV phases + DC PV. While the EV
   charges (`ev_power` > 0) and consumption >= pv, the request is
   `ev - max(0, pv - (consumption - ev))` W, that is the smaller of the EV's power and
   what the PV does not cover (`consumption - pv`): the house loads get the PV first,
   the EV gets what is left of it and the grid the rest, so the battery gives nothing
   to the EV. Otherwise revoke.

Example: consumption 8000 W (EV 7000 W), PV 2000 W → the house's 1000 W come from PV,
the other 1000 W of PV go to the EV: request 7000 - 1000 = 6000 W.

The request goes out (topic `request`, whole W) only when it changes, a revoke (None)
once; the first cycle after a start always sends, so a restarted node never leaves an
old request standing. The status shows the inputs and the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowengine.context import NodeContext
from flowengine.errors import ConfigError
from flowengine.model import Message, NodeSpec, finite_number
from flowengine.node import Node, UpstreamInfo, node_type, option

__all__ = ["CONSUMPTION", "PV", "EnergyNoBatToEv", "EnergyNoBatToEvConfig"]

CONSUMPTION = ("consumption_l1", "consumption_l2", "consumption_l3")
PV = (*(f"pv_{where}_l{n}" for where in ("grid", "genset", "output") for n in (1, 2, 3)),
      "pv_dc")
PHASES = "input_phases"
EV = "ev_power"
MAX_RELAY = 9
_UNSENT = object()  # nothing sent since the start


@dataclass(frozen=True, kw_only=True)
class EnergyNoBatToEvConfig:
    relay: int | None = option(
        "active only while /Relay/<n>/State of com.victronenergy.system is on "
        "(input topic relay_<n>); null: always active", default=None, example=0,
        minimum=0, maximum=MAX_RELAY)
    interval_ms: float = option("time between two decisions", default=2000, minimum=100)
    output: str = option("topic of the request (W, or None to revoke)", default="request")


@node_type("energy.nobattoev", config=EnergyNoBatToEvConfig)
class EnergyNoBatToEv(Node[EnergyNoBatToEvConfig]):
    """Request grid power for the EV charger, so the home battery does not feed it."""

    def __init__(self, config: EnergyNoBatToEvConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        self._relay = None if config.relay is None else f"relay_{config.relay}"
        self._values: dict[str, float | None] = dict.fromkeys((*CONSUMPTION, *PV, PHASES))
        self._seen: set[str] = set()  # topics that had a valid value since the start
        self._ev: dict[str, float | None] = {}  # charger service -> power
        self._relay_on: bool | None = None
        self._sent: object = _UNSENT
        self._problem = ""  # the kind of revoke last logged ("" = none)

    @classmethod
    def output_topics(cls, config: EnergyNoBatToEvConfig) -> frozenset[str]:
        return frozenset({config.output})

    def check(self, upstream: UpstreamInfo) -> list[ConfigError]:
        topics = upstream.topics
        if topics is None or not upstream.sources:
            return []
        wanted = [PHASES, EV, *([self._relay] if self._relay else [])]
        return [ConfigError(f"no node wired into this one emits '{t}'",
                            mark=self.mark_of("relay") if t == self._relay else self.spec.mark,
                            hint="map the D-Bus path to this topic in a dbus.source")
                for t in wanted if t not in topics]

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        ctx.status.warning("waiting for the first cycle")
        ctx.every(self.config.interval_ms, self._cycle, name="cycle")

    def receive(self, port: str, msg: Message) -> bool:
        """Keep the latest input for the next cycle (a direct call: no task switch)."""
        topic, number = msg.topic, finite_number(msg.value)
        if topic in self._values:
            self._values[topic] = number
            if number is not None:
                self._seen.add(topic)
        elif topic == EV:
            service = msg.meta.get("service") if msg.meta else None
            self._ev[service if isinstance(service, str) else ""] = number
        elif topic == self._relay:
            self._relay_on = None if number is None else number != 0
        return True

    # -- the cycle --------------------------------------------------------------------------
    def _cycle(self) -> None:
        request, level, text = self.decide()
        ctx = self.ctx
        if level == "ok":
            ctx.status.ok(text)
        elif level == "warning":
            ctx.status.warning(text)
        else:
            ctx.status.error(text)
        self._log_transition(level, text)
        if request != self._sent:
            self._sent = request
            ctx.emit(ctx.message(self.config.output, request))

    def decide(self) -> tuple[int | None, str, str]:
        """The request (whole W or None), the status level and its text."""
        v = self._values
        waiting = [t for t in (PHASES,) if t not in self._seen]
        if not self._ev:
            waiting.append(EV)
        if waiting:
            return None, "warning", f"no request: waiting for {', '.join(waiting)}"
        phases = v[PHASES]
        if phases is None or phases == 0:
            shown = "invalid" if phases is None else "0"
            return None, "warning", f"no request: grid lost (active input phases {shown})"
        if self._relay is not None and not self._relay_on:
            state = "invalid" if self._relay_on is None else "off"
            return None, "ok", f"no request: relay {self.config.relay} is {state}"
        lost = [t for t in CONSUMPTION if v[t] is None and t in self._seen]
        lost += [f"ev_power of {s}" if s else EV for s, p in self._ev.items() if p is None]
        if lost:
            return None, "error", f"no request: invalid input {', '.join(lost)}"
        consumption = sum(v[t] or 0.0 for t in CONSUMPTION)
        pv = sum(v[t] or 0.0 for t in PV)
        ev = sum(p or 0.0 for p in self._ev.values())
        inputs = f"EV {ev:.0f} W, consumption {consumption:.0f} W, PV {pv:.0f} W"
        if ev <= 0:
            return None, "ok", f"no request: the EV is not charging ({inputs})"
        if consumption < pv:
            return None, "ok", f"no request: the PV covers the consumption ({inputs})"
        request = round(ev - max(0.0, pv - (consumption - ev)))
        return request, "ok", f"request {request} W from the grid ({inputs})"

    def _log_transition(self, level: str, text: str) -> None:
        """Log a grid loss or a lost input once, and once when it is over."""
        kind = "" if level == "ok" or text.startswith("no request: waiting") else text
        if kind == self._problem:
            return
        log = self.ctx.log
        if kind:
            log.warning("%s; the request is revoked", text.removeprefix("no request: "))
        elif self._problem.startswith("no request: grid lost"):
            log.info("grid back")
        else:
            log.info("inputs valid again")
        self._problem = kind
