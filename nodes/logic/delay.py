"""delay: delay messages by a fixed time, or pace them to at most one per interval.

`mode: delay` (the default) passes every message on `delay_ms` later, in order.
`mode: rate` passes at most one message per `delay_ms`: a message that comes sooner
waits, and while it waits a newer message of the same topic replaces it (latest value
wins); waiting topics go out in the order they first came:

    - id: pace
      type: delay
      mode: rate
      delay_ms: 1000
      to: write

At most 1000 messages wait; beyond that the oldest is dropped and counted in the
status. A loop through a delay node is allowed (it paces what goes around). Messages
still waiting when the flow stops are discarded.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from flowengine.context import NodeContext, Timer
from flowengine.model import Message, NodeSpec
from flowengine.node import Node, node_type, option

__all__ = ["Delay", "DelayConfig"]

MAX_PENDING = 1000
_SLACK_S = 1e-9  # float rounding between a timer's deadline and a due time


@dataclass(frozen=True, kw_only=True)
class DelayConfig:
    delay_ms: float = option("the delay (delay), or the least time between messages (rate)",
                             minimum=0, example=1000)
    mode: Literal["delay", "rate"] = option(
        "delay = every message, delay_ms later; rate = at most one message per delay_ms, "
        "the latest value of each topic", default="delay")


@node_type("delay", config=DelayConfig)
class Delay(Node[DelayConfig]):
    """Delay messages by a fixed time, or pace them to at most one per interval."""

    inputs = {"in": "event"}
    breaks_cycles = True

    def __init__(self, config: DelayConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        self._delay = config.delay_ms / 1000
        self._pending: deque[tuple[float, Message]] = deque()  # mode delay: (due, message)
        self._waiting: dict[str, Message] = {}  # mode rate: topic -> latest message
        self._last_sent = float("-inf")
        self._timer: Timer | None = None
        self._dropped = 0

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        ctx.status.ok(f"{self.config.mode} {self.config.delay_ms:g} ms")

    async def on_message(self, port: str, msg: Message) -> None:
        now = self.ctx.now()
        if self.config.mode == "delay":
            if len(self._pending) >= MAX_PENDING:
                self._pending.popleft()
                self._count_drop()
            self._pending.append((now + self._delay, msg))
            if self._timer is None:
                self._arm(self._delay)
            return
        waiting = self._waiting
        if not waiting and now - self._last_sent >= self._delay - _SLACK_S:
            self._send(msg, now)
            return
        if msg.topic not in waiting and len(waiting) >= MAX_PENDING:
            del waiting[next(iter(waiting))]
            self._count_drop()
        waiting[msg.topic] = msg  # a waiting topic keeps its place, with the new value
        if self._timer is None:
            self._arm(self._last_sent + self._delay - now)

    def _arm(self, seconds: float) -> None:
        self._timer = self.ctx.after(max(seconds, 0.0) * 1000, self._fire, name=self.config.mode)

    def _fire(self) -> None:
        self._timer = None
        now = self.ctx.now()
        if self.config.mode == "delay":
            pending = self._pending
            while pending and pending[0][0] <= now + _SLACK_S:
                self.ctx.emit(pending.popleft()[1])
            if pending:
                self._arm(pending[0][0] - now)
            return
        if self._waiting:
            topic = next(iter(self._waiting))
            self._send(self._waiting.pop(topic), now)
        if self._waiting:
            self._arm(self._delay)

    def _send(self, msg: Message, now: float) -> None:
        self._last_sent = now
        self.ctx.emit(msg)

    def _count_drop(self) -> None:
        if not self._dropped:
            self.ctx.log.warning("more than %d messages waiting; dropping the oldest",
                                 MAX_PENDING)
        self._dropped += 1
        self.ctx.status.warning(f"dropped {self._dropped}")
