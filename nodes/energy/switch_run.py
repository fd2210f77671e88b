"""One running `energy.switch`: the request it publishes, the allowance it follows, the
device it switches (see nodes/energy/switch.py for what it does, onoff.py for when).

Everything arrives as an event on the loop (a broker callback, a timer) and is handled
at once; a switch is a task of its own (one at a time), so a slow device never holds
up an allowance, a status message or the broker.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from flowengine.errors import DeviceError, NotConnected
from nodes.energy.onoff_device import HttpOnOff, MqttOnOff

if TYPE_CHECKING:
    from flowengine.context import NodeContext, Timer
    from nodes.energy.onoff import OnOffPolicy
    from nodes.energy.switch import EnergySwitch
    from nodes.mqtt.broker import Broker, Subscription

__all__ = ["AllowanceReader", "SwitchRun", "number_text", "parse_allowance"]


def number_text(value: float) -> str:
    """A number as the distributor's topics carry it: `2000`, `1365.5`."""
    text = f"{value + 0.0:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def parse_allowance(payload: bytes) -> float:
    """An allowance payload as watts; ValueError unless it is a finite number >= 0."""
    text = payload.decode("utf-8", errors="replace").strip()
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not an allowance: {text[:40]!r}")
    return value


class AllowanceReader:
    """Reads the allowances of one consumer; counts (and logs once, then at debug) what
    it ignores: a retained one (the distributor never retains an allowance) or one that
    is not a number >= 0."""

    __slots__ = ("ignored", "log")

    def __init__(self, log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
        self.log = log
        self.ignored = 0

    def read(self, payload: bytes, retained: bool) -> float | None:
        try:
            if retained:
                raise ValueError("retained (the distributor never retains an allowance)")
            return parse_allowance(payload)
        except ValueError as exc:
            self.ignored += 1
            level = self.log.warning if self.ignored == 1 else self.log.debug
            level("allowance ignored (%d so far): %s", self.ignored, exc)
            return None


class SwitchRun:
    """The state of one started node; `close()` ends it."""

    def __init__(self, node: EnergySwitch, ctx: NodeContext, broker: Broker,
                 device: HttpOnOff | MqttOnOff, policy: OnOffPolicy) -> None:
        cfg = node.config
        self.node, self.ctx, self.broker = node, ctx, broker
        self.device, self.policy = device, policy
        self.prefix = f"{cfg.root}/Requests/{cfg.key}/"
        self.fields = node.request_fields()
        self.allowance: float | None = None
        self.allowance_lost = False
        self.device_on: bool | None = None  # confirmed state; None: unknown
        self.device_problem: str | None = "no state from the device yet"
        self.power: float | None = None  # measured, if the device has a power source
        self.power_unreadable = 0
        self.consumption: float | None = None  # last published
        self.allowances = AllowanceReader(ctx.log)
        self.guarded = False
        self.closed = False
        self._busy = False  # a switch task runs
        self._again = False  # decide again once it is done
        self._wait: Timer | None = None
        self._lost: Timer | None = None
        self._sub: Subscription | None = None
        self._waiting = ""  # why a change waits, for the status

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        ctx, cfg = self.ctx, self.node.config
        self._sub = self.broker.subscribe(self.prefix + "Allowance", self._on_allowance,
                                          qos=1)
        self._unlisten = self.broker.on_change(self._broker_changed)
        self.announce()
        ctx.every(cfg.announce_s * 1000, self.announce, name="announce")
        self._lost = ctx.after(cfg.allowance_timeout_s * 1000, self._allowance_timeout,
                               name="allowance")
        device = self.device
        if isinstance(device, HttpOnOff):
            assert cfg.http is not None
            ctx.every(cfg.http.status_interval_s * 1000, self._poll, name="status",
                      first_ms=0)
        else:
            device.listen(self._state_message, self._power_message)
        self.show()

    def close(self) -> None:
        self.closed = True
        if self._sub is not None:
            self._sub.cancel()
            self._sub = None
            self._unlisten()
        if isinstance(self.device, MqttOnOff):
            self.device.close()

    async def safe_off(self, timeout_s: float) -> None:
        """Off now, ignoring the minimum on time; raise if the device did not take it."""
        self.closed = True  # nothing switches on after this
        self.policy.force_off()
        self.policy.sent(False, self.ctx.now())
        device = self.device
        if isinstance(device, MqttOnOff):
            await device.switch(False, strict=True)
        else:
            await device.switch(False, timeout_s=timeout_s)
        if self.broker.connected:  # the distributor gives our share to others at once
            self.broker.publish(self.prefix + "Consumption", "0", qos=1)
            self.broker.publish(self.prefix + "IsAutomatic", "false", qos=1)

    # -- the request -----------------------------------------------------------------------
    def announce(self) -> None:
        for name, value in self.fields.items():
            self.broker.publish(self.prefix + name, value, qos=1)
        self._publish_consumption(force=True)

    def _publish_consumption(self, *, force: bool = False) -> None:
        watts = self.current_consumption()
        if watts != self.consumption or force:
            changed = watts != self.consumption
            self.consumption = watts
            if not self.closed:
                self.broker.publish(self.prefix + "Consumption", number_text(watts), qos=1)
            if changed:
                self.ctx.emit("consumption", watts)

    def current_consumption(self) -> float:
        if self.device_on is not True:
            return 0.0
        if self.power is not None:
            return self.power
        return self.node.config.request_w

    # -- inputs ----------------------------------------------------------------------------
    def _on_allowance(self, _topic: str, payload: bytes, retained: bool) -> None:
        if self.closed:
            return
        watts = self.allowances.read(payload, retained)
        if watts is None:
            self.show()
            return
        if self.allowance_lost:
            self.ctx.log.info("allowance back: %s W", watts)
        self.allowance, self.allowance_lost = watts, False
        if self._lost is not None:
            self._lost.cancel()
        self._lost = self.ctx.after(self.node.config.allowance_timeout_s * 1000,
                                    self._allowance_timeout, name="allowance")
        self.policy.allowance(watts)
        self.ctx.emit("allowance", watts)
        self.decide()

    def _allowance_timeout(self) -> None:
        if self.closed:
            return
        timeout = self.node.config.allowance_timeout_s
        self.ctx.log.warning("no allowance for %g s: switching off", timeout)
        self.allowance, self.allowance_lost = None, True
        self.policy.force_off()
        self.decide()

    def _broker_changed(self, broker: Broker) -> None:
        if self.closed:
            return
        if broker.connected:
            self.announce()
            self.show()
            return
        self.ctx.log.warning("broker %s gone: switching off", broker.address)
        self.allowance, self.allowance_lost = None, True
        self.policy.force_off()
        self.decide()

    def _state_message(self, on: bool | None) -> None:
        if self.closed:
            return
        if on and self.device_on is not True:
            # a reading from before it ran is no consumption: the request counts until the
            # next power message (a device may send its power only every few minutes)
            self.power = None
        self._device_state(on, None if on is not None else "empty status message")

    def _power_message(self, watts: float | None, text: str) -> None:
        if self.closed:
            return
        if watts is None:
            self.power_unreadable += 1
            level = self.ctx.log.warning if self.power_unreadable == 1 else self.ctx.log.debug
            level("power message without a number ignored: %r", text[:40])
            self.show()
            return
        self.power = watts
        self._publish_consumption()
        self.show()

    async def _poll(self) -> None:
        if not self._busy and not self.closed:
            await self._read()

    async def _read(self) -> None:
        device = self.device
        assert isinstance(device, HttpOnOff)
        try:
            on, power = await device.read()
        except DeviceError as exc:
            self._device_state(None, str(exc))
            return
        if on and device.has_power and power is None:
            self.power_unreadable += 1
            if self.power_unreadable == 1:
                self.ctx.log.warning("no power in the answer; counting %g W",
                                     self.node.config.request_w)
        self.power = power
        self._device_state(on, None)

    def _device_state(self, on: bool | None, problem: str | None, *,
                      decide: bool = True) -> None:
        log = self.ctx.log
        if problem is not None and on is None and self.device_problem is None:
            log.warning("%s does not answer: %s; counted as off", self.device.where(),
                        problem)
        elif problem is None and self.device_problem is not None and on is not None:
            log.info("%s answers: %s", self.device.where(), "on" if on else "off")
        elif on is not None and on != self.device_on and self.device_on is not None:
            log.info("consumer is %s", "on" if on else "off")
        if on != self.device_on:
            self.ctx.emit("on", on)
        self.device_on, self.device_problem = on, problem
        self._publish_consumption()
        if decide:
            self.decide()

    # -- switching -------------------------------------------------------------------------
    def decide(self) -> None:
        """Switch if the policy says so now; else wake up when it may."""
        if self.closed:
            return
        if self._busy:
            self._again = True
            return
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None
        decision = self.policy.decide(self.device_on, self.ctx.now())
        self._waiting = decision.reason
        if decision.wait_s is not None and decision.reason.startswith("waiting for"):
            at = time.localtime(self.ctx.clock.wall() + decision.wait_s)
            self._waiting += time.strftime(" at %H:%M:%S", at)
        if decision.command is not None:
            self._busy = True
            on = decision.command
            self.ctx.after(0, lambda: self._switch(on), name="switch")
        elif decision.wait_s is not None:
            self._wait = self.ctx.after(decision.wait_s * 1000, self.decide, name="wait")
        self.show()

    async def _switch(self, on: bool) -> None:
        ctx = self.ctx
        try:
            if on and not await self._guard():
                return
            self.policy.sent(on, ctx.now())
            self._waiting = ""
            try:
                await self.device.switch(on)
            except (DeviceError, NotConnected) as exc:
                ctx.log.warning("switching %s failed: %s", "on" if on else "off", exc)
                if isinstance(self.device, HttpOnOff):
                    self._device_state(None, str(exc), decide=False)
                self._again = True
                return
            ctx.log.info("switched %s (allowance %s)", "on" if on else "off",
                         "lost" if self.allowance is None else f"{self.allowance:g} W")
            if isinstance(self.device, HttpOnOff):
                await self._read()
        finally:
            self._busy = False
            if self._again:
                self._again = False
                self.decide()
            else:
                self.show()

    async def _guard(self) -> bool:
        """The guardian has the off before anything is switched on."""
        if self.guarded:
            return True
        self.guarded = await self.ctx.register_safe_action(self.device.guardian_action())
        if not self.guarded:
            self.ctx.log.warning("not switching on: the guardian did not take the off")
            self._waiting = "not switched on: the guardian did not take the safe action"
        return self.guarded

    # -- status ----------------------------------------------------------------------------
    def show(self) -> None:
        if self.closed:
            return
        status = self.ctx.status
        if self.device_on is None:
            state = f"unknown ({self.device_problem}), counted as off" \
                if self.device_problem else "unknown, counted as off"
        else:
            state = "on" if self.device_on else "off"
        commanded = self.policy.commanded
        if commanded is not None and self.device_on is not None \
                and commanded != self.device_on:
            state += f" (switched {'on' if commanded else 'off'}, not confirmed)"
        parts = [state]
        if self._waiting:
            parts.append(self._waiting)
        if self.allowance is not None:
            parts.append(f"allowance {number_text(self.allowance)} W")
        elif self.allowance_lost:
            parts.append("allowance lost")
        else:
            parts.append("no allowance yet")
        parts.append(f"consumption {number_text(self.current_consumption())} W")
        if self.allowances.ignored:
            parts.append(f"{self.allowances.ignored} bad allowance(s) ignored")
        if not self.broker.connected:
            parts.append(self.broker.describe())
        text = "; ".join(parts)
        if self.device_on is None and self.device_problem and \
                self.device_problem != "no state from the device yet":
            status.error(text)
        elif not self.broker.connected or self.allowance_lost:
            status.warning(text)
        else:
            status.ok(text)
