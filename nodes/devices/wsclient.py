"""A small asyncio websocket client (RFC 6455): what a device's local API needs.

    async with await connect("ws://192.168.1.60/ws", open_timeout=5) as ws:
        await ws.send('{"type": "requestFullStatus"}')
        message = await ws.recv()      # str for text, bytes for binary
    # leaving the block is `await ws.close()`: at most close_timeout for the server

`ws://` and `wss://` (TLS verified against the system's CA store unless `ssl` is given).
No extensions (no compression), no subprotocols, no proxy, no User-Agent, and no pings
of our own: a server's pings are answered. Framing is `flowengine.wsframe`'s. Fragments
are joined; a message over `max_size` fails the connection with close code 1009 as soon
as a frame header says so, before its payload is read (the running sum counts for
fragments); invalid UTF-8 in a text message is 1007, any other broken rule 1002. A
failed connection is closed at once; `recv` and `send` then raise `ConnectionClosed`,
whose `code` is what we sent (`by_us`) or received, 1006 when no close frame came.

Reading stops while more than `max_size` bytes of messages wait for `recv`, so a fast
server cannot grow the queue. One frame costs a header parse and one copy of its payload.
"""

from __future__ import annotations

import asyncio
import collections
import os
import ssl as tls
from typing import Final, Self
from urllib.parse import urlsplit

from flowengine import wsframe
from flowengine.reads import small_reads
from flowengine.wsframe import CLOSE, CONTINUATION, PING, TEXT, ProtocolError, parse_header

__all__ = ["ConnectionClosed", "HandshakeError", "InvalidURL", "WebSocket",
           "WebSocketError", "connect"]

_CONNECTING: Final = 0
_OPEN: Final = 1
_CLOSING: Final = 2  # a close frame went out or came in
_DONE: Final = 3  # nothing more is read (`lost` says when the transport is gone)


class WebSocketError(Exception):
    """Something about the websocket went wrong."""


class InvalidURL(WebSocketError, ValueError):
    """Not a ws:// or wss:// URL this client can use."""


class HandshakeError(WebSocketError):
    """The server did not agree to the websocket upgrade."""


class ConnectionClosed(WebSocketError):
    """The websocket is closed: `code`, `reason`, and whether we closed it (`by_us`)."""

    def __init__(self, code: int, reason: str, by_us: bool) -> None:
        self.code, self.reason, self.by_us = code, reason, by_us
        who = "we closed" if by_us else "the server closed"
        text = "no close frame" if code == 1006 else f"{who} with code {code}"
        super().__init__(f"{text}: {reason}" if reason else text)


