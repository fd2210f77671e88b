"""Bounded input queue of one node; telemetry coalesces by topic (latest value wins).

A telemetry message replaces a waiting message of the same port and topic in place,
so a slow node holds at most one pending value per topic and memory stays flat.
Messages on event ports (commands, requests), and `KeptMessage`s (events on any port,
e.g. from an `mqtt.in` with `keep: every`), are all kept, in order. When the box is
full the oldest waiting message is dropped and counted: producers never block.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping

from flowengine.model import Message
from flowengine.node import InputMode

__all__ = ["Mailbox", "MailboxClosed"]


class MailboxClosed(Exception):
    """The node's inputs were closed (it is stopping)."""


class Mailbox:
    __slots__ = ("_closed", "_counter", "_items", "_modes", "_waiter", "capacity", "dropped",
                 "waiting")

    def __init__(self, modes: Mapping[str, InputMode], capacity: int = 256) -> None:
        self._modes = dict(modes)
        self._items: dict[object, tuple[str, Message]] = {}
        self.waiting: Mapping[object, tuple[str, Message]] = self._items
        """What waits, read-only (the same dict for the mailbox's life: a cheap emptiness
        test for the runner)."""
        self._counter = itertools.count()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.capacity = capacity
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, port: str, msg: Message) -> None:
        if self._closed:
            return
        items = self._items
        if self._modes.get(port, "telemetry") == "telemetry" and not msg.keep:
            key: object = (port, msg.topic)
            if key in items:
                items[key] = (port, msg)  # keeps its place in the queue, carries the new value
                return
        else:
            key = next(self._counter)
        if len(items) >= self.capacity:
            del items[next(iter(items))]
            self.dropped += 1
        items[key] = (port, msg)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> tuple[str, Message] | None:
        if not self._items:
            return None
        key = next(iter(self._items))
        return self._items.pop(key)

    async def get(self) -> tuple[str, Message]:
        while True:
            if self._items:
                key = next(iter(self._items))
                return self._items.pop(key)
            if self._closed:
                raise MailboxClosed
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        """Refuse new messages and drop the waiting ones."""
        self._closed = True
        self._items.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def reopen(self) -> None:
        self._closed = False
