"""The HTTP client: the only module that imports aiohttp's client side.

One `aiohttp.ClientSession` serves every poller of the runtime (connection kind
`http`, name `default`; it needs no site-file entry). A node asks the session for a
`JsonClient` bound to one device's credentials and polls through it:

    session = await ctx.connections.get("http")
    device = session.client(HttpAuth("digest", "admin", password))
    reply = await device.get_json("http://192.168.1.50/rpc/EM.GetStatus?id=0", timeout_s=0.8)

Digest authentication (Shelly Gen2+, SHA-256) uses aiohttp's own middleware, one per
client, so the device's nonce is reused between polls instead of costing a 401 each
time. Basic authentication (Shelly Gen1) is a precomputed header. Every failure —
timeout, refused connection, HTTP error status, a body that is not JSON — raises
`DeviceUnreachable` with a short text that never contains the password.

`decode_json` is the one JSON decoder of device replies. What `flowengine.jsontext`
refuses (invalid UTF-8 or JSON, `NaN`, numbers beyond 64 bits or a double, nesting
deeper than `MAX_DEPTH`, lone surrogates) is a `DeviceUnreachable` (a failed poll,
never a failed node). `get_text` is the same GET for answers read as text (a relay's
status page searched with a regex, an on/off URL), any 2xx status, at most
`MAX_TEXT_BYTES`.

aiohttp is imported when the first session opens, not with this module: it costs
about 11 MB of memory, which a GX without HTTP devices should not pay. Its import makes
two TLS contexts that load the system's CA store at once (2 MB here, for the https that
Shelly devices rarely speak); imported from here, they load it when their first TLS
connection starts instead (`_StoreOnFirstUse`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import weakref
from collections.abc import AsyncIterator, Container, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from flowengine.connections import ConnectionKind
from flowengine.errors import DeviceError
from flowengine.jsontext import JsonTextError, load_json
from flowengine.model import Secret
from flowengine.node import option

if TYPE_CHECKING:
    import aiohttp

__all__ = ["CONNECTION_KINDS", "DeviceUnreachable", "HttpAuth", "HttpSession",
           "HttpSessionConfig", "JsonClient", "decode_json"]

AuthKind = Literal["none", "basic", "digest"]
MAX_BODY_BYTES = 1 << 20  # a device reply larger than this is not a status document
MAX_TEXT_BYTES = 1 << 16  # a text answer (a relay's status page) is a few KiB


class DeviceUnreachable(DeviceError):
    """A device did not answer, or answered something that is not its JSON status."""


def _aiohttp() -> ModuleType:
    if "aiohttp" not in sys.modules:
        with _ca_store_on_first_use():
            import aiohttp  # here, not at the top: see the module docstring
    import aiohttp

    return aiohttp


class _StoreOnFirstUse(ssl.SSLContext):
    """A TLS context whose CA store is loaded when its first connection starts (asyncio's
    TLS starts with wrap_bio): the loads asked for before are made then, and it is a
    plain SSLContext again."""

    def load_default_certs(self, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH) -> None:
        _PENDING.setdefault(self, []).append(("load_default_certs", (purpose,)))

    def set_default_verify_paths(self) -> None:
        _PENDING.setdefault(self, []).append(("set_default_verify_paths", ()))

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load()
        return ssl.SSLContext.wrap_bio(self, *args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load()
        return ssl.SSLContext.wrap_socket(self, *args, **kwargs)

    def _load(self) -> None:
        self.__class__ = ssl.SSLContext  # type: ignore[assignment]  # loading for real now
        for method, args in _PENDING.pop(self, ()):
            getattr(self, method)(*args)


_PENDING: weakref.WeakKeyDictionary[ssl.SSLContext, list[tuple[str, tuple[Any, ...]]]] = \
    weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _ca_store_on_first_use() -> Iterator[None]:
    """While aiohttp is imported, a TLS context told to load the CA store becomes a
    `_StoreOnFirstUse`, which loads it at its first connection."""
    def deferred(method: str) -> Any:
        def defer(self: ssl.SSLContext, *args: Any) -> None:
            self.__class__ = _StoreOnFirstUse
            getattr(self, method)(*args)
        return defer

    names = ("load_default_certs", "set_default_verify_paths")
    own = {name: ssl.SSLContext.__dict__[name] for name in names
           if name in ssl.SSLContext.__dict__}  # the others are _ssl._SSLContext's
    for name in names:
        setattr(ssl.SSLContext, name, deferred(name))
    try:
        yield
    finally:
        for name in names:
            if name in own:
                setattr(ssl.SSLContext, name, own[name])
            else:
                delattr(ssl.SSLContext, name)


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

    def __init__(self, session: aiohttp.ClientSession, auth: HttpAuth) -> None:
        lib = _aiohttp()
        self._session = session
        self._client_error: type[Exception] = lib.ClientError
        self._headers: dict[str, str] = {}
        self._middlewares: tuple[aiohttp.DigestAuthMiddleware, ...] = ()
        if auth.kind == "basic" and auth.password is not None:
            self._headers["Authorization"] = lib.encode_basic_auth(
                auth.username, auth.password.reveal())
        elif auth.kind == "digest" and auth.password is not None:
            self._middlewares = (lib.DigestAuthMiddleware(
                auth.username, auth.password.reveal(), preemptive=True),)

    async def get_json(self, url: str, *, timeout_s: float) -> Any:
        """The decoded JSON body of `GET url`; DeviceUnreachable on any failure."""
        return decode_json(await self._get(url, timeout_s, MAX_BODY_BYTES, ok=(200,)))

    async def get_text(self, url: str, *, timeout_s: float,
                       max_bytes: int = MAX_TEXT_BYTES) -> str:
        """The body of `GET url` as text (UTF-8, undecodable bytes replaced), for devices
        whose answer is searched with a regex or not read at all (a relay's on/off URL).
        Any 2xx answer counts; DeviceUnreachable on every failure, as `get_json`, and for
        a body longer than `max_bytes`."""
        body = await self._get(url, timeout_s, max_bytes, ok=range(200, 300))
        return body.decode("utf-8", errors="replace")

    async def _get(self, url: str, timeout_s: float, max_bytes: int,
                   ok: Container[int]) -> bytes:
        try:
            async with asyncio.timeout(timeout_s):
                async with self._session.get(url, headers=self._headers,
                                             middlewares=self._middlewares,
                                             allow_redirects=False) as reply:
                    if reply.status not in ok:
                        reason = "wrong credentials" if reply.status == 401 else reply.reason
                        raise DeviceUnreachable(f"HTTP {reply.status} ({reason})")
                    body = await reply.content.read(max_bytes + 1)
        except TimeoutError:
            raise DeviceUnreachable(f"no answer within {timeout_s * 1000:.0f} ms") from None
        except self._client_error as exc:
            raise DeviceUnreachable(_short(exc)) from None
        except OSError as exc:
            raise DeviceUnreachable(exc.strerror or type(exc).__name__) from None
        if len(body) > max_bytes:
            raise DeviceUnreachable(f"reply larger than {max_bytes} bytes")
        return body


def decode_json(body: bytes) -> Any:
    """A device's JSON reply as Python values; DeviceUnreachable if it is not a sane one."""
    try:
        return load_json(body)
    except JsonTextError as exc:
        raise DeviceUnreachable(f"reply is not JSON ({exc})") from None


class HttpSession:
    """The runtime's one HTTP session; hands out per-device clients."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    def client(self, auth: HttpAuth | None = None) -> JsonClient:
        return JsonClient(self._session, auth or HttpAuth())


def _short(exc: BaseException) -> str:
    lib = _aiohttp()
    if isinstance(exc, lib.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    if isinstance(exc, lib.ServerDisconnectedError):
        return "the device closed the connection"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:160] if text else type(exc).__name__


@contextlib.asynccontextmanager
async def open_session(name: str, config: HttpSessionConfig) -> AsyncIterator[HttpSession]:
    lib = _aiohttp()
    connector = lib.TCPConnector(limit=config.max_connections, ttl_dns_cache=300)
    async with lib.ClientSession(connector=connector) as session:
        yield HttpSession(session)


CONNECTION_KINDS = (
    ConnectionKind("http", HttpSessionConfig, open_session,
                   summary="the HTTP client session every poller shares",
                   defaults={"default": {}}),
)
