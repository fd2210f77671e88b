"""nodes.mqtt.batching over a real loopback socket: the writes of one loop turn go out
in one send, in order; close sends what waits, abort drops it."""

from __future__ import annotations

import asyncio

from conftest import eventually, run

from nodes.mqtt.batching import BatchingTransport


class _Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.chunks = 0
        self.closed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.chunks += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


async def _pair() -> tuple[BatchingTransport, _Sink, asyncio.Server]:
    loop = asyncio.get_running_loop()
    sink = _Sink()
    server = await loop.create_server(lambda: sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    raw, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    await eventually(lambda: sink is not None)
    return BatchingTransport(raw, loop), sink, server  # type: ignore[arg-type]


def test_the_writes_of_one_turn_go_out_in_one_send_in_order() -> None:
    async def scenario() -> None:
        transport, sink, server = await _pair()
        for n in range(100):
            transport.write(f"{n:03d};".encode())
        assert transport.writes == 0 and transport.get_write_buffer_size() == 400
        await asyncio.sleep(0)  # the next turn
        assert transport.writes == 1
        await eventually(lambda: len(sink.data) == 400)
        assert sink.data.decode() == "".join(f"{n:03d};" for n in range(100))
        transport.write(b"a")  # a later turn: a send of its own
        await asyncio.sleep(0)
        transport.write(bytearray(b"b"))
        await asyncio.sleep(0)
        assert transport.writes == 3
        transport.close()
        server.close()
    run(scenario())


def test_close_sends_what_waits_and_abort_drops_it() -> None:
    async def scenario() -> None:
        transport, sink, server = await _pair()
        transport.write(b"last words")
        transport.close()  # in the same turn
        await asyncio.wait_for(sink.closed.wait(), 5)
        assert bytes(sink.data) == b"last words"
        other, sink2, server2 = await _pair()
        other.write(b"never")
        other.abort()
        await asyncio.wait_for(sink2.closed.wait(), 5)
        assert bytes(sink2.data) == b"" and other.get_write_buffer_size() == 0
        server.close()
        server2.close()
    run(scenario())
