"""MQTT broker connections: one client per broker, shared by every flow.

This is the only module that imports gmqtt; nodes talk to a `Broker`. Two brokers are
usual: `local` (the GX's own broker, localhost:1883, no site entry needed) and `main`
(the user's broker, configured in the site file):

    connections:
      mqtt:
        main: {host: broker.lan, username: esess, password: !secret mqtt_password, tls: true}

What a broker connection does for every flow that uses it:

- **Reconnects** by itself, with capped, jittered exponential backoff
  (`reconnect_min_ms` doubling up to `reconnect_max_ms`, each wait 50-100 % of that);
  gmqtt's own reconnect is switched off. Subscriptions are restored after every
  reconnect. With the defaults (0.5 s doubling to 3 s) the waits are 0.25-0.5, 0.5-1,
  1-2 s and then 1.5-3 s for as long as the broker stays away: the connection is back
  within about 3 s of the broker's return, whatever the length of the outage, and a
  broker that stays down sees one connection attempt every 2.25 s on average (a refused
  TCP connect, which costs a broker next to nothing). A broker that is up and refuses
  the login (wrong password, not authorised) is asked again only every 15-30 s, since
  asking sooner cannot help.
- **Keeps what is published while disconnected**: a bounded outbox holds the latest
  value of each topic (at most `outbox_size` topics; beyond that the oldest topic is
  dropped and counted) and sends it after the reconnect. QoS 1/2 messages the broker
  had not acknowledged when the link broke go the same way.
- **Never buffers without bound**: when a connected broker reads slower than values come
  (more than `send_buffer_kb` waiting in the socket's send buffer), new values go to the
  same outbox, latest per topic, and are sent in order once the broker catches up.
- **Writes once per loop turn**: the packets of one turn go to the socket in one call
  (nodes/mqtt/batching.py), not one `send()` per message; packets that arrive are
  handled in the same turn (not by gmqtt's reader task in the next one).
- **Announces itself**: `Online` on `status_topic` (retained) after each connect,
  `Offline` as the retained last will and on a clean shutdown.
- **TLS is verified by default** against the system's CAs or `ca_file`;
  `insecure: true` turns the checks off and says so in a warning on every connect.
  Passwords are `!secret`s and never logged. A password sent without TLS to a broker
  that is not on this machine (localhost, 127.0.0.0/8, ::1) is warned about by
  `validate` and on the first connect: turn on `tls: true` (see "MQTT over TLS" in
  docs/flows.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import gmqtt  # type: ignore[import-untyped]
from gmqtt.mqtt.connection import MQTTConnection  # type: ignore[import-untyped]
from gmqtt.mqtt.constants import MQTTv50, MQTTv311  # type: ignore[import-untyped]
from gmqtt.mqtt.handler import MQTTConnectError  # type: ignore[import-untyped]
from gmqtt.mqtt.package import Package  # type: ignore[import-untyped]
from gmqtt.mqtt.protocol import MQTTProtocol  # type: ignore[import-untyped]

from flowengine.connections import ConnectionKind
from flowengine.errors import NotConnected
from nodes.mqtt import batching
from nodes.mqtt.settings import (
    MqttBrokerConfig,
    backoff_s,
    cleartext_password_warning,
    is_loopback,
    lint_broker,
)
from nodes.mqtt.wire import publish_packet

__all__ = ["CONNECTION_KINDS", "Broker", "MqttBrokerConfig", "Subscription", "backoff_s",
           "cleartext_password_warning", "is_loopback", "lint_broker", "topic_matches"]

log = logging.getLogger(__name__)

WRITES_BATCHED = batching.install(MQTTProtocol, MQTTConnection)
"""the writes of one loop turn go out in one socket call (nodes/mqtt/batching.py)"""
ROUTES_KEPT = 1024  # topics whose subscribers are remembered (a few hundred on a GX)
READ_DIRECTLY = batching.install_direct_reading(MQTTProtocol, Package)
"""packets are handled in the turn they arrive, not by gmqtt's reader task a turn later"""

_GMQTT_LOG = logging.getLogger("gmqtt.client")
# gmqtt logs every connect and subscribe at INFO; our own lines say what matters
_GMQTT_QUIET = logging.WARNING

