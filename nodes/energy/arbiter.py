"""The grid setpoint arbiter: one per site, shared by every flow that moves the setpoint.

    connections:
      setpoint:
        default: {default_w: 50, min_setpoint_w: -5000, max_setpoint_w: 8000}

No flow writes the ESS grid setpoint (`com.victronenergy.settings`
`/Settings/CGwacs/AcPowerSetPoint`, W, + = import) itself. Each `energy.setpoint` node
sends a named request (`<flow>/<node>`: W to add, or None to revoke) to this arbiter,
which writes

    setpoint = default + the sum of the active requests   (clamped to min..max)

over D-Bus, only when it changes, moving at most `max_step_w` per write and writing at
most once per `interval_ms` (a larger move takes several writes). While a request is
active, a change of the setting by someone else (the GUI, VRM, another program) is
written over again, and logged once. When the last request is revoked the default is
written at once, without pacing: that is the safe state. While nothing is requested
the arbiter writes nothing, not even at start (es-ESS wrote its default at every start,
over what the user had set).

`default_w` null (the default) takes the setting's value when the first request comes:
what the user had set is what is restored. Each requester registers the same safe write
(the default) with the guardian while its request is active and withdraws it when
revoked, so a killed or hung runtime leaves the default, and nothing is registered while
nothing is requested.

With `broker`, the state is on MQTT under `topic` (retained): `<topic>/Setpoint`,
`<topic>/Default`, and `<topic>/Requests/<flow>/<node>` per active request (emptied when
it is revoked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowengine.connections import ConnectionKind
from flowengine.errors import NotConnected
from flowengine.model import JsonValue
from flowengine.node import option
from nodes.dbus.bus import BusCallError, ServiceAbsent, encode

if TYPE_CHECKING:
    from flowengine.connections import Connections
    from nodes.dbus.link import DbusLink
    from nodes.mqtt.broker import Broker

__all__ = ["CONNECTION_KINDS", "Arbiter", "ArbiterConfig"]

log = logging.getLogger(__name__)

SETTINGS = "com.victronenergy.settings"
SETPOINT = "/Settings/CGwacs/AcPowerSetPoint"
READ_TIMEOUT_S = 2.0
WRITE_TIMEOUT_S = 1.0
SAFE_TIMEOUT_S = 0.5  # the runtime gives every safe state 0.8 s
RETRY_MAX_S = 10.0


@dataclass(frozen=True, kw_only=True)
class ArbiterConfig:
    default_w: float | None = option(
        "setpoint with no request, W; null: the setting's value when the first request "
        "comes (what the user had set is restored)", default=None, example=50)
    min_setpoint_w: float = option("lowest setpoint ever written, W", default=-10000,
                                   example=-5000)
    max_setpoint_w: float = option("highest setpoint ever written, W", default=10000,
                                   example=8000)
    max_step_w: float = option("most one write moves the setpoint, W", default=1000,
                               exclusive_minimum=0)
    interval_ms: float = option("at least this long between two writes (restoring the "
                                "default is not paced)", default=1000, minimum=100)
    dbus: str = option("the dbus connection to the settings service", default="system",
                       connection="dbus")
    broker: str | None = option("MQTT connection to show the setpoint and requests on "
                                "(null: none)", default="main", connection="mqtt")
    topic: str = option("MQTT topic root of the state", default="es-ESS/Setpoint",
                        min_length=1)


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


class Arbiter:
    """The requests of every flow and the one setpoint they make; see the module docstring."""

    def __init__(self, name: str, config: ArbiterConfig) -> None:
        if config.min_setpoint_w > config.max_setpoint_w:
            raise ValueError(f"setpoint.{name}: min_setpoint_w {config.min_setpoint_w:g} "
                             f"is above max_setpoint_w {config.max_setpoint_w:g}")
        self.name, self.config = name, config
        self.requests: dict[str, float] = {}
        self.default: float | None = config.default_w
        self.written: float | None = None  # what we last wrote (and the service took)
        self.target: float | None = None
        self.problem: str | None = None
        self._link: DbusLink | None = None
        self._broker: Broker | None = None
        self._bound = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._watch: Any = None
        self._warned_external = False
        self._recent: deque[float] = deque(maxlen=4)  # our last writes, to know their echo
        self._changes = 0  # changes by someone else seen so far
        self._listeners: list[Callable[[], None]] = []

    # -- what requesters call ---------------------------------------------------------
    async def bind(self, connections: Connections) -> None:
        """Open what the arbiter uses (once, by its first requester)."""
        async with self._bound:
            if self._link is not None:
                return
            link: DbusLink = await connections.get("dbus", self.config.dbus)
            if self.config.broker is not None:
                try:
                    self._broker = await connections.get("mqtt", self.config.broker)
                except LookupError as exc:  # a site without that broker: D-Bus only
                    log.info("setpoint.%s: not shown on MQTT (%s)", self.name, exc)
            self._link = link
            self._watch = await link.watcher.watch(SETTINGS, [SETPOINT], self)

    async def prepare(self) -> float:
        """The default; NotConnected when it cannot be known. Before the first request
        the setting is read: it is where the paced steps start from, and the default
        when none is configured."""
        if self.requests and self.default is not None:
            return self.default
        link = self._require()
        try:
            value = await link.bus.get_value(SETTINGS, SETPOINT, timeout_s=READ_TIMEOUT_S)
            problem = None if not isinstance(value, bool) and isinstance(value, int | float) \
                and math.isfinite(value) else f"{SETPOINT} is {value!r}, not a number"
        except (BusCallError, ServiceAbsent, TimeoutError) as exc:
            value, problem = None, f"cannot read {SETPOINT}: {exc or 'no answer'}"
        if problem is None:
            assert isinstance(value, int | float)
            self.written = float(value)
        if self.default is None:
            if problem is not None:
                raise NotConnected(f"setpoint.{self.name}: {problem}: no default to "
                                   "return to")
            self.default = self.written
            log.info("setpoint.%s: default %g W (the setting's value now)", self.name,
                     self.default)
        assert self.default is not None
        self._publish("Default", self.default)
        return self.default

    def safe_action(self) -> dict[str, JsonValue]:
        """The guardian's write of the default (after `prepare`)."""
        assert self.default is not None and self._link is not None
        variant = encode(float(self._limit(self.default)))
        return {"type": "dbus.set_value", "bus": self._link.bus.address, "service": SETTINGS,
                "path": SETPOINT, "signature": variant.signature, "value": variant.value}

    async def request(self, who: str, watts: float) -> None:
        """Set `who`'s request (W to add to the default); the setpoint follows, paced."""
        await self.prepare()
        if self.requests.get(who) != watts:
            self.requests[who] = watts
            self._publish(f"Requests/{who}", watts)
            self._retarget()

    async def revoke(self, who: str) -> None:
        """Drop `who`'s request. The last one gone: the default is written now; raises
        when that fails (the guardian, which still has it, writes it then)."""
        if self.requests.pop(who, None) is None:
            return
        self._publish(f"Requests/{who}", "")
        if self.requests:
            self._retarget()
            return
        self._stop_writer()
        self.target = None
        if self.default is not None:
            self._notify()
            await self._write(self._limit(self.default), timeout_s=SAFE_TIMEOUT_S, safe=True)

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` when the setpoint, the default or a request changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners \
            else None

    def describe(self) -> str:
        shown = "—" if self.written is None else f"{self.written:g} W"
        default = "unknown" if self.default is None else f"{self.default:g} W"
        parts = ", ".join(f"{who} {w:+g}" for who, w in self.requests.items()) or "none"
        text = f"setpoint {shown} (default {default}; requests: {parts})"
        if self.target is not None and self.target != self.written:
            text += f"; moving to {self.target:g} W"
        return text + (f"; {self.problem}" if self.problem else "")

    # -- the watcher's subscriber ---------------------------------------------------------
    def values_changed(self, service: str, values: dict[str, JsonValue]) -> None:
        value = values.get(SETPOINT)
        if not self.requests or self.target is None or not isinstance(value, int | float):
            return
        if abs(float(value) - self.target) < 0.5 or \
                any(abs(float(value) - mine) < 0.5 for mine in self._recent):
            return  # our own write coming back (perhaps before its reply)
        if not self._warned_external:
            self._warned_external = True
            log.warning("setpoint.%s: %s was changed to %g W by someone else while %d "
                        "request(s) are active; writing %g W again (said once)", self.name,
                        SETPOINT, value, len(self.requests), self.target)
        self.written = float(value)
        self._changes += 1  # a write of ours still waiting for its reply must not undo this
        self._kick.set()
        self._ensure_writer()

    def presence_changed(self, service: str, present: bool) -> None:
        if present and self.requests:
            self.written = None  # a restarted settings service: write again
            self._ensure_writer()

    # -- writing ----------------------------------------------------------------------------
    def _require(self) -> DbusLink:
        if self._link is None:
            raise RuntimeError(f"setpoint.{self.name} used before bind()")
        return self._link

    def _limit(self, value: float) -> float:
        return _clamp(value, self.config.min_setpoint_w, self.config.max_setpoint_w)

    def _retarget(self) -> None:
        assert self.default is not None
        self.target = self._limit(self.default + math.fsum(self.requests.values()))
        self._notify()
        self._kick.set()
        self._ensure_writer()

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._follow(), name=f"setpoint.{self.name}:writer")

    def _stop_writer(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None

    async def _follow(self) -> None:
        """Move the setting toward the target, one paced step per write, until there."""
        cfg, retry_s = self.config, 0.0
        while self.requests and self.target is not None:
            self._kick.clear()
            target, now = self.target, self.written
            if now is not None and abs(target - now) < 0.5:
                await self._kick.wait()
                continue
            step = target if now is None else now + _clamp(target - now, -cfg.max_step_w,
                                                            cfg.max_step_w)
            if await self._write(step, timeout_s=WRITE_TIMEOUT_S):
                retry_s = 0.0
                await asyncio.sleep(cfg.interval_ms / 1000)
            else:
                retry_s = min(RETRY_MAX_S, max(1.0, retry_s * 2))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(retry_s):
                        await self._kick.wait()

    async def _write(self, value: float, *, timeout_s: float, safe: bool = False) -> bool:
        link = self._require()
        self._recent.append(float(value))  # its signal may come before the reply
        changes = self._changes
        try:
            code = await link.bus.set_value(SETTINGS, SETPOINT, float(value),
                                            timeout_s=timeout_s)
            problem = None if code == 0 else f"{SETTINGS} refused {value:g} W (code {code})"
        except ServiceAbsent:
            problem = f"{SETTINGS} is not on the bus"
        except (BusCallError, NotConnected) as exc:
            problem = f"writing {SETPOINT} failed: {exc}"
        except TimeoutError:
            problem = f"{SETTINGS} did not answer within {timeout_s:g} s"
        if problem is not None:
            if problem != self.problem:
                log.warning("setpoint.%s: %s", self.name, problem)
            self.problem = problem
            self._notify()
            if safe:
                raise RuntimeError(problem)
            return False
        if self.problem is not None:
            log.info("setpoint.%s: writing works again", self.name)
        self.problem = None
        if self._changes == changes:  # else someone wrote after us: that value stands
            self.written = float(value)
        if self.written is not None:
            self._publish("Setpoint", self.written)
        self._notify()
        return True

    def _publish(self, what: str, value: float | str) -> None:
        broker = self._broker
        if broker is not None:
            payload = value if isinstance(value, str) else f"{value:g}"
            broker.publish(f"{self.config.topic}/{what}", payload, qos=1, retain=True)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    async def close(self) -> None:
        """Last resort at the end of the runtime: requests left (a requester whose safe
        state failed) → the default once more."""
        self._stop_writer()
        if self._watch is not None and self._link is not None:
            await self._link.watcher.unwatch(self._watch)
        if self.requests and self.default is not None and self._link is not None:
            log.warning("setpoint.%s: %d request(s) left at the end; writing the default "
                        "%g W", self.name, len(self.requests), self.default)
            self.requests.clear()
            with contextlib.suppress(RuntimeError):
                await self._write(self._limit(self.default), timeout_s=SAFE_TIMEOUT_S,
                                  safe=True)


@contextlib.asynccontextmanager
async def open_arbiter(name: str, config: ArbiterConfig) -> AsyncIterator[Arbiter]:
    arbiter = Arbiter(name, config)
    try:
        yield arbiter
    finally:
        await arbiter.close()


CONNECTION_KINDS = (
    ConnectionKind("setpoint", ArbiterConfig, open_arbiter,
                   summary="the grid setpoint arbiter every energy.setpoint node shares",
                   defaults={"default": {}}),
)
