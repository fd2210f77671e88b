"""dbus.write: set a path of another D-Bus service, with limits and a safe value.

    - id: setpoint
      type: dbus.write
      service: com.victronenergy.settings
      path: /Settings/CGwacs/AcPowerSetPoint
      minimum: -5000
      maximum: 5000
      min_interval_ms: 5000     # at most one write per 5 s
      safe_value: 0             # written on stop, SIGTERM and failure

Every input value (whatever its topic) is a number to write with SetValue. It is
clamped to `minimum`..`maximum` and written only when it differs from the last value
written; a value that comes sooner than `min_interval_ms` after the last write waits,
and the latest one waiting goes out when the time is up. An invalid value (None)
writes the safe value (`on_invalid: safe`), is ignored (`on_invalid: ignore`), or is
written as invalid (`on_invalid: invalid`, an empty array as Venus OS encodes it; for
values shown to users, such as a time to go, never for a setpoint).

When the service refuses a write (a non-zero answer) or is not on the bus, the
status turns to an error and the value is tried again after 1 s, then 2, 4 and 8 s and
every 10 s, until it is accepted or a new value takes its place (so a setpoint that
does not change still arrives once the service is back). The safe value is written
when the flow stops, when the runtime gets SIGTERM and when this node fails; with
`safe_value: null` nothing is written then, with `safe_value: invalid` the path is
made invalid (so a value this flow no longer computes is not left standing).

Before its first write the node registers the same safe write with the guardian, so it
is also made when the runtime is killed, hangs or loses power (then at the next start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flowengine.context import NodeContext, Timer
from flowengine.errors import ConfigError, NotConnected
from flowengine.model import Message, NodeSpec
from flowengine.node import Node, node_type, option
from nodes.dbus.bus import BusCallError, ServiceAbsent, encode
from nodes.dbus.link import DbusLink

__all__ = ["DbusWrite", "DbusWriteConfig"]

SAFE_TIMEOUT_MS = 500.0  # the runtime gives every safe state 800 ms in all
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 10.0  # a failed write is tried again, backing off
Number = int | float


@dataclass(frozen=True, kw_only=True)
class DbusWriteConfig:
    service: str = option("bus name of the service to write to",
                          pattern=r"^[A-Za-z0-9_.-]+$", example="com.victronenergy.settings")
    path: str = option("path to set", pattern=r"^/", example="/Settings/CGwacs/AcPowerSetPoint")
    safe_value: float | Literal["invalid"] | None = option(
        "written on stop, SIGTERM and failure (null: write nothing then; invalid: make "
        "the path invalid)", example=0)
    minimum: float | None = option("lowest value written (lower ones are clamped)",
                                   default=None, example=-5000)
    maximum: float | None = option("highest value written (higher ones are clamped)",
                                   default=None, example=5000)
    min_interval_ms: float = option("at least this long between two writes", default=1000,
                                    minimum=0)
    integer: bool = option("write whole numbers (rounded), for integer settings",
                           default=False)
    on_invalid: Literal["safe", "ignore", "invalid"] = option(
        "an invalid input (None): write the safe value, ignore it, or write it as invalid",
        default="safe")
    timeout_ms: float = option("give up on one SetValue after", default=1000, minimum=10)
    connection: str = option("name of the dbus connection", default="system",
                             connection="dbus")


@node_type("dbus.write", config=DbusWriteConfig)
class DbusWrite(Node[DbusWriteConfig]):
    """Set a path of another D-Bus service (clamped, on change, paced); safe value on stop."""

    outputs = ()

    def __init__(self, config: DbusWriteConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        low, high = config.minimum, config.maximum
        if low is not None and high is not None and low > high:
            raise ConfigError(f"minimum {low:g} is above maximum {high:g}",
                              mark=self.mark_of("minimum"), hint="swap them")
        if config.on_invalid == "invalid" and isinstance(config.safe_value, int | float):
            raise ConfigError("on_invalid: invalid with a numeric safe_value",
                              mark=self.mark_of("on_invalid"),
                              hint="a path that may be invalid wants safe_value: invalid "
                                   "(or null); a setpoint wants on_invalid: safe")
        self._link: DbusLink | None = None
        self._written: Number | None = None  # last value the service accepted
        self._written_at = -1e18
        self._written_invalid = False  # the path was made invalid by the last write
        self._held: Number | None = None
        self._release: Timer | None = None
        self._retry_s = RETRY_FIRST_S
        self._retrying = False  # the timer in _release is a retry's (a backoff)
        self._guarded = False  # the guardian has our safe write

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        self._link = await ctx.connections.get("dbus", self.config.connection)
        ctx.status.clear()

    async def on_message(self, port: str, msg: Message) -> None:
        value = msg.value
        if value is None:
            on_invalid, safe = self.config.on_invalid, self.config.safe_value
            if on_invalid == "invalid" or (on_invalid == "safe" and safe == "invalid"):
                await self._write_invalid()
                return
            if on_invalid == "ignore" or safe is None or safe == "invalid":
                return
            value = safe
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.ctx.status.error(f"not a number: {value!r}")
            return
        target = self._limit(value)
        if target == self._written:
            self._held = None
            return
        wait_s = self._written_at + self.config.min_interval_ms / 1000 - self.ctx.now()
        if wait_s > 0:
            self._held = target
            if self._release is None or not self._release.active or self._retrying:
                if self._release is not None:  # a new value does not wait out a backoff
                    self._release.cancel()
                self._release = self.ctx.after(wait_s * 1000, self._write_held, name="paced")
                self._retrying = False
            return
        self._held = None  # an older value waiting (to be tried again) is replaced
        await self._write(target)

    def _limit(self, value: Number) -> Number:
        cfg = self.config
        if cfg.minimum is not None and value < cfg.minimum:
            value = cfg.minimum
        if cfg.maximum is not None and value > cfg.maximum:
            value = cfg.maximum
        return round(value) if cfg.integer else value

    async def _write_held(self) -> None:
        held, self._held = self._held, None
        if held is not None and held != self._written:
            await self._write(held)

    async def _write_invalid(self, *, timeout_ms: float | None = None,
                             safe: bool = False) -> bool:
        """Make the path invalid, once (not again while it is)."""
        if self._written_invalid:
            return True
        if self._release is not None:
            self._release.cancel()
        self._held = None
        done = await self._write(None, timeout_ms=timeout_ms, retry=False, safe=safe)
        self._written_invalid = done
        return done

    async def _write(self, value: Number | None, *, timeout_ms: float | None = None,
                     retry: bool = True, safe: bool = False) -> bool:
        """SetValue; True when the service accepted it. Sets the status either way; a
        number that fails is tried again later (`retry`). Any write but the safe state's
        own (`safe`) is registered with the guardian first."""
        if not safe:
            await self._guard()
        done = await self._set(value, timeout_ms)
        if done:
            self._retry_s = RETRY_FIRST_S
        elif retry and value is not None and self._held is None:
            self._held = value
            if self._release is not None:
                self._release.cancel()
            self._release = self.ctx.after(self._retry_s * 1000, self._write_held,
                                           name="retry")
            self._retrying = True
            self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
        return done

    async def _guard(self) -> None:
        """Register the safe write with the guardian, once, before the first write."""
        safe = self.config.safe_value
        if self._guarded or safe is None or self._link is None:
            return
        variant = encode(None if safe == "invalid" else self._limit(safe))
        self._guarded = await self.ctx.register_safe_action({
            "type": "dbus.set_value", "bus": self._link.bus.address,
            "service": self.config.service, "path": self.config.path,
            "signature": variant.signature, "value": variant.value})

    async def _set(self, value: Number | None, timeout_ms: float | None) -> bool:
        cfg, ctx = self.config, self.ctx
        if self._link is None:
            return False
        self._written_at = ctx.now()
        self._written_invalid = False  # not known to be invalid once any write is under way
        where = f"{cfg.service} {cfg.path}"
        try:
            code = await self._link.bus.set_value(
                cfg.service, cfg.path, value,
                timeout_s=(timeout_ms or cfg.timeout_ms) / 1000)
        except ServiceAbsent:
            self._failed(f"{cfg.service} is not on the bus")
            return False
        except (BusCallError, NotConnected) as exc:
            self._failed(f"writing {where} failed: {exc}")
            return False
        except TimeoutError:
            self._failed(f"{cfg.service} did not answer within {cfg.timeout_ms:g} ms")
            return False
        shown = "invalid" if value is None else f"{value:g}"
        if code != 0:
            self._failed(f"{where} refused {shown} (code {code})")
            return False
        if ctx.status.current.level == "error":
            ctx.log.info("writing %s works again", where)
        self._written = value
        ctx.status.ok(f"{cfg.path} = {shown}")
        return True

    def _failed(self, text: str) -> None:
        self._written = None  # unknown now: the next value is written whatever it is
        self._written_invalid = False
        status = self.ctx.status.current
        if status.level != "error":  # once per trouble, not once per value refused
            self.ctx.log.warning("%s", text)
        elif status.text != text:
            self.ctx.log.debug("%s", text)
        self.ctx.status.error(text)

    async def safe_state(self) -> None:
        """Write the safe value now (no pacing, no retry)."""
        safe = self.config.safe_value
        if safe is None or self._link is None:
            return
        if safe == "invalid":
            if not await self._write_invalid(timeout_ms=SAFE_TIMEOUT_MS, safe=True):
                raise RuntimeError(self.ctx.status.current.text)
            return
        if self._release is not None:
            self._release.cancel()
        self._held = None
        if not await self._write(self._limit(safe), timeout_ms=SAFE_TIMEOUT_MS, retry=False,
                                 safe=True):
            raise RuntimeError(self.ctx.status.current.text)
