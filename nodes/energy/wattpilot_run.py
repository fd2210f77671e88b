"""One running `energy.wattpilot` (see nodes/energy/wattpilot.py for what it does,
wattpilot_policy.py for when it charges, wattpilot_vrm.py for what VRM shows).

Everything arrives as an event on the loop (a status update of the client, an
allowance, a VRM write, a timer) and is handled at once; the writes it asks for go out
one at a time (wattpilot_writes.py), what VRM shows is read from the status by
wattpilot_view.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowengine.errors import DeviceError
from flowengine.model import JsonValue
from nodes.devices.wattpilot import WattpilotClient
from nodes.energy.switch_run import AllowanceReader, number_text
from nodes.energy.wattpilot_policy import AutoPolicy, Plan, Wish
from nodes.energy.wattpilot_view import Reading, number, request_fields, vrm_paths
from nodes.energy.wattpilot_vrm import CHARGING, Session, current_setting, model_status_name
from nodes.energy.wattpilot_writes import Writes

if TYPE_CHECKING:
    from flowengine.context import NodeContext, Timer
    from nodes.energy.wattpilot import EnergyWattpilot
    from nodes.mqtt.broker import Broker, Subscription

__all__ = ["WattpilotRun"]

CHILD = "charger"
SAFE_TIMEOUT_S = 0.6  # the runtime gives every safe state 0.8 s


class WattpilotRun:
    """The state of one started node; `close()` ends it."""

    def __init__(self, node: EnergyWattpilot, ctx: NodeContext) -> None:
        cfg = node.config
        self.node, self.ctx, self.cfg = node, ctx, cfg
        self.client = WattpilotClient(cfg.host, cfg.password, port=cfg.port,
                                      name=f"wattpilot {cfg.host}")
        self.policy = AutoPolicy(min_on_off_s=cfg.min_on_off_s,
                                 min_phase_switch_s=cfg.min_phase_switch_s)
        self.session = Session(cfg.reset_counters)
        self.r = Reading(self.client.status, cfg.min_a, cfg.voltage_v)
        self.writes = Writes(self.client, ctx, cfg, done=self.show)
        self.prefix = f"{cfg.root}/Requests/{cfg.key}/"
        self.plan: Plan | None = None
        self.allowance: float | None = None
        self.allowance_lost = False
        self.allowances = AllowanceReader(ctx.log)
        self.hibernating = False
        self.awake_until = 0.0
        self.stop_when_back = False  # the link went while we charged: stop first thing
        self.foreign = False  # its own logic charged in auto mode: held off until unplugged
        self.closed = False
        self.first_look = True  # the first decision in auto mode with a car
        self.shown: dict[str, JsonValue] = {}
        self.fields: dict[str, str] = {}
        self.unknown_status: set[object] = set()
        self._wait: Timer | None = None
        self._lost: Timer | None = None
        self._sleep: Timer | None = None
        self._sub: Subscription | None = None
        self._unlisten: Callable[[], None] = lambda: None
        self.broker: Broker | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        ctx, cfg = self.ctx, self.cfg
        self.broker = broker = await ctx.connections.get("mqtt", cfg.broker)
        await ctx.spawn(CHILD, "dbus.service", {
            "preset": "evcharger", "name": cfg.service_name,
            "device_instance": cfg.vrm_instance, "product_name": "Fronius Wattpilot",
            "custom_name": cfg.custom_name, "mgmt_connection": f"Websocket {cfg.host}",
            "values": {"/Position": cfg.position, "/Model": "Fronius Wattpilot",
                       "/Status": 0, "/Connected": 0}})
        self._sub = broker.subscribe(self.prefix + "Allowance", self._on_allowance, qos=1)
        self._unlisten = broker.on_change(self._broker_changed)
        self.client.on_change(self._changed)
        self.client.on_state(self._link_changed)
        await self.client.start()
        ctx.every(cfg.announce_s * 1000, lambda: self.announce(every=True), name="announce")
        self._arm_allowance_timeout()
        self.show()

    async def close(self) -> None:
        self.closed = self.writes.closed = True
        if self._sub is not None:
            self._sub.cancel()
            self._sub = None
        self._unlisten()
        await self.client.close()

    async def safe_stop(self) -> None:
        """Stop charging if we charge in auto mode; raise if the charger did not take it."""
        status = self.client.status
        ours = status.get("lmo") == 4 and (self.policy.charging or status.get("frc") == 2)
        self.closed = self.writes.closed = True  # nothing is started after this
        self.policy.stopped(self.ctx.now())
        if self.broker is not None and self.broker.connected:
            self.broker.publish(self.prefix + "Request", "0", qos=1)
            self.broker.publish(self.prefix + "Consumption", "0", qos=1)
        if ours and not self.hibernating:
            try:  # behind a write on its way, if one is: then it is undone
                async with asyncio.timeout(SAFE_TIMEOUT_S):
                    await self.client.set_value("frc", 1, timeout_s=SAFE_TIMEOUT_S)
            except TimeoutError:
                raise DeviceError(f"{self.client.name}: no answer to force state off "
                                  f"within {SAFE_TIMEOUT_S:g} s") from None
            self.ctx.log.info("charging stopped (force state off)")

    # -- what the charger says -------------------------------------------------------------
    def _changed(self, _keys: frozenset[str]) -> None:
        if self.closed:
            return
        self.update()

    def _link_changed(self, client: WattpilotClient) -> None:
        if self.closed:
            return
        if client.ready:
            self.writes.kick()
            self.update()
            return
        if not client.connected and not self.hibernating:
            if self.policy.charging:
                self.ctx.log.warning("link to the Wattpilot lost while charging in auto "
                                     "mode: it is stopped as soon as it is back")
                self.stop_when_back = True
                self.policy.stopped(self.ctx.now())
            self.allowance = None  # granted for a request that was 0 meanwhile: wait for
            self.plan = None  # a fresh one
            self.publish()
            self.announce()
            self.show()

    def update(self) -> None:
        """Derive everything from the status: session, control, VRM paths, request."""
        now = self.ctx.now()
        status = self.client.status
        connected = self.r.car_connected
        self.session.update(now, connected=connected, charging=self.r.power_w > 0,
                            wh=number(status.get("wh")))
        model = status.get("modelStatus")
        if model is not None and model_status_name(model).startswith("unknown") \
                and model not in self.unknown_status and len(self.unknown_status) < 20:
            self.unknown_status.add(model)
            self.ctx.log.warning("the Wattpilot reports %s: shown from its car state and "
                                 "power", model_status_name(model))
        self.decide()
        self.publish()
        self.announce()
        self._maybe_hibernate()
        self.show()

    # -- control ---------------------------------------------------------------------------
    def decide(self) -> None:
        if self.closed or not self.client.ready:
            return
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None
        now, status = self.ctx.now(), self.client.status
        if not self.r.auto or not self.r.car_connected:
            if self.policy.charging:
                self.policy.stopped(now, counts=False)
            self.plan = None
            self.stop_when_back = False
            if not self.r.car_connected:
                self.foreign = False
                if self.r.auto and status.get("frc") == 2:
                    self.writes.queue("frc", 0)  # the next car does not start on its own
            self.writes.unguard()
            return
        if self.first_look:
            self.first_look = False
            if status.get("frc") == 2 and self.r.power_w > 0:  # a restart: it counts as
                self.policy.found_charging(self.r.phases, now)  # started now
        if self.stop_when_back:
            self.stop_when_back = False
            self.writes.queue("frc", 1)
        if self.r.car_full:
            self.policy.stopped(now, counts=False)
            plan = Plan(False, reason="car full")
        else:
            plan = self.policy.decide(Wish(
                allowance_w=self.allowance, voltage_v=self.r.voltage_v, max_a=self.r.max_a,
                min_a=self.cfg.min_a, low_price=self.cfg.low_price and self.r.price_low,
                low_price_a=self.cfg.low_price_a), now)
        self._tell(self.plan, plan)
        self.plan = plan
        if plan.charge:
            self.writes.queue("psm", 1 if plan.phases == 1 else 2)
            self.writes.queue("amp", plan.amps)
            self.writes.queue("frc", 2)
        else:
            self.writes.queue("frc", self._idle_force_state())
            if status.get("frc") != 2 and self.r.power_w <= 0:
                self.writes.unguard()
        if plan.wait_s is not None:
            self._wait = self.ctx.after(plan.wait_s * 1000 + 50, self.decide, name="cooldown")

    def _tell(self, before: Plan | None, plan: Plan) -> None:
        """A service message when charging starts or stops, when a phase switch is made,
        and when a change starts to wait for a cooldown (with the time it ends)."""
        if plan.wait_s is not None:
            if before is None or before.status != plan.status:
                at = time.localtime(self.ctx.clock.wall() + plan.wait_s)
                self.ctx.event(f"{plan.reason}, until "
                               f"{time.strftime('%H:%M:%S', at)}")
            return
        was = (False, 0) if before is None else (before.charge, before.phases)
        if (plan.charge, plan.phases if plan.charge else 0) != \
                (was[0], was[1] if was[0] else 0):
            self.ctx.event(plan.reason)

    def _idle_force_state(self) -> int:
        """Off (1), or neutral (0) so the charger's own low-price charging may run when the
        node's is off; its own charging for any other reason is stopped (once told)."""
        status = self.client.status
        hands_off = not self.cfg.low_price and status.get("ful") is True and not self.foreign
        model = status.get("modelStatus")
        if status.get("frc") == 0 and model == 7 and not hands_off:
            return 1  # its own low-price charging, while the node's low price decides
        if status.get("frc") == 0 and model in CHARGING and model != 7:
            self.foreign = True
            self.ctx.log.warning(
                "the Wattpilot charges by its own logic (%s) in auto mode: stopped; set its "
                "PV start power out of reach (e.g. 99 kW) in the Fronius app",
                model_status_name(model))
            return 1
        return 0 if hands_off else 1

    # -- VRM -------------------------------------------------------------------------------
    def from_vrm(self, path: str, value: JsonValue) -> None:
        """A SetValue from VRM or the GX (already checked by the service)."""
        if self.closed:
            return
        written = number(value)
        log = self.ctx.log
        if written is None:
            return
        if path == "/Mode":
            if written == 2:
                log.info("scheduled mode from VRM: waking the Wattpilot")
                self.wake(stay_s=self.cfg.hibernate_check_s)
            else:
                self.writes.queue("lmo", 4 if written == 1 else 3)
                self.wake(stay_s=self.cfg.hibernate_check_s)
        elif path in ("/StartStop", "/SetCurrent"):
            if self.r.auto:
                log.info("%s = %s from VRM ignored: in auto mode the distributor decides",
                         path, value)
            elif path == "/StartStop":
                self.writes.queue("frc", 2 if written == 1 else 1)
                self.wake(stay_s=self.cfg.hibernate_check_s)
            else:
                psm, amp = current_setting(written, max_a=self.r.max_a, min_a=self.cfg.min_a)
                self.writes.queue("psm", psm)
                self.writes.queue("amp", amp)
                self.wake(stay_s=self.cfg.hibernate_check_s)
        elif path != "/AutoStart":  # AutoStart follows the mode: shown again below
            return
        self.shown.pop(path, None)  # shown again as the charger has it
        self.publish()

    def publish(self) -> None:
        """The EV charger paths that changed, to the service and out of the node."""
        if self.closed:
            return
        client = self.client
        values = vrm_paths(self.r, up=client.ready or self.hibernating,
                           hibernating=self.hibernating,
                           serial=client.hello.serial if client.hello else None,
                           session=self.session, plan=self.plan,
                           set_current=self.shown.get("/SetCurrent"))
        changed = {p: v for p, v in values.items() if self.shown.get(p, object()) != v}
        if not changed:
            return
        self.shown.update(changed)
        ctx = self.ctx
        for path, value in changed.items():  # one message per path: the service's input
            msg = ctx.message(path, value)  # keeps the latest of each topic
            ctx.send(CHILD, msg)
            ctx.emit(msg)

    # -- the distributor ----------------------------------------------------------------------
    def announce(self, *, every: bool = False) -> None:
        broker = self.broker
        if self.closed or broker is None:
            return
        if self.hibernating and every and self.fields:
            every = False  # asleep: only what changes (es-ESS refreshed every 5 min)
        fields = request_fields(self.r, self.cfg, ready=self.client.ready, plan=self.plan,
                                held_off=self.foreign)
        for name, value in fields.items():
            if every or self.fields.get(name) != value:
                broker.publish(self.prefix + name, value, qos=1)
        self.fields = fields

    def _on_allowance(self, _topic: str, payload: bytes, retained: bool) -> None:
        if self.closed:
            return
        watts = self.allowances.read(payload, retained)
        if watts is None:
            return
        if self.allowance_lost:
            self.ctx.log.info("allowance back: %s W", number_text(watts))
        self.allowance, self.allowance_lost = watts, False
        self._arm_allowance_timeout()
        self.decide()
        self.publish()
        self.announce()
        self.show()

    def _arm_allowance_timeout(self) -> None:
        if self._lost is not None:
            self._lost.cancel()
        self._lost = self.ctx.after(self.cfg.allowance_timeout_s * 1000,
                                    self._allowance_timeout, name="allowance")

    def _allowance_timeout(self) -> None:
        self._lose_allowance(f"no allowance for {self.cfg.allowance_timeout_s:g} s")

    def _lose_allowance(self, why: str) -> None:
        if self.closed:
            return
        if self.policy.charging:
            self.ctx.log.warning("%s: solar charging stops", why)
        self.allowance, self.allowance_lost = None, True
        self.decide()
        self.publish()
        self.show()

    def _broker_changed(self, broker: Broker) -> None:
        if self.closed:
            return
        if broker.connected:
            self.announce(every=True)
            self.show()
        else:
            self._lose_allowance(f"broker {broker.address} gone")

    # -- hibernate -----------------------------------------------------------------------------
    def _maybe_hibernate(self) -> None:
        if not self.cfg.hibernate or self.hibernating or not self.client.ready \
                or self.r.car_connected or self.writes.busy:
            return
        now = self.ctx.now()
        if now < self.awake_until:
            if self._sleep is None:
                self._sleep = self.ctx.after((self.awake_until - now) * 1000 + 50,
                                             self._sleep_check, name="hibernate")
            return
        self.hibernating = True
        self.ctx.log.info("no car: hibernating, looking again in %g s",
                          self.cfg.hibernate_check_s)
        self.ctx.after(0, self.client.close, name="hibernate")
        self._sleep = self.ctx.after(self.cfg.hibernate_check_s * 1000,
                                     lambda: self.wake(stay_s=0), name="hibernate")
        self.publish()

    def _sleep_check(self) -> None:
        self._sleep = None
        self._maybe_hibernate()

    def wake(self, *, stay_s: float) -> None:
        """Open the link (if hibernating) and keep it at least `stay_s`."""
        self.awake_until = max(self.awake_until, self.ctx.now() + stay_s)
        if self._sleep is not None:
            self._sleep.cancel()
            self._sleep = None
        if not self.hibernating or self.closed:
            return
        self.hibernating = False
        self.ctx.log.info("waking the Wattpilot")
        self.ctx.after(0, self.client.start, name="wake")
        self.publish()
        self.show()

    # -- status ----------------------------------------------------------------------------
    def show(self) -> None:
        if self.closed:
            return
        client, status = self.client, self.ctx.status
        if self.hibernating:
            at = time.strftime("%H:%M", time.localtime(
                self.ctx.clock.wall() + self.cfg.hibernate_check_s))
            status.ok(f"hibernating (no car); looks again by {at}")
            return
        if not client.ready:
            text = client.describe()
            (status.error if client.login_refused else status.warning)(text)
            return
        car = client.status.get("car")
        parts = ["auto" if self.r.auto else "manual (hands off)",
                 {1: "no car", 2: "charging", 3: "car waiting", 4: "car full"}.get(
                     car if isinstance(car, int) else -1, f"car state {car!r}")]
        if self.r.power_w > 0:
            parts.append(f"{number_text(round(self.r.power_w))} W on {self.r.phases} phase(s)")
        if self.r.auto and self.plan is not None and self.plan.reason:
            parts.append(self.plan.reason)
        if self.r.auto:
            parts.append("allowance lost" if self.allowance_lost else "no allowance yet"
                         if self.allowance is None else
                         f"allowance {number_text(self.allowance)} W")
        problem = self.writes.problem
        if problem:
            parts.append(problem)
        text = "; ".join(parts)
        (status.warning if problem or (self.r.auto and self.allowance_lost)
         else status.ok)(text)
