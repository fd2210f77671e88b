"""A small asyncio HTTP/1.1 client for GET: a keep-alive connection pool, Basic and
Digest authentication, TLS with verification. `nodes.http.session` is its one user.

`Pool` is one session's connections: at most `max_connections` open over all devices;
idle ones are kept per (scheme, host, port) and reused, newest first. There are no
timers: an idle connection older than `IDLE_S` is closed when it would be used next, and
one the device closed is dropped as soon as its EOF arrives. Beyond the limit a request
waits for a free connection, or closes the oldest idle one of another device. A
connection whose reply failed, timed out or was cancelled is closed, never reused (its
state is unknown). A reused connection that the device closed before any byte of the
reply came (it timed it out meanwhile) is retried once on a new one: GET is idempotent.

`Client` is one device's credentials on a pool: `get(url)` sends the request line, `Host`,
`Connection: keep-alive`, `Accept`, `User-Agent` and `Authorization`, and returns the
parsed `Reply` whatever its status (no redirect is followed). With digest, the first 401
brings the challenge and is retried once; later requests are signed with that nonce
before they are sent (`nodes.http.digest`).

Host names are resolved with `loop.getaddrinfo` and kept `DNS_TTL_S`; an IP address is
used as it is. The TLS context (`ssl.create_default_context()`: certificate and host name
verified, no way to turn that off) is made at the first https connection, so a session
that speaks only http never loads the CA store. Failures are `HttpError` with a short
text that names host and port, never the URL (it may hold a secret) or a password.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import re
import socket
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from nodes.http.connection import Closed, Connection
from nodes.http.digest import Digest, DigestError
from nodes.http.reply import Reply, ReplyError, ReplyTooLarge

__all__ = ["DNS_TTL_S", "IDLE_S", "Client", "HttpError", "Pool", "basic_authorization"]

IDLE_S = 15.0  # an idle connection older than this is not reused (aiohttp's keepalive_timeout)
DNS_TTL_S = 300.0  # how long a host name's addresses are kept
USER_AGENT = "esess-flows"
Key = tuple[str, str, int]  # scheme, host, port
_HOST = re.compile(r"[a-z0-9._~%:-]+\Z")
_SAFE_PATH = "/:@!$&'()*+,;=%~"
_CACHE = 32  # URLs remembered per client


class HttpError(Exception):
    """A request failed; `status` (and `reason`) when a reply was being read."""

    def __init__(self, text: str, status: int = 0, reason: str = "") -> None:
        super().__init__(text)
        self.status = status
        self.reason = reason


def basic_authorization(username: str, password: str) -> str:
    """The `Authorization` value for HTTP Basic (UTF-8, RFC 7617)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def parse_url(url: str) -> tuple[Key, str, str]:
    """(key, request target, Host value) of an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        raise HttpError("malformed URL") from None  # not echoed: it may hold a secret
    if parts.scheme not in ("http", "https") or not host:
        raise HttpError("not an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise HttpError("credentials in the URL are refused; give username and password")
    if port == 0 or not _HOST.match(host):
        raise HttpError("malformed URL")
    default = 80 if parts.scheme == "http" else 443
    port = port or default
    host_header = (f"[{host}]" if ":" in host else host) + ("" if port == default
                                                            else f":{port}")
    target = quote(parts.path or "/", safe=_SAFE_PATH)
    if parts.query:
        target += "?" + quote(parts.query, safe=_SAFE_PATH + "?")
    return (parts.scheme, host, port), target, host_header


class Pool:
    """One session's connections, shared by every device client on it."""

    def __init__(self, *, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.loop = asyncio.get_running_loop()
        self.max_connections = max_connections
        self._count = 0  # open or being opened
        self._idle: dict[Key, list[Connection]] = {}
        self._open: set[Connection] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[int, Any]]]] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._count

    async def fetch(self, key: Key, head: Callable[[], bytes], max_bytes: int) -> Reply:
        """GET with the request `head()` makes; one retry on a new connection when a
        reused one turns out closed before any byte of the reply came."""
        data = head()
        conn = await self._acquire(key, fresh=False)
        try:
            return await self._exchange(conn, data, max_bytes)
        except Closed as exc:
            if not conn.reused or exc.started:
                raise HttpError(str(exc)) from None
        data = head()
        conn = await self._acquire(key, fresh=True)
        try:
            return await self._exchange(conn, data, max_bytes)
        except Closed as exc:
            raise HttpError(str(exc)) from None

    async def _exchange(self, conn: Connection, data: bytes, max_bytes: int) -> Reply:
        try:
            reply = await conn.exchange(data, max_bytes)
        except ReplyTooLarge as exc:
            self._discard(conn)
            raise HttpError(str(exc), exc.status, exc.reason) from None
        except ReplyError as exc:
            self._discard(conn)
            raise HttpError(f"malformed reply: {exc}") from None
        except BaseException:  # Closed, a timeout, a cancel: its state is unknown
            self._discard(conn)
            raise
        if reply.keep_alive and not conn.closed and not self._closed:
            conn.idle_since = self.loop.time()
            self._idle.setdefault(conn.key, []).append(conn)
            self._wake()
        else:
            self._discard(conn)
        return reply

    async def _acquire(self, key: Key, *, fresh: bool) -> Connection:
        while True:
            if self._closed:
                raise HttpError("the HTTP session is closed")
            if not fresh:
                conn = self._take_idle(key)
                if conn is not None:
                    return conn
            if self._count < self.max_connections or self._evict():
                return await self._connect(key)
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # it was this one's turn: pass it on
                else:
                    self._waiters.remove(waiter)
                raise

    def _take_idle(self, key: Key) -> Connection | None:
        conns = self._idle.get(key)
        if conns is None:
            return None
        now = self.loop.time()
        found = None
        while conns and found is None:
            conn = conns.pop()
            if conn.closed or now - conn.idle_since > IDLE_S:
                self._discard(conn)
            else:
                found = conn
                found.reused = True
        if not conns:
            self._idle.pop(key, None)
        return found

    def _evict(self) -> bool:
        """Close the longest idle connection (of another device: ours were taken)."""
        oldest: Connection | None = None
        for conns in self._idle.values():
            if conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is None:
            return False
        oldest.abort()
        self.forget(oldest, wake=False)  # its place goes to the caller
        return True

    def _discard(self, conn: Connection) -> None:
        conn.abort()
        self.forget(conn)

    def forget(self, conn: Connection, *, wake: bool = True) -> None:
        """Give up a connection's place (idempotent)."""
        if not conn.counted:
            return
        conn.counted = False
        self._count -= 1
        self._open.discard(conn)
        conns = self._idle.get(conn.key)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._idle[conn.key]
        if wake:
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, key: Key) -> Connection:
        scheme, host, port = key
        self._count += 1
        conn = Connection(self, key)
        try:
            tls = self._tls_context() if scheme == "https" else None
            sock = await self._socket(host, port)
            try:
                await self.loop.create_connection(lambda: conn, sock=sock, ssl=tls,
                                                  server_hostname=host if tls else None)
            except BaseException:
                sock.close()
                raise
        except ssl.SSLCertVerificationError as exc:
            self.forget(conn)
            raise HttpError(f"cannot connect to {host}:{port}: {exc.verify_message}") from None
        except (OSError, ssl.SSLError) as exc:
            self.forget(conn)
            self._dns.pop((host, port), None)  # maybe it has moved: ask again next time
            detail = f": {exc.reason}" if isinstance(exc, ssl.SSLError) and exc.reason else ""
            raise HttpError(f"cannot connect to {host}:{port}{detail}") from None
        except BaseException:
            self.forget(conn)
            raise
        if self._closed:
            self._discard(conn)
            raise HttpError("the HTTP session is closed")
        self._open.add(conn)
        return conn

    async def _socket(self, host: str, port: int) -> socket.socket:
        """A socket connected to one of the host's addresses, tried in order."""
        error: OSError = OSError("no address")
        for family, address in await self._addresses(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                await self.loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise error

    async def _addresses(self, host: str, port: int) -> list[tuple[int, Any]]:
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, host)
            except OSError:
                continue
            return [(family, (host, port))]
        now = self.loop.time()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                            proto=socket.IPPROTO_TCP)
        found: list[tuple[int, Any]] = [(family, address) for family, _, _, _, address in infos]
        if len(self._dns) >= 64:
            self._dns.clear()
        self._dns[(host, port)] = (now + DNS_TTL_S, found)
        return found

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()  # loads the CA store: not before
        return self._tls

    async def close(self) -> None:
        """Close every connection; requests made later fail."""
        self._closed = True
        conns = list(self._open)
        for conn in conns:
            conn.abort()
        self._wake_all()
        gone = [conn.gone() for conn in conns if not conn.closed]
        if gone:
            await asyncio.wait(gone, timeout=1.0)

    def _wake_all(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


class Client:
    """GET for one device's credentials: none, a Basic `authorization`, or a `digest`."""

    def __init__(self, pool: Pool, *, authorization: str | None = None,
                 digest: Digest | None = None) -> None:
        self._pool = pool
        self._digest = digest
        extra = "" if authorization is None else f"Authorization: {authorization}\r\n"
        self._extra = extra
        self._heads: dict[tuple[str, str], tuple[Key, str, bytes]] = {}

    async def get(self, url: str, *, accept: str, max_bytes: int) -> Reply:
        """The reply to `GET url`, any status. HttpError when there is none."""
        known = self._heads.get((url, accept))
        if known is None:
            known = self._target(url, accept)
        key, target, head = known
        digest = self._digest
        if digest is None:
            return await self._pool.fetch(key, lambda: head, max_bytes)

        def signed() -> bytes:
            value = digest.authorization(key, "GET", target)
            if value is None:
                return head + b"\r\n"
            if "\r" in value or "\n" in value:
                raise HttpError("digest challenge with a line break")
            return head + b"Authorization: " + value.encode() + b"\r\n\r\n"

        reply = await self._pool.fetch(key, signed, max_bytes)
        if reply.status == 401:
            try:
                again = digest.challenged(key, reply.challenges)
            except DigestError as exc:
                raise HttpError(str(exc)) from None
            if again:
                reply = await self._pool.fetch(key, signed, max_bytes)
        return reply

    def _target(self, url: str, accept: str) -> tuple[Key, str, bytes]:
        key, target, host = parse_url(url)
        text = (f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n"
                f"Accept: {accept}\r\nUser-Agent: {USER_AGENT}\r\n{self._extra}")
        head = text.encode() if self._digest is not None else (text + "\r\n").encode()
        if len(self._heads) >= _CACHE:
            self._heads.clear()
        self._heads[(url, accept)] = known = (key, target, head)
        return known