_SLOW_WARNING_EVERY_S = 600.0  # a slow broker is logged as a warning at most this often
_REFUSED_MAX_MS = 30_000  # longest wait after a broker refused the login
CLOSE_ACK_S = 0.5  # a stop waits at most this long for the broker to acknowledge QoS 1/2
# CONNACK codes that mean "up, but not now" (3.1.1: unavailable; 5.0: unavailable, busy):
# these are retried as fast as a broker that is down
_TRANSIENT_REFUSALS = frozenset({3, 136, 137})

Payload = bytes | str
_Waiting = tuple[str, Payload, int, bool, bool]
"""A message waiting to be sent: (topic, payload, qos, retain, keep)."""
InboundHandler = Callable[[str, bytes, bool], None]
"""Called with (topic, payload, retained) for each message matching a subscription."""


def topic_matches(filter_parts: tuple[str, ...], topic_parts: list[str]) -> bool:
    """Whether a topic (split at '/') matches a filter (split at '/'), per MQTT 3.1.1."""
    if topic_parts[0].startswith("$") and filter_parts[0] in ("+", "#"):
        return False  # wildcards at the first level do not match $SYS-style topics
    for i, part in enumerate(filter_parts):
        if part == "#":
            return True
        if i >= len(topic_parts):
            return False
        if part != "+" and part != topic_parts[i]:
            return False
    return len(filter_parts) == len(topic_parts)


class Subscription:
    """One subscriber of one topic filter; `cancel()` ends it."""

    __slots__ = ("_broker", "handler", "topic_filter")

    def __init__(self, broker: Broker, topic_filter: str, handler: InboundHandler) -> None:
        self._broker = broker
        self.topic_filter = topic_filter
        self.handler = handler

    def cancel(self) -> None:
        self._broker._unsubscribe(self)


class _Filter:
    __slots__ = ("parts", "qos", "subscribers")

    def __init__(self, topic_filter: str, qos: int) -> None:
        self.parts = tuple(topic_filter.split("/"))
        self.qos = qos
        self.subscribers: list[Subscription] = []


