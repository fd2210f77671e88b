"""small_reads: a transport reads at most 64 KiB at a time, and loses nothing."""

from __future__ import annotations

import asyncio

from flowengine.reads import READ_BYTES, small_reads


class Reader(asyncio.Protocol):
    def __init__(self) -> None:
        self.chunks: list[int] = []
        self.data = bytearray()
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        small_reads(transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(len(data))
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.done.set_result(None)


def test_reads_are_at_most_64_kib_and_every_byte_arrives() -> None:
    async def scenario() -> tuple[Reader, bytes]:
        payload = bytes(range(256)) * 2048  # 512 KiB
        sent = asyncio.Event()

        async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(payload)
            await writer.drain()
            writer.close()
            sent.set()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, reader = await loop.create_connection(Reader, "127.0.0.1", port)
        assert getattr(transport, "max_size", None) == READ_BYTES  # was 256 KiB
        await asyncio.wait_for(reader.done, 10)
        await sent.wait()
        transport.close()
        server.close()
        await server.wait_closed()
        return reader, payload

    reader, payload = asyncio.run(scenario())
    assert bytes(reader.data) == payload
    assert max(reader.chunks) <= READ_BYTES
