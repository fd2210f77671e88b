"""The HTTP client adapter: every poller's GETs go through here.

One `HttpSession` serves every poller of the runtime (connection kind `http`, name
`default`; it needs no site-file entry). A node asks the session for a `JsonClient`
bound to one device's credentials and polls through it:

    session = await ctx.connections.get("http")
    device = session.client(HttpAuth("digest", "admin", password))
    reply = await device.get_json("http://192.168.1.50/rpc/EM.GetStatus?id=0", timeout_s=0.8)

The protocol is our own small asyncio HTTP/1.1 GET client (`nodes.http.client`: one
keep-alive pool per session, at most `max_connections` open; `connection`, `reply`,
`digest`). aiohttp's client, which it replaces, cost the runtime about 10 MB of resident
memory and 1.6 times the CPU per poll (bench/http_client.py); aiohttp stays for the servers.
Digest authentication (Shelly Gen2+, SHA-256) keeps the device's nonce between polls,
so a poll costs no 401 round trip. Basic authentication (Shelly Gen1) is a precomputed
header. No redirect is followed. Every failure — timeout, refused connection, HTTP
error status, a malformed or too large reply, a body that is not JSON — raises
`DeviceUnreachable` with a short text that never contains the password.

`decode_json` is the one JSON decoder of device replies. What `flowengine.jsontext`
refuses (invalid UTF-8 or JSON, `NaN`, numbers beyond 64 bits or a double, nesting
deeper than `MAX_DEPTH`, lone surrogates) is a `DeviceUnreachable` (a failed poll,
never a failed node). `get_text` is the same GET for answers read as text (a relay's
status page searched with a regex, an on/off URL), any 2xx status, at most
`MAX_TEXT_BYTES`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Container
from dataclasses import dataclass
from typing import Any, Literal

from flowengine.connections import ConnectionKind
from flowengine.errors import DeviceError
from flowengine.jsontext import JsonTextError, load_json
from flowengine.model import Secret
from flowengine.node import option
from nodes.http.client import Client, HttpError, Pool, basic_authorization
from nodes.http.digest import Digest

__all__ = ["CONNECTION_KINDS", "MAX_BODY_BYTES", "MAX_TEXT_BYTES", "DeviceUnreachable",
           "HttpAuth", "HttpSession", "HttpSessionConfig", "JsonClient", "decode_json",
           "open_session"]

AuthKind = Literal["none", "basic", "digest"]
MAX_BODY_BYTES = 1 << 20  # a device reply larger than this is not a status document
MAX_TEXT_BYTES = 1 << 16  # a text answer (a relay's status page) is a few KiB
JSON_ACCEPT = "application/json, */*;q=0.5"
TEXT_ACCEPT = "*/*"
OK_JSON = (200,)
OK_TEXT = range(200, 300)


class DeviceUnreachable(DeviceError):
    """A device did not answer, or answered something that is not its JSON status."""


@dataclass(frozen=True, slots=True)
class HttpAuth:
    """How to authenticate at one device."""

    kind: AuthKind = "none"
    username: str = "admin"
    password: Secret | None = None

    def __post_init__(self) -> None:
        if self.kind != "none" and self.password is None:
            raise ValueError(f"{self.kind} authentication needs a password")


@dataclass(frozen=True, kw_only=True)
class HttpSessionConfig:
    max_connections: int = option("open connections at most, over all devices", default=16,
                                  minimum=1)


class JsonClient:
    """GET JSON (or text) from one device with its credentials."""

    __slots__ = ("_client",)

    def __init__(self, pool: Pool, auth: HttpAuth) -> None:
        password = auth.password.reveal() if auth.password is not None else ""
        if auth.kind == "basic":
            self._client = Client(pool, authorization=basic_authorization(auth.username,
                                                                          password))
        elif auth.kind == "digest":
            self._client = Client(pool, digest=Digest(auth.username, password))
        else:
            self._client = Client(pool)

    async def get_json(self, url: str, *, timeout_s: float) -> Any:
        """The decoded JSON body of `GET url`; DeviceUnreachable on any failure."""
        return decode_json(await self._get(url, timeout_s, MAX_BODY_BYTES, JSON_ACCEPT,
                                           OK_JSON))

    async def get_text(self, url: str, *, timeout_s: float,
                       max_bytes: int = MAX_TEXT_BYTES) -> str:
        """The body of `GET url` as text (UTF-8, undecodable bytes replaced), for devices
        whose answer is searched with a regex or not read at all (a relay's on/off URL).
        Any 2xx answer counts; DeviceUnreachable on every failure, as `get_json`, and for
        a body longer than `max_bytes`."""
        body = await self._get(url, timeout_s, max_bytes, TEXT_ACCEPT, OK_TEXT)
        return body.decode("utf-8", errors="replace")

    async def _get(self, url: str, timeout_s: float, max_bytes: int, accept: str,
                   ok: Container[int]) -> bytes:
        try:
            async with asyncio.timeout(timeout_s):
                reply = await self._client.get(url, accept=accept, max_bytes=max_bytes)
        except TimeoutError:
            raise DeviceUnreachable(f"no answer within {timeout_s * 1000:.0f} ms") from None
        except HttpError as exc:
            if exc.status and exc.status not in ok:  # too large, but an error anyway
                raise DeviceUnreachable(_status(exc.status, exc.reason)) from None
            raise DeviceUnreachable(str(exc)) from None
        if reply.status not in ok:
            raise DeviceUnreachable(_status(reply.status, reply.reason))
        return reply.body


def _status(status: int, reason: str) -> str:
    if status == 401:
        reason = "wrong credentials"
    return f"HTTP {status} ({reason[:60]})" if reason else f"HTTP {status}"


def decode_json(body: bytes) -> Any:
    """A device's JSON reply as Python values; DeviceUnreachable if it is not a sane one."""
    try:
        return load_json(body)
    except JsonTextError as exc:
        raise DeviceUnreachable(f"reply is not JSON ({exc})") from None


class HttpSession:
    """The runtime's one HTTP session; hands out per-device clients."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def client(self, auth: HttpAuth | None = None) -> JsonClient:
        return JsonClient(self._pool, auth or HttpAuth())

    @property
    def open_connections(self) -> int:
        """Connections open now (idle ones included), over all devices."""
        return self._pool.open_connections


@contextlib.asynccontextmanager
async def open_session(name: str, config: HttpSessionConfig) -> AsyncIterator[HttpSession]:
    """The session; every connection is closed when it ends."""
    pool = Pool(max_connections=config.max_connections)
    try:
        yield HttpSession(pool)
    finally:
        await pool.close()


CONNECTION_KINDS = (
    ConnectionKind("http", HttpSessionConfig, open_session,
                   summary="the HTTP client session every poller shares",
                   defaults={"default": {}}),
)
