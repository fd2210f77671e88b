"""The bus connection itself: a full socket must make writes wait, not drop the link."""

from __future__ import annotations

import asyncio
import socket

from conftest import eventually, run
from dbus_fast import Message

from nodes.dbus import bus as bus_module
from nodes.dbus.bus import open_bus


def test_a_burst_that_fills_the_socket_waits_instead_of_dropping_the_connection(
        bus_address: str, monkeypatch) -> None:
    """dbus-fast gives up on the connection when a send meets a full socket (EAGAIN);
    our connection must instead wait until the socket drains and send everything."""
    monkeypatch.setattr(bus_module, "SEND_BUFFER_BYTES", 4096)  # a small socket buffer
    count, size = 300, 60_000

    async def scenario() -> None:
        async with open_bus(bus_address) as sender, open_bus(bus_address) as receiver:
            got: list[int] = []

            def on_message(msg: Message) -> None:
                if msg.member == "Burst":
                    got.append(len(msg.body[0]))
            receiver._bus.add_message_handler(on_message)
            await receiver.add_match("type='signal',interface='test.Burst'")
            raw = sender._bus
            assert raw._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) <= 16384
            for _ in range(count):  # one loop turn: the kernel cannot take it all
                raw.send(Message.new_signal("/t", "test.Burst", "Burst", "s", ["x" * size]))
            await eventually(lambda: len(got) == count, timeout=20)
            assert raw.connected
            names = await sender.list_names()  # the link still works both ways
            assert sender.unique_name in names
            await asyncio.sleep(0)
    run(scenario())
