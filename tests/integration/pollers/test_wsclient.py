"""Our websocket client (nodes.devices.wsclient) over real loopback sockets: against the
`websockets` library's server, an independent implementation, for what a good server
does; against a raw asyncio server of this file, which speaks crafted frames, for every
rule a server can break and for the close handshake's timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from conftest import eventually, free_port, run
from testkit.mosquitto import make_ca
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from flowengine.wsframe import accept_key, mask
from nodes.devices.wsclient import (
    ConnectionClosed,
    HandshakeError,
    InvalidURL,
    WebSocket,
    connect,
)

LIMIT = 4096  # max_size of the clients below, unless a test says otherwise


@contextlib.asynccontextmanager
async def library_server(handler: Callable[[ServerConnection], Awaitable[None]], *,
                         ssl_context: ssl.SSLContext | None = None,
                         requests: list[Request] | None = None) -> AsyncIterator[int]:
    """The websockets library's server on loopback; its port. `requests` collects the
    upgrade requests it got."""
    def keep(_ws: ServerConnection, request: Request) -> Response | None:
        if requests is not None:
            requests.append(request)
        return None

    async with serve(handler, "127.0.0.1", 0, ssl=ssl_context, process_request=keep,
                     close_timeout=1.0, max_size=None) as server:
        yield int(server.sockets[0].getsockname()[1])


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def url(port: int, path: str = "/ws", scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{port}{path}"


# -- with the websockets library's server -------------------------------------------------

def test_text_and_binary_messages_of_every_length_form_go_both_ways() -> None:
    sizes = [0, 1, 125, 126, 65535, 65536, 300_000]

    async def scenario() -> None:
        async with library_server(echo) as port, \
                await connect(url(port), max_size=1 << 20) as ws:
            for size in sizes:
                text = ("é" * size)[:size]
                await ws.send(text)
                assert await ws.recv() == text
                data = bytes(range(256)) * (size // 256) + bytes(size % 256)
                await ws.send(data)
                got = await ws.recv()
                assert isinstance(got, bytes) and got == data

    run(scenario())


def test_the_upgrade_asks_for_no_extension_and_sends_no_user_agent() -> None:
    requests: list[Request] = []

    async def scenario() -> None:
        async with library_server(echo, requests=requests) as port, \
                await connect(url(port, "/ws?a=1&b=2")) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
        [request] = requests
        assert request.path == "/ws?a=1&b=2"
        headers: Headers = request.headers
        assert headers["Host"] == f"127.0.0.1:{port}"
        assert {name.lower() for name in headers} == {
            "host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version"}

    run(scenario())


def test_fragments_from_the_server_are_joined_into_one_message() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(["frag", "ment", "s é"])
        await ws.send([b"\x00\x01", b"", b"\x02"])
        await ws.wait_closed()

    async def scenario() -> None:
        async with library_server(handler) as port, await connect(url(port)) as ws:
            assert await ws.recv() == "fragments é"
            assert await ws.recv() == b"\x00\x01\x02"

    run(scenario())


def test_the_servers_ping_is_answered_with_its_payload() -> None:
    answered: list[float] = []

    async def handler(ws: ServerConnection) -> None:
        pong = await ws.ping(b"are you there")
        answered.append(await asyncio.wait_for(pong, 2))  # the latency, once it came
        await ws.send("pinged")
        await ws.wait_closed()

    async def scenario() -> None:
        async with library_server(handler) as port, await connect(url(port)) as ws:
            assert await ws.recv() == "pinged"  # recv() was not even waiting for the ping
        assert len(answered) == 1

    run(scenario())


def test_our_close_is_answered_and_quick() -> None:
    codes: list[tuple[int | None, str | None]] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()
        codes.append((ws.close_code, ws.close_reason))

    async def scenario() -> None:
        async with library_server(handler) as port:
            ws = await connect(url(port))
            began = time.monotonic()
            await ws.close(1001, "going away")
            assert time.monotonic() - began < 0.5 and ws.closed
            with pytest.raises(ConnectionClosed, match="we closed with code 1001") as caught:
                await ws.recv()
            assert (caught.value.code, caught.value.by_us) == (1001, True)
            with pytest.raises(ConnectionClosed):
                await ws.send("too late")
            await eventually(lambda: bool(codes))
        assert codes == [(1001, "going away")]

    run(scenario())


def test_the_servers_close_is_answered_and_ends_recv() -> None:
    seen: list[int | None] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.send("last words")
        await ws.close(4000, "bye now")
        rcvd = ws.protocol.close_rcvd  # our answer
        seen.append(rcvd.code if rcvd else None)

    async def scenario() -> None:
        async with library_server(handler) as port, await connect(url(port)) as ws:
            assert await ws.recv() == "last words"
            with pytest.raises(ConnectionClosed, match="the server closed with code 4000: "
                                                       "bye now") as caught:
                await ws.recv()
            assert (caught.value.code, caught.value.reason, caught.value.by_us) == \
                (4000, "bye now", False)
            await eventually(lambda: ws.closed)
        assert seen == [4000]

    run(scenario())


@pytest.mark.parametrize("fragments", [False, True], ids=["one-frame", "fragments"])
def test_a_message_over_max_size_closes_with_1009(fragments: bool) -> None:
    codes: list[int | None] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.send("small")
        await ws.send(["x" * 2000] * 3 if fragments else "x" * (LIMIT + 1))
        await ws.wait_closed()
        codes.append(ws.close_code)

    async def scenario() -> None:
        async with library_server(handler) as port, \
                await connect(url(port), max_size=LIMIT) as ws:
            assert await ws.recv() == "small"
            with pytest.raises(ConnectionClosed) as caught:
                await ws.recv()
            assert (caught.value.code, caught.value.by_us) == (1009, True)
            assert f"a message over {LIMIT} bytes" in str(caught.value)
            await eventually(lambda: bool(codes))
        assert codes == [1009]

    run(scenario())


def test_a_message_of_exactly_max_size_is_fine() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("x" * LIMIT)
        await ws.send(["y" * 1000] * 4 + ["z" * (LIMIT - 4000)])
        await ws.wait_closed()

    async def scenario() -> None:
        async with library_server(handler) as port, \
                await connect(url(port), max_size=LIMIT) as ws:
            assert await ws.recv() == "x" * LIMIT
            assert await ws.recv() == "y" * 4000 + "z" * (LIMIT - 4000)

    run(scenario())


def test_reading_pauses_while_the_queue_holds_max_size_and_resumes() -> None:
    async def handler(ws: ServerConnection) -> None:
        for n in range(200):
            await ws.send(f"{n:04d}" + "é" * 996)  # 2 bytes each: the queue counts alike
        await ws.wait_closed()

    async def scenario() -> None:
        async with library_server(handler) as port, \
                await connect(url(port), max_size=LIMIT) as ws:
            await eventually(lambda: not ws.transport.is_reading())
            async with asyncio.timeout(5):
                got = [await ws.recv() for _ in range(200)]
            assert [str(message)[:4] for message in got] == [f"{n:04d}" for n in range(200)]
            assert ws.transport.is_reading()

    run(scenario())


def test_a_second_recv_while_one_waits_is_refused() -> None:
    async def scenario() -> None:
        async with library_server(echo) as port, await connect(url(port)) as ws:
            first = asyncio.ensure_future(ws.recv())
            await asyncio.sleep(0.01)
            with pytest.raises(RuntimeError, match="already waiting"):
                await ws.recv()
            await ws.send("for the first")
            assert await first == "for the first"

    run(scenario())


def test_wss_is_verified_by_default_and_works_with_the_servers_ca(tmp_path: Path) -> None:
    files = make_ca(tmp_path, "ws")
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(files["cert"], files["key"])
    trusting = ssl.create_default_context(cafile=str(files["ca"]))

    async def scenario() -> None:
        async with library_server(echo, ssl_context=server_side) as port:
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(url(port, scheme="wss"))
            async with await connect(url(port, scheme="wss"), ssl=trusting) as ws:
                await ws.send("over TLS")
                assert await ws.recv() == "over TLS"

    run(scenario())


# -- failures to connect ---------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    "http://127.0.0.1/ws", "ws:///ws", "ws://user@127.0.0.1/ws", "ws://u:p@127.0.0.1/",
    "ws://127.0.0.1:99999/ws", "ws://127.0.0.1/ws#part", "127.0.0.1:80",
])
def test_a_url_that_is_no_websocket_url_is_refused(bad: str) -> None:
    with pytest.raises(InvalidURL):
        run(connect(bad))


def test_a_tls_context_for_a_plain_websocket_is_refused() -> None:
    with pytest.raises(InvalidURL, match="TLS context"):
        run(connect("ws://127.0.0.1/ws", ssl=ssl.create_default_context()))


def test_nothing_listening_is_an_os_error() -> None:
    async def scenario() -> None:
        with pytest.raises(ConnectionRefusedError):
            await connect(url(free_port()))

    run(scenario())


def test_a_404_is_a_handshake_error_with_the_status() -> None:
    async def scenario() -> None:
        async with serve(echo, "127.0.0.1", 0, process_request=lambda ws, request:
                         ws.respond(404, "not here\n")) as server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(HandshakeError, match=r"answered 'HTTP/1\.1 404 Not Found'"):
                await connect(url(port, "/api"))

    run(scenario())


# -- a raw server, for what a good server never does -------------------------------------------

def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
          size: int | None = None, key: bytes | None = None) -> bytes:
    """A server frame; `size` claims another length than the payload's, `key` masks it."""
    n = len(payload) if size is None else size
    head = bytes(((0x80 if fin else 0) | rsv << 4 | opcode,))
    bit = 0x80 if key else 0
    if n < 126:
        head += bytes((bit | n,))
    elif n < 65536:
        head += bytes((bit | 126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((bit | 127,)) + n.to_bytes(8, "big")
    return head + (key + mask(payload, key) if key else payload)


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(8, code.to_bytes(2, "big") + reason)


class Peer:
    """The server's end of one raw connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames: list[tuple[int, bytes]] = []  # (opcode, payload) the client sent

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self) -> tuple[int, bytes]:
        """The client's next frame, which must be masked."""
        first, second = await self.reader.readexactly(2)
        assert second & 0x80, "a client frame must be masked"
        size = second & 0x7F
        if size >= 126:
            size = int.from_bytes(await self.reader.readexactly(2 if size == 126 else 8),
                                  "big")
        key = await self.reader.readexactly(4)
        got = (first & 0x0F, mask(await self.reader.readexactly(size), key))
        self.frames.append(got)
        return got

    async def close_code(self) -> int | None:
        """Read until the client's close frame; its code (None: the socket ended)."""
        try:
            while True:
                opcode, payload = await self.frame()
                if opcode == 8:
                    return int.from_bytes(payload[:2], "big") if payload else 1005
        except (asyncio.IncompleteReadError, ConnectionError):
            return None


Talk = Callable[[Peer], Awaitable[object]]


@contextlib.asynccontextmanager
async def raw_server(talk: Talk, *, head: bytes | None = None,
                     after_upgrade: bytes = b"") -> AsyncIterator[str]:
    """A server that answers the upgrade (with `head` instead, if given), sends
    `after_upgrade` in the same write, then runs `talk`; its URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            request = (await reader.readuntil(b"\r\n\r\n")).decode()
            key = next(line.split(":", 1)[1].strip() for line in request.split("\r\n")
                       if line.lower().startswith("sec-websocket-key:"))
            writer.write(head if head is not None else (
                f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
            ).encode() + after_upgrade)
            await talk(Peer(reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with server:
            yield url(port)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def failure(talk: Talk, **server: bytes) -> tuple[ConnectionClosed, int | None]:
    """What recv() raised, and the close code the server then received."""
    codes: list[int | None] = []

    async def then_close_code(peer: Peer) -> None:
        await talk(peer)
        codes.append(await peer.close_code())

    async with raw_server(then_close_code, **server) as where, \
            await connect(where, max_size=LIMIT) as ws:
        async with asyncio.timeout(2):
            with pytest.raises(ConnectionClosed) as caught:
                while True:
                    await ws.recv()
            await eventually(lambda: bool(codes))
            await eventually(lambda: ws.closed)
    return caught.value, codes[0]


def sends(data: bytes) -> Talk:
    async def talk(peer: Peer) -> None:
        peer.send(data)
    return talk


@pytest.mark.parametrize(("data", "code"), [
    (frame(1, b"hello", key=b"abcd"), 1002),  # masked
    (frame(1, b"x", rsv=4), 1002), (frame(1, b"x", rsv=1), 1002),
    (frame(3, b"x"), 1002), (frame(11, b""), 1002),  # reserved opcodes
    (frame(9, b"p" * 126), 1002), (frame(9, b"p", fin=False), 1002),  # control rules
    (frame(0, b"no start"), 1002),
    (frame(1, b"a", fin=False) + frame(1, b"b"), 1002),  # a new message inside one
    (frame(1, b"\xff\xfe"), 1007), (frame(1, b"\xc3", fin=False) + frame(0, b"("), 1007),
    (frame(8, b"\x03"), 1002), (close_frame(1005), 1002), (close_frame(1000, b"\xff"), 1007),
    (frame(1, b"x" * 10, size=2 * 1024 * 1024), 1009),  # the header says: too big
    (frame(2, b"x" * 3000, fin=False) + frame(0, b"y" * 10, size=1500), 1009),  # the sum
])
def test_a_frame_that_breaks_the_protocol_fails_the_connection(data: bytes, code: int
                                                               ) -> None:
    closed, received = run(failure(sends(frame(1, b"first") + data)))
    assert (closed.code, closed.by_us) == (code, True)
    assert received == code


def test_a_message_after_the_upgrade_in_the_same_packet_is_kept() -> None:
    async def scenario() -> None:
        async with raw_server(Peer.close_code, after_upgrade=frame(1, b"at once")) as where, \
                await connect(where) as ws:
            assert await ws.recv() == "at once"

    run(scenario())


def test_control_frames_between_fragments_are_handled_in_order() -> None:
    script = (frame(1, "é".encode()[:1], fin=False) + frame(9, b"one") + frame(10, b"?")
              + frame(0, "é".encode()[1:] + b" and ", fin=False) + frame(9, b"two")
              + frame(0, b"more"))
    pongs: list[tuple[int, bytes]] = []

    async def talk(peer: Peer) -> None:
        peer.send(script)
        pongs.extend([await peer.frame(), await peer.frame()])
        await peer.close_code()

    async def scenario() -> None:
        async with raw_server(talk) as where, await connect(where) as ws:
            assert await ws.recv() == "é and more"
            await eventually(lambda: len(pongs) == 2)
        assert pongs == [(10, b"one"), (10, b"two")]

    run(scenario())


def test_a_close_without_a_code_is_answered_with_none() -> None:
    answers: list[tuple[int, bytes]] = []

    async def talk(peer: Peer) -> None:
        peer.send(frame(8))
        answers.append(await peer.frame())

    async def scenario() -> None:
        async with raw_server(talk) as where, await connect(where) as ws:
            with pytest.raises(ConnectionClosed, match="code 1005") as caught:
                await ws.recv()
            assert not caught.value.by_us
            await eventually(lambda: ws.closed)
        assert answers == [(8, b"")]

    run(scenario())


def test_a_dropped_connection_is_1006_without_a_close_frame() -> None:
    async def talk(peer: Peer) -> None:
        peer.send(frame(1, b"bye"))
        peer.writer.transport.abort()

    async def scenario() -> None:
        async with raw_server(talk) as where, await connect(where) as ws:
            assert await ws.recv() == "bye"
            with pytest.raises(ConnectionClosed, match="no close frame") as caught:
                await ws.recv()
            assert (caught.value.code, caught.value.by_us) == (1006, False)

    run(scenario())


def test_our_close_gives_up_after_close_timeout_on_a_server_that_never_answers() -> None:
    held = asyncio.Event()

    async def talk(peer: Peer) -> None:
        await peer.frame()  # our close frame; no answer, the socket stays open
        held.set()
        await asyncio.sleep(10)

    async def scenario() -> None:
        async with raw_server(talk) as where:
            ws = await connect(where, close_timeout=0.3)
            began = time.monotonic()
            await ws.close()
            assert 0.25 < time.monotonic() - began < 1.0
            assert held.is_set() and ws.closed

    run(scenario())


def test_after_the_servers_close_the_transport_is_dropped_within_close_timeout() -> None:
    async def talk(peer: Peer) -> None:
        peer.send(close_frame(1001))
        await peer.frame()  # our answer; then the server keeps the socket open
        await asyncio.sleep(10)

    async def scenario() -> None:
        async with raw_server(talk) as where:
            ws: WebSocket = await connect(where, close_timeout=0.3)
            with pytest.raises(ConnectionClosed, match="code 1001"):
                await ws.recv()
            began = time.monotonic()
            await eventually(lambda: ws.closed)  # nobody called close()
            assert time.monotonic() - began < 1.0

    run(scenario())


HEADS = {
    "not-101": (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "answered 'HTTP/1.1 200 OK'"),
    "wrong-accept": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: c2FtZQ==\r\n\r\n",
                     "wrong Sec-WebSocket-Accept"),
    "endless": (b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Pad: 0123456789\r\n" * 1000,
                "an upgrade answer over 16384 bytes"),
    "cut-short": (b"HTTP/1.1 101 Switching", "closed during the upgrade"),
}


@pytest.mark.parametrize("case", list(HEADS))
def test_an_answer_that_is_no_upgrade_is_a_handshake_error(case: str) -> None:
    head, problem = HEADS[case]

    async def scenario() -> None:
        async with raw_server(lambda peer: asyncio.sleep(0), head=head) as where:
            with pytest.raises(HandshakeError, match=re.escape(problem)):
                await connect(where)

    run(scenario())


def test_a_server_that_never_answers_the_upgrade_times_out() -> None:
    async def scenario() -> None:
        async with raw_server(lambda peer: asyncio.sleep(10), head=b"") as where:
            began = time.monotonic()
            with pytest.raises(TimeoutError):
                await connect(where, open_timeout=0.3)
            assert time.monotonic() - began < 1.0

    run(scenario())
