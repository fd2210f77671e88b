"""Just enough MQTT 3.1.1 for the guardian: connect, publish one message, disconnect.

Standard library only, blocking, every step bounded by one deadline. QoS 1 waits for
PUBACK, QoS 2 goes through PUBREC / PUBREL / PUBCOMP, so a safe payload is known to
have reached the broker. TLS verifies the broker's certificate against the system's
CAs or `ca_file`, as the runtime's own connection does; `insecure` is the user's
explicit choice and is logged by the caller.
"""

from __future__ import annotations

import socket
import struct
import time

__all__ = ["MqttTarget", "MqttWireError", "publish_once"]

_CONNECT, _CONNACK, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP, _DISCONNECT = (
    1, 2, 3, 4, 5, 6, 7, 14)
_REFUSED = {1: "unacceptable protocol version", 2: "client id rejected",
            3: "server unavailable", 4: "bad user name or password", 5: "not authorised"}


class MqttWireError(OSError):
    """The broker could not be reached or refused the connection or the message."""


class MqttTarget:
    """Where to publish: a broker as the site file names it."""

    __slots__ = ("ca_file", "client_id", "host", "insecure", "password", "port", "tls",
                 "username")

    def __init__(self, host: str, port: int, *, tls: bool = False, ca_file: str | None = None,
                 insecure: bool = False, username: str | None = None,
                 password: str | None = None, client_id: str = "esess-guardian") -> None:
        self.host, self.port, self.tls, self.ca_file = host, port, tls, ca_file
        self.insecure, self.username, self.password = insecure, username, password
        self.client_id = client_id

    def __repr__(self) -> str:  # never the password
        return f"MqttTarget({self.host}:{self.port})"


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack("!H", len(data)) + data


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    size, length = len(body), bytearray()
    while True:
        byte, size = size % 128, size // 128
        length.append(byte | (0x80 if size else 0))
        if not size:
            break
    return bytes([kind << 4 | flags]) + bytes(length) + body


class _Link:
    def __init__(self, target: MqttTarget, deadline: float) -> None:
        self.deadline = deadline
        raw = socket.create_connection((target.host, target.port), timeout=self._left())
        sock: socket.socket = raw
        try:
            if target.tls or target.ca_file or target.insecure:
                import ssl  # when needed: it is a large module for a small process

                context = ssl.create_default_context(cafile=target.ca_file)
                if target.insecure:  # the user's explicit `insecure: true`
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(raw, server_hostname=target.host)
        except BaseException:
            raw.close()
            raise
        self.sock = sock
        self.buffer = b""

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the MQTT publish timed out")
        return left

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self._left())
        self.sock.sendall(data)

    def read(self) -> tuple[int, int, bytes]:
        """(packet type, flags, body) of the next packet."""
        while True:
            parsed = self._take()
            if parsed is not None:
                return parsed
            self.sock.settimeout(self._left())
            data = self.sock.recv(4096)
            if not data:
                raise MqttWireError("the broker closed the connection")
            self.buffer += data

    def _take(self) -> tuple[int, int, bytes] | None:
        buf = self.buffer
        size, shift, at = 0, 0, 1
        while True:
            if at >= len(buf):
                return None
            byte = buf[at]
            size |= (byte & 0x7F) << shift
            at += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MqttWireError("malformed packet length from the broker")
        if len(buf) < at + size:
            return None
        self.buffer = buf[at + size:]
        return buf[0] >> 4, buf[0] & 0x0F, buf[at:at + size]

    def close(self) -> None:
        self.sock.close()


def publish_once(target: MqttTarget, topic: str, payload: bytes, *, qos: int = 0,
                 retain: bool = False, timeout_s: float = 3.0) -> None:
    """Connect, publish, wait for the acknowledgement QoS asks for, disconnect.
    Raises MqttWireError, TimeoutError or OSError."""
    link = _Link(target, time.monotonic() + timeout_s)
    try:
        flags = 0x02  # clean session
        payload_part = _text(target.client_id)
        if target.username is not None:
            flags |= 0x80
            payload_part += _text(target.username)
            if target.password is not None:
                flags |= 0x40
                payload_part += _text(target.password)
        link.send(_packet(_CONNECT, 0, _text("MQTT") + bytes([4, flags])
                          + struct.pack("!H", 30) + payload_part))
        kind, _, body = link.read()
        if kind != _CONNACK or len(body) < 2:
            raise MqttWireError("the broker did not answer CONNECT")
        if body[1]:
            raise MqttWireError(f"the broker refused the connection: "
                                f"{_REFUSED.get(body[1], f'code {body[1]}')}")
        packet_id = struct.pack("!H", 1)
        head = _text(topic) + (packet_id if qos else b"")
        link.send(_packet(_PUBLISH, qos << 1 | int(retain), head + payload))
        if qos == 1:
            _expect(link, _PUBACK)
        elif qos == 2:
            _expect(link, _PUBREC)
            link.send(_packet(_PUBREL, 0x02, packet_id))
            _expect(link, _PUBCOMP)
        link.send(_packet(_DISCONNECT, 0, b""))
    finally:
        link.close()


def _expect(link: _Link, kind: int) -> None:
    while True:
        got, _, _ = link.read()
        if got == kind:
            return
        if got not in (_PUBLISH, 13):  # nothing else is expected on a clean session
            raise MqttWireError(f"the broker answered packet type {got}, expected {kind}")
