"""One connection of the HTTP client: an `asyncio.Protocol` that carries one request at
a time and feeds what arrives to that request's `Reply`.

The pool (`nodes.http.client.Pool`) owns it: `exchange` sends a request and waits for the
reply; when the device closes the connection (EOF, a reset) the pool is told at once
(`Pool.forget`), so an idle connection the device closed is never used again. Bytes that
arrive while no request waits mean the connection is out of step: it is closed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from flowengine.reads import small_reads
from nodes.http.reply import Reply, ReplyError

if TYPE_CHECKING:
    from nodes.http.client import Key, Pool

__all__ = ["Closed", "Connection"]


class Closed(Exception):
    """The device closed the connection before the reply was complete."""

    def __init__(self, started: bool, exc: BaseException | None) -> None:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else None
        super().__init__(text or "the device closed the connection")
        self.started = started


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request at a time."""

    __slots__ = ("_gone", "_reply", "_waiter", "closed", "counted", "idle_since", "key",
                 "pool", "reused", "transport")

    def __init__(self, pool: Pool, key: Key) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.counted = True  # holds one of the pool's places
        self.reused = False
        self.idle_since = 0.0
        self._reply: Reply | None = None
        self._waiter: asyncio.Future[Reply] | None = None
        self._gone: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        small_reads(transport)
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        reply = self._reply
        if reply is None:  # bytes nobody asked for: the connection is out of step
            self.abort()
            return
        try:
            done = reply.feed(data)
        except ReplyError as exc:
            self._settle(exc)
            self.abort()
            return
        if done:
            self._settle(None)

    def eof_received(self) -> bool:
        reply = self._reply
        if reply is not None:
            self._settle(None if reply.feed_eof() else Closed(reply.started, None))
        return False  # close it

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reply = self._reply
        if reply is not None:  # no eof_received before (TLS, a reset)
            done = exc is None and reply.feed_eof()
            self._settle(None if done else Closed(reply.started, exc))
        self.pool.forget(self)
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    def _settle(self, exc: Exception | None) -> None:
        reply, waiter = self._reply, self._waiter
        self._reply = None
        if reply is not None and waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(reply)
            else:
                waiter.set_exception(exc)

    async def exchange(self, head: bytes, max_bytes: int) -> Reply:
        """Send one request and wait for its complete reply."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise Closed(False, None)
        self._reply = Reply(max_bytes)
        self._waiter = self.pool.loop.create_future()
        self.transport.write(head)
        try:
            return await self._waiter
        finally:
            self._reply = self._waiter = None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def gone(self) -> asyncio.Future[None]:
        """Done once connection_lost has run."""
        if self._gone is None:
            self._gone = self.pool.loop.create_future()
            if self.closed:
                self._gone.set_result(None)
        return self._gone
