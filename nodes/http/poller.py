"""The polling loop shared by `http.poll` and the Shelly nodes.

Polls start every `interval_ms` on the runtime's timer grid (`NodeContext.every`), so
every poll and timer of that interval shares one wake-up of the loop. A poll still
running when the next one is due skips that turn, as es-ESS's timers do, so requests
never pile up on a slow device: the next one starts on the first tick after the answer
(or the timeout). After `offline_after` failed polls in a row the device counts as
offline: every value it delivers becomes None (invalid, never 0), the status says
"offline", `connected` goes to 0 and one warning is logged; the first good answer
brings it back (`connected` 1) with one info line. Earlier failures are logged at DEBUG.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from flowengine.context import NodeContext
from flowengine.model import JsonValue
from flowengine.node import Node
from nodes.http.session import DeviceUnreachable, HttpAuth, HttpSession, JsonClient

__all__ = ["Poller"]

ConfigT = TypeVar("ConfigT")


class Poller(Node[ConfigT]):
    """Base of nodes that poll one device; subclasses implement `fetch`."""

    inputs = {}
    interval_ms: float = 1000.0
    timeout_ms: float = 800.0
    offline_after: int = 3

    async def fetch(self, client: JsonClient) -> Mapping[str, JsonValue]:
        """One poll: topic -> value. Raise DeviceUnreachable when the device fails."""
        raise NotImplementedError

    def auth(self) -> HttpAuth:
        return HttpAuth()

    def offline_topics(self) -> Iterable[str]:
        """The topics set to None when the device goes offline."""
        return self._emitted

    def describe(self) -> str:
        """A few words for the status line while online."""
        return f"online, {len(self._emitted)} values"

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        self.session: HttpSession = await ctx.connections.get("http", "default")
        self._client = self.session.client(self.auth())
        self._failures = 0
        self._emitted: list[str] = []
        self.polls = 0
        self.failed_polls = 0
        ctx.status.warning("waiting for the first answer")
        ctx.every(self.interval_ms, self._poll, name="poll", first_ms=0)

    async def _poll(self) -> None:
        try:
            values = await self.fetch(self._client)
        except DeviceUnreachable as exc:
            self._failed(str(exc))
        else:
            self._answered(values)

    def _answered(self, values: Mapping[str, Any]) -> None:
        ctx = self.ctx
        self.polls += 1
        if self._failures >= self.offline_after:
            ctx.log.info("back online after %d failed polls", self._failures)
        if self._failures >= self.offline_after or not self._emitted:
            ctx.emit(ctx.message("connected", 1))
        self._failures = 0
        for topic, value in values.items():
            if topic not in self._emitted:
                self._emitted.append(topic)
            ctx.emit(ctx.message(topic, value))
        ctx.status.ok(self.describe())

    def _failed(self, reason: str) -> None:
        ctx = self.ctx
        self.polls += 1
        self.failed_polls += 1
        self._failures += 1
        if self._failures < self.offline_after:
            ctx.log.debug("poll failed (%d of %d before offline): %s",
                          self._failures, self.offline_after, reason)
            return
        if self._failures == self.offline_after:
            ctx.log.warning("offline after %d failed polls: %s", self._failures, reason)
            for topic in self.offline_topics():
                ctx.emit(ctx.message(topic, None))
            ctx.emit(ctx.message("connected", 0))
        ctx.status.error(f"offline: {reason}")
