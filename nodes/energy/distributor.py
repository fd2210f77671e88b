"""energy.distributor: share solar overhead among consumers by priority, and explain.

The es-ESS SolarOverheadDistributor as one node:

    - id: distributor
      type: energy.distributor
      reservation: "5000 - 40 * SOC"     # W the battery keeps, a formula in SOC (%)
      cycle_s: 60
      to: {out: [status, calculations], consumers: [per-consumer], energy: [energy],
           reservation: [reservation-bms]}

**Inputs** (one port, by topic): the system values `grid_l1`, `grid_l2`, `grid_l3`
(W, + = import), `battery_power` (W, + = charging) and `soc` (%), from a `dbus.source`
on com.victronenergy.system; and the consumers' requests, `<root>/Requests/<key>/<Name>`
text payloads from an `mqtt.in` (IsAutomatic, Consumption, Request, StepSize, Minimum,
Priority, PriorityShift, IgnoreBatReservation, CustomName, VRMInstanceID, ...). An
empty payload (a cleared retained topic) forgets that field; a consumer with no field
left is gone.

**The cycle** runs every `cycle_s`, and `rerun_ms` after a consumer joins, leaves or
changes what it asks for (a burst of retained topics makes one re-run). It computes
the battery reservation from the formula, calls `nodes.energy.allocation.allocate`
and publishes, per consumer, its allowance on its own child `mqtt.out`
(`<root>/Requests/<key>/Allowance`, QoS 1, safe payload `0`, registered with the
guardian), the cycle's local time on `<key>`, why it got what it got on
`<key>/Explanation` (port `consumers`), and its energy and runtime today / yesterday /
total on `<key>/Energy/<name>` (port `energy`, for a retained `mqtt.out`). The
calculations go out on port `out` with D-Bus paths as topics
(`/Calculations/OverheadAvailable`, ...), for the status service and MQTT; the battery
charge reservation monitor's `/Soc` and `/CustomName` on port `reservation`.

**Fake BMS**: with `fake_bms`, each consumer that has a VRMInstanceID gets a child
`dbus.service` (battery preset), `com.victronenergy.battery.esESS_SolarOverheadConsumer_
<key>` with the key made valid for a bus name (`Pool heater` -> `Pool_20heater`):
`/Soc` = consumption / request, `/Dc/0/Power` = consumption, `/CustomName`
`Pool heater ☼ @ 750W` (☼ automatic, ◌ manual). It is removed with its consumer.

**The safe side**: a reservation formula that fails, an invalid system value (at a
cycle, or for `lost_inputs_s` in between) or the main broker gone → every allowance 0,
an error status and a service message; the next good cycle grants again. A consumer
silent for `expire_cycles` cycles is dropped with a warning (allowance 0); a malformed
field is reported (key, field, value) and that consumer gets 0 until it is fixed. On
stop, SIGTERM and failure the children publish 0; when the runtime is killed or hangs,
the guardian does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from flowengine.model import JsonValue, Message, NodeSpec
from flowengine.node import Node, node_type, option
from nodes.energy.allocation import (
    Allocation,
    AllocationInputs,
    AllocationState,
    ConsumerRequest,
    allocate,
)
from nodes.energy.calculations import calculations, reservation_monitor
from nodes.energy.consumer_children import Children, Tracked
from nodes.energy.requests import (
    FIELDS,
    PUBLISHED,
    ROOT,
    Consumer,
    bus_name_part,
    split_topic,
)
from nodes.energy.system_inputs import TOPICS, SystemInputs
from nodes.energy.usage import UsageBook, next_local_midnight
from nodes.logic.expression import EvaluationError, soc_formula

if TYPE_CHECKING:
    from flowengine.context import NodeContext, Timer
    from nodes.mqtt.broker import Broker

__all__ = ["EnergyDistributor", "EnergyDistributorConfig"]

SYSTEM_TOPICS = frozenset(TOPICS)
REQUEST_FIELDS = frozenset({"IsAutomatic", "Request", "StepSize", "Minimum", "Priority",
                            "PriorityShift", "IgnoreBatReservation"})
"""Fields whose change re-runs the distribution at once (Consumption waits for the cycle)."""
FIELDS_PER_CONSUMER = 30
"""Topics one consumer may publish under Requests/<key>/ (the protocol has 24 names)."""
SAVE_USAGE_S = 300.0
"""Energy statistics go to the state store at most this often (and at midnight and stop)."""
MAX_USAGE_KEYS = 100
"""Energy statistics kept for this many consumer keys (also of consumers gone a while)."""


@dataclass(frozen=True, kw_only=True)
class EnergyDistributorConfig:
    reservation: str = option(
        "W of the overhead the battery keeps: a formula in SOC (%); < 0 counts as 0",
        default="0", example="(5750/(min(SOC,99)-100)+5750) + 250", min_length=1)
    cycle_s: float = option("time between distributions", default=60, minimum=0.1)
    rerun_ms: float = option(
        "a consumer joining, leaving or changing its request re-runs the distribution "
        "after this quiet time", default=1000, minimum=0)
    expire_cycles: int = option(
        "a consumer that published nothing for this many cycles is dropped", default=3,
        minimum=1)
    lost_inputs_s: float = option(
        "system values invalid this long between cycles: every allowance 0 at once",
        default=15, exclusive_minimum=0)
    phases: Literal["auto", 1, 3] = option(
        "grid phases: auto (a phase that never had a value is absent), 1 or 3",
        default="auto")
    root: str = option("MQTT topic root of the request protocol", default=ROOT,
                       min_length=1)
    broker: str = option("broker of the consumers (allowances go there)", default="main",
                         connection="mqtt")
    fake_bms: bool = option(
        "a battery service per consumer (with a VRMInstanceID) showing its share in VRM",
        default=True)
    max_consumers: int = option("consumer keys followed at most; more are reported",
                                default=32, minimum=1, maximum=200)


@node_type("energy.distributor", config=EnergyDistributorConfig)
class EnergyDistributor(Node[EnergyDistributorConfig]):
    """Share the solar overhead among consumers by priority; explain and fail safe."""

    outputs = ("out", "consumers", "energy", "reservation")

    @classmethod
    def queue_capacity(cls, config: EnergyDistributorConfig) -> int:
        """Room for every field of every consumer at once (their retained topics all
        arrive when the flow subscribes), so none is dropped."""
        return config.max_consumers * FIELDS_PER_CONSUMER + 64

    def __init__(self, config: EnergyDistributorConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        self._formula = soc_formula(config.reservation, option="reservation",
                                    mark=self.mark_of("reservation"))
        self._system = SystemInputs(config.phases)
        self._known: dict[str, Tracked] = {}
        self._parts: dict[str, str] = {}  # bus-name part -> key
        self._ignored: set[str] = set()  # keys beyond max_consumers (reported once)
        self._usage = UsageBook(MAX_USAGE_KEYS)
        self._usage_saved = -math.inf
        self._order = AllocationState()
        self._rerun: Timer | None = None
        self._lost_timer: Timer | None = None
        self._running = asyncio.Lock()  # one cycle at a time (timers are tasks of their own)
        self._broker: Broker | None = None
        self._unlisten: Callable[[], None] = lambda: None
        self._problem: str | None = None
        self.last: Allocation | None = None

    # -- lifecycle ------------------------------------------------------------------
    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        state = ctx.state
        order = state.get("order")
        if isinstance(order, list) and all(isinstance(k, str) for k in order):
            self._order = AllocationState(tuple(order))
        self._usage.load(state.get("usage"), ctx.clock.wall())
        self._children = Children(ctx, root=self.config.root, broker=self.config.broker)
        broker: Broker = await ctx.connections.get("mqtt", self.config.broker)
        self._broker = broker
        self._unlisten = broker.on_change(self._broker_changed)
        ctx.every(self.config.cycle_s * 1000, lambda: self._cycle("cycle"), name="cycle")
        self._arm_midnight()
        ctx.status.ok("waiting for the first cycle")

    async def stop(self) -> None:
        self._unlisten()
        for known in self._known.values():
            self._count_usage(known, known.consumer.values.get("Consumption"))
        self._save_usage(now=True)

    # -- inputs -----------------------------------------------------------------------
    def receive(self, port: str, msg: Message) -> bool:
        """Take an input at once (a direct call, no task switch): nothing here awaits; a
        cycle it asks for runs in a timer task of its own."""
        if port == "child":
            return True  # a fake BMS renamed from the GUI: the next update sets our name again
        topic = msg.topic
        if topic in SYSTEM_TOPICS:
            self._system_value(topic, msg.value)
            return True
        split = split_topic(topic, self.config.root)
        if split is None:
            return True
        key, name = split
        if name in PUBLISHED:
            return True
        payload = msg.value
        text = "" if payload is None else payload if isinstance(payload, str) else str(payload)
        self._request(key, name, text.strip())
        return True

    def _system_value(self, topic: str, value: JsonValue) -> None:
        self._system.set(topic, value)
        if self._system.problem() is None:
            if self._lost_timer is not None:
                self._lost_timer.cancel()
                self._lost_timer = None
        elif self._lost_timer is None:
            self._lost_timer = self.ctx.after(self.config.lost_inputs_s * 1000,
                                              self._inputs_lost, name="lost-inputs")

    async def _inputs_lost(self) -> None:
        self._lost_timer = None
        if self._system.problem() is not None:
            await self._cycle("inputs lost")

    def _request(self, key: str, name: str, text: str) -> None:
        ctx = self.ctx
        known = self._known.get(key)
        if known is None:
            if not text:
                return
            if len(self._known) >= self.config.max_consumers:
                if key not in self._ignored and len(self._ignored) < 1000:
                    self._ignored.add(key)
                    ctx.log.warning("consumer '%s' ignored: already %d consumers "
                                    "(max_consumers)", key, len(self._known))
                return
            part = bus_name_part(key)
            if part in self._parts:
                if key not in self._ignored:
                    self._ignored.add(key)
                    ctx.log.warning("consumer '%s' ignored: its bus name %s is the one of "
                                    "'%s'", key, part, self._parts[part])
                return
            known = self._known[key] = Tracked(Consumer(key, ctx.now(), ctx.now(), {}, {}), part)
            self._parts[part] = key
            ctx.event(f"consumer '{key}' joined")
            self._schedule_rerun()
        consumer = known.consumer
        now = ctx.now()
        if not text:  # a retained topic cleared
            consumer.last_seen = now
            gone = consumer.values.pop(name, None) is not None
            gone = consumer.errors.pop(name, None) is not None or gone
            if not consumer.values and not consumer.errors:
                self.ctx.after(0, lambda: self._leave(key, "left (its topics were cleared)"),
                               name="remove")
            elif gone and name in REQUEST_FIELDS:
                self._schedule_rerun()
            return
        before = known.consumer.values.get("Consumption")
        changed = consumer.update(name, text, now)
        if name not in FIELDS and name in consumer.errors and name not in known.unknown:
            known.unknown.add(name)  # a typo (Prioity): said once, then ignored
            ctx.log.warning("consumer '%s': %s; ignored", key, consumer.errors[name])
        if name == "Consumption":
            self._count_usage(known, before)
            self._children.update_bms(known)
        elif changed:
            self._children.update_bms(known)
            if name in REQUEST_FIELDS or name in consumer.errors:
                self._schedule_rerun()
        self._report(known)

    def _report(self, known: Tracked) -> None:
        """Say once when a consumer's request becomes malformed or is fixed."""
        bad = known.consumer.malformed
        if bad == known.reported:
            return
        key = known.consumer.key
        if bad is not None:
            self.ctx.log.warning("consumer '%s': %s; it gets 0 W until fixed", key, bad)
            self.ctx.event(f"consumer '{key}' malformed: {bad}", logging.WARNING)
        else:
            self.ctx.log.info("consumer '%s': request fixed", key)
        known.reported = bad

    def _schedule_rerun(self) -> None:
        if self._rerun is None:
            self._rerun = self.ctx.after(self.config.rerun_ms, lambda: self._cycle("re-run"),
                                         name="rerun")

    def _broker_changed(self, broker: Broker) -> None:
        if not broker.connected:
            self.ctx.after(0, lambda: self._cycle("broker gone"), name="broker-gone")
        else:
            self._schedule_rerun()  # the retained requests come again

    # -- the cycle --------------------------------------------------------------------
    async def _cycle(self, why: str) -> None:
        rerun, self._rerun = self._rerun, None
        if rerun is not None and why != "re-run":
            rerun.cancel()  # this cycle does it
        async with self._running:
            await self._distribute(why)

    async def _distribute(self, why: str) -> None:
        ctx, cfg = self.ctx, self.config
        now, wall = ctx.now(), ctx.clock.wall()
        await self._expire(now)
        inputs, problem = self._inputs()
        if problem is None and self._broker is not None and not self._broker.connected:
            problem = f"broker {cfg.broker} not connected"
        requests: list[ConsumerRequest] = []
        malformed: dict[str, str] = {}
        consumers = list(self._known.items())  # requests may come while we await below
        for key, known in consumers:
            bad = known.consumer.malformed
            if bad is not None:
                malformed[key] = f"0 W: malformed request ({bad})"
            else:
                requests.append(known.consumer.request())
        if problem is not None:
            inputs = AllocationInputs(grid_l1=None, battery_power=None, battery_soc=None,
                                      reservation=None)
        allocation = allocate(inputs, requests, self._order)
        problem = problem or allocation.problem  # e.g. a SoC of 150 %
        self._order = allocation.state
        ctx.state.set("order", list(allocation.state.order))
        self.last = allocation
        explanations = dict(allocation.explanations)
        if problem is not None:
            explanations = {k: f"0 W: no grants, {problem}" for k in explanations}
        explanations.update(malformed)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))
        for key, known in consumers:
            if self._known.get(key) is not known:
                continue  # gone meanwhile
            watts = allocation.allowances.get(key, 0.0)
            await self._children.allow(known, watts)
            self._count_usage(known, known.consumer.values.get("Consumption"))
            ctx.emit(key, stamp, port="consumers")
            ctx.emit(f"{key}/Explanation", explanations.get(key, "0 W"), port="consumers")
            usage = self._usage.usage.get(key)
            if usage is not None:
                for name, value in usage.topics().items():
                    ctx.emit(f"{key}/Energy/{name}", value, port="energy")
            if self.config.fake_bms:
                await self._children.ensure_bms(known)
        self._save_usage()
        self._publish(allocation, inputs, problem, wall, stamp)
        self._show(allocation, problem, consumers, explanations, why)

    def _inputs(self) -> tuple[AllocationInputs, str | None]:
        """This cycle's inputs, with the reservation; or why there are none."""
        problem = self._system.problem()
        reservation: float | None = None
        if problem is None:
            try:
                result = self._formula.evaluate({"SOC": self._system.values["soc"]})
            except EvaluationError as exc:
                problem = f"reservation formula failed: {exc}"
            else:
                if isinstance(result, bool) or not isinstance(result, int | float):
                    problem = f"reservation formula gave {result!r}, not a number"
                else:
                    reservation = max(0.0, float(round(result)))
        return self._system.allocation_inputs(reservation), problem

    async def _expire(self, now: float) -> None:
        limit = self.config.expire_cycles * self.config.cycle_s
        for key, known in list(self._known.items()):
            silent = now - known.consumer.last_seen
            if silent >= limit:
                await self._remove(key, f"silent for {silent:.0f} s "
                                        f"({self.config.expire_cycles} cycles)")

    async def _leave(self, key: str, why: str) -> None:
        async with self._running:
            await self._remove(key, why)

    async def _remove(self, key: str, why: str) -> None:
        known = self._known.pop(key, None)
        if known is None:
            return
        self._parts.pop(known.part, None)
        self._count_usage(known, known.consumer.values.get("Consumption"))
        self.ctx.log.warning("consumer '%s' dropped: %s; allowance 0", key, why)
        self.ctx.event(f"consumer '{key}' dropped: {why}", logging.WARNING)
        await self._children.remove(known)  # the allowance publisher's safe state: 0
        self._schedule_rerun()

    # -- energy statistics ----------------------------------------------------------------
    def _count_usage(self, known: Tracked, watts: JsonValue) -> None:
        """Count `watts` (what it drew until now) since the last count."""
        now, wall = self.ctx.now(), self.ctx.clock.wall()
        usage = self._usage.entry(known.consumer.key, wall, self._known)
        if usage is None:
            return
        last, known.usage_at = known.usage_at, now
        if last is not None and isinstance(watts, int | float):
            # a gap longer than the expiry is not counted (nothing was heard meanwhile)
            seconds = min(now - last, self.config.expire_cycles * self.config.cycle_s)
            usage.add(float(watts), seconds, wall)

    def _save_usage(self, *, now: bool = False) -> None:
        """Hand the statistics to the state store every SAVE_USAGE_S (it writes them to
        flash), at midnight and at the stop; a crash loses at most that much."""
        at = self.ctx.now()
        if self._usage.usage and (now or at - self._usage_saved >= SAVE_USAGE_S):
            self._usage_saved = at
            self.ctx.state.set("usage", self._usage.to_state())

    def _arm_midnight(self) -> None:
        wall = self.ctx.clock.wall()
        delay = max(1.0, next_local_midnight(wall) - wall + 1)
        self.ctx.after(delay * 1000, self._midnight, name="midnight")

    def _midnight(self) -> None:
        wall = self.ctx.clock.wall()
        for known in self._known.values():
            self._count_usage(known, known.consumer.values.get("Consumption"))
        if self._usage.roll(wall):
            self._save_usage(now=True)
        self._arm_midnight()

    # -- outputs ---------------------------------------------------------------------------
    def _publish(self, a: Allocation, inputs: AllocationInputs, problem: str | None,
                 wall: float, stamp: str) -> None:
        for path, value in calculations(a, inputs, problem, wall=wall, stamp=stamp).items():
            self.ctx.emit(path, value)
        for path, value in reservation_monitor(a, inputs, problem).items():
            self.ctx.emit(path, value, port="reservation")

    def _show(self, a: Allocation, problem: str | None, consumers: list[tuple[str, Tracked]],
              explanations: dict[str, str], why: str) -> None:
        ctx = self.ctx
        shares = ", ".join(f"{k} {known.allowance:.0f} W" for k, known in consumers)
        if problem is not None and problem.startswith("no value yet"):
            ctx.status.warning(f"every allowance 0: {problem}")
        elif problem is not None:
            text = f"no grants, every allowance 0: {problem}"
            if problem != self._problem:
                ctx.log.error("%s", text)
                ctx.event(text, logging.ERROR)
            ctx.status.error(text)
        else:
            if self._problem is not None and not self._problem.startswith("no value yet"):
                ctx.log.info("granting again (%s)", why)
                ctx.event("granting again")
            why_each = "; ".join(f"{k}: {explanations.get(k, '0 W')}" for k, _ in consumers)
            text = (f"available {a.available:.0f} W, reservation {a.reservation:.0f} W, "
                    f"assigned {a.assigned:.0f} W" + (f": {shares} ({why_each})"
                                                      if shares else ""))
            bad = [k for k, e in explanations.items() if "malformed" in e]
            if bad:
                ctx.status.warning(f"{text}; malformed: {', '.join(bad)}")
            else:
                ctx.status.ok(text)
        self._problem = problem
        for key, reason in explanations.items():
            ctx.log.debug("%s: %s", key, reason)

