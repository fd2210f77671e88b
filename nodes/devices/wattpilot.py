"""The Fronius Wattpilot's local websocket API (over `wsclient`, our RFC 6455 client).

    async with WattpilotClient("192.168.1.60", password) as wp:
        await wp.wait_ready(timeout_s=30)
        wp.status["car"], wp.hello.serial
        await wp.set_value("amp", 10)

Protocol facts, with their sources: docs/design/wattpilot-protocol.md. The parts
without I/O are modules of their own: `wattpilot_auth` (the hashes), `wattpilot_login`
(the handshake), `wattpilot_status` (hello, merging the status). What the client does,
by itself, for as long as it runs:

- **Logs in**: `hello` -> `authRequired` -> `auth`, with the hash method the charger
  asks for (`wattpilot_auth.choose_method`: PBKDF2, or bcrypt on a Wattpilot Flex). The
  password hash is computed in the loop's executor (PBKDF2 takes about a second on a
  GX; under `run` its thread ends with it) and cached per serial and method. After an
  `authError` it tries the other method once (a cheap safety net, not the
  manufacturer's rule); a refused login after that is a wrong password: reported in
  `describe()` and logged once, and tried again only every `refused_retry_s` (5 min),
  never every few seconds.
- **Keeps the status**: the `fullStatus` parts are merged into `status`; the set is
  complete at the first part with `partial: false` (or, on firmware that sends no
  `partial`, at the first `deltaStatus`): then `ready` is true. Each `deltaStatus` is
  merged as it comes. `on_change` listeners are called with the keys whose values
  changed. If no full status has come `FULL_STATUS_WAIT_S` after the login, the client
  asks for one (`requestFullStatus`).
- **Writes one value at a time** (`set_value`): parallel writes crashed chargers. Each
  is a `setValue` with its own requestId, a `securedMsg` signed with the HMAC when the
  charger says `secured`; the answer is checked: `success: false` raises
  `WattpilotRefused`, no answer in time a `DeviceError`, no connection `NotConnected`.
- **Reconnects** with jittered backoff (`backoff_s` of the MQTT settings) when the link
  drops, a connect or login times out, or nothing arrives for `idle_timeout_s` (after a
  `requestFullStatus` probe at half that time: whether the charger answers websocket
  pings is not known, so we send none (its own are answered) and the liveness check is
  the protocol's own).
  A fresh status is merged after each reconnect; requestIds start again per connection.
- **Survives what it receives**: a frame that is not a JSON object, a message of an
  unknown type, a frame larger than `max_frame_bytes` (the link is closed and opened
  again) are counted in `bad_frames` and logged, never a crash.

The password is a `Secret` (a plain str is wrapped): it never appears in a log line,
an error or a repr. Every network await has a timeout; nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from flowengine.errors import DeviceError, NotConnected, shown
from flowengine.jsontext import JsonTextError, load_json
from flowengine.model import JsonValue, Secret
from nodes.devices.wattpilot_auth import HashMethod, secured_message
from nodes.devices.wattpilot_login import AuthError, LoginRefused, WattpilotLogin
from nodes.devices.wattpilot_status import (
    StatusListener,
    WattpilotHello,
    WattpilotStatus,
    call_listener,
    request_number,
)
from nodes.devices.wsclient import ConnectionClosed, InvalidURL, WebSocket, WebSocketError, connect
from nodes.mqtt.settings import backoff_s

__all__ = ["StatusListener", "WattpilotClient", "WattpilotHello", "WattpilotRefused"]

log = logging.getLogger(__name__)

FULL_STATUS_WAIT_S = 3.0  # after the login, ask for the full status if none came by then
_STABLE_S = 30.0  # a link that lasted this long resets the reconnect backoff
StateListener = Callable[["WattpilotClient"], None]
"""Called when `connected`, `authenticated` or `ready` changed."""
_IGNORED_TYPES = frozenset({"clearInverters", "updateInverter", "clearSmips"})


class WattpilotRefused(DeviceError):
    """The charger answered a setValue with `success: false`."""

    def __init__(self, key: str, value: JsonValue, message: str) -> None:
        self.key, self.value, self.message = key, value, message
        super().__init__(f"the Wattpilot refused {key} = {shown(value)}: {message}")


class _Lost(Exception):
    """The link broke or went quiet before or after the login."""


class WattpilotClient:
    """One Wattpilot over its local websocket; reconnects by itself."""

    def __init__(self, host: str, password: Secret | str, *, port: int = 80,
                 path: str = "/ws", name: str | None = None,
                 connect_timeout_s: float = 5.0, login_timeout_s: float = 15.0,
                 idle_timeout_s: float = 60.0, reconnect_min_ms: int = 1000,
                 reconnect_max_ms: int = 60_000, refused_retry_s: float = 300.0,
                 max_frame_bytes: int = 1 << 20) -> None:
        if not host:
            raise ValueError("a Wattpilot needs a host")
        if idle_timeout_s <= 0 or connect_timeout_s <= 0 or login_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if reconnect_min_ms <= 0 or reconnect_max_ms < reconnect_min_ms:
            raise ValueError("reconnect_max_ms must be at least reconnect_min_ms (> 0)")
        self.host, self.port = host, port
        address = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self.url = f"ws://{address}:{port}{path if path.startswith('/') else '/' + path}"
        self.name = name or f"wattpilot {host}"
        self._password = password if isinstance(password, Secret) \
            else Secret("wattpilot", password)
        self.connect_timeout_s, self.login_timeout_s = connect_timeout_s, login_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.reconnect_min_ms, self.reconnect_max_ms = reconnect_min_ms, reconnect_max_ms
        self.refused_retry_s = refused_retry_s
        self.max_frame_bytes = max_frame_bytes

        self._status = WattpilotStatus(self.name)
        self.connected = False  # the websocket is open
        self.authenticated = False  # and logged in
        self.last_error: str | None = None
        self.attempts = 0  # connection attempts, failed ones included
        self.connects = 0  # successful logins
        self.bad_frames = 0  # frames that were not a message we understand
        self.refused_writes = 0
        self.next_attempt_in_s: float | None = None

        self._login = WattpilotLogin(self.name, self._password)
        self._ws: WebSocket | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._write_lock = asyncio.Lock()
        self._state_listeners: list[StateListener] = []
        self._ready_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_frame = 0.0
        self._logged_in_at = 0.0

    @property
    def hello(self) -> WattpilotHello | None:
        """What the charger said about itself in its last `hello`."""
        return self._login.hello

    @property
    def method(self) -> HashMethod | None:
        """The hash method of the last login (None: the charger wanted none)."""
        return self._login.method

    @property
    def password_hash(self) -> str | None:
        """HP of the current login (the guardian logs in with it; never log it)."""
        return self._login.hp or None if self.authenticated else None

    @property
    def logins(self) -> int:
        """`auth` messages sent, refused ones included."""
        return self._login.logins

    @property
    def login_refused(self) -> bool:
        """The last login was refused with both hash methods: a wrong password."""
        return self._login.refused

    @property
    def status(self) -> dict[str, JsonValue]:
        """The charger's status keys (one dict, updated in place; read-only for you)."""
        return self._status.values

    @property
    def ready(self) -> bool:
        """Logged in, and the full status of this connection is complete."""
        return self.authenticated and self._status.ready

    def __repr__(self) -> str:
        return f"WattpilotClient({self.url!r}, password='***')"

    # -- lifecycle --------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect in the background (and keep reconnecting) until `close()`."""
        if self._task is not None:
            return
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(
            self._maintain(), name=f"{self.name}:connect")

    async def close(self) -> None:
        """Close the link (at most about a second) and stop reconnecting."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        ws, self._ws = self._ws, None
        if ws is not None:
            await _close_quietly(ws)
        self._down("closed")

    # -- public surface ---------------------------------------------------------------
    def on_change(self, listener: StatusListener) -> Callable[[], None]:
        """Call `listener(changed_keys)` after every status update; returns "remove"."""
        return self._status.on_change(listener)

    def on_state(self, listener: StateListener) -> Callable[[], None]:
        """Call `listener(client)` when connected, authenticated or ready changes."""
        self._state_listeners.append(listener)
        return lambda: self._state_listeners.remove(listener) \
            if listener in self._state_listeners else None

    def describe(self) -> str:
        """A short state text for node status."""
        where = self.hello.serial if self.hello and self.hello.serial else self.url
        if self.ready:
            return f"connected to {where}"
        if self.authenticated:
            return f"connected to {where}, waiting for its full status"
        if self.connected:
            return f"logging in to {where}"
        text = f"not connected to {where}"
        if self.last_error:
            text += f": {self.last_error}"
        if self.next_attempt_in_s is not None and self.next_attempt_in_s >= 60:
            text += f"; next try in {self.next_attempt_in_s / 60:.0f} min"
        return text

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once logged in with a complete status; NotConnected after timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready_event.wait()
        except TimeoutError:
            raise NotConnected(f"{self.name}: {self.describe()}") from None

    async def set_value(self, key: str, value: JsonValue, *,
                        timeout_s: float = 5.0) -> JsonValue:
        """Write one status key; the value the charger then reports for it.

        One write at a time (later callers wait their turn). NotConnected without a
        login; WattpilotRefused when the charger says no; DeviceError when it does not
        answer within `timeout_s` (a dead link is then found by the idle check);
        ValueError for a value JSON cannot carry (NaN, infinity).
        """
        json.dumps(value, allow_nan=False)  # a charger must never see NaN
        async with self._write_lock:
            ws, hp, hello = self._ws, self._login.hp, self.hello
            if ws is None or not self.authenticated or hp is None or hello is None:
                raise NotConnected(f"{self.name}: {self.describe()}")
            request_id = next(self._ids)
            inner = {"type": "setValue", "requestId": request_id, "key": key,
                     "value": value}
            frame = secured_message(inner, hp, request_id) if hello.secured else inner
            reply_future = asyncio.get_running_loop().create_future()
            self._waiting[request_id] = reply_future
            try:
                async with asyncio.timeout(timeout_s):
                    await ws.send(json.dumps(frame))
                    reply = await reply_future
            except TimeoutError:
                raise DeviceError(f"{self.name}: no answer to setValue {key} within "
                                  f"{timeout_s:g} s") from None
            except ConnectionClosed:
                raise NotConnected(f"{self.name}: connection lost while writing "
                                   f"{key}") from None
            finally:
                self._waiting.pop(request_id, None)
        if reply.get("success") is not True:
            self.refused_writes += 1
            message = str(reply.get("message") or "no reason given")[:200]
            log.warning("%s: refused %s = %s: %s", self.name, key, shown(value), message)
            raise WattpilotRefused(key, value, message)
        status = reply.get("status")
        if isinstance(status, dict):
            self._status.apply(status)
            return status.get(key, value)
        return value

    async def request_full_status(self) -> None:
        """Ask the charger for its whole status again (it comes as fullStatus parts)."""
        ws = self._ws
        if ws is None or not self.authenticated:
            raise NotConnected(f"{self.name}: {self.describe()}")
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await ws.send(json.dumps({"type": "requestFullStatus"}))
        except (TimeoutError, ConnectionClosed) as exc:
            raise NotConnected(f"{self.name}: could not ask for the status") from exc

    # -- connecting -------------------------------------------------------------------
    async def _maintain(self) -> None:
        attempt = 0
        while not self._closing:
            self.attempts += 1
            self.next_attempt_in_s = None
            try:
                await self._session()
            except LoginRefused as exc:
                self._failed(str(exc), logging.ERROR)
                delay = self.refused_retry_s * (0.8 + 0.2 * random.random())
            except _Lost as exc:
                self._failed(str(exc), logging.WARNING)
                delay = backoff_s(attempt, self.reconnect_min_ms, self.reconnect_max_ms)
                attempt += 1
            except Exception as exc:  # this loop is the link's supervisor: it never dies
                log.exception("%s: the connection failed unexpectedly", self.name)
                self._failed(f"unexpected {type(exc).__name__}: {exc}", logging.DEBUG)
                delay = backoff_s(attempt, self.reconnect_min_ms, self.reconnect_max_ms)
                attempt += 1
            else:  # a logged-in link ended: at once, unless it keeps ending early
                attempt = 0 if time.monotonic() - self._logged_in_at > _STABLE_S \
                    else attempt + 1
                delay = backoff_s(attempt, self.reconnect_min_ms, self.reconnect_max_ms)
            self.next_attempt_in_s = delay
            await asyncio.sleep(delay)

    def _failed(self, text: str, level: int) -> None:
        if text != self.last_error:
            log.log(level, "%s: %s", self.name, text)
        else:
            log.debug("%s: attempt %d: %s", self.name, self.attempts, text)
        self.last_error = text
        self._notify_state()

    async def _session(self) -> None:
        """One connection: open, log in (after an authError, once more with the other
        hash method), then read until it ends. Returns when a logged-in link ends."""
        self._login.new_round()
        while True:
            try:
                await self._connection()
                return
            except AuthError as exc:
                self._login.after_refusal(exc)  # LoginRefused when no retry is left

    async def _connection(self) -> None:
        try:
            ws = await connect(self.url, open_timeout=self.connect_timeout_s,
                               close_timeout=1.0, max_size=self.max_frame_bytes)
        except TimeoutError:
            raise _Lost(f"no answer from {self.url} within "
                        f"{self.connect_timeout_s:g} s") from None
        except InvalidURL as exc:
            raise LoginRefused(f"cannot connect: {exc}") from None
        except (OSError, WebSocketError) as exc:
            raise _Lost(f"cannot connect to {self.url}: "
                        f"{_why(exc)}") from None
        self._ws, self.connected = ws, True
        self._ids = itertools.count(1)
        self._last_frame = time.monotonic()
        self._notify_state()
        try:
            try:
                async with asyncio.timeout(self.login_timeout_s):
                    await self._log_in(ws)
            except TimeoutError:
                raise _Lost(f"no login within {self.login_timeout_s:g} s") from None
            except ConnectionClosed as exc:
                self._too_large(exc)
                raise _Lost(f"connection closed during the login ({_why(exc)})") from None
            try:
                await self._read(ws)
            except ConnectionClosed as exc:
                self._too_large(exc)
                self._down(f"connection lost ({_why(exc)})")
                log.warning("%s: connection lost (%s); reconnecting", self.name, _why(exc))
        finally:
            self._ws = None
            self._down(None)
            await _close_quietly(ws)

    async def _log_in(self, ws: WebSocket) -> None:
        self._login.begin()
        while True:
            message = await self._receive(ws)
            if message is None:
                continue
            step, reply = await self._login.receive(message)
            if step == "reply":
                await ws.send(json.dumps(reply))
            elif step == "unexpected":
                self._bad(f"unexpected {shown(message['type'])} before the login")
            elif step != "wait":
                self._logged_in()
                if step == "skipped":  # an unsecured charger's status, without a login
                    self._handle(message)
                return

    def _logged_in(self) -> None:
        self.authenticated = True
        self._logged_in_at = time.monotonic()
        self.connects += 1
        self._status.expect_full()
        hello = self.hello
        again = " again" if self.connects > 1 or self.last_error else ""
        log.info("%s: logged in%s (serial %s, %s %s, %s)", self.name, again,
                 hello.serial if hello else "?", hello.devicetype if hello else "?",
                 hello.version if hello else "?", self.method or "no login")
        self.last_error = None
        self._notify_state()

    async def _read(self, ws: WebSocket) -> None:
        """Handle frames until the link ends or stays quiet for idle_timeout_s. Half way
        there, a requestFullStatus probes it (a live charger answers with its status);
        a full status that has not come FULL_STATUS_WAIT_S after the login is asked for."""
        idle, logged_in_at = self.idle_timeout_s, time.monotonic()
        asked = probed = False
        while True:
            deadlines = [self._last_frame + idle]
            if not probed:
                deadlines.append(self._last_frame + idle / 2)
            if not asked and not self.ready:
                deadlines.append(logged_in_at + FULL_STATUS_WAIT_S)
            try:
                async with asyncio.timeout(max(0.0, min(deadlines) - time.monotonic())):
                    message = await self._receive(ws)
            except TimeoutError:
                now = time.monotonic()
                if now - self._last_frame >= idle:
                    self._down(f"nothing received for {idle:g} s")
                    log.warning("%s: nothing received for %g s; reconnecting", self.name,
                                idle)
                    return
                if not probed and now - self._last_frame >= idle / 2:
                    probed = True
                    await self._send(ws, {"type": "requestFullStatus"})
                if not asked and not self.ready and now - logged_in_at >= FULL_STATUS_WAIT_S:
                    asked = True
                    log.info("%s: no full status after the login; asking for it", self.name)
                    await self._send(ws, {"type": "requestFullStatus"})
                continue
            probed = False
            if message is not None:
                self._handle(message)

    async def _send(self, ws: WebSocket, message: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await ws.send(json.dumps(message))
        except TimeoutError:
            raise _Lost(f"could not send within {self.connect_timeout_s:g} s") from None

    async def _receive(self, ws: WebSocket) -> dict[str, Any] | None:
        """The next message; None (counted, logged) for a frame that is not one."""
        frame = await ws.recv()
        self._last_frame = time.monotonic()
        if isinstance(frame, bytes):
            self._bad(f"a binary frame of {len(frame)} bytes")
            return None
        try:
            message = load_json(frame)
        except JsonTextError as exc:
            self._bad(f"a frame that is not JSON ({exc})")
            return None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self._bad(f"a frame without a message type: {shown(frame)}")
            return None
        return message

    def _too_large(self, exc: ConnectionClosed) -> None:
        if exc.by_us and exc.code == 1009:  # we closed: message too big
            self._bad(f"a frame larger than {self.max_frame_bytes} bytes (reconnecting)")

    def _bad(self, what: str) -> None:
        self.bad_frames += 1
        level = logging.WARNING if self.bad_frames == 1 or self.bad_frames % 100 == 0 \
            else logging.DEBUG
        log.log(level, "%s: ignored %s (%d so far)", self.name, what, self.bad_frames)

    # -- messages after the login -----------------------------------------------------
    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        status = message.get("status")
        if kind in ("fullStatus", "deltaStatus") and isinstance(status, dict):
            completed = self._status.full(status, partial=message.get("partial")) \
                if kind == "fullStatus" else self._status.delta(status)
            if completed:
                self._ready_event.set()
                log.info("%s: full status with %d keys", self.name, len(self.status))
                self._notify_state()
        elif kind == "response":
            self._response(message)
        elif kind not in _IGNORED_TYPES:
            self._bad(f"a message of type {shown(kind)}")

    def _response(self, message: dict[str, Any]) -> None:
        request_id = request_number(message.get("requestId"))
        future = self._waiting.get(request_id) if request_id is not None else None
        if future is None:
            log.debug("%s: response to no waiting request: %s", self.name,
                      shown(message.get("requestId")))
            return
        if not future.done():
            future.set_result(message)

    # -- state changes ----------------------------------------------------------------
    def _down(self, error: str | None) -> None:
        was = (self.connected, self.authenticated)
        self.connected = self.authenticated = False
        self._status.lost()
        self._ready_event.clear()
        if error is not None:
            self.last_error = error
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(NotConnected(f"{self.name}: connection lost"))
        if was != (False, False):
            self._notify_state()

    def _notify_state(self) -> None:
        for listener in list(self._state_listeners):
            call_listener(listener, self, self.name)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        if exc.code == 1006:
            return "no close frame"
        return f"code {exc.code}{': ' + exc.reason if exc.reason else ''}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


async def _close_quietly(ws: WebSocket) -> None:
    with contextlib.suppress(OSError, TimeoutError, WebSocketError):
        async with asyncio.timeout(1.5):
            await ws.close()
