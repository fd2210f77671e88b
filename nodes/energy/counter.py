"""energy.counter: integrate power into import and export energy (kWh), kept across restarts.

    - id: energy
      type: energy.counter
      phases: [L1/power, L2/power, L3/power]   # input topics, W, + = import, - = export
      metering: net                            # or gross

Each input sets the power of one phase; the powers hold until the next reading, and
energy += power x time between readings.

- **gross**: every phase is counted on its own, so a phase exporting adds to the export
  counter while another importing adds to the import counter. Meters and Shelly count so.
- **net** (saldierend): the phases' powers are summed first, and only the sum is counted as
  import or export, as German, Austrian and Swiss utility meters do.

Outputs: `energy_forward` and `energy_reverse` (kWh, by the chosen metering) and, with
more than one phase, `<phase>/energy_forward` and `<phase>/energy_reverse` per phase
(always gross: a single phase has nothing to net); `<phase>` is the input topic without
a trailing `/power`. The totals change only with a reading, so they are sent with it:
the changed ones at the end of the loop turn the reading came in (the readings of one
poll are counted first, and go on in the same turn as the meter's other values, so a
D-Bus service signals them together), at most once per period of the runtime's
`emit_every_ms` timer grid: readings that come faster are sent when their period
ends, the latest totals once. Nothing wakes the node between readings (es-ESS
also counts on every poll).

An output is invalid (None) while a phase it is counted from is unknown: when the
source sends None for a phase (a meter offline, a phase it marks invalid), that phase's
own counters and both totals are sent as None, and their numbers come back, unchanged,
with the next reading of it. So a grid meter shows `---` for its energy, as for its
power, while it is offline. Before the first reading the restored totals are sent.

Gaps are not invented: when a phase is unknown (None), or readings are more than
`max_gap_s` apart (device offline, runtime stopped), that stretch is not counted, and
the gap is logged once. Totals are saved in the node's state every `persist_every_s` and
when the flow stops, and restored at start, so a crash loses at most that much.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Literal

from flowengine.context import NodeContext, Timer
from flowengine.errors import ConfigError
from flowengine.model import Message, NodeSpec, finite_number
from flowengine.node import Node, node_type, option

__all__ = ["EnergyCounter", "EnergyCounterConfig"]

WS_PER_KWH = 3_600_000.0


@dataclass(frozen=True, kw_only=True)
class EnergyCounterConfig:
    phases: list[str] = option("input topics carrying each phase's power in W",
                               default=["L1/power", "L2/power", "L3/power"], min_items=1,
                               example=["L1/power", "L2/power", "L3/power"])
    metering: Literal["gross", "net"] = option(
        "gross: each phase on its own; net: phases summed first (saldierend)",
        default="gross")
    max_gap_s: float = option("readings further apart than this are a gap, not counted",
                              default=10.0, exclusive_minimum=0)
    emit_every_ms: float = option(
        "changed totals are sent with the reading, at most once per this period",
        default=1000, minimum=10)
    persist_every_s: float = option("how often the totals are saved", default=300, minimum=1)


def _label(topic: str) -> str:
    return topic[: -len("/power")] if topic.endswith("/power") else topic


@node_type("energy.counter", config=EnergyCounterConfig)
class EnergyCounter(Node[EnergyCounterConfig]):
    """Integrate power into import/export kWh, gross or net metering, persisted."""

    def __init__(self, config: EnergyCounterConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        if len(set(config.phases)) != len(config.phases):
            raise ConfigError("a phase topic is listed twice", mark=self.mark_of("phases"),
                              hint="list each input topic once")
        self._index = {topic: i for i, topic in enumerate(config.phases)}
        self._labels = [_label(t) for t in config.phases]
        n = len(config.phases)
        self._power: list[float | None] = [None] * n
        self._last_t: float | None = None
        self._forward = [0.0] * n  # kWh per phase, gross
        self._reverse = [0.0] * n
        self._net_forward = 0.0
        self._net_reverse = 0.0
        self._in_gap = False
        self._unknown: set[int] = set()  # phases whose source said None since their last number
        self._sent: dict[str, float | None] = {}
        self._stopped = False
        self._send_soon = False  # a send is scheduled for the end of this loop turn
        self._period_end = -math.inf  # the grid tick that ends the period of the last send
        self._late: Timer | None = None  # the send at the end of this period

    @classmethod
    def output_topics(cls, config: EnergyCounterConfig) -> frozenset[str]:
        topics = {"energy_forward", "energy_reverse"}
        if len(config.phases) > 1:
            topics |= {f"{_label(t)}/energy_{d}" for t in config.phases
                       for d in ("forward", "reverse")}
        return frozenset(topics)

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        self._stopped = False
        self._restore()
        ctx.after(0, self._emit, name="emit")  # the restored totals
        ctx.every(self.config.persist_every_s * 1000, self._persist, name="persist")
        ctx.status.ok(f"{self.config.metering} metering")

    async def stop(self) -> None:
        self._stopped = True
        self._persist()

    def receive(self, port: str, msg: Message) -> bool:
        index = self._index.get(msg.topic)
        if index is None:
            return True
        self._integrate(msg.ts)
        power = self._power[index] = finite_number(msg.value)
        if power is None:
            self._unknown.add(index)
        else:
            self._unknown.discard(index)
        if not self._send_soon:
            self._send_soon = True
            asyncio.get_running_loop().call_soon(self._emit_soon)
        return True

    # -- counting ----------------------------------------------------------------------
    def _integrate(self, now: float) -> None:
        last, self._last_t = self._last_t, now
        if last is None:
            return
        dt = now - last
        if dt < 0:  # an older reading: keep counting from the newest
            self._last_t = last
            return
        if dt > self.config.max_gap_s:
            if not self._in_gap:
                self.ctx.log.info("no readings for %.0f s: that time is not counted", dt)
            self._in_gap = True
            return
        self._in_gap = False
        for i, power in enumerate(self._power):
            if power is not None:
                self._add_phase(i, power * dt / WS_PER_KWH)
        if None not in self._power:
            total = sum(p for p in self._power if p is not None) * dt / WS_PER_KWH
            if not math.isfinite(self._net_forward + self._net_reverse + total):
                return  # three phases near a double's limit: not a reading to count
            if total >= 0:
                self._net_forward += total
            else:
                self._net_reverse -= total

    def _add_phase(self, index: int, kwh: float) -> None:
        if not math.isfinite(self._forward[index] + self._reverse[index] + kwh):
            return
        if kwh >= 0:
            self._forward[index] += kwh
        else:
            self._reverse[index] -= kwh

    def totals(self) -> dict[str, float]:
        """Every output topic with its current value."""
        if self.config.metering == "net":
            out = {"energy_forward": self._net_forward, "energy_reverse": self._net_reverse}
        else:
            out = {"energy_forward": sum(self._forward), "energy_reverse": sum(self._reverse)}
        if len(self._labels) > 1:
            for label, fwd, rev in zip(self._labels, self._forward, self._reverse, strict=True):
                out[f"{label}/energy_forward"] = fwd
                out[f"{label}/energy_reverse"] = rev
        return out

    def to_send(self) -> dict[str, float | None]:
        """What is sent: the totals, None where a phase they are counted from is unknown."""
        out: dict[str, float | None] = dict(self.totals())
        if self._unknown:
            out["energy_forward"] = out["energy_reverse"] = None
            if len(self._labels) > 1:
                for index in self._unknown:
                    out[f"{self._labels[index]}/energy_forward"] = None
                    out[f"{self._labels[index]}/energy_reverse"] = None
        return out

    def _emit_soon(self) -> None:
        """The end of a turn with readings: send now, or once the period is over."""
        self._send_soon = False
        if self._stopped or (self._late is not None and self._late.active):
            return
        tick = self.ctx.next_tick(self.config.emit_every_ms)
        if tick != self._period_end:
            self._period_end = tick
            self._emit()
        else:
            delay_ms = max(0.0, (tick - self.ctx.now()) * 1000)
            # the period's end sends what came since: it ends that period, so the next
            # reading (of the next period) is sent at once, not a period late
            self._late = self.ctx.after(delay_ms, self._emit, name="emit")

    def _emit(self) -> None:
        ctx, sent = self.ctx, self._sent
        for topic, value in self.to_send().items():
            if topic not in sent or sent[topic] != value:
                sent[topic] = value
                ctx.emit(ctx.message(topic, None if value is None else round(value, 6)))

    # -- persistence -------------------------------------------------------------------
    def _persist(self) -> None:
        self.ctx.state.update({
            "forward": dict(zip(self.config.phases, self._forward, strict=True)),
            "reverse": dict(zip(self.config.phases, self._reverse, strict=True)),
            "net_forward": self._net_forward,
            "net_reverse": self._net_reverse,
        })

    def _restore(self) -> None:
        state = self.ctx.state
        forward, reverse = state.get("forward"), state.get("reverse")
        if not isinstance(forward, dict) or not isinstance(reverse, dict):
            return
        for i, topic in enumerate(self.config.phases):
            self._forward[i] = _kwh(forward.get(topic))
            self._reverse[i] = _kwh(reverse.get(topic))
        self._net_forward = _kwh(state.get("net_forward"))
        self._net_reverse = _kwh(state.get("net_reverse"))
        self.ctx.log.info("restored totals: %s", ", ".join(
            f"{k} {v:.3f} kWh" for k, v in self.totals().items() if "/" not in k))


def _kwh(value: object) -> float:
    total = finite_number(value)
    return total if total is not None and total >= 0 else 0.0
