"""One HTTP/1.1 reply, parsed as its bytes arrive (RFC 9112), in bounded memory.

`Reply(max_bytes).feed(data)` takes each piece a connection receives and says when the
reply is complete; `feed_eof()` when the device closes. The status line and headers
(names in lower case) are read once the blank line that ends them has arrived; 1xx
answers before the real one are skipped. The body is framed by `Content-Length`, by
`Transfer-Encoding: chunked` (extensions and trailers read and dropped), or runs until
the device closes; 204 and 304 have none. Limits: the header blocks of one reply
(interim answers and trailers included) at most `MAX_HEAD_BYTES` and `MAX_HEAD_LINES`,
the body at most `max_bytes` (`ReplyTooLarge` for one byte more, as soon as a length
says so). Anything malformed is a `ReplyError` with a short text.

`keep_alive` says whether the connection may carry another request after this reply:
not after `Connection: close`, an HTTP/1.0 answer without `Connection: keep-alive`, a
body read until close, or bytes beyond the reply.
"""

from __future__ import annotations

from collections.abc import Container

__all__ = ["MAX_HEAD_BYTES", "MAX_HEAD_LINES", "Reply", "ReplyError", "ReplyTooLarge"]

MAX_HEAD_BYTES = 16 * 1024
MAX_HEAD_LINES = 100
MAX_CHUNK_LINE = 1024  # a chunk's size line with its extensions
_HEX = b"0123456789abcdefABCDEF"
_FOLD = " \t"

# states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class ReplyError(Exception):
    """A reply that is not HTTP/1.x, or breaks a limit."""


class ReplyTooLarge(ReplyError):
    """A body longer than the caller allows; `status` and `reason` of its reply."""

    def __init__(self, status: int, reason: str, limit: int) -> None:
        super().__init__(f"reply larger than {limit} bytes")
        self.status = status
        self.reason = reason


