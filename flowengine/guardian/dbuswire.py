"""Just enough D-Bus for the guardian: connect, authenticate, call SetValue, read the answer.

Standard library only, blocking, every step bounded by one deadline. It speaks the
wire protocol as the D-Bus specification defines it: SASL EXTERNAL authentication,
`Hello`, then one method call whose single argument is a variant, little-endian.
Only the types a Victron BusItem value takes are marshalled (b, i, x, u, d, s and
arrays of i, u, d, s: `ai` with no items is how Venus OS writes "invalid").
"""

from __future__ import annotations

import os
import socket
import struct
import time

TYPE_CHECKING = False  # typing costs the guardian 2 MB resident; mypy still sees these
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DbusWireError", "call_set_value", "split_address"]

BUSITEM = "com.victronenergy.BusItem"
SYSTEM_SOCKET = "/var/run/dbus/system_bus_socket"

_CALL, _RETURN, _ERROR = 1, 2, 3
_PATH, _INTERFACE, _MEMBER, _ERROR_NAME, _REPLY_SERIAL, _DESTINATION, _SIGNATURE = (
    1, 2, 3, 4, 5, 6, 8)
_ALIGN = {"y": 1, "b": 4, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "s": 4, "o": 4, "g": 1,
          "a": 4, "v": 1, "(": 8}
_FIXED = {"b": "<I", "i": "<i", "u": "<I", "x": "<q", "t": "<Q", "d": "<d", "y": "<B"}
MAX_MESSAGE = 1 << 20  # a reply to SetValue is tiny; anything this big is not one


class DbusWireError(OSError):
    """The bus could not be reached, refused us, or answered with an error."""


def split_address(address: str | None) -> str | bytes:
    """The socket address of the first unix transport in a D-Bus address."""
    if not address:
        return SYSTEM_SOCKET
    for entry in address.split(";"):
        kind, _, params = entry.partition(":")
        if kind != "unix":
            continue
        values = dict(p.partition("=")[::2] for p in params.split(",") if p)
        if "path" in values:
            return _unescape(values["path"])
        if "abstract" in values:
            return b"\0" + _unescape(values["abstract"]).encode()
    raise DbusWireError(f"no unix transport in the D-Bus address {address!r}")


def _unescape(text: str) -> str:
    out, i = bytearray(), 0
    raw = text.encode()
    while i < len(raw):
        if raw[i] == 0x25 and i + 3 <= len(raw):  # %xx
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode()


# -- marshalling ------------------------------------------------------------------------------

class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def pad(self, alignment: int) -> None:
        self.buf.extend(b"\0" * (-len(self.buf) % alignment))

    def put(self, code: str, value: object) -> None:
        if code in _FIXED:
            self.pad(_ALIGN[code])
            self.buf.extend(struct.pack(_FIXED[code], value))
        elif code in "so":
            data = str(value).encode()
            self.put("u", len(data))
            self.buf.extend(data + b"\0")
        elif code == "g":
            data = str(value).encode()
            self.buf.extend(bytes([len(data)]) + data + b"\0")
        else:
            raise DbusWireError(f"cannot marshal type {code!r}")

    def put_variant(self, signature: str, value: object) -> None:
        self.put("g", signature)
        if signature.startswith("a"):
            element = signature[1:]
            if element not in ("i", "u", "d", "s") or not isinstance(value, list):
                raise DbusWireError(f"cannot marshal a variant of type {signature!r}")
            self.pad(4)
            at = len(self.buf)
            self.buf.extend(b"\0\0\0\0")
            self.pad(_ALIGN[element])
            start = len(self.buf)
            for item in value:
                self.put(element, item)
            struct.pack_into("<I", self.buf, at, len(self.buf) - start)
        elif len(signature) == 1:
            self.put(signature, value)
        else:
            raise DbusWireError(f"cannot marshal a variant of type {signature!r}")


def _message(serial: int, fields: list[tuple[int, str, object]], signature: str = "",
             body: bytes = b"") -> bytes:
    header = _Writer()
    header.buf.extend(b"l" + bytes([_CALL, 0, 1]))
    header.put("u", len(body))
    header.put("u", serial)
    header.put("u", 0)  # length of the field array, filled in below
    start = len(header.buf)
    for code, kind, value in fields:
        header.pad(8)
        header.put("y", code)
        header.put_variant(kind, value)
    if signature:
        header.pad(8)
        header.put("y", _SIGNATURE)
        header.put_variant("g", signature)
    struct.pack_into("<I", header.buf, 12, len(header.buf) - start)
    header.pad(8)
    return bytes(header.buf) + body


# -- unmarshalling (only what a reply carries) ------------------------------------------------

