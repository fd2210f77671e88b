"""RFC 6455 for a websocket client, without I/O: the upgrade, frame headers, masking.

Standard library only and no `typing` at run time: the guardian (its blocking
`flowengine.guardian.wattpilotwire`) and the runtime's asyncio client
(`nodes.devices.wsclient`) share it. Frames come from a server, so a frame that is
masked, sets an RSV bit (no extension is ever negotiated), has a reserved opcode, or is
a control frame that is fragmented or longer than 125 bytes is a `ProtocolError`.

    request = upgrade_request("192.168.1.60", 80, "/ws", key := new_key())
    check_upgrade(head, key)                      # the answer up to its blank line
    header = parse_header(buffer, at)             # None until the header is complete
    data = encode_frame(TEXT, b"{}", os.urandom(4))
"""

from __future__ import annotations

import base64
import hashlib
import os

__all__ = ["BINARY", "CLOSE", "CONTINUATION", "MAX_HEAD", "PING", "PONG", "TEXT",
           "ProtocolError", "accept_key", "check_upgrade", "close_payload", "encode_frame",
           "mask", "new_key", "parse_close", "parse_header", "upgrade_request"]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
MAX_HEAD = 16 * 1024  # the server's HTTP answer to the upgrade, at most
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OPCODES = frozenset({CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG})
# close codes a peer may send (RFC 6455 §7.4); 1005, 1006 and 1015 are never on the wire
_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                          1013, 1014})


class ProtocolError(Exception):
    """The server broke RFC 6455; `code` is the close code to fail the connection with."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


# -- the upgrade ---------------------------------------------------------------------------

def new_key() -> str:
    """A fresh Sec-WebSocket-Key."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer `key` with."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def upgrade_request(host: str, port: int, path: str, key: str, *, tls: bool = False) -> bytes:
    """The HTTP/1.1 GET that asks for the websocket: no extensions, no subprotocol, no
    User-Agent, no Origin."""
    name = f"[{host}]" if ":" in host else host
    if port != (443 if tls else 80):
        name += f":{port}"
    return (f"GET {path} HTTP/1.1\r\nHost: {name}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode()


def check_upgrade(head: bytes, key: str) -> None:
    """ProtocolError unless `head` (the answer without its blank line) is a 101 that
    accepts `key` and agrees to nothing we did not ask for."""
    status, *lines = head.decode("latin-1").split("\r\n")
    parts = status.split(" ", 2)
    if len(parts) < 2 or parts[0] != "HTTP/1.1" or parts[1] != "101":
        raise ProtocolError(f"the server answered {status[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        field, _, value = line.partition(":")
        name = field.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers \
            else value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise ProtocolError("the upgrade answer lacks 'Upgrade: websocket'")
    if "upgrade" not in headers.get("connection", "").lower():
        raise ProtocolError("the upgrade answer lacks 'Connection: Upgrade'")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise ProtocolError("the upgrade answer has a wrong Sec-WebSocket-Accept")
    for name in ("sec-websocket-extensions", "sec-websocket-protocol"):
        if name in headers:
            raise ProtocolError(f"the upgrade answer sets {name}, which was not asked for")


# -- frames ----------------------------------------------------------------------------------

def mask(payload: bytes, key: bytes) -> bytes:
    """`payload` XOR the 4-byte `key` repeated (masking and unmasking are the same)."""
    size = len(payload)
    if not size:
        return b""
    stream = key * (size // 4 + 1)
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream[:size], "big")).to_bytes(
        size, "big")


def encode_frame(opcode: int, payload: bytes, key: bytes, *, fin: bool = True) -> bytes:
    """One client frame: header, the mask `key` (4 random bytes), the masked payload."""
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + key + mask(payload, key)


def parse_header(data: bytes | bytearray, at: int = 0) -> tuple[bool, int, int, int] | None:
    """(FIN, opcode, payload length, where the payload starts) of the server frame at
    `at` in `data`; None while its header is incomplete. The caller checks the length
    against its limit before it waits for the payload."""
    if len(data) - at < 2:
        return None
    first, size = data[at], data[at + 1]
    opcode = first & 0x0F
    if first & 0x70 or size & 0x80 or opcode not in _OPCODES \
            or (opcode >= CLOSE and (size > 125 or first < 0x80)):
        _refuse(first, size)
    start = at + 2
    if size == 126:
        start += 2
        if len(data) < start:
            return None
        size = data[at + 2] << 8 | data[at + 3]
    elif size == 127:
        start += 8
        if len(data) < start:
            return None
        size = int.from_bytes(data[at + 2:start], "big")
        if size >> 63:
            raise ProtocolError("a frame length with its top bit set")
    return first >= 0x80, opcode, size, start


def _refuse(first: int, second: int) -> None:
    """Raise the ProtocolError that the frame header `first`, `second` deserves."""
    opcode = first & 0x0F
    if first & 0x70:
        raise ProtocolError("a frame with an RSV bit set (no extension was agreed)")
    if opcode not in _OPCODES:
        raise ProtocolError(f"a frame with the reserved opcode {opcode}")
    if second & 0x80:
        raise ProtocolError("a masked frame from the server")
    raise ProtocolError("a control frame that is fragmented or over 125 bytes")


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame we send."""
    text = reason.encode()[:123].decode(errors="ignore")  # no character cut in two
    return code.to_bytes(2, "big") + text.encode()


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close frame from the server; 1005 when it gives no code."""
    if not payload:
        return 1005, ""
    code = int.from_bytes(payload[:2], "big")
    if len(payload) < 2 or not (code in _CLOSE_CODES or 3000 <= code < 5000):
        raise ProtocolError(f"a close frame with the invalid code {payload[:2].hex()}")
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError("a close reason that is not UTF-8", 1007) from None
