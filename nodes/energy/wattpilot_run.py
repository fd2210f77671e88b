"""One running `energy.wattpilot` (see nodes/energy/wattpilot.py for what it does,
wattpilot_policy.py for when it charges, wattpilot_vrm.py for what VRM shows).

Everything arrives as an event on the loop (a status update of the client, an
allowance, a VRM write, a timer) and is handled at once. Writes to the charger go out
one at a time from one task, in the order they were asked for; a newer value for a key
that waits replaces the older one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowengine.errors import DeviceError, NotConnected
from flowengine.model import JsonValue
from nodes.devices.wattpilot import WattpilotClient, WattpilotRefused
from nodes.energy.switch_run import number_text, parse_allowance
from nodes.energy.wattpilot_policy import AutoPolicy, Plan, Wish
from nodes.energy.wattpilot_vrm import (
    CHARGING,
    Session,
    current_setting,
    model_status_name,
    vrm_current,
    vrm_status,
)

if TYPE_CHECKING:
    from flowengine.context import NodeContext, Timer
    from nodes.energy.wattpilot import EnergyWattpilot
    from nodes.mqtt.broker import Broker, Subscription

__all__ = ["WattpilotRun"]

CHILD = "charger"
WRITE_TIMEOUT_S = 5.0
SAFE_TIMEOUT_S = 0.6  # the runtime gives every safe state 0.8 s
REFUSED_HOLD_S = 60.0  # a refused value is not asked for again within this time
CONNECTED_CAR = (2, 3, 4, 5)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


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
        self.prefix = f"{cfg.root}/Requests/{cfg.key}/"
        self.plan: Plan | None = None
        self.allowance: float | None = None
        self.allowance_lost = False
        self.malformed = 0
        self.pending: dict[str, JsonValue] = {}
        self.refused: dict[tuple[str, str], float] = {}
        self.problem: str | None = None  # the last refused or failed write
        self.hibernating = False
        self.awake_until = 0.0
        self.guarded = False
        self.stop_when_back = False  # the link went while we charged: stop first thing
        self.foreign = False  # its own logic charged in auto mode: held off until unplugged
        self.closed = False
        self.first_look = True  # the first decision in auto mode with a car
        self.shown: dict[str, JsonValue] = {}
        self.fields: dict[str, str] = {}
        self.unknown_status: set[object] = set()
        self._writing = False
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
        self.closed = True
        if self._sub is not None:
            self._sub.cancel()
            self._sub = None
        self._unlisten()
        await self.client.close()

    async def safe_stop(self) -> None:
        """Stop charging if we charge in auto mode; raise if the charger did not take it."""
        status = self.client.status
        ours = status.get("lmo") == 4 and (self.policy.charging or status.get("frc") == 2)
        self.closed = True
        self.policy.stopped(self.ctx.now())
        if self.broker is not None and self.broker.connected:
            self.broker.publish(self.prefix + "Request", "0", qos=1)
            self.broker.publish(self.prefix + "Consumption", "0", qos=1)
        if ours and not self.hibernating:
            await self.client.set_value("frc", 1, timeout_s=SAFE_TIMEOUT_S)
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
            if self.pending:
                self._write_soon()
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
        connected = self.car_connected
        self.session.update(now, connected=connected, charging=self.power_w > 0,
                            wh=_number(status.get("wh")))
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

    @property
    def car_connected(self) -> bool:
        return self.client.status.get("car") in CONNECTED_CAR

    @property
    def auto(self) -> bool:
        return self.client.status.get("lmo") == 4

    @property
    def power_w(self) -> float:
        nrg = self.client.status.get("nrg")
        if isinstance(nrg, list) and len(nrg) > 11:
            return max(0.0, _number(nrg[11]) or 0.0)
        return 0.0

    def _nrg(self, index: int) -> float | None:
        nrg = self.client.status.get("nrg")
        if isinstance(nrg, list) and len(nrg) > index:
            return _number(nrg[index])
        return None

    @property
    def voltage_v(self) -> float:
        volts = self._nrg(0)
        return volts if volts is not None and volts > 100 else self.cfg.voltage_v

    @property
    def max_a(self) -> int:
        status = self.client.status
        ama, cable = _number(status.get("ama")), _number(status.get("cbl"))
        limit = int(ama) if ama is not None and ama >= self.cfg.min_a else 16
        if cable is not None and cable >= self.cfg.min_a:
            limit = min(limit, int(cable))
        return limit

    @property
    def phases(self) -> int:
        """The phases it charges on (psm; with psm 0 from the currents, else three)."""
        psm = self.client.status.get("psm")
        if psm == 1:
            return 1
        if psm == 2:
            return 3
        currents = [self._nrg(i) or 0.0 for i in (4, 5, 6)]
        return 1 if currents[0] > 0.5 and max(currents[1:]) <= 0.5 else 3

    @property
    def price_low(self) -> bool:
        status = self.client.status
        price = status.get("awcp")
        market = _number(price.get("marketprice")) if isinstance(price, dict) else None
        limit = _number(status.get("awp"))
        return market is not None and limit is not None and market < limit

    # -- control ---------------------------------------------------------------------------
    def decide(self) -> None:
        if self.closed or not self.client.ready:
            return
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None
        now, status = self.ctx.now(), self.client.status
        if not self.auto or not self.car_connected:
            if self.policy.charging:
                self.policy.stopped(now, counts=False)
            self.plan = None
            self.stop_when_back = False
            if not self.car_connected:
                self.foreign = False
                if self.auto and status.get("frc") == 2:
                    self.queue("frc", 0)  # the next car does not start on its own
            self._unguard()
            return
        if self.first_look:
            self.first_look = False
            if status.get("frc") == 2 and self.power_w > 0:  # a restart: it counts as
                self.policy.found_charging(self.phases, now)  # started now
        if self.stop_when_back:
            self.stop_when_back = False
            self.queue("frc", 1)
        if status.get("car") == 4:
            self.policy.stopped(now, counts=False)
            plan = Plan(False, reason="car full")
        else:
            plan = self.policy.decide(Wish(
                allowance_w=self.allowance, voltage_v=self.voltage_v, max_a=self.max_a,
                min_a=self.cfg.min_a, low_price=self.cfg.low_price and self.price_low,
                low_price_a=self.cfg.low_price_a), now)
        self.plan = plan
        if plan.charge:
            self.queue("psm", 1 if plan.phases == 1 else 2)
            self.queue("amp", plan.amps)
            self.queue("frc", 2)
        else:
            self.queue("frc", self._idle_force_state())
            if status.get("frc") != 2 and self.power_w <= 0:
                self._unguard()
        if plan.wait_s is not None:
            self._wait = self.ctx.after(plan.wait_s * 1000 + 50, self.decide, name="cooldown")

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

    def queue(self, key: str, value: JsonValue) -> None:
        """Ask for a write unless the charger has the value, it waits, or was refused."""
        if self.client.status.get(key) == value and key not in self.pending:
            return
        if self.pending.get(key, object()) == value:
            return
        refused_at = self.refused.get((key, json.dumps(value)))
        if refused_at is not None and self.ctx.now() - refused_at < REFUSED_HOLD_S:
            return
        self.pending[key] = value
        self._write_soon()

    def _write_soon(self) -> None:
        if not self._writing:
            self._writing = True
            self.ctx.after(0, self._write_all, name="write")

    async def _write_all(self) -> None:
        try:
            while self.pending and not self.closed and self.client.ready:
                key, value = next(iter(self.pending.items()))
                if key == "frc" and value == 2 and not await self._guard():
                    self.pending.pop(key, None)
                    continue
                await self._write(key, value)
                if self.pending.get(key, object()) == value:
                    del self.pending[key]
        finally:
            self._writing = False
        self.show()

    async def _write(self, key: str, value: JsonValue) -> None:
        log = self.ctx.log
        try:
            await self.client.set_value(key, value, timeout_s=WRITE_TIMEOUT_S)
        except WattpilotRefused as exc:
            self.refused[key, json.dumps(value)] = self.ctx.now()
            self.problem = f"the Wattpilot refused {key} = {value}: {exc.message}"
            log.warning("%s (not asked again for %g s)", self.problem, REFUSED_HOLD_S)
            self.pending.pop(key, None)
        except NotConnected:
            return  # kept: made when the link is back
        except DeviceError as exc:
            self.problem = f"writing {key} = {value} failed: {exc}"
            log.warning("%s", self.problem)
            self.pending.pop(key, None)
        else:
            if self.problem is not None and self.problem.split(" = ")[0].endswith(key):
                self.problem = None
            log.info("set %s = %s", key, value)

    async def _guard(self) -> bool:
        """The guardian holds "force state off" before we start charging."""
        if self.guarded:
            return True
        hp, hello = self.client.password_hash, self.client.hello
        if hp is None or hello is None:
            return False
        self.guarded = await self.ctx.register_safe_action({
            "type": "wattpilot.set", "host": self.cfg.host, "port": self.cfg.port,
            "path": "/ws", "password_hash": hp, "serial": hello.serial,
            "values": {"frc": 1}, "timeout_s": 5})
        if not self.guarded:
            self.problem = "not charging: the guardian did not take the safe action"
            self.ctx.log.warning("%s", self.problem)
        return self.guarded

    def _unguard(self) -> None:
        if self.guarded:
            self.guarded = False
            self.ctx.after(0, self.ctx.withdraw_safe_action, name="unguard")

    # -- VRM -------------------------------------------------------------------------------
    def from_vrm(self, path: str, value: JsonValue) -> None:
        """A SetValue from VRM or the GX (already checked by the service)."""
        if self.closed:
            return
        number = _number(value)
        log = self.ctx.log
        if number is None:
            return
        if path == "/Mode":
            if number == 2:
                log.info("scheduled mode from VRM: waking the Wattpilot")
                self.wake(stay_s=self.cfg.hibernate_check_s)
            else:
                self.queue("lmo", 4 if number == 1 else 3)
                self.wake(stay_s=self.cfg.hibernate_check_s)
        elif path in ("/StartStop", "/SetCurrent"):
            if self.auto:
                log.info("%s = %s from VRM ignored: in auto mode the distributor decides",
                         path, value)
            elif path == "/StartStop":
                self.queue("frc", 2 if number == 1 else 1)
                self.wake(stay_s=self.cfg.hibernate_check_s)
            else:
                psm, amp = current_setting(number, max_a=self.max_a, min_a=self.cfg.min_a)
                self.queue("psm", psm)
                self.queue("amp", amp)
                self.wake(stay_s=self.cfg.hibernate_check_s)
        elif path != "/AutoStart":  # AutoStart follows the mode: shown again below
            return
        self.shown.pop(path, None)  # shown again as the charger has it
        self.publish()

    def publish(self) -> None:
        """The EV charger paths that changed, to the service and out of the node."""
        if self.closed:
            return
        values = self.paths()
        changed = {p: v for p, v in values.items() if self.shown.get(p, object()) != v}
        if not changed:
            return
        self.shown.update(changed)
        ctx = self.ctx
        for path, value in changed.items():  # one message per path: the service's input
            msg = ctx.message(path, value)  # keeps the latest of each topic
            ctx.send(CHILD, msg)
            ctx.emit(msg)

    def paths(self) -> dict[str, JsonValue]:
        status, client = self.client.status, self.client
        up = client.ready or self.hibernating
        paths: dict[str, JsonValue] = {"/Connected": 1 if up else 0}
        if client.hello is not None:
            paths["/Serial"] = client.hello.serial
        if isinstance(status.get("fwv"), str):
            paths["/FirmwareVersion"] = status["fwv"]
        lmo = status.get("lmo")
        paths["/Mode"] = None if lmo is None else 1 if lmo == 4 else 0
        paths["/AutoStart"] = 1 if lmo == 4 else 0
        if self.hibernating:
            status = {"car": 1}
        power = self.power_w if not self.hibernating else 0.0
        paths["/Status"] = self.status_code(status, power) if up else None
        phases = self.phases
        paths["/SetCurrent"] = vrm_current(amp=status.get("amp"), phases=phases) \
            if not self.hibernating else self.shown.get("/SetCurrent")
        paths["/MaxCurrent"] = float(3 * self.max_a)
        paths["/StartStop"] = 1 if status.get("frc") == 2 or power > 0 else 0
        measured = up and not self.hibernating
        for i, phase in enumerate(("L1", "L2", "L3")):
            paths[f"/Ac/{phase}/Power"] = self._nrg(7 + i) if measured else None
            paths[f"/Ac/{phase}/Voltage"] = self._nrg(i) if measured else None
            paths[f"/Ac/{phase}/Current"] = self._nrg(4 + i) if measured else None
        paths["/Ac/Power"] = power if up else None
        currents = [self._nrg(i) or 0.0 for i in (4, 5, 6)]
        paths["/Current"] = round(sum(currents), 1) if measured else None
        energy, seconds = self.session.energy_kwh, int(self.session.time_s)
        paths["/Ac/Energy/Forward"] = paths["/Session/Energy"] = energy
        paths["/ChargingTime"] = paths["/Session/Time"] = seconds
        return paths

    def status_code(self, status: dict[str, Any], power: float) -> int:
        plan = self.plan
        if plan is not None and plan.status is not None and self.auto \
                and status.get("car") in (2, 3, 5) and (plan.charge or power <= 0):
            return plan.status  # a change of ours waits (or it waits for sun)
        wanted = None if plan is None or not plan.charge else plan.phases
        return vrm_status(car=status.get("car"), model_status=status.get("modelStatus"),
                          err=status.get("err"), power_w=power, phases_wanted=wanted)

    # -- the distributor ----------------------------------------------------------------------
    def request_fields(self) -> dict[str, str]:
        cfg, voltage = self.cfg, self.voltage_v
        wants = self.auto and self.car_connected and self.client.ready \
            and self.client.status.get("car") != 4 and not self.foreign
        charging_on = self.plan.phases if self.plan is not None and self.plan.charge else 0
        name = cfg.custom_name + (f" ({charging_on})" if charging_on else "")
        fields = {"IsScriptedConsumer": "true",
                  "IsAutomatic": "true" if self.auto else "false",
                  "CustomName": name,
                  "Request": number_text(round(3 * self.max_a * voltage) if wants else 0),
                  "StepSize": number_text(round(voltage * (3 if charging_on == 3 else 1))),
                  "Minimum": number_text(round(cfg.min_a * voltage)),
                  "Priority": str(cfg.priority),
                  "PriorityShift": number_text(cfg.priority_shift),
                  "IgnoreBatReservation": "false",
                  "Consumption": number_text(round(self.power_w) if self.client.ready else 0)}
        if cfg.overhead_vrm_instance is not None:
            fields["VRMInstanceID"] = str(cfg.overhead_vrm_instance)
        return fields

    def announce(self, *, every: bool = False) -> None:
        broker = self.broker
        if self.closed or broker is None:
            return
        if self.hibernating and every and self.fields:
            every = False  # asleep: only what changes (es-ESS refreshed every 5 min)
        fields = self.request_fields()
        for name, value in fields.items():
            if every or self.fields.get(name) != value:
                broker.publish(self.prefix + name, value, qos=1)
        self.fields = fields

    def _on_allowance(self, _topic: str, payload: bytes, retained: bool) -> None:
        if self.closed:
            return
        try:
            if retained:
                raise ValueError("retained (the distributor never retains an allowance)")
            watts = parse_allowance(payload)
        except ValueError as exc:
            self.malformed += 1
            level = self.ctx.log.warning if self.malformed == 1 else self.ctx.log.debug
            level("allowance ignored (%d so far): %s", self.malformed, exc)
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
                or self.car_connected or self.pending or self._writing:
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
        parts = ["auto" if self.auto else "manual (hands off)",
                 {1: "no car", 2: "charging", 3: "car waiting", 4: "car full"}.get(
                     car if isinstance(car, int) else -1, f"car state {car!r}")]
        if self.power_w > 0:
            parts.append(f"{number_text(round(self.power_w))} W on {self.phases} phase(s)")
        if self.auto and self.plan is not None and self.plan.reason:
            parts.append(self.plan.reason)
        if self.auto:
            parts.append("allowance lost" if self.allowance_lost else "no allowance yet"
                         if self.allowance is None else
                         f"allowance {number_text(self.allowance)} W")
        if self.problem:
            parts.append(self.problem)
        text = "; ".join(parts)
        (status.warning if self.problem or (self.auto and self.allowance_lost)
         else status.ok)(text)