class _Reader:
    def __init__(self, data: bytes, little: bool) -> None:
        self.data, self.pos, self.order = data, 0, "<" if little else ">"

    def align(self, alignment: int) -> None:
        self.pos += -self.pos % alignment

    def get(self, code: str) -> Any:
        if code in _FIXED:
            self.align(_ALIGN[code])
            fmt = self.order + _FIXED[code][1]
            (value,) = struct.unpack_from(fmt, self.data, self.pos)
            self.pos += struct.calcsize(fmt)
            return value
        if code in "so":
            size = int(self.get("u"))
            text = self.data[self.pos:self.pos + size].decode(errors="replace")
            self.pos += size + 1
            return text
        if code == "g":
            size = self.data[self.pos]
            text = self.data[self.pos + 1:self.pos + 1 + size].decode()
            self.pos += size + 2
            return text
        if code == "v":
            return self.get(str(self.get("g")))
        raise DbusWireError(f"unexpected type {code!r} in a reply")


Parsed = tuple[int, dict[int, object], "_Reader"]


def _parse(data: bytes) -> Parsed:
    """(message type, header fields, a reader at the body) of one whole message."""
    reader = _Reader(data, data[0:1] == b"l")
    kind = data[1]
    reader.pos = 4
    body_len = int(reader.get("u"))
    reader.get("u")
    fields_len = int(reader.get("u"))
    end = reader.pos + fields_len
    fields: dict[int, object] = {}
    while reader.pos < end:
        reader.align(8)
        code = int(reader.get("y"))
        signature = str(reader.get("g"))
        fields[code] = reader.get(signature) if len(signature) == 1 else None
    reader.align(8)
    body = _Reader(data[reader.pos:reader.pos + body_len], data[0:1] == b"l")
    return kind, fields, body


def _message_length(head: bytes) -> int:
    order = "<" if head[0:1] == b"l" else ">"
    body_len, _, fields_len = struct.unpack_from(order + "III", head, 4)
    return int(16 + fields_len + (-fields_len % 8) + body_len)


# -- the connection -----------------------------------------------------------------------------

class _Connection:
    def __init__(self, address: str | None, deadline: float) -> None:
        self.deadline = deadline
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.serial = 0
        self.pending = b""
        try:
            self._timeout()
            self.sock.connect(split_address(address))
            self._authenticate()
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def _timeout(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the D-Bus call timed out")
        self.sock.settimeout(left)

    def _recv(self) -> bytes:
        self._timeout()
        data = self.sock.recv(65536)
        if not data:
            raise DbusWireError("the bus closed the connection")
        return data

    def _authenticate(self) -> None:
        uid = str(os.getuid()).encode().hex().encode()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\n")
        line = b""
        while not line.endswith(b"\r\n"):
            line += self._recv()
            if len(line) > 4096:
                raise DbusWireError("the bus sent no authentication answer")
        if not line.startswith(b"OK "):
            raise DbusWireError(f"the bus refused authentication: {line.strip().decode()!r}")
        self.sock.sendall(b"BEGIN\r\n")

    def call(self, destination: str, path: str, interface: str, member: str,
             signature: str = "", body: bytes = b"") -> Parsed:
        self.serial += 1
        serial = self.serial
        fields: list[tuple[int, str, object]] = [
            (_PATH, "o", path), (_INTERFACE, "s", interface), (_MEMBER, "s", member),
            (_DESTINATION, "s", destination)]
        self._timeout()
        self.sock.sendall(_message(serial, fields, signature, body))
        while True:
            kind, got, reply_body = self._read_message()
            if kind in (_RETURN, _ERROR) and got.get(_REPLY_SERIAL) == serial:
                return kind, got, reply_body

    def _read_message(self) -> Parsed:
        while len(self.pending) < 16:
            self.pending += self._recv()
        size = _message_length(self.pending)
        if size > MAX_MESSAGE:
            raise DbusWireError(f"a message of {size} bytes is not an answer to SetValue")
        while len(self.pending) < size:
            self.pending += self._recv()
        data, self.pending = self.pending[:size], self.pending[size:]
        return _parse(data)


def call_set_value(address: str | None, service: str, path: str, signature: str,
                   value: object, timeout_s: float) -> int:
    """SetValue on `service` `path` with a variant of `signature`; the service's answer
    (0 = accepted). Raises DbusWireError or TimeoutError."""
    conn = _Connection(address, time.monotonic() + timeout_s)
    try:
        kind, _, _ = conn.call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus", "Hello")
        if kind == _ERROR:
            raise DbusWireError("the bus refused Hello")
        body = _Writer()
        body.put_variant(signature, value)
        kind, fields, reply = conn.call(service, path, BUSITEM, "SetValue", "v",
                                        bytes(body.buf))
        answer = str(fields.get(_SIGNATURE, ""))
        if kind == _ERROR:
            name = fields.get(_ERROR_NAME, "an error")
            detail = f": {reply.get('s')}" if answer.startswith("s") else ""
            raise DbusWireError(f"{service} {path}: {name}{detail}")
        if answer[:1] not in ("i", "u", "x", "y"):
            raise DbusWireError(f"{service} {path}: SetValue answered {answer!r}, not a code")
        return int(reply.get(answer[0]))
    finally:
        conn.close()
