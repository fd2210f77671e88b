"""One socket write per event-loop turn for an MQTT connection, however many packets.

asyncio's transport sends each `write()` at once when its buffer is empty: one `send()`
system call per published message, a quarter of the runtime's CPU in a busy bridge
(issue 17's profile). `BatchingTransport` wraps a connection's transport: writes of one
loop turn are joined and go out in one call at the start of the next turn
(`loop.call_soon`), in the order they were made. `close()` sends what waits first;
`abort()` drops it, as the transport itself does.

`install_direct_reading(protocol_cls)` makes the protocol read packets where they
arrive: gmqtt feeds each chunk to a StreamReader, whose task wakes in the next loop
turn to parse it (and the batched writes went out one turn later still: three turns
per message at a low rate, a full loop iteration each). Parsed in `data_received`, the
packets are handled in the turn they arrive and the writes they cause go out at its
end, in one send: one turn per message.

`install(protocol_cls, connection_cls)` makes gmqtt's protocol and connection share the
wrapper (both write: the connection replays unacknowledged QoS messages after a
reconnect, the protocol everything else, so both must go through one queue to keep
the order). The classes are passed in by the adapter (nodes/mqtt/broker.py, the only
module that imports gmqtt); when they do not look as expected the wrapper is not
installed and the writes go out one by one, as before.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

from flowengine.reads import small_reads

__all__ = ["BatchingTransport", "install", "install_direct_reading"]

log = logging.getLogger(__name__)

MQTT_V5 = 5  # gmqtt.mqtt.constants.MQTTv50


class BatchingTransport:
    """A transport whose writes of one loop turn go out as one."""

    __slots__ = ("_loop", "_out", "_pending", "_raw", "_size", "holding", "writes")

    def __init__(self, raw: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._raw, self._loop = raw, loop
        self._out: list[bytes] = []
        self._size = 0  # bytes in _out
        self._pending: asyncio.Handle | None = None
        self.writes = 0  # calls made on the real transport
        self.holding = False
        """True while the caller will flush itself (a received chunk is being handled):
        writes wait without a call scheduled (a cancelled one would still cost a turn)."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        chunk = bytes(data)
        self._out.append(chunk)
        self._size += len(chunk)
        if self._pending is None and not self.holding:
            self._pending = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what waits now (the loop calls it once per turn with writes)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        out, self._out, self._size = self._out, [], 0
        if out and not self._raw.is_closing():
            self.writes += 1
            self._raw.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self) -> None:
        self.flush()
        self._raw.close()

    def abort(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._out, self._size = [], 0
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def get_write_buffer_size(self) -> int:
        """What waits to be sent: in the transport, and in this turn's writes."""
        return int(self._raw.get_write_buffer_size()) + self._size

    def __getattr__(self, name: str) -> Any:  # get_extra_info, pause_reading, ...
        return getattr(self._raw, name)


def install(protocol_cls: type, connection_cls: type) -> bool:
    """Wrap the transport of every gmqtt connection made from now on; False (and
    nothing changed) when the classes do not have the expected hooks."""
    made = getattr(protocol_cls, "connection_made", None)
    init = getattr(connection_cls, "__init__", None)
    if made is None or init is None or getattr(protocol_cls, "_esess_batching", False):
        return bool(getattr(protocol_cls, "_esess_batching", False))

    def connection_made(self: Any, transport: asyncio.Transport) -> None:
        small_reads(transport)
        made(self, transport)
        if getattr(self, "_transport", None) is transport:
            self._transport = BatchingTransport(transport, asyncio.get_running_loop())

    def connection_init(self: Any, transport: asyncio.Transport, protocol: Any,
                        *args: Any, **kwargs: Any) -> None:
        init(self, transport, protocol, *args, **kwargs)
        wrapped = getattr(protocol, "_transport", None)
        if isinstance(wrapped, BatchingTransport) and self._transport is transport:
            self._transport = wrapped

    protocol_cls.connection_made = connection_made  # type: ignore[attr-defined]
    connection_cls.__init__ = connection_init  # type: ignore[misc]
    protocol_cls._esess_batching = True  # type: ignore[attr-defined]
    return True


def install_direct_reading(protocol_cls: type, package_cls: type | None = None) -> bool:
    """Parse and handle packets in `data_received` instead of gmqtt's reader task; False
    (and nothing changed) when the class does not have the expected parts.

    With `package_cls` (gmqtt's Package) the packets are split here, and a QoS 0
    PUBLISH without properties goes straight to the client's (synchronous) on_message
    with what gmqtt's handler would give it (`_publish`); every other packet goes to
    gmqtt's connection as gmqtt's own parser would hand it over."""
    read_packet = getattr(protocol_cls, "_read_packet", None)
    if getattr(protocol_cls, "_esess_direct", False):
        return True
    if read_packet is None or not hasattr(protocol_cls, "_read_loop"):
        return False

    def data_received(self: Any, data: bytes) -> None:
        """What gmqtt's read loop does with a chunk, here and now: parse the packets
        (each goes to the handler and on to the subscribers), keep a partial one for the
        next chunk, send what they caused. A chunk that cannot be parsed closes the
        link (gmqtt's loop stopped reading and left it open until the keepalive)."""
        waiting = getattr(self, "_esess_partial", b"")
        buffer = waiting + data if waiting else data
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        batching = isinstance(transport, BatchingTransport)
        if batching:
            transport.holding = True
        try:
            parsed = read_packet(self, buffer) if package_cls is None \
                else _packets(self._connection, buffer, package_cls)
        finally:
            if batching:
                transport.holding = False
                transport.flush()
        if parsed == -1:
            log.warning("mqtt: a packet that cannot be parsed; closing the connection")
            self._esess_partial = b""
            transport.close()
            return
        self._esess_partial = buffer[parsed:] if parsed < len(buffer) else b""

    protocol_cls.data_received = data_received  # type: ignore[attr-defined]
    protocol_cls._esess_direct = True  # type: ignore[attr-defined]
    return True


def _packets(connection: Any, buffer: bytes, package_cls: type) -> int:
    """Hand every whole packet of `buffer` on; the bytes used, or -1 for a remaining
    length of more than four bytes (MQTT's limit; gmqtt's parser says the same)."""
    handler: Any = getattr(connection, "_handler", None)
    fast = handler is not None and handler.current_connection is connection \
        and _synchronous(handler)
    v5 = False
    if fast:  # what gmqtt's connection notes for every packet, for its keep-alive
        connection._last_data_in = handler._last_msg_in = time.monotonic()
        v5 = handler._connection_state.protocol_version >= MQTT_V5
    size, at = len(buffer), 0
    while size - at >= 2:
        length, shift, i = 0, 0, at + 1
        while True:
            if i >= size:
                return at  # the length is not all here yet
            byte = buffer[i]
            length |= (byte & 0x7F) << shift
            i += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                return -1
        end = i + length
        if end > size:
            return at
        command = buffer[at]
        if not (fast and command & 0xF6 == 0x30 and _publish(handler, buffer, command, i,
                                                             end, v5)):
            connection.put_package(package_cls(command, buffer[i:end]))
        at = end
    return at


def _synchronous(handler: Any) -> bool:
    """Whether the client's on_message is a plain function (the adapter's is; gmqtt runs
    a coroutine function in a task of its own, which only gmqtt's path does)."""
    receiver = handler.on_message
    if handler.__dict__.get("_esess_receiver") is not receiver:
        handler._esess_receiver = receiver
        handler._esess_synchronous = not inspect.iscoroutinefunction(receiver)
    return bool(handler._esess_synchronous)


def _publish(handler: Any, buffer: bytes, command: int, start: int, end: int,
             v5: bool) -> bool:
    """A QoS 0 PUBLISH in `buffer[start:end]` to on_message as gmqtt's handler calls it:
    (topic, payload, 0, {"dup": 0|1, "retain": 0|1}). False, and nothing done, for what
    gmqtt's own handler must see: properties, a topic alias (empty topic), a topic that
    is not UTF-8, a packet too short for its topic."""
    if end - start < 2:
        return False
    topic_end = start + 2 + ((buffer[start] << 8) | buffer[start + 1])
    if topic_end == start + 2 or topic_end > end:
        return False
    at = topic_end
    if v5:
        if at >= end or buffer[at] != 0:  # a property length of 0 is one zero byte
            return False
        at += 1
    try:
        topic = buffer[start + 2:topic_end].decode("utf-8")
    except UnicodeDecodeError:
        return False
    properties = {"dup": (command & 0x08) >> 3, "retain": command & 0x01}
    try:
        handler.on_message(topic, buffer[at:end], 0, properties)
    except Exception:  # as gmqtt's handler: logged, the link goes on
        log.exception("mqtt: error handling a message on %s", topic)
    return True
