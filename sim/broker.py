"""A small MQTT 3.1.1 broker on loopback, so the demo needs nothing installed.

    async with MqttBroker() as broker:          # 127.0.0.1, a free port
        print(broker.port)

It speaks what the demo and its watchers need: CONNECT/CONNACK (any or no
credentials), SUBSCRIBE/UNSUBSCRIBE with `+` and `#`, PUBLISH at QoS 0, 1 and 2
(delivered at most at QoS 1), retained messages (an empty retained payload clears
the topic), last wills (sent when a client goes without DISCONNECT or misses its
keep-alive), PINGREQ and DISCONNECT. A client id connecting twice takes over the
older session. No persistence, no TLS, no authentication: it listens on 127.0.0.1
only, and it is not meant as a broker for a real site (use mosquitto there).

Why not amqtt (the architecture's first choice): amqtt 0.12 pulls in about 25
packages (pydantic with its Rust core, argon2-cffi, psutil, typer, rich) and emits a
DeprecationWarning on start, which fails a test run with warnings as errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

__all__ = ["MqttBroker", "topic_matches"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_PACKET = 1 << 20
MAX_BUFFERED = 1 << 20  # a subscriber further behind than this is dropped

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = (
    8, 9, 10, 11, 12, 13, 14)


class ProtocolError(Exception):
    """A client sent something MQTT 3.1.1 does not allow; its connection is closed."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches `topic_filter` (`+` one level, `#` the rest), per 3.1.1."""
    fparts, tparts = topic_filter.split("/"), topic.split("/")
    if topic.startswith("$") and fparts[0] in ("+", "#"):
        return False
    for i, part in enumerate(fparts):
        if part == "#":
            return True
        if i >= len(tparts) or (part != "+" and part != tparts[i]):
            return False
    return len(fparts) == len(tparts)


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    if at + 2 > len(data):
        raise ProtocolError("truncated string")
    (length,) = struct.unpack_from("!H", data, at)
    end = at + 2 + length
    if end > len(data):
        raise ProtocolError("truncated string")
    return data[at + 2:end], end


def _encode_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    length, out = len(body), bytearray([kind << 4 | flags])
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes(out) + body


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(eq=False)
class _Session:
    client_id: str
    writer: asyncio.StreamWriter
    keepalive_s: int = 0
    will: _Message | None = None
    subscriptions: dict[str, int] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    closed: bool = False

    def send(self, data: bytes) -> None:
        if self.closed or self.writer.is_closing():
            return
        transport = self.writer.transport
        if transport.get_write_buffer_size() > MAX_BUFFERED:
            log.warning("client %s is too slow; dropping it", self.client_id)
            self.closed = True
            transport.abort()
            return
        self.writer.write(data)

    def deliver(self, msg: _Message, qos: int, *, retain: bool = False) -> None:
        qos = min(qos, msg.qos, 1)
        body = _encode_string(msg.topic)
        if qos:
            body += struct.pack("!H", next(self.ids) % 65535 + 1)
        self.send(_packet(PUBLISH, qos << 1 | int(retain), body + msg.payload))


