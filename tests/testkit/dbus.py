"""Reading Victron services as a client does: plain values, GetValue, waiting for a value,
and `VictronClient`, a client on a connection of its own that also records signals."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

__all__ = ["ABSENT", "BUSITEM", "VictronClient", "plain", "value", "wait_for"]

ABSENT = "absent"
BUSITEM = "com.victronenergy.BusItem"
_DBUS, _DBUS_PATH = "org.freedesktop.DBus", "/org/freedesktop/DBus"


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


class VictronClient:
    """A Victron-style client (as the GUI or VRM logger): its own connection, BusItem
    calls, and every BusItem signal it receives (after `follow`) in `signals`."""

    def __init__(self, address: str) -> None:
        self.bus = MessageBus(bus_address=address)
        self.signals: list[Message] = []

    async def __aenter__(self) -> VictronClient:
        await self.bus.connect()
        self.bus.add_message_handler(self._record)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.bus.disconnect()

    def _record(self, msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL and msg.interface == BUSITEM:
            self.signals.append(msg)

    async def call(self, service: str, path: str, member: str, signature: str = "",
                   body: Iterable[Any] = (), *, interface: str = BUSITEM) -> Message:
        """The reply as it is (an error reply too)."""
        reply = await self.bus.call(Message(destination=service, path=path, interface=interface,
                                            member=member, signature=signature,
                                            body=list(body)))
        assert reply is not None
        return reply

    async def _ok(self, service: str, path: str, member: str, signature: str = "",
                  body: Iterable[Any] = (), *, interface: str = BUSITEM) -> Message:
        reply = await self.call(service, path, member, signature, body, interface=interface)
        assert reply.message_type is MessageType.METHOD_RETURN, reply.body
        return reply

    async def follow(self, service: str) -> None:
        await self._ok(_DBUS, _DBUS_PATH, "AddMatch", "s",
                       [f"type='signal',sender='{service}',interface='{BUSITEM}'"],
                       interface=_DBUS)

    # -- raw replies, for tests of the wire format -------------------------------------------
    async def get_items(self, service: str) -> Message:
        return await self.call(service, "/", "GetItems")

    async def get_value(self, service: str, path: str) -> Message:
        return await self.call(service, path, "GetValue")

    async def get_text(self, service: str, path: str) -> Message:
        return await self.call(service, path, "GetText")

    # -- plain values ---------------------------------------------------------------------------
    async def items(self, service: str) -> dict[str, Any]:
        reply = await self._ok(service, "/", "GetItems")
        return {path: plain(item["Value"]) for path, item in reply.body[0].items()}

    async def value(self, service: str, path: str) -> Any:
        return plain((await self._ok(service, path, "GetValue")).body[0])

    async def text(self, service: str, path: str) -> str:
        return str((await self._ok(service, path, "GetText")).body[0])

    async def set_value(self, service: str, path: str, new: Variant) -> int:
        reply = await self._ok(service, path, "SetValue", "v", [new])
        assert reply.signature == "i"
        return int(reply.body[0])

    async def names(self) -> list[str]:
        reply = await self._ok(_DBUS, _DBUS_PATH, "ListNames", interface=_DBUS)
        return list(reply.body[0])

    async def has_owner(self, name: str) -> bool:
        reply = await self._ok(_DBUS, _DBUS_PATH, "NameHasOwner", "s", [name], interface=_DBUS)
        return bool(reply.body[0])

    # -- signals ------------------------------------------------------------------------------
    def of(self, member: str) -> list[Message]:
        return [m for m in self.signals if m.member == member]

    def changed(self, sender_unique: str | None = None) -> list[dict[str, Any]]:
        """Bodies of every ItemsChanged received (path -> value)."""
        return [{p: plain(i["Value"]) for p, i in m.body[0].items()}
                for m in self.of("ItemsChanged")
                if sender_unique is None or m.sender == sender_unique]
