"""energy.setpoint: ask the site's grid setpoint arbiter for a share of the setpoint.

    - id: setpoint
      type: energy.setpoint
      arbiter: default       # the `setpoint` connection of the site file

Every input value (whatever its topic) is this node's request, in W added to the
site's default setpoint (+ = more import from the grid, - = more feed-in); None
revokes it. The request is named `<flow>/<node>`, so several flows (NoBatToEV, the
charge current reducer, your own) add up without knowing of each other; the arbiter
(`nodes/energy/arbiter.py`) writes `/Settings/CGwacs/AcPowerSetPoint` of
com.victronenergy.settings, clamped and paced.

Fail-safe: the request is revoked on stop, SIGTERM, a failure of this node and when the
flow is redeployed or removed; the last request gone, the arbiter writes the default at
once. While a request is active the guardian holds the write of the default, so a
killed or hung runtime leaves the default too; with no request, nothing is registered.
The status shows this node's request and the whole setpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowengine.errors import NotConnected
from flowengine.model import Message, NodeSpec
from flowengine.node import Node, node_type, option
from nodes.energy.arbiter import CONNECTION_KINDS, Arbiter

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowengine.context import NodeContext

__all__ = ["CONNECTION_KINDS", "EnergySetpoint", "EnergySetpointConfig"]

MAX_REQUEST_W = 100_000.0


@dataclass(frozen=True, kw_only=True)
class EnergySetpointConfig:
    arbiter: str = option("the grid setpoint arbiter (a `setpoint` connection)",
                          default="default", connection="setpoint")


@node_type("energy.setpoint", config=EnergySetpointConfig)
class EnergySetpoint(Node[EnergySetpointConfig]):
    """Request W on top of the site's default grid setpoint (None revokes); fail-safe."""

    outputs = ()

    def __init__(self, config: EnergySetpointConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        self._arbiter: Arbiter | None = None
        self._who = ""
        self._mine: float | None = None
        self._unlisten: Callable[[], None] = lambda: None

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        arbiter: Arbiter = await ctx.connections.get("setpoint", self.config.arbiter)
        await arbiter.bind(ctx.connections)
        self._arbiter, self._who = arbiter, f"{ctx.flow_id}/{ctx.node_id}"
        self._unlisten = arbiter.on_change(self._show)
        self._show()

    async def stop(self) -> None:
        self._unlisten()

    async def on_message(self, port: str, msg: Message) -> None:
        value = msg.value
        if value is None:
            await self._revoke()
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value) or abs(value) > MAX_REQUEST_W:
            await self._revoke()
            self.ctx.log.warning("not a request in W: %r; revoked", value)
            self.ctx.status.error(f"not a request in W: {value!r}; revoked")
            return
        await self._request(float(value))

    async def _request(self, watts: float) -> None:
        arbiter = self._arbiter
        assert arbiter is not None
        if self._mine is None:
            try:
                await arbiter.prepare()
            except NotConnected as exc:
                self.ctx.status.error(str(exc))
                self.ctx.log.warning("%s", exc)
                return
            if not await self.ctx.register_safe_action(arbiter.safe_action()):
                self.ctx.status.error("the guardian did not take the safe write; no request")
                return
            self.ctx.log.info("requesting %+g W", watts)
        self._mine = watts
        await arbiter.request(self._who, watts)

    async def _revoke(self) -> None:
        arbiter = self._arbiter
        if arbiter is None or self._mine is None:
            return
        self._mine = None
        self.ctx.log.info("request revoked")
        await arbiter.revoke(self._who)
        await self.ctx.withdraw_safe_action()
        self._show()

    def has_safe_state(self) -> bool:
        return True

    async def safe_state(self) -> None:
        """Revoke the request (the arbiter writes the default when it was the last)."""
        self._unlisten()  # the runtime shows why this node stopped; not our status
        arbiter = self._arbiter
        if arbiter is not None and self._mine is not None:
            self._mine = None
            await arbiter.revoke(self._who)

    def _show(self) -> None:
        arbiter = self._arbiter
        if arbiter is None:
            return
        mine = "no request" if self._mine is None else f"requesting {self._mine:+g} W"
        text = f"{mine}; {arbiter.describe()}"
        if arbiter.problem is not None and self._mine is not None:
            self.ctx.status.error(text)
        else:
            self.ctx.status.ok(text)