class MqttBroker:
    """The broker; see the module docstring. `port` 0 picks a free one."""

    def __init__(self, *, port: int = 0) -> None:
        self.port = port
        self.retained: dict[str, _Message] = {}
        self.sessions: dict[str, _Session] = {}
        self.received = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._anonymous = itertools.count(1)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, self.port,
                                                  reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("MQTT broker listening on %s", self.address)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for session in list(self.sessions.values()):
            session.closed = True
            session.will = None
        for writer in list(self._writers):
            writer.transport.abort()  # each client's task ends on its own
        tasks = list(self._tasks)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=1.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- one client ---------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        session: _Session | None = None
        try:
            kind, _flags, body = await self._read(reader, 10.0)
            if kind != CONNECT:
                raise ProtocolError("the first packet must be CONNECT")
            session = self._connect(body, writer)
            if session is None:
                return
            while True:
                timeout = session.keepalive_s * 1.5 if session.keepalive_s else None
                kind, flags, body = await self._read(reader, timeout)
                if kind == DISCONNECT:
                    session.will = None
                    return
                self._handle(session, kind, flags, body)
        except (ProtocolError, asyncio.IncompleteReadError, ConnectionError, TimeoutError,
                OSError) as exc:
            if session is not None and not session.closed:
                log.debug("client %s gone: %s", session.client_id, exc or type(exc).__name__)
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            if session is not None:
                self._drop(session)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader,
                    timeout: float | None) -> tuple[int, int, bytes]:
        async with asyncio.timeout(timeout):
            first = (await reader.readexactly(1))[0]
            length, shift = 0, 0
            for _ in range(4):
                byte = (await reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                raise ProtocolError("bad remaining length")
            if length > MAX_PACKET:
                raise ProtocolError(f"packet of {length} bytes is too large")
            body = await reader.readexactly(length)
        return first >> 4, first & 0x0F, body

    def _connect(self, body: bytes, writer: asyncio.StreamWriter) -> _Session | None:
        name, at = _string(body, 0)
        if name not in (b"MQTT", b"MQIsdp") or at + 4 > len(body):
            raise ProtocolError(f"unknown protocol {name!r}")
        level, flags = body[at], body[at + 1]
        (keepalive,) = struct.unpack_from("!H", body, at + 2)
        if level not in (3, 4):
            writer.write(_packet(CONNACK, 0, b"\x00\x01"))  # unacceptable protocol version
            return None
        raw_id, at = _string(body, at + 4)
        client_id = raw_id.decode(errors="replace") or f"anonymous-{next(self._anonymous)}"
        will = None
        if flags & 0x04:
            topic, at = _string(body, at)
            payload, at = _string(body, at)
            will = _Message(topic.decode(), payload, (flags >> 3) & 3, bool(flags & 0x20))
        old = self.sessions.pop(client_id, None)
        if old is not None:  # a client id connecting again takes the session over
            old.closed = True
            old.will = None
            old.writer.transport.abort()
        session = _Session(client_id, writer, keepalive, will)
        self.sessions[client_id] = session
        writer.write(_packet(CONNACK, 0, b"\x00\x00"))
        return session

    def _handle(self, session: _Session, kind: int, flags: int, body: bytes) -> None:
        if kind == PUBLISH:
            qos = (flags >> 1) & 3
            topic, at = _string(body, 0)
            packet_id = b""
            if qos:
                packet_id, at = body[at:at + 2], at + 2
            self.publish(topic.decode(errors="replace"), body[at:], qos=qos,
                         retain=bool(flags & 1))
            if qos == 1:
                session.send(_packet(PUBACK, 0, packet_id))
            elif qos == 2:
                session.send(_packet(PUBREC, 0, packet_id))
        elif kind == PUBREL:
            session.send(_packet(PUBCOMP, 0, body[:2]))
        elif kind == SUBSCRIBE:
            packet_id, at, granted = body[:2], 2, bytearray()
            new: list[tuple[str, int]] = []
            while at < len(body):
                raw, at = _string(body, at)
                qos = min(body[at], 1) if at < len(body) else 0
                at += 1
                topic_filter = raw.decode(errors="replace")
                session.subscriptions[topic_filter] = qos
                granted.append(qos)
                new.append((topic_filter, qos))
            session.send(_packet(SUBACK, 0, packet_id + bytes(granted)))
            for topic_filter, qos in new:
                for msg in list(self.retained.values()):
                    if topic_matches(topic_filter, msg.topic):
                        session.deliver(msg, qos, retain=True)
        elif kind == UNSUBSCRIBE:
            packet_id, at = body[:2], 2
            while at < len(body):
                raw, at = _string(body, at)
                session.subscriptions.pop(raw.decode(errors="replace"), None)
            session.send(_packet(UNSUBACK, 0, packet_id))
        elif kind == PINGREQ:
            session.send(_packet(PINGRESP, 0, b""))
        elif kind in (PUBACK, PUBREC, PUBCOMP):
            if kind == PUBREC:
                session.send(_packet(PUBREL, 2, body[:2]))
        else:
            raise ProtocolError(f"unexpected packet type {kind}")

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        """Deliver to every matching subscription (once per client, at its highest QoS)."""
        self.received += 1
        msg = _Message(topic, payload, qos, retain)
        if retain:
            if payload:
                self.retained[topic] = msg
            else:
                self.retained.pop(topic, None)
        for session in list(self.sessions.values()):
            best = -1
            for topic_filter, sub_qos in session.subscriptions.items():
                if sub_qos > best and topic_matches(topic_filter, topic):
                    best = sub_qos
            if best >= 0:
                session.deliver(msg, best)

    def _drop(self, session: _Session) -> None:
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        session.closed = True
        will, session.will = session.will, None
        if will is not None:
            self.publish(will.topic, will.payload, qos=will.qos, retain=will.retain)
