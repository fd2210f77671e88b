"""A stand-in for Victron's side of the bus, written straight on dbus-fast.

`VeService` is a minimal velib-like service (e.g. com.victronenergy.settings or
.system) whose values the test sets; it can leave the bus and come back. The client
side (GetItems, GetValue, SetValue and the signals, as systemcalc and the GUI use them)
is `testkit.dbus.VictronClient`. Neither uses our adapter, so the tests check our
nodes against the wire, not against our own codec.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from dbus_fast import Message, MessageType, NameFlag, Variant
from dbus_fast.aio import MessageBus
from testkit.dbus import BUSITEM, plain

INVALID = Variant("ai", [])


def variant(value: Any) -> Variant:
    if value is None:
        return INVALID
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int):
        return Variant("i", value)
    if isinstance(value, float):
        return Variant("d", value)
    return Variant("s", str(value))


class VeService:
    """A minimal velib-like service: values set by the test, optional writes."""

    def __init__(self, address: str, name: str, values: Mapping[str, Any], *,
                 writable: Mapping[str, int] | None = None,
                 signal_writes: bool = False) -> None:
        self.address = address
        self.name = name
        self.values: dict[str, Any] = dict(values)
        self.writable = dict(writable or {})  # path -> return code for writes (0 accepts)
        self.writes: list[tuple[str, Any]] = []
        # localsettings signals an accepted SetValue (PropertiesChanged) before it replies
        self.signal_writes = signal_writes
        # called after an accepted write is signalled, before the reply: someone else's
        # change that lands while the writer still waits for its answer
        self.before_reply: Callable[[str, Any], None] | None = None
        self.settings: dict[str, Any] = {}
        self.bus: MessageBus | None = None

    async def start(self) -> VeService:
        self.bus = await MessageBus(bus_address=self.address).connect()
        self.bus.add_message_handler(self._handle)
        await self.bus.request_name(self.name, NameFlag.DO_NOT_QUEUE)
        return self

    async def stop(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()
            await self.bus.wait_for_disconnect()
            self.bus = None

    async def __aenter__(self) -> VeService:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def set(self, changes: Mapping[str, Any]) -> None:
        """Change values and signal them as velib does (one path: PropertiesChanged)."""
        self.values.update(changes)
        assert self.bus is not None
        if len(changes) == 1:
            ((path, value),) = changes.items()
            self.bus.send(Message.new_signal(path, BUSITEM, "PropertiesChanged", "a{sv}", [
                {"Value": variant(value), "Text": Variant("s", str(value))}]))
        else:
            self.bus.send(Message.new_signal("/", BUSITEM, "ItemsChanged", "a{sa{sv}}", [
                {p: {"Value": variant(v), "Text": Variant("s", str(v))}
                 for p, v in changes.items()}]))

    def _handle(self, msg: Message) -> Message | None:
        if msg.message_type is not MessageType.METHOD_CALL:
            return None
        path, member = msg.path, msg.member
        if msg.interface != BUSITEM and (msg.interface, member) != (
                "com.victronenergy.Settings", "AddSetting"):
            return None
        if member == "GetItems" and path == "/":
            return Message.new_method_return(msg, "a{sa{sv}}", [
                {p: {"Value": variant(v), "Text": Variant("s", str(v))}
                 for p, v in self.values.items()}])
        if member == "AddSetting":  # localsettings: <object>/<group>/<name>, -9 outside
            group, name, default = msg.body[0], msg.body[1], msg.body[2].value
            key = f"{'' if path == '/' else path}/{group.strip('/')}/{name.strip('/')}"
            if not key.startswith("/Settings/"):
                return Message.new_method_return(msg, "i", [-9])
            self.values.setdefault(key, default)
            self.settings[key] = default
            return Message.new_method_return(msg, "i", [0])
        if path not in self.values:
            return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownObject", path)
        if member == "GetValue":
            return Message.new_method_return(msg, "v", [variant(self.values[path])])
        if member == "SetValue":
            code = self.writable.get(path, 1)
            value = plain(msg.body[0])
            self.writes.append((path, value))
            if code == 0:
                if self.signal_writes:
                    self.set({path: value})
                else:
                    self.values[path] = value
                if self.before_reply is not None:
                    self.before_reply(path, value)
            return Message.new_method_return(msg, "i", [code])
        return None


async def settle(times: int = 3) -> None:
    for _ in range(times):
        await asyncio.sleep(0)