class _GmqttClient(gmqtt.Client):  # type: ignore[misc]
    """gmqtt's client, with its reconnect switched off and its QoS 1/2 messages that the
    broker has not acknowledged yet known by topic (to send again after a lost link)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.unacked: dict[int, _Waiting] = {}  # mid -> message
        super().__init__(*args, **kwargs)

    async def reconnect(self, delay: bool = False) -> None:
        """Switched off: `Broker` owns reconnecting (gmqtt calls this on every loss)."""

    def publish(self, topic: str, payload: Payload, qos: int = 0,
                retain: bool = False, keep: bool = False) -> None:
        if qos == 0:  # the same bytes as gmqtt's, made in one go (nodes/mqtt/wire.py)
            connection = self._connection
            transport = connection._transport
            if transport.is_closing():
                return  # gmqtt drops it too (Broker.publish checked the link just now)
            connection._last_data_out = time.monotonic()  # what gmqtt's keepalive reads
            transport.write(publish_packet(topic, payload, retain=retain,
                                           v5=connection._protocol.proto_ver >= MQTTv50))
            return
        message = gmqtt.Message(topic, payload, qos=qos, retain=retain)
        mid, package = self._connection.publish(message)
        if qos > 0:
            self._persistent_storage.push_message(mid, package)
            self.unacked[mid] = (topic, payload, qos, retain, keep)

    def _remove_message_from_queue(self, mid: int) -> None:  # the broker acknowledged mid
        self.unacked.pop(mid, None)
        super()._remove_message_from_queue(mid)


class Broker:
    """A shared connection to one MQTT broker. Publishing never blocks."""

    def __init__(self, name: str, config: MqttBrokerConfig) -> None:
        self.name = name
        self.config = config
        self.use_tls = config.tls or config.ca_file is not None or config.insecure
        self.port = config.port or (8883 if self.use_tls else 1883)
        self.address = f"{config.host}:{self.port}"
        self.client_id = config.client_id or f"esess-flows-{name}-{socket.gethostname()}"
        self.connected = False
        self.last_error: str | None = None
        self.dropped = 0  # outbox entries lost because the outbox was full
        self.published = 0
        self.connects = 0
        self.attempts = 0  # connection attempts, failed ones included
        self._ssl = self._ssl_context() if self.use_tls else None
        self._client: Any = None
        self._filters: dict[str, _Filter] = {}
        self._exact: dict[str, list[Subscription]] = {}
        self._wild: list[_Filter] = []
        self._routes: dict[str, tuple[Subscription, ...]] = {}  # topic -> its subscribers
        # topic -> latest value, or a number -> a kept message (in order, never replaced)
        self._outbox: OrderedDict[object, _Waiting] = OrderedDict()
        self._kept = itertools.count()
        self._holding = False  # publishing goes to the outbox (listeners run on connect)
        self._cleartext = cleartext_password_warning(name, config)
        self._listeners: list[Callable[[Broker], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._closing = False
        self._send_limit = config.send_buffer_kb * 1024
        self.congested = 0  # times the broker read too slowly and values had to wait
        self._warned_slow = -_SLOW_WARNING_EVERY_S

    # -- public surface ---------------------------------------------------------------
    def publish(self, topic: str, payload: Payload, *, qos: int = 0,
                retain: bool = False, keep: bool = False) -> None:
        """Send now, or keep the latest value of `topic` until the broker is back (or, when
        it reads slowly, until it has caught up).

        `keep`: an event, not a value: while it waits it keeps its place in line and is
        not replaced by a newer message of its topic (the outbox bound still applies).
        """
        client = self._client
        if client is not None and self.connected and not self._holding \
                and client.is_connected:
            if not self._outbox and self.backlog() < self._send_limit:
                client.publish(topic, payload, qos=qos, retain=retain, keep=keep)
                self.published += 1
                return
            self._drain_soon()  # values waiting: this one waits behind them
        if self._closing:
            return
        outbox = self._outbox
        key: object = next(self._kept) if keep else topic
        if key in outbox:
            outbox.move_to_end(key)
        elif len(outbox) >= self.config.outbox_size:
            outbox.popitem(last=False)
            self.dropped += 1
        outbox[key] = (topic, payload, qos, retain, keep)

    def subscribe(self, topic_filter: str, handler: InboundHandler, *,
                  qos: int = 0) -> Subscription:
        """Call `handler` for every message matching `topic_filter`, across reconnects."""
        sub = Subscription(self, topic_filter, handler)
        self._routes.clear()
        entry = self._filters.get(topic_filter)
        new = entry is None
        if entry is None:
            entry = self._filters[topic_filter] = _Filter(topic_filter, qos)
            if "+" in topic_filter or "#" in topic_filter:
                self._wild.append(entry)
            else:
                self._exact[topic_filter] = entry.subscribers
        raised = qos > entry.qos
        entry.qos = max(entry.qos, qos)
        entry.subscribers.append(sub)
        if (new or raised) and self.connected:
            self._client.subscribe(topic_filter, qos=entry.qos)
        return sub

    def safe_publish_action(self, topic: str, payload: str, *, qos: int,
                            retain: bool) -> dict[str, Any]:
        """The guardian's action that publishes `payload` to `topic` on this broker, with
        this connection's address, TLS and login (`flowengine.guardian.actions`)."""
        cfg = self.config
        return {"type": "mqtt.publish", "host": cfg.host, "port": self.port,
                "tls": self.use_tls, "ca_file": cfg.ca_file, "insecure": cfg.insecure,
                "username": cfg.username,
                "password": None if cfg.password is None else cfg.password.reveal(),
                "client_id": f"{self.client_id}-guardian", "topic": topic,
                "payload": payload, "qos": qos, "retain": retain}

    def on_change(self, listener: Callable[[Broker], None]) -> Callable[[], None]:
        """Call `listener` whenever the connection comes up or goes down."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners \
            else None

    def backlog(self) -> int:
        """Bytes handed to the socket and not yet sent (0 while disconnected)."""
        try:
            transport = self._client._connection._transport
        except AttributeError:
            return 0
        if transport is None:
            return 0
        try:
            return int(transport.get_write_buffer_size())
        except (AttributeError, RuntimeError):
            return 0

    def _drain_soon(self) -> None:
        if self._drainer is None or self._drainer.done():
            self.congested += 1
            now = time.monotonic()
            quiet = now - self._warned_slow < _SLOW_WARNING_EVERY_S
            if not quiet:
                self._warned_slow = now
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "mqtt.%s: %s reads slower than values come (%d times so far); only the "
                    "latest value of each topic waits until it catches up", self.name,
                    self.address, self.congested)
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain(), name=f"mqtt.{self.name}:drain")

    async def _drain(self) -> None:
        """Send the outbox to a connected broker as fast as it reads, oldest topic first."""
        low = self._send_limit // 2
        while self._outbox and self.connected and not self._closing:
            if self.backlog() > low:
                await asyncio.sleep(0.05)  # the transport has no "drained" signal to await
                continue
            client, outbox = self._client, self._outbox
            while outbox and self.backlog() < self._send_limit:
                _, (topic, payload, qos, retain, keep) = outbox.popitem(last=False)
                client.publish(topic, payload, qos=qos, retain=retain, keep=keep)
                self.published += 1
        if not self._outbox and self.connected:
            log.info("mqtt.%s: %s caught up", self.name, self.address)

    @property
    def queued(self) -> int:
        """Topics waiting in the outbox for the broker to come back."""
        return len(self._outbox)

    def describe(self) -> str:
        """A short state text for node status."""
        if self.connected:
            text = f"connected to {self.address}"
            if self._outbox:
                text += f" (slow: {len(self._outbox)} waiting)"
        else:
            text = f"not connected to {self.address}"
            if self.last_error:
                text += f": {self.last_error}"
            if self._outbox:
                text += f"; {len(self._outbox)} queued"
        if self.dropped:
            text += f"; {self.dropped} dropped"
        return text

    async def wait_connected(self, timeout_s: float) -> None:
        """Return once connected; raise NotConnected (with the last error) after timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._up.wait()
        except TimeoutError:
            raise NotConnected(f"mqtt.{self.name}: {self.describe()}") from None

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._maintain(), name=f"mqtt.{self.name}:connect")

    async def close(self) -> None:
        """Say Offline, disconnect cleanly (so the broker drops the last will)."""
        self._closing = True
        for task in (self._task, self._drainer):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._drainer = None
        client, self._client = self._client, None
        if client is not None:
            if self.connected and self.config.status_topic:
                client.publish(self.config.status_topic, "Offline", qos=1, retain=True)
            if self.connected:
                await self._acknowledged(client)
            self.connected = False
            await self._discard(client)
        self._up.clear()
        if self._outbox:
            log.warning("mqtt.%s: closed with %d unsent topic(s)", self.name, len(self._outbox))

    # -- connecting -------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise NotConnected(f"mqtt.{self.name}: cannot use ca_file "
                               f"'{self.config.ca_file}': {exc}") from exc
        if self.config.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _maintain(self) -> None:
        attempt = 0
        while True:
            lost = asyncio.Event()
            if self.attempts == 0 and self._cleartext is not None:
                log.warning("%s", self._cleartext)
            self.attempts += 1
            try:
                await self._connect(lost)
            except (OSError, TimeoutError, MQTTConnectError) as exc:
                self._failed(exc, attempt)
                await asyncio.sleep(self._retry_delay_s(exc, attempt))
                attempt += 1
                continue
            attempt = 0
            await lost.wait()
            self._lost()
            await asyncio.sleep(backoff_s(0, self.config.reconnect_min_ms,
                                          self.config.reconnect_max_ms))

    def _retry_delay_s(self, exc: BaseException, attempt: int) -> float:
        """The wait before the next attempt: short while the broker is away, long when
        it is there and refuses us (the login, or our trust in its certificate)."""
        cfg = self.config
        refused = isinstance(exc, ssl.SSLCertVerificationError) or (
            isinstance(exc, MQTTConnectError)
            and getattr(exc, "_code", None) not in _TRANSIENT_REFUSALS)
        longest = max(cfg.reconnect_max_ms, _REFUSED_MAX_MS) if refused \
            else cfg.reconnect_max_ms
        return backoff_s(attempt, cfg.reconnect_min_ms, longest)

    async def _connect(self, lost: asyncio.Event) -> None:
        cfg = self.config
        will = None
        if cfg.status_topic:
            will = gmqtt.Message(cfg.status_topic, "Offline", qos=1, retain=True)
        client = _GmqttClient(self.client_id, will_message=will, logger=_GMQTT_LOG)
        client.on_disconnect = lambda _client, _packet, exc=None: lost.set()
        client.on_message = self._on_message
        if cfg.username is not None:
            client.set_auth_credentials(
                cfg.username, cfg.password.reveal() if cfg.password else None)
        if cfg.insecure:
            log.warning("mqtt.%s: TLS certificate checks are off (insecure: true); anyone "
                        "on the network path can pose as %s", self.name, self.address)
        try:
            async with asyncio.timeout(cfg.connect_timeout_ms / 1000):
                await client.connect(cfg.host, self.port, ssl=self._ssl or False,
                                     keepalive=cfg.keepalive_s, version=MQTTv311)
        except BaseException:
            await self._discard(client)
            raise
        self._client = client
        self.connected = True
        self.connects += 1
        if self.last_error is not None or self.connects > 1:
            log.info("mqtt.%s: connected to %s again", self.name, self.address)
        else:
            log.info("mqtt.%s: connected to %s", self.name, self.address)
        self.last_error = None
        if cfg.status_topic:
            client.publish(cfg.status_topic, "Online", qos=1, retain=True)
        if self._filters:
            client.subscribe([gmqtt.Subscription(f, qos=e.qos)
                              for f, e in self._filters.items()])
        # listeners first, while what they publish still goes to the outbox: a value that
        # was true only while disconnected (a node's "not connected" status) is replaced
        # there by the current one and never sent
        self._holding = True
        try:
            self._notify()
        finally:
            self._holding = False
        outbox, self._outbox = self._outbox, OrderedDict()
        for topic, payload, qos, retain, keep in outbox.values():
            client.publish(topic, payload, qos=qos, retain=retain, keep=keep)
        if outbox:
            log.info("mqtt.%s: sent %d value(s) kept while disconnected", self.name,
                     len(outbox))
        self._up.set()

    def _lost(self) -> None:
        if self._drainer is not None:  # the reconnect sends what waits, in one go
            self._drainer.cancel()
            self._drainer = None
        client, self._client = self._client, None
        self.connected = False
        self._up.clear()
        self.last_error = "connection lost"
        log.warning("mqtt.%s: connection to %s lost; reconnecting", self.name, self.address)
        if client is not None:
            self._keep_unacked(client)
            self._spawn_discard(client)
        self._notify()

    def _keep_unacked(self, client: _GmqttClient) -> None:
        """QoS 1/2 messages the broker never acknowledged go out again after the reconnect,
        before what waits already (unless a newer value of their topic waits; kept
        messages all go, in order); the next client is a new session, so gmqtt would not
        send them again itself."""
        outbox, status = self._outbox, self.config.status_topic
        again: OrderedDict[object, _Waiting] = OrderedDict()
        for message in client.unacked.values():  # in publishing order: the last one wins
            topic, keep = message[0], message[4]
            if topic == status or (not keep and topic in outbox):
                continue
            again[next(self._kept) if keep else topic] = message
        if not again:
            return
        count = len(again)
        again.update(outbox)
        while len(again) > self.config.outbox_size:
            again.popitem(last=False)
            self.dropped += 1
        self._outbox = again
        log.info("mqtt.%s: %d message(s) the broker did not acknowledge will be sent "
                 "again", self.name, count)

    def _failed(self, exc: BaseException, attempt: int) -> None:
        text = self._explain(exc)
        if text != self.last_error:
            level = logging.ERROR if isinstance(exc, ssl.SSLError | MQTTConnectError) \
                else logging.WARNING
            log.log(level, "mqtt.%s: cannot connect to %s: %s", self.name, self.address, text)
        else:
            log.debug("mqtt.%s: attempt %d failed again: %s", self.name, attempt + 1, text)
        changed = self.last_error != text
        self.last_error = text
        if changed:
            self._notify()

    def _explain(self, exc: BaseException) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (f"TLS certificate not trusted ({exc.verify_message}); set ca_file to "
                    "the CA that signed the broker's certificate")
        if isinstance(exc, ssl.SSLError):
            return f"TLS failed ({exc.reason or exc}); check tls/port settings"
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.config.connect_timeout_ms} ms"
        if isinstance(exc, MQTTConnectError):
            return f"refused by the broker ({exc}); check username and password"
        return str(exc) or type(exc).__name__

    async def _acknowledged(self, client: Any) -> None:
        """Wait (at most CLOSE_ACK_S) until the broker has acknowledged every QoS 1/2
        message sent: closing before would reset the socket and lose what it had not read
        yet (the allowances of 0 that a stop publishes, measured: 2 of 4 arrived)."""
        storage = getattr(client, "_persistent_storage", None)
        if storage is None or storage.is_empty:
            return
        try:
            async with asyncio.timeout(CLOSE_ACK_S):
                await storage.wait_empty()
        except TimeoutError:
            log.warning("mqtt.%s: %s did not acknowledge every message within %.1f s of the "
                        "stop", self.name, self.address, CLOSE_ACK_S)

    async def _discard(self, client: Any) -> None:
        """Close a gmqtt client; errors while closing a dead link do not matter."""
        with contextlib.suppress(OSError, TimeoutError, RuntimeError, AttributeError):
            async with asyncio.timeout(1.0):
                await client.disconnect()

    def _spawn_discard(self, client: Any) -> None:
        task = asyncio.get_running_loop().create_task(
            self._discard(client), name=f"mqtt.{self.name}:discard")
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener(self)

    # -- inbound ----------------------------------------------------------------------
    def _on_message(self, _client: Any, topic: str, payload: bytes, _qos: int,
                    properties: dict[str, Any]) -> int:
        retained = bool(properties.get("retain"))
        subs = self._routes.get(topic)
        if subs is None:
            subs = self._match(topic)
        for sub in subs:
            sub.handler(topic, payload, retained)
        return 0

    def _match(self, topic: str) -> tuple[Subscription, ...]:
        """The subscribers of a topic: exact filters first, then the wildcard ones in the
        order they subscribed; remembered for the next message of the topic (at most
        ROUTES_KEPT topics, forgotten on every subscribe and unsubscribe)."""
        found = list(self._exact.get(topic, ()))
        if self._wild:
            parts = topic.split("/")
            for entry in self._wild:
                if topic_matches(entry.parts, parts):
                    found.extend(entry.subscribers)
        subs = tuple(found)
        if len(self._routes) >= ROUTES_KEPT:
            self._routes.clear()
        self._routes[topic] = subs
        return subs

    def _unsubscribe(self, sub: Subscription) -> None:
        entry = self._filters.get(sub.topic_filter)
        if entry is None or sub not in entry.subscribers:
            return
        entry.subscribers.remove(sub)
        self._routes.clear()
        if entry.subscribers:
            return
        del self._filters[sub.topic_filter]
        self._exact.pop(sub.topic_filter, None)
        if entry in self._wild:
            self._wild.remove(entry)
        if self.connected and self._client is not None:
            self._client.unsubscribe(sub.topic_filter)


