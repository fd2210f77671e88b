"""mqtt.in: subscribe to a topic filter on a broker; decode each payload into a value.

    - id: requests
      type: mqtt.in
      broker: main
      topic: es-ESS/SolarOverheadDistributor/Requests/+/+
      wildcards: [consumer, key]     # names of the + levels, in order
      output: "{consumer}/{key}"     # message topic (default: the MQTT topic)
      to: [distributor]

- `broker`: a connection under `connections: mqtt:` in the site file; `local` (the GX's
  own broker) works without one.
- `topic`: an MQTT topic filter; `+` matches one level, a final `#` any number.
- `wildcards`: names for the `+` levels (and a final `#`, which gets the rest of the
  topic). Each becomes a field in the message's meta, and can be used in `output`.
  The meta also holds `mqtt_topic` and `retained`.
- `payload`: how the text is read. `number` (int or float), `boolean` (true/false,
  on/off, 1/0, yes/no, any case), `string` (as is), `json`, or `auto` (JSON when it
  parses as JSON, else the text; `21.5` becomes a number, `on` stays a text).
- `json_path`: a value inside JSON: `/emeters/0/power` (JSON pointer) or
  `ENERGY.Power` / `emeters[0].power` (dots and indexes). Implies JSON. With
  `payload: number` or `boolean` the value found must be one (or a text that decodes
  as one): `{"temperature": null}` or `true` is not a number.
- `regex`: applied to the text (after `json_path` when both are set). With one
  capture group, the group's text goes on to `payload` decoding (es-ESS's
  PowerExtractRegex, e.g. `"apower":([^,]+),`); with none, the value is true when it
  matches and false when not (IsOnKeywordRegex, e.g. `"ison":\\s*true`).

A payload that does not decode (not a number, no match, broken JSON, JSON nested too
deeply, missing path) is counted and dropped; the status shows the count. The first one
on a topic is logged as a warning, and the first good one after it at INFO (each one
at DEBUG): a device that sends junk fills no log.
An empty payload (a cleared retained topic) is ignored, or passed on as invalid (None)
with `on_empty: invalid`.

`keep` says what happens when messages come faster than the next node takes them:

- `latest` (the default; telemetry: power, temperatures, states): a waiting message is
  replaced by a newer one of the same topic, at every hop of the flow. A slow node
  works with the newest value, never lags behind, and memory stays flat. Values in
  between can vanish, which is right for a reading and wrong for an event.
- `every` (events: button presses, commands, requests, counted pulses): every message
  is passed on, in order, at every hop that keeps a message as it is (mqtt.out, change,
  filter; a node that makes new values, such as formula, decides for itself). Messages
  wait here, at most `queue_size` of them (about 0.5 KB each), and go on as fast as the
  next nodes take them; beyond that the oldest is dropped, counted in the status and
  warned about once. The next nodes' queues hold 256 messages each (drops counted in
  their `dropped`). mqtt.out publishes every one; while its broker is away they wait
  in its outbox, in order (at most the connection's `outbox_size`).
  Use it with `qos: 1`, so that the broker does not lose them either.

`qos` is about the broker's hop to this node, `keep` about the hops inside the flow;
QoS 1 with `keep: latest` still merges values of a topic that wait.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from string import Formatter
from typing import TYPE_CHECKING, Literal

from flowengine.errors import ConfigError
from flowengine.jsontext import JsonTextError, JsonTooDeep, load_json
from flowengine.model import JsonValue, KeptMessage, Message, NodeSpec
from flowengine.node import Node, node_type, option

if TYPE_CHECKING:
    from flowengine.context import NodeContext
    from nodes.mqtt.broker import Broker, Subscription

__all__ = ["DecodeError", "MqttIn", "MqttInConfig", "make_decoder"]

PayloadKind = Literal["auto", "string", "number", "boolean", "json"]


@dataclass(frozen=True, kw_only=True)
class MqttInConfig:
    topic: str = option("MQTT topic filter (+ one level, final # the rest)",
                        example="Devices/+/Sensors/TEMP/Value", min_length=1)
    broker: str = option("broker connection: main, local, or a name from the site file",
                         default="main", connection="mqtt")
    qos: Literal[0, 1, 2] = option("subscription QoS", default=0)
    payload: PayloadKind = option("how the payload is read: auto, string, number, "
                                  "boolean or json", default="auto")
    json_path: str | None = option("a value inside JSON: /a/0/b or a.b[0]", default=None,
                                   example="ENERGY.Power")
    regex: str | None = option("one capture group: extract it; none: true when it matches",
                               default=None, example='"apower":([^,]+),')
    wildcards: list[str] = option("names of the + (and final #) levels, in order",
                                  default=[], example=["device"])
    output: str = option("topic of the messages: {topic} is the MQTT topic, {name} a "
                         "wildcard", default="{topic}", example="{device}/temperature")
    on_empty: Literal["ignore", "invalid"] = option(
        "an empty payload: ignore it, or pass on invalid (None)", default="ignore")
    keep: Literal["latest", "every"] = option(
        "messages waiting for a busy node: keep the latest of each topic (telemetry), "
        "or every one in order (events; bounded, drops counted)", default="latest")
    queue_size: int = option(
        "keep: every: most messages waiting here for the next nodes; beyond it the "
        "oldest is dropped and counted", default=10000, minimum=1, maximum=1_000_000)


class DecodeError(ValueError):
    """A payload that does not decode as configured."""


_FAILING_TOPICS = 100  # topics remembered as not decoding (for logging the recovery once)
_FEED_BATCH = 64  # kept messages passed on per turn of the event loop (next queues: 256)
TOPICS_KEPT = 1024  # topics whose output topic and meta are remembered (then started anew)


_TRUE = frozenset({"true", "on", "1", "yes"})
_FALSE = frozenset({"false", "off", "0", "no"})


def _number(text: str) -> JsonValue:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise DecodeError(f"not a number: {text[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise DecodeError(f"not a finite number: {text[:40]!r}")
    return value


def _boolean(text: str) -> JsonValue:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise DecodeError(f"not a boolean: {text[:40]!r}")


def _json(text: str) -> JsonValue:
    try:
        value: JsonValue = load_json(text)
    except JsonTooDeep:
        raise DecodeError(f"JSON nested too deeply: {text[:40]!r}") from None
    except JsonTextError as exc:
        raise DecodeError(f"not JSON ({exc}): {text[:40]!r}") from None
    return value


def _auto(text: str) -> JsonValue:
    """JSON when it is sane JSON; otherwise the text as it is (`NaN` stays a text)."""
    try:
        value: JsonValue = load_json(text)
    except JsonTooDeep:
        raise DecodeError(f"JSON nested too deeply: {text[:40]!r}") from None
    except JsonTextError:
        return text
    return value


def parse_path(path: str) -> tuple[str | int, ...]:
    """'/a/0/b' (JSON pointer) or 'a.b[0]' -> keys and indexes."""
    if path.startswith("/"):
        keys: list[str | int] = []
        for raw in path[1:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            keys.append(int(part) if part.isdigit() else part)
        return tuple(keys)
    out: list[str | int] = []
    for match in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", path):
        out.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
    return tuple(out)


def _follow(value: JsonValue, keys: tuple[str | int, ...]) -> JsonValue:
    for key in keys:
        if isinstance(value, dict) and str(key) in value:
            value = value[str(key)]
        elif isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
            value = value[key]
        else:
            raise DecodeError(f"no {key!r} in the JSON")
    return value


def _typed(payload: str, value: JsonValue) -> JsonValue:
    """A JSON value found by json_path, checked against `payload` (number, boolean)."""
    if payload == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or value != value or value in (float("inf"), float("-inf")):
            raise DecodeError(f"not a number: {json.dumps(value)[:40]}")
    elif payload == "boolean" and not isinstance(value, bool):
        if value in (0, 1) and isinstance(value, int):
            return bool(value)
        raise DecodeError(f"not a boolean: {json.dumps(value)[:40]}")
    return value


_KINDS: dict[str, Callable[[str], JsonValue]] = {
    "auto": _auto, "string": str, "number": _number, "boolean": _boolean, "json": _json,
}


def make_decoder(payload: str, json_path: str | None = None,
                 regex: str | None = None) -> Callable[[bytes], JsonValue]:
    """bytes -> value, as configured; raises DecodeError (or re.error for a bad regex)."""
    kind = _KINDS[payload]
    keys = parse_path(json_path) if json_path else None
    pattern = re.compile(regex) if regex is not None else None
    if pattern is not None and pattern.groups > 1:
        raise re.error(f"has {pattern.groups} capture groups; use one, or none")

    def decode(raw: bytes) -> JsonValue:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("not UTF-8 text") from None
        try:
            value: JsonValue = text
            if keys is not None:
                value = _follow(_json(text), keys)
                if pattern is None:
                    return kind(value) if isinstance(value, str) \
                        and payload not in ("auto", "json") else _typed(payload, value)
                text = value if isinstance(value, str) else json.dumps(value)
            if pattern is not None:
                found = pattern.search(text)
                if pattern.groups == 0:
                    return found is not None
                if found is None:
                    raise DecodeError(f"no match for {pattern.pattern!r}")
                text = found.group(1)
            return kind(text)
        except RecursionError:  # json parses (and dumps) nested arrays by recursion
            raise DecodeError(f"JSON nested too deeply: {text[:40]!r}") from None

    return decode


def template_names(template: str) -> list[str]:
    """The {names} of a str.format template; raises ValueError for a broken one."""
    return [name for _, name, _, _ in Formatter().parse(template) if name]


@node_type("mqtt.in", config=MqttInConfig)
class MqttIn(Node[MqttInConfig]):
    """Subscribe to MQTT topics; decode payloads (number, boolean, JSON, regex) to values."""

    inputs = {}

    def __init__(self, config: MqttInConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        levels = config.topic.split("/")
        if any(("+" in p or "#" in p) and len(p) > 1 for p in levels) or \
                ("#" in levels and levels.index("#") != len(levels) - 1):
            raise ConfigError(f"'{config.topic}' is not a valid MQTT topic filter",
                              mark=self.mark_of("topic"),
                              hint="+ and # stand alone between slashes; # only at the end")
        wild = [i for i, p in enumerate(levels) if p in ("+", "#")]
        if len(config.wildcards) > len(wild):
            raise ConfigError(
                f"{len(config.wildcards)} wildcard names for {len(wild)} "
                f"wildcard level(s) in '{config.topic}'", mark=self.mark_of("wildcards"))
        self._named = [(name, index, levels[index] == "#")
                       for name, index in zip(config.wildcards, wild, strict=False)]
        try:
            self._decode = make_decoder(config.payload, config.json_path, config.regex)
        except re.error as exc:
            raise ConfigError(f"regex: {exc}", mark=self.mark_of("regex")) from None
        try:
            names = template_names(config.output)
        except ValueError as exc:
            raise ConfigError(f"output: {exc}", mark=self.mark_of("output")) from None
        unknown = sorted(set(names) - {"topic", *config.wildcards})
        if unknown:
            raise ConfigError(f"output uses unknown name(s) {', '.join(unknown)}",
                              mark=self.mark_of("output"),
                              hint="use {topic} or a name from wildcards")
        self._plain_output = config.output == "{topic}"
        self._keep = config.keep == "every"
        self._message: type[Message] = KeptMessage if self._keep else Message
        self._waiting: deque[Message] = deque()  # keep: every
        self._feeding = False
        self._overrun = False
        self.dropped = 0  # keep: every, messages dropped because `queue_size` were waiting
        self._failing: set[str] = set()  # topics whose last payload did not decode
        self._seen: tuple[dict[str, tuple[str, Mapping[str, JsonValue]]], ...] = ({}, {})
        """[retained] topic -> (output topic, meta), for at most TOPICS_KEPT topics each"""
        self.bad = 0
        self.received = 0
        self._broker: Broker | None = None
        self._sub: Subscription | None = None
        self._status_due = False

    @classmethod
    def output_topics(cls, config: MqttInConfig) -> frozenset[str] | None:
        if "{" not in config.output:
            return frozenset({config.output})
        if config.output == "{topic}" and "+" not in config.topic and "#" not in config.topic:
            return frozenset({config.topic})
        return None

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        broker: Broker = await ctx.connections.get("mqtt", self.config.broker)
        self._broker = broker
        self._unlisten = broker.on_change(lambda _b: self._show())
        self._sub = broker.subscribe(self.config.topic, self._on_payload, qos=self.config.qos)
        self._show()

    async def stop(self) -> None:
        self._waiting.clear()
        if self._sub is not None:
            self._sub.cancel()
            self._sub = None
        if self._broker is not None:
            self._unlisten()
            self._broker = None

    def _on_payload(self, topic: str, payload: bytes, retained: bool) -> None:
        ctx = self.ctx
        self.received += 1
        if payload:
            try:
                value = self._decode(payload)
            except DecodeError as exc:
                self._undecoded(topic, exc)
                return
            if self._failing and topic in self._failing:
                self._failing.discard(topic)
                ctx.log.info("payloads on %s decode again", topic)
        elif self.config.on_empty == "ignore":
            return
        else:
            value = None
        seen = self._seen[retained]
        known = seen.get(topic)
        if known is None:
            known = self._name(topic, retained)
            if len(seen) >= TOPICS_KEPT:
                seen.clear()
            seen[topic] = known
        out, meta = known
        clock = ctx.clock
        msg = self._message(out, value, clock.monotonic(), clock.wall(), meta)
        if self._keep:
            self._wait(msg)
        else:
            ctx.emit(msg)

    def _name(self, topic: str, retained: bool) -> tuple[str, Mapping[str, JsonValue]]:
        """The output topic and the meta of a message of `topic`; the same meta object
        for every message of the topic (made once: nodes read meta, never change it)."""
        meta: dict[str, JsonValue] = {"mqtt_topic": topic, "retained": retained}
        if self._named:
            levels = topic.split("/")
            for name, index, rest in self._named:
                meta[name] = "/".join(levels[index:]) if rest else levels[index]
        out = topic if self._plain_output else self.config.output.format(topic=topic, **{
            k: v for k, v in meta.items() if k in self.config.wildcards})
        return out, meta

    def _wait(self, msg: Message) -> None:
        """keep: every. The broker hands over everything it has read in one go (thousands
        of messages in a burst): they wait here, and go on in turns small enough for the
        next nodes' queues."""
        waiting = self._waiting
        if len(waiting) >= self.config.queue_size:
            waiting.popleft()
            self.dropped += 1
            if not self._overrun:
                self._overrun = True
                self.ctx.log.warning("%d messages waiting: dropping the oldest (the next "
                                     "nodes are slower than the messages come)",
                                     self.config.queue_size)
            self._show_soon()
        waiting.append(msg)
        if not self._feeding:
            self._feeding = True
            self.ctx.after(0, self._feed, name="feed")

    async def _feed(self) -> None:
        waiting, emit = self._waiting, self.ctx.emit
        try:
            while waiting:
                for _ in range(min(len(waiting), _FEED_BATCH)):
                    emit(waiting.popleft())
                await asyncio.sleep(0)  # a turn for the next nodes
        finally:
            self._feeding = False
        if self._overrun:
            self._overrun = False
            self.ctx.log.info("caught up; %d message(s) dropped so far", self.dropped)

    def _undecoded(self, topic: str, exc: DecodeError) -> None:
        self.bad += 1
        log = self.ctx.log
        if topic not in self._failing and len(self._failing) < _FAILING_TOPICS:
            self._failing.add(topic)
            log.warning("payload on %s not decoded: %s; counted until one decodes again",
                        topic, exc)
        log.debug("payload on %s dropped: %s", topic, exc)
        self._show_soon()

    def _show_soon(self) -> None:
        """Status now, then at most once a second while bad payloads keep coming."""
        if not self._status_due:
            self._show()
            self._status_due = True
            self.ctx.after(1000, self._show_due, name="status")

    def _show_due(self) -> None:
        self._status_due = False
        self._show()

    def _show(self) -> None:
        broker = self._broker
        if broker is None:
            return
        status = self.ctx.status
        bad = f"; {self.bad} payload(s) not decoded" if self.bad else ""
        if self.dropped:
            bad += f"; {self.dropped} dropped (more than {self.config.queue_size} waiting)"
        if not broker.connected:
            status.warning(broker.describe() + bad)
        elif bad:
            status.warning(f"{self.config.topic}{bad}")
        else:
            status.ok(self.config.topic)
