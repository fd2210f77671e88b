"""Just enough of the Wattpilot's websocket for the guardian: log in, write values, close.

Standard library only, blocking, one deadline for the whole exchange (as mqttwire). The
websocket is a minimal RFC 6455 client: the HTTP/1.1 upgrade with its accept check,
masked text frames out, fragmented and unmasked frames in (pings answered, one message
at most 1 MiB: the full status is about 20 kB in several frames). The framing rules are
`flowengine.wsframe`'s (stdlib only, pure), shared with the runtime's asyncio client.

The conversation is docs/design/wattpilot-protocol.md §1-§2: `hello` (its serial is
checked when one is given: the password hash HP is per serial), `authRequired` answered
with `auth`, `authSuccess`; then one `setValue` per value, in order, signed as a
`securedMsg` when the hello says `secured`, each waiting for its `response`. Status
frames in between are ignored. HP comes from the runtime, which can afford PBKDF2 and
bcrypt; `auth_hash` and `secured_message` re-implement the two small formulas of
nodes/devices/wattpilot_auth.py, which the guardian does not import (it may pull in
bcrypt), and a test checks that they agree.

Imported by the guardian only when a wattpilot.set is applied: hashlib loads OpenSSL.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import time

from flowengine import wsframe
from flowengine.wsframe import CLOSE, CONTINUATION, PING, PONG, TEXT, ProtocolError

TYPE_CHECKING = False  # typing costs the guardian 2 MB resident; mypy still sees these
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["WattpilotWireError", "auth_hash", "secured_message", "set_values"]

MAX_MESSAGE = 1024 * 1024
CLOSE_WAIT_S = 0.5


class WattpilotWireError(OSError):
    """The charger could not be reached, refused the login or a value, or broke the
    protocol."""


# -- the two formulas (docs/design/wattpilot-protocol.md §1.5, §2.4) -------------------------

def auth_hash(token1: str, token2: str, token3: str, hp: str) -> str:
    """The `hash` of the `auth` message."""
    hash1 = hashlib.sha256(token1.encode() + hp.encode()).hexdigest()
    return hashlib.sha256((token3 + token2 + hash1).encode()).hexdigest()


def secured_message(inner: dict[str, Any], hp: str, request_id: int) -> dict[str, Any]:
    """`inner` as a securedMsg: its JSON text signed with HMAC-SHA256 keyed by HP."""
    data = json.dumps(inner)
    signature = hmac.new(hp.encode(), data.encode(), hashlib.sha256).hexdigest()
    return {"type": "securedMsg", "data": data, "requestId": f"{request_id}sm",
            "hmac": signature}


# -- the websocket ---------------------------------------------------------------------------

class _Link:
    def __init__(self, host: str, port: int, path: str, deadline: float) -> None:
        self.deadline = deadline
        self.buffer = b""
        self.sock = socket.create_connection((host, port), timeout=self._left())
        try:
            self._upgrade(host, port, path)
        except BaseException:
            self.sock.close()
            raise

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the Wattpilot exchange timed out")
        return left

    def _recv(self) -> None:
        self.sock.settimeout(self._left())
        data = self.sock.recv(65536)
        if not data:
            raise WattpilotWireError("the Wattpilot closed the connection")
        self.buffer += data

    def _send(self, data: bytes) -> None:
        self.sock.settimeout(self._left())
        self.sock.sendall(data)

    def _upgrade(self, host: str, port: int, path: str) -> None:
        key = wsframe.new_key()
        self._send(wsframe.upgrade_request(host, port, path, key))
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > wsframe.MAX_HEAD:
                raise WattpilotWireError("the Wattpilot's HTTP answer is too long")
            self._recv()
        head, self.buffer = self.buffer[:end], self.buffer[end + 4:]  # frames may follow
        try:
            wsframe.check_upgrade(head, key)
        except ProtocolError as exc:
            raise WattpilotWireError(f"no websocket at {path}: {exc}") from None

    def send_frame(self, opcode: int, payload: bytes) -> None:
        self._send(wsframe.encode_frame(opcode, payload, os.urandom(4)))

    def send_json(self, message: Mapping[str, Any]) -> None:
        self.send_frame(TEXT, json.dumps(message).encode())

    def read_message(self) -> bytes:
        """The next text or binary message, its fragments joined; pings are answered."""
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                fin, opcode, payload = self._frame(MAX_MESSAGE - size)
                if opcode == CLOSE:
                    code = wsframe.parse_close(payload)[0]
                    raise WattpilotWireError(f"the Wattpilot closed the websocket "
                                             f"(code {code})")
            except ProtocolError as exc:
                raise WattpilotWireError(f"the Wattpilot broke the websocket protocol: "
                                         f"{exc}") from None
            if opcode == PING:
                self.send_frame(PONG, payload)
            elif opcode == PONG:
                pass
            elif (opcode == CONTINUATION) != bool(parts):
                raise WattpilotWireError("the Wattpilot sent a frame out of sequence")
            else:
                parts.append(payload)
                size += len(payload)
                if fin:
                    return b"".join(parts)

    def _frame(self, room: int) -> tuple[bool, int, bytes]:
        """(FIN, opcode, payload) of the next frame; a data frame larger than `room` fails
        before its payload is read."""
        while (header := wsframe.parse_header(self.buffer)) is None:
            self._recv()
        fin, opcode, size, at = header
        if opcode < CLOSE and size > room:
            raise WattpilotWireError(f"a message from the Wattpilot exceeds "
                                     f"{MAX_MESSAGE // 1024} KiB")
        while len(self.buffer) < at + size:
            self._recv()
        payload, self.buffer = self.buffer[at:at + size], self.buffer[at + size:]
        return fin, opcode, payload

    def close(self) -> None:
        """Say goodbye (close frame, a short wait for the echo), then close the socket."""
        with contextlib.suppress(OSError):  # the values are written: nothing can fail now
            self.deadline = min(self.deadline, time.monotonic() + CLOSE_WAIT_S)
            self.send_frame(CLOSE, wsframe.close_payload(1000))
            while True:
                self.read_message()

    def abort(self) -> None:
        self.sock.close()


def _receive(link: _Link) -> dict[str, Any]:
    """The next message that is a JSON object (anything else is skipped)."""
    while True:
        raw = link.read_message()
        try:
            message = json.loads(raw)
        except ValueError:
            continue
        if isinstance(message, dict):
            return message


def _truthy(value: object) -> bool:
    """`secured` is a bool on some firmware, a number on others; missing: not secured."""
    if isinstance(value, bool):
        return value
    return isinstance(value, int | float) and value > 0


# -- the conversation ------------------------------------------------------------------------

def set_values(host: str, port: int, password_hash: str, values: Mapping[str, Any], *,
               path: str = "/ws", serial: str | None = None, timeout_s: float = 3.0) -> None:
    """Log in and write each value in order, each confirmed by the charger, within
    `timeout_s` for everything. Raises WattpilotWireError, TimeoutError or OSError."""
    link = _Link(host, port, path, time.monotonic() + timeout_s)
    try:
        secured = _login(link, host, password_hash, serial)
        for number, (key, value) in enumerate(values.items(), start=1):
            inner = {"type": "setValue", "requestId": number, "key": key, "value": value}
            link.send_json(secured_message(inner, password_hash, number) if secured
                           else inner)
            _confirmed(link, key, number)
        link.close()
    finally:
        link.abort()


def _login(link: _Link, host: str, hp: str, serial: str | None) -> bool:
    """hello, authRequired, auth, authSuccess; whether the connection is secured."""
    hello = _receive(link)
    if hello.get("type") != "hello":
        raise WattpilotWireError(f"the device at {host} is no Wattpilot (it began with "
                                 f"{str(hello.get('type'))[:40]!r}, not hello)")
    if serial is not None and str(hello.get("serial")) != serial:
        raise WattpilotWireError(f"another charger answers at {host}: serial "
                                 f"{str(hello.get('serial'))[:20]}, expected {serial}")
    secured = _truthy(hello.get("secured"))
    sent = False
    while True:
        message = _receive(link)
        kind = message.get("type")
        if kind == "authRequired" and not sent:
            token3 = secrets.token_hex(16)
            link.send_json({"type": "auth", "token3": token3, "hash": auth_hash(
                str(message.get("token1", "")), str(message.get("token2", "")), token3, hp)})
            sent = True
        elif kind == "authSuccess" and sent:
            return secured
        elif kind == "authError" and sent:
            raise WattpilotWireError("the Wattpilot refused the login (wrong password hash?)")
        elif kind in ("fullStatus", "deltaStatus") and not secured and not sent:
            return False  # an unsecured charger may need no login (wattpilot4j)


def _confirmed(link: _Link, key: str, number: int) -> None:
    """Wait for the `response` to setValue `number` (N, "N" or "Nsm": sheet §2.3)."""
    ours = (number, str(number), f"{number}sm")
    while True:
        message = _receive(link)
        request_id = message.get("requestId")
        if message.get("type") != "response" or isinstance(request_id, bool) \
                or request_id not in ours:
            continue
        if message.get("success") is not True:
            reason = str(message.get("message") or "no reason given")[:200]
            raise WattpilotWireError(f"the Wattpilot refused {key}: {reason}")
        return
