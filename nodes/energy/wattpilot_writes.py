"""The writes `energy.wattpilot` makes to the charger: one at a time, in the order asked
for, each answer checked.

- `queue(key, value)` asks for a write unless the charger already has the value, the
  same write waits, or the charger refused that very value less than `REFUSED_HOLD_S`
  ago (asked again after that, never in a tight loop). A newer value for a key that
  waits replaces the older one in its place.
- One task makes them (`kick` starts it when the link is ready): a refusal is logged
  and shown (`problem`), a timeout too; a lost link keeps what waits for when it is
  back (a VRM write while hibernating is made after the wake-up).
- Before the first "force state on" (`frc` 2) the guardian gets "force state off" as
  its safe action (`wattpilot.set`, with the derived password hash, never the
  password); without its consent nothing is started. `unguard` withdraws it once the
  node does not charge any more.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowengine.errors import DeviceError, NotConnected
from flowengine.model import JsonValue
from nodes.devices.wattpilot import WattpilotClient, WattpilotRefused

if TYPE_CHECKING:
    from flowengine.context import NodeContext
    from nodes.energy.wattpilot import EnergyWattpilotConfig

__all__ = ["REFUSED_HOLD_S", "Writes"]

WRITE_TIMEOUT_S = 5.0
REFUSED_HOLD_S = 60.0
GUARDIAN_TIMEOUT_S = 5.0


class Writes:
    """What waits to be written, and the task that writes it."""

    def __init__(self, client: WattpilotClient, ctx: NodeContext,
                 cfg: EnergyWattpilotConfig, *, done: Callable[[], None]) -> None:
        self.client, self.ctx, self.cfg, self.done = client, ctx, cfg, done
        self.pending: dict[str, JsonValue] = {}
        self.refused: dict[tuple[str, str], float] = {}
        self.problem: str | None = None  # the last refused or failed write, for the status
        self._problem_key: str | None = None
        self.guarded = False
        self.closed = False
        self._running = False

    @property
    def busy(self) -> bool:
        """Something waits or is being written."""
        return bool(self.pending) or self._running

    def queue(self, key: str, value: JsonValue) -> None:
        if self.closed:
            return
        if self.client.status.get(key) == value and key not in self.pending:
            return
        if self.pending.get(key, object()) == value:
            return
        refused_at = self.refused.get((key, json.dumps(value)))
        if refused_at is not None and self.ctx.now() - refused_at < REFUSED_HOLD_S:
            return
        self.pending[key] = value
        self.kick()

    def kick(self) -> None:
        """Write what waits, if anything does and nothing writes yet."""
        if self.pending and not self._running and not self.closed:
            self._running = True
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
            self._running = False
        self.done()

    async def _write(self, key: str, value: JsonValue) -> None:
        log = self.ctx.log
        try:
            await self.client.set_value(key, value, timeout_s=WRITE_TIMEOUT_S)
        except WattpilotRefused as exc:
            self.refused[key, json.dumps(value)] = self.ctx.now()
            self._failed(key, f"the Wattpilot refused {key} = {value}: {exc.message}")
            log.warning("%s (not asked again for %g s)", self.problem, REFUSED_HOLD_S)
            self.pending.pop(key, None)
        except NotConnected:
            return  # kept: made when the link is back
        except DeviceError as exc:
            self._failed(key, f"writing {key} = {value} failed: {exc}")
            log.warning("%s", self.problem)
            self.pending.pop(key, None)
        else:
            if self._problem_key == key:
                self.problem = self._problem_key = None
            log.info("set %s = %s", key, value)

    def _failed(self, key: str, text: str) -> None:
        self.problem, self._problem_key = text, key

    async def _guard(self) -> bool:
        if self.guarded:
            return True
        hp, hello = self.client.password_hash, self.client.hello
        if hp is None or hello is None:
            return False
        self.guarded = await self.ctx.register_safe_action({
            "type": "wattpilot.set", "host": self.cfg.host, "port": self.cfg.port,
            "path": "/ws", "password_hash": hp, "serial": hello.serial,
            "values": {"frc": 1}, "timeout_s": GUARDIAN_TIMEOUT_S})
        if not self.guarded:
            self._failed("frc", "not charging: the guardian did not take the safe action")
            self.ctx.log.warning("%s", self.problem)
        return self.guarded

    def unguard(self) -> None:
        if self.guarded:
            self.guarded = False
            self.ctx.after(0, self.ctx.withdraw_safe_action, name="unguard")
