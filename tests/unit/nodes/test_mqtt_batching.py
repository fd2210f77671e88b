"""nodes.mqtt.batching over a real loopback socket: the writes of one loop turn go out
in one send, in order; close sends what waits, abort drops it."""

from __future__ import annotations

import asyncio
from typing import Any

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


class _Collector:
    """Stands for gmqtt's connection: takes what the protocol parsed."""

    def __init__(self, transport: BatchingTransport, reply: bool) -> None:
        self.packets: list[tuple[int, bytes]] = []
        self.transport, self.reply = transport, reply

    def put_package(self, pkg: Any) -> None:
        self.packets.append((pkg.cmd, bytes(pkg.data)))
        if self.reply:  # what a bridge does: publish while the chunk is handled
            self.transport.write(b"re:" + bytes(pkg.data))


def _publish(topic: bytes, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + payload
    return bytes([0x30, len(body)]) + body


async def _protocol(reply: bool = False) -> tuple[Any, _Collector, _Sink, asyncio.Server]:
    from gmqtt.mqtt.protocol import MQTTProtocol  # type: ignore[import-untyped]
    from gmqtt.mqtt.utils import ConnectionState, IdGenerator  # type: ignore[import-untyped]

    import nodes.mqtt.broker  # noqa: F401 - installs the direct reading

    transport, sink, server = await _pair()
    protocol = MQTTProtocol(loop=asyncio.get_running_loop(),
                            connection_state=ConnectionState(), id_generator=IdGenerator())
    collector = _Collector(transport, reply)
    protocol._connection = collector
    protocol._transport = transport
    return protocol, collector, sink, server


def test_packets_are_handled_where_they_arrive_also_split_across_chunks() -> None:
    async def scenario() -> None:
        protocol, got, _, server = await _protocol()
        stream = b"".join(_publish(b"in/%d" % n, b"%d.5" % n) for n in range(5))
        for cut in (1, 2, 9, 10, 11, 30):  # inside the header, the topic, the payload
            got.packets.clear()
            protocol.data_received(stream[:cut])
            protocol.data_received(stream[cut:])
            assert [data for _, data in got.packets] == \
                [b"\x00\x04in/%d%d.5" % (n, n) for n in range(5)]
            assert {cmd for cmd, _ in got.packets} == {0x30}
        protocol.data_received(stream[:7])  # half a packet: nothing yet
        assert len(got.packets) == 5
        protocol.data_received(stream[7:])
        assert len(got.packets) == 10
        got.transport.close()
        server.close()
    run(scenario())


def test_what_a_chunk_causes_goes_out_in_one_send_at_its_end() -> None:
    async def scenario() -> None:
        protocol, got, sink, server = await _protocol(reply=True)
        transport = got.transport
        protocol.data_received(b"".join(_publish(b"in/x", b"%d" % n) for n in range(50)))
        assert transport.writes == 1 and transport._pending is None  # no turn scheduled
        await eventually(lambda: sink.data.count(b"re:") == 50)
        assert bytes(sink.data).startswith(b"re:\x00\x04in/x0re:")
        transport.close()
        server.close()
    run(scenario())


def test_a_chunk_that_cannot_be_parsed_closes_the_link() -> None:
    async def scenario() -> None:
        protocol, got, sink, server = await _protocol()
        protocol.data_received(b"\x30\x80\x80\x80\x80\x01")  # a length of more than 4 bytes
        assert got.packets == []
        await asyncio.wait_for(sink.closed.wait(), 5)
        assert got.transport.is_closing()
        server.close()
    run(scenario())
