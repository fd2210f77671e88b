"""A Victron-style D-Bus client written straight on dbus-fast, for the simulated Venus OS.

It reads the way systemcalc, the GUI and the MQTT bridge do (GetItems, GetValue,
SetValue) and records the BusItem signals it receives, so the tests check the
simulation on the wire rather than through our own adapter.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from testkit.dbus import plain

BUSITEM = "com.victronenergy.BusItem"


class VictronClient:
    def __init__(self, address: str) -> None:
        self.bus = MessageBus(bus_address=address)
        self.signals: list[Message] = []

    async def __aenter__(self) -> VictronClient:
        await self.bus.connect()
        self.bus.add_message_handler(self._record)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.bus.disconnect()

    def _record(self, msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL and msg.interface == BUSITEM:
            self.signals.append(msg)

    async def call(self, service: str, path: str, member: str, signature: str = "",
                   body: list[Any] | None = None, interface: str = BUSITEM) -> Message:
        reply = await self.bus.call(Message(destination=service, path=path,
                                            interface=interface, member=member,
                                            signature=signature, body=body or []))
        assert reply is not None
        assert reply.message_type is MessageType.METHOD_RETURN, reply.body
        return reply

    async def follow(self, service: str) -> None:
        await self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "AddMatch", "s",
                        [f"type='signal',sender='{service}',interface='{BUSITEM}'"],
                        interface="org.freedesktop.DBus")

    async def items(self, service: str) -> dict[str, Any]:
        reply = await self.call(service, "/", "GetItems")
        return {path: plain(item["Value"]) for path, item in reply.body[0].items()}

    async def value(self, service: str, path: str) -> Any:
        return plain((await self.call(service, path, "GetValue")).body[0])

    async def text(self, service: str, path: str) -> str:
        return str((await self.call(service, path, "GetText")).body[0])

    async def set_value(self, service: str, path: str, value: Variant) -> int:
        return int((await self.call(service, path, "SetValue", "v", [value])).body[0])

    async def names(self) -> list[str]:
        reply = await self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "ListNames",
                                interface="org.freedesktop.DBus")
        return list(reply.body[0])

    def changed(self, sender_unique: str | None = None) -> list[dict[str, Any]]:
        """Bodies of every ItemsChanged received (path -> value)."""
        return [{p: plain(i["Value"]) for p, i in m.body[0].items()}
                for m in self.signals if m.member == "ItemsChanged"
                and (sender_unique is None or m.sender == sender_unique)]
