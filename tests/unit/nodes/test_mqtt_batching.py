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


class _Connection:
    """gmqtt's connection as the protocol sees it: hands packets to the real handler."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler
        self._last_data_in = 0.0
        self.sent: list[bytes] = []
        handler.set_connection(self)

    def put_package(self, pkg: Any) -> None:  # as MQTTConnection.put_package
        self._handler(pkg)

    def send_package(self, package: Any) -> None:
        self.sent.append(package if isinstance(package, bytes) else package.encode())


def _packet(command: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([command]) + bytes(encoded) + body


def _topic(name: bytes) -> bytes:
    return len(name).to_bytes(2, "big") + name


def _v5_properties(raw: bytes) -> bytes:
    return bytes([len(raw)]) + raw


V311_PACKETS = [
    _packet(0x30, _topic(b"in/a") + b"1.5"),
    _packet(0x31, _topic(b"in/retained") + b"7"),                      # retain
    _packet(0x38, _topic(b"in/dup") + b""),                            # dup, empty payload
    _packet(0x30, _topic("in/grüße/€".encode()) + "ü".encode()),       # UTF-8
    _packet(0x30, _topic(b"in/\xff\xfe") + b"x"),                      # not UTF-8: gmqtt's
    _packet(0x30, _topic(b"in/big") + b"9" * 300),                      # two length bytes
    _packet(0x32, _topic(b"in/qos1") + b"\x00\x07" + b"q"),            # QoS 1: gmqtt's
    _packet(0xD0, b""),                                                 # PINGRESP
]
V5_PACKETS = [
    _packet(0x30, _topic(b"in/a") + b"\x00" + b"1.5"),
    _packet(0x31, _topic(b"in/r") + b"\x00" + b"{}"),
    _packet(0x30, _topic(b"in/p") + _v5_properties(b"\x02\x00\x00\x00\x3c") + b"p"),  # expiry
    _packet(0x30, _topic(b"in/alias") + _v5_properties(b"\x23\x00\x05") + b"a"),  # alias 5
    _packet(0x30, _topic(b"") + _v5_properties(b"\x23\x00\x05") + b"b"),   # by alias only
    _packet(0x32, _topic(b"in/qos1") + b"\x00\x08\x00" + b"q"),
]


def _handler(version: int) -> Any:
    """The package handler of a real gmqtt client (not connected) speaking `version`."""
    import gmqtt  # type: ignore[import-untyped]

    handler = gmqtt.Client("test")._package_handler
    handler._connection_state.protocol_version = version
    return handler


def _received(version: int, stream: bytes, *, ours: bool) -> tuple[list[Any], list[bytes]]:
    """What on_message got for `stream`: through gmqtt's own handler, packet by packet,
    or through the direct reading (the fast path for QoS 0)."""
    from gmqtt.mqtt.package import Package  # type: ignore[import-untyped]
    from gmqtt.mqtt.protocol import MQTTProtocol  # type: ignore[import-untyped]
    from gmqtt.mqtt.utils import IdGenerator  # type: ignore[import-untyped]

    import nodes.mqtt.broker  # noqa: F401 - installs the direct reading

    async def scenario() -> tuple[list[Any], list[bytes]]:
        handler = _handler(version)
        state = handler._connection_state
        got: list[Any] = []

        def on_message(topic: Any, payload: bytes, qos: int, properties: Any) -> int:
            got.append((topic, payload, qos, dict(properties)))
            return 0

        handler.on_message = on_message
        connection = _Connection(handler)
        if ours:
            transport, _, server = await _pair()
            protocol = MQTTProtocol(loop=asyncio.get_running_loop(), connection_state=state,
                                    id_generator=IdGenerator())
            protocol._connection, protocol._transport = connection, transport
            for cut in range(0, len(stream), 7):  # chunks that split packets anywhere
                protocol.data_received(stream[cut:cut + 7])
            transport.close()
            server.close()
        else:
            at = 0
            while at < len(stream):
                header, length, shift, i = stream[at], 0, 0, at + 1
                while True:
                    length |= (stream[i] & 0x7F) << shift
                    i += 1
                    if not stream[i - 1] & 0x80:
                        break
                    shift += 7
                handler(Package(header, stream[i:i + length]))
                at = i + length
        return got, connection.sent

    return asyncio.run(scenario())  # type: ignore[no-any-return]


def test_the_direct_reading_hands_on_messages_exactly_as_gmqtt_does() -> None:
    for version, packets in ((4, V311_PACKETS), (5, V5_PACKETS)):
        stream = b"".join(packets)
        theirs, their_acks = _received(version, stream, ours=False)
        ours, our_acks = _received(version, stream, ours=True)
        assert ours == theirs, version
        assert our_acks == their_acks  # the QoS 1 PUBACK, from gmqtt's handler in both
        assert len(theirs) >= len(packets) - 2  # the packets did reach on_message
        assert ("in/a", b"1.5", 0, {"dup": 0, "retain": 0}) in ours


def test_a_coroutine_on_message_is_left_to_gmqtt() -> None:
    from nodes.mqtt.batching import _synchronous

    async def scenario() -> tuple[bool, bool]:
        handler = _handler(4)

        async def later(*_: Any) -> int:
            return 0

        handler.on_message = lambda *_: 0
        plain = _synchronous(handler)
        handler.on_message = later
        return plain, _synchronous(handler)

    assert asyncio.run(scenario()) == (True, False)