async def connect(url: str, *, open_timeout: float = 10.0, close_timeout: float = 1.0,
                  max_size: int = 1 << 20, ssl: tls.SSLContext | None = None) -> WebSocket:
    """Open a websocket to `url` within `open_timeout` s (TimeoutError after it);
    OSError when the server cannot be reached, HandshakeError when it refuses."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError as exc:
        raise InvalidURL(f"{url}: {exc}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname or "@" in parts.netloc \
            or parts.fragment:
        raise InvalidURL(f"not a websocket URL without user or fragment: {url!r}")
    if ssl is not None and not secure:
        raise InvalidURL(f"a TLS context for the plain websocket {url!r}")
    if secure and ssl is None:
        ssl = tls.create_default_context()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = wsframe.new_key()
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(open_timeout):
        _, ws = await loop.create_connection(
            lambda: WebSocket(key, max_size, close_timeout), parts.hostname, port, ssl=ssl)
        try:
            ws.transport.write(wsframe.upgrade_request(parts.hostname, port, path, key,
                                                       tls=secure))
            await ws._opened
        except BaseException:
            await ws.abort()
            raise
    return ws


class WebSocket(asyncio.Protocol):
    """One client connection; made by `connect`. One `recv` at a time."""

    transport: asyncio.Transport

    def __init__(self, key: str, max_size: int, close_timeout: float) -> None:
        self.max_size, self.close_timeout = max_size, close_timeout
        self._key = key
        self._state = _CONNECTING
        self._buffer = bytearray()
        self._parts: list[bytes] = []  # the fragments of the message being received
        self._parts_size = 0
        self._parts_text = False
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._queued = 0  # the length of the messages in _messages (str: characters)
        self._reading = True
        self._waiter: asyncio.Future[None] | None = None  # a recv() waits
        self._drain: asyncio.Future[None] | None = None  # a send() waits for the buffer
        self._close: tuple[int, str, bool] | None = None  # the first close frame's
        self._abort_timer: asyncio.TimerHandle | None = None
        loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = loop.create_future()
        self._lost: asyncio.Future[None] = loop.create_future()

    # -- what a user calls -----------------------------------------------------------------
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """The TCP connection is gone."""
        return self._lost.done()

    async def recv(self) -> str | bytes:
        """The next message; ConnectionClosed once the connection closes."""
        if self._waiter is not None:
            raise RuntimeError("another recv() is already waiting")
        while not self._messages:
            if self._state != _OPEN:
                raise self._closed()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._messages.popleft()
        self._queued -= len(message)
        if not self._reading and self._queued <= self.max_size // 2:
            self._reading = True
            self.transport.resume_reading()
        return message

    async def send(self, message: str | bytes) -> None:
        """Send one text (str) or binary (bytes) message; waits while the transport's
        buffer is full. ConnectionClosed once the connection is closing."""
        if self._state != _OPEN:
            raise self._closed()
        if isinstance(message, str):
            self._write(TEXT, message.encode())
        else:
            self._write(wsframe.BINARY, message)
        if self._drain is not None:
            await asyncio.shield(self._drain)
            if self._lost.done():
                raise self._closed()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The close handshake: our close frame, then the server's, then its end of the
        TCP connection, all within close_timeout; after that the transport is dropped."""
        if self._state == _OPEN:
            self._send_close(code, reason)
        if not self._lost.done():
            try:
                async with asyncio.timeout(self.close_timeout):
                    await asyncio.shield(self._lost)
            except TimeoutError:
                pass
        await self.abort()

    async def abort(self) -> None:
        """Drop the transport at once (no close handshake)."""
        if not self._lost.done():
            self.transport.abort()
        await asyncio.shield(self._lost)

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        small_reads(transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._state == _DONE:
            return
        buffer = self._buffer
        buffer += data
        if self._state == _CONNECTING and not self._upgraded():
            return
        try:
            self._frames()
        except ProtocolError as exc:
            self._fail(exc.code, str(exc))

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost follows

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _DONE
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        if not self._opened.done():
            self._not_opened(exc or HandshakeError("the connection closed during the upgrade"))
        self.resume_writing()
        self._wake()
        if not self._lost.done():
            self._lost.set_result(None)

    # -- the details ---------------------------------------------------------------------
    def _upgraded(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n", 0, wsframe.MAX_HEAD + 4)
        if end < 0:
            if len(buffer) > wsframe.MAX_HEAD:
                self._refuse(f"an upgrade answer over {wsframe.MAX_HEAD} bytes")
            return False
        try:
            wsframe.check_upgrade(bytes(buffer[:end]), self._key)
        except ProtocolError as exc:
            self._refuse(str(exc))
            return False
        del buffer[:end + 4]  # frames may follow at once
        self._state = _OPEN
        self._opened.set_result(None)
        return True

    def _refuse(self, why: str) -> None:
        self._state = _DONE
        self._not_opened(HandshakeError(why))
        self.transport.abort()

    def _not_opened(self, exc: BaseException) -> None:
        self._opened.set_exception(exc)
        self._opened.exception()  # retrieved: connect() may have stopped waiting

    def _closed(self) -> ConnectionClosed:
        code, reason, by_us = self._close or (1006, "", False)
        return ConnectionClosed(code, reason, by_us)

    def _frames(self) -> None:
        buffer, at, limit, messages = self._buffer, 0, self.max_size, self._messages
        try:
            while self._state != _DONE:
                header = parse_header(buffer, at)
                if header is None:
                    break
                fin, opcode, size, start = header
                if opcode < CLOSE and self._parts_size + size > limit:
                    raise ProtocolError(f"a message over {limit} bytes", 1009)
                end = start + size
                if len(buffer) < end:
                    break
                if opcode == TEXT and fin and not self._parts and self._state == _OPEN:
                    text = _text(buffer[start:end])  # the common case, inline
                    messages.append(text)
                    self._queued += len(text)
                elif opcode < CLOSE:
                    self._data(fin, opcode, bytes(buffer[start:end]))
                else:
                    self._control(opcode, bytes(buffer[start:end]))
                at = end
        finally:
            del buffer[:at]
        if messages:
            self._wake()
            if self._queued > limit and self._reading:
                self._reading = False
                self.transport.pause_reading()

    def _data(self, fin: bool, opcode: int, payload: bytes) -> None:
        if (opcode == CONTINUATION) != bool(self._parts):
            raise ProtocolError("a continuation frame without a message to continue"
                                if opcode == CONTINUATION else "a new message inside a "
                                "fragmented one")
        if opcode != CONTINUATION:
            self._parts_text = opcode == TEXT
        self._parts.append(payload)
        self._parts_size += len(payload)
        if not fin:
            return
        payload = b"".join(self._parts) if len(self._parts) > 1 else payload
        self._parts.clear()
        self._parts_size = 0
        if self._state == _OPEN:  # closing: what still comes is dropped
            message = _text(payload) if self._parts_text else payload
            self._messages.append(message)
            self._queued += len(message)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            if self._state == _OPEN:
                self._write(wsframe.PONG, payload)
        elif opcode == CLOSE:
            code, reason = wsframe.parse_close(payload)
            if self._close is None:  # the server begins: answer, then wait for its end
                self._close = (code, reason, False)
                self._state = _CLOSING
                self._write(CLOSE, wsframe.close_payload(code) if code != 1005 else b"")
                self._wake()
            self._abort_later()
        # a PONG answers nothing we sent: ignored

    def _send_close(self, code: int, reason: str) -> None:
        self._close = (code, reason, True)
        self._state = _CLOSING
        self._write(CLOSE, wsframe.close_payload(code, reason))
        self._wake()

    def _fail(self, code: int, why: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): our close frame, then the TCP close."""
        if self._state == _OPEN:
            self._send_close(code, why)
        self._state = _DONE
        self._parts.clear()
        self.transport.close()  # after what is buffered, our close frame included
        self._abort_later()  # a peer that reads nothing cannot keep it open

    def _abort_later(self) -> None:
        if self._abort_timer is None:
            self._abort_timer = asyncio.get_running_loop().call_later(
                self.close_timeout, self.transport.abort)

    def _write(self, opcode: int, payload: bytes) -> None:
        self.transport.write(wsframe.encode_frame(opcode, payload, os.urandom(4)))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _text(data: bytes | bytearray) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ProtocolError("a text message that is not UTF-8", 1007) from None