class _ReportedByUs(logging.Filter):
    """Drops gmqtt's own lines about a refused connect (four per attempt, at WARNING and
    ERROR): `Broker._failed` logs each failure once, with what to do about it."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return "CONNACK" not in text and "TRYING WRITE TO CLOSED SOCKET" not in text


_REPORTED_BY_US = _ReportedByUs()


@contextlib.asynccontextmanager
async def open_broker(name: str, config: MqttBrokerConfig) -> AsyncIterator[Broker]:
    """Open a broker connection for the runtime; it connects (and reconnects) by itself."""
    library = logging.getLogger("gmqtt")
    if library.level == logging.NOTSET:  # unless the user set a level for it
        library.setLevel(_GMQTT_QUIET)
    for logger_name in ("gmqtt.client", "gmqtt.mqtt.protocol"):
        quiet = logging.getLogger(logger_name)
        if _REPORTED_BY_US not in quiet.filters:
            quiet.addFilter(_REPORTED_BY_US)
    broker = Broker(name, config)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.close()


def _observe(broker: Any, runtime: Any) -> None:
    from nodes.mqtt.observe import Observer

    Observer(broker).attach(runtime)


CONNECTION_KINDS = (
    ConnectionKind(
        "mqtt", MqttBrokerConfig, open_broker, lint=lint_broker,
        summary="MQTT brokers: main (yours, from the site file) and local (the GX's own)",
        # the GX's broker: no Online/Offline of ours there (it goes to `main`, and a user
        # whose main broker is the GX's own would otherwise get two writers of one topic)
        defaults={"local": {"host": "localhost", "port": 1883, "status_topic": None}},
        # a flow file run without a site file: `main` is the GX's own broker too
        standalone={"main": "local"},
        observe=_observe),
)
