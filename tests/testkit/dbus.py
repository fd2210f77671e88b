"""Reading Victron services as a client does: plain values, GetValue, waiting for a value."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

__all__ = ["ABSENT", "plain", "value", "wait_for"]

ABSENT = "absent"


def plain(got: Any) -> Any:
    """A received variant as a plain value; an empty `ai` (invalid) as None."""
    if isinstance(got, Variant):
        if got.signature == "ai" and got.value == []:
            return None
        return plain(got.value)
    if isinstance(got, dict):
        return {k: plain(v) for k, v in got.items()}
    if isinstance(got, list):
        return [plain(v) for v in got]
    return got


async def value(bus: MessageBus, service: str, path: str) -> Any:
    """GetValue as a Victron client does; None for invalid, ABSENT without the service."""
    reply = await bus.call(Message(destination=service, path=path,
                                   interface="com.victronenergy.BusItem", member="GetValue"))
    if reply is None or reply.message_type is MessageType.ERROR:
        return ABSENT
    return plain(reply.body[0])


async def wait_for(bus: MessageBus, service: str, path: str, ok: Callable[[Any], bool],
                   timeout: float = 10) -> Any:
    """The value of `path` once `ok(value)` holds; AssertionError with the last one after."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await value(bus, service, path)
        if ok(got):
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{service} {path}: last value {got!r}")
        await asyncio.sleep(0.1)