class Reply:
    """A reply being received; complete once `feed` or `feed_eof` returns True."""

    __slots__ = ("_buf", "_head_bytes", "_head_lines", "_left", "_parts", "_scan", "_size",
                 "_state", "challenges", "headers", "keep_alive", "max_bytes", "reason",
                 "started", "status")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.challenges: list[str] = []
        """each WWW-Authenticate value on its own (they do not join with commas)"""
        self.keep_alive = False
        self.started = False
        """a byte of the reply has arrived"""
        self._state = _HEAD
        self._buf: bytearray | None = None  # an incomplete line or head, kept for later
        self._scan = 0  # where in _buf the search for the end of the head goes on
        self._parts: list[bytes | bytearray] = []
        self._size = 0
        self._left = 0  # bytes still to come of the body or of the current chunk
        self._head_bytes = 0
        self._head_lines = 0

    @property
    def body(self) -> bytes:
        return b"".join(self._parts)

    def feed(self, data: bytes) -> bool:
        """Take the next bytes; True when the reply is complete. ReplyError if broken."""
        if not data:
            return self._state == _DONE
        self.started = True
        buf: bytes | bytearray = data
        if self._buf is not None:
            self._buf += data
            buf, self._buf = self._buf, None
        return self._parse(buf)

    def feed_eof(self) -> bool:
        """The device closed: True if that completes the reply (a body read until close);
        False if the reply is cut short (or never started, see `started`)."""
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
        return self._state == _DONE

    def _parse(self, data: bytes | bytearray) -> bool:
        pos, end = 0, len(data)
        while True:
            state = self._state
            if state == _HEAD:
                start = pos + self._scan
                self._scan = 0
                crlf, lf = data.find(b"\n\r\n", start), data.find(b"\n\n", start)
                if crlf < 0 and lf < 0:
                    if self._head_bytes + end - pos > MAX_HEAD_BYTES:
                        raise ReplyError(f"header block larger than {MAX_HEAD_BYTES} bytes")
                    self._scan = max(0, end - pos - 2)
                    return self._keep(data, pos)
                stop, skip = (crlf, 3) if lf < 0 or 0 <= crlf < lf else (lf, 2)
                self._head_bytes += stop + skip - pos
                if self._head_bytes > MAX_HEAD_BYTES:
                    raise ReplyError(f"header block larger than {MAX_HEAD_BYTES} bytes")
                self._head(data[pos:stop])
                pos = stop + skip
            elif state in (_LENGTH, _CHUNK_DATA):
                take = min(self._left, end - pos)
                self._parts.append(data[pos:pos + take])
                pos += take
                self._left -= take
                if self._left:
                    return False
                self._state = _DONE if state == _LENGTH else _CHUNK_END
            elif state == _CHUNK_SIZE:
                newline = data.find(b"\n", pos, pos + MAX_CHUNK_LINE + 1)
                if newline < 0:
                    if end - pos > MAX_CHUNK_LINE:
                        raise ReplyError("chunk size line too long")
                    return self._keep(data, pos)
                size = data[pos:newline].partition(b";")[0].strip()
                pos = newline + 1
                if not size or len(size) > 15 or size.strip(_HEX):
                    raise ReplyError("bad chunk size")
                self._left = int(size, 16)
                if not self._left:
                    self._state = _TRAILERS
                    continue
                self._size += self._left
                if self._size > self.max_bytes:
                    raise ReplyTooLarge(self.status, self.reason, self.max_bytes)
                self._state = _CHUNK_DATA
            elif state == _CHUNK_END:
                if data.startswith(b"\r\n", pos):
                    pos += 2
                elif data.startswith(b"\n", pos):
                    pos += 1
                elif end - pos < 2 and data[pos:] in (b"", b"\r"):  # its end is still to come
                    return self._keep(data, pos)
                else:
                    raise ReplyError("chunk longer than its size")
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                newline = data.find(b"\n", pos)
                if newline < 0:
                    if self._head_bytes + end - pos > MAX_HEAD_BYTES:
                        raise ReplyError(f"header block larger than {MAX_HEAD_BYTES} bytes")
                    return self._keep(data, pos)
                self._head_bytes += newline + 1 - pos
                if self._head_bytes > MAX_HEAD_BYTES:
                    raise ReplyError(f"header block larger than {MAX_HEAD_BYTES} bytes")
                blank = data[pos:newline] in (b"", b"\r")
                pos = newline + 1
                if blank:
                    self._state = _DONE
                else:
                    self._count_lines(1)
            elif state == _UNTIL_CLOSE:
                self._size += end - pos
                if self._size > self.max_bytes:
                    raise ReplyTooLarge(self.status, self.reason, self.max_bytes)
                self._parts.append(data[pos:])
                return False
            else:  # _DONE
                if pos < end:
                    self.keep_alive = False  # bytes nobody asked for: out of step
                return True

    def _keep(self, data: bytes | bytearray, pos: int) -> bool:
        if pos < len(data):
            self._buf = data if pos == 0 and isinstance(data, bytearray) \
                else bytearray(data[pos:])
        return False

    def _count_lines(self, lines: int) -> None:
        self._head_lines += lines
        if self._head_lines > MAX_HEAD_LINES:
            raise ReplyError(f"more than {MAX_HEAD_LINES} header lines")

    def _head(self, raw: bytes | bytearray) -> None:
        lines = raw.decode("latin-1").split("\n")
        self._count_lines(len(lines) - 1)
        version, _, rest = lines[0].removesuffix("\r").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isascii() \
                or not code.isdigit() or code[0] == "0":
            raise ReplyError("malformed status line")
        status = int(code)
        headers: dict[str, str] = {}
        challenges: list[str] = []
        name = ""
        for line in lines[1:]:
            line = line.removesuffix("\r")
            if line[:1] in _FOLD and name:  # obs-fold: a continued value
                headers[name] = headers[name] + " " + line.strip(_FOLD)
                continue
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip() or " " in name:
                raise ReplyError("malformed header line")
            name = name.lower()
            value = value.strip(_FOLD)
            old = headers.get(name)
            headers[name] = value if old is None else f"{old}, {value}"
            if name == "www-authenticate":
                challenges.append(value)
        if status < 200:
            if status == 101:
                raise ReplyError("unexpected 101 Switching Protocols")
            return  # an interim answer: the real one follows
        self.status = status
        self.reason = reason.strip() if reason.isprintable() else \
            "".join(c for c in reason if c.isprintable()).strip()
        self.headers = headers
        self.challenges = challenges
        self._frame(version, headers)

    def _frame(self, version: str, headers: dict[str, str]) -> None:
        connection = headers.get("connection")
        tokens: Container[str] = {t.strip() for t in connection.lower().split(",")} \
            if connection else ()
        self.keep_alive = "close" not in tokens if version != "HTTP/1.0" \
            else "keep-alive" in tokens
        coding, length = headers.get("transfer-encoding"), headers.get("content-length")
        if self.status in (204, 304):
            self._state = _DONE
        elif coding is not None:
            if length is not None:
                raise ReplyError("both Transfer-Encoding and Content-Length")
            if coding.strip().lower() != "chunked":
                raise ReplyError(f"transfer coding {coding[:40]!r} not supported")
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._left = _content_length(length)
            if self._left > self.max_bytes:
                raise ReplyTooLarge(self.status, self.reason, self.max_bytes)
            self._state = _LENGTH if self._left else _DONE
        else:
            self.keep_alive = False
            self._state = _UNTIL_CLOSE


def _content_length(text: str) -> int:
    """The value of Content-Length; repeated values must agree (`5, 5`)."""
    values = set()
    for item in text.split(","):
        item = item.strip()
        if not item or len(item) > 18 or not item.isascii() or not item.isdigit():
            raise ReplyError("bad Content-Length")
        values.add(int(item))
    if len(values) > 1:
        raise ReplyError("conflicting Content-Length")
    return values.pop()
