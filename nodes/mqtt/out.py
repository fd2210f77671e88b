"""mqtt.out: publish each message's value to a broker.

    - id: vrm
      type: mqtt.out
      broker: local
      topic: "N/${portal_id}/system/0/Dc/Battery/TimeToGo"
      format: venus_json

- `topic`: a template. `{topic}` is the message's topic; other `{names}` come from the
  message's meta (e.g. wildcards named by an `mqtt.in`). A message that lacks a name
  is dropped and counted. A topic ending in `*` is the MqttExporter rule: the `*` is
  replaced by the message's D-Bus path (meta `path`, else its topic) without its
  leading `/`, so `es-ESS/Grid/*` with `/Ac/L1/Power` gives `es-ESS/Grid/Ac/L1/Power`
  (the original es-ESS made `es-ESS/Grid//Ac/L1/Power`).
- `format`: `plain` (texts as they are, everything else as JSON: `21.5`, `true`,
  `null` for invalid), `venus_json` (`{"value": 21.5}`, as Venus OS publishes), or
  `template` (`template:` with `{value}`, `{topic}` and meta names).
- `retain`, `qos`: as MQTT defines them.
- `only_on_change`: publish a topic only when its payload differs from the last one.
- `min_interval_ms`: at most one message per topic in this time; the latest one held
  back goes out when the time is up (the last value of a burst is never lost).

While the broker is away, the connection keeps the latest payload of each topic and
sends it after reconnecting; events (from an `mqtt.in` with `keep: every`) wait there
one by one, in order, within the connection's `outbox_size`. The status shows what is
queued and what was dropped. A message held back by `min_interval_ms` is a value: the
latest one of its topic goes out.

- `safe_payload`: for a topic that switches something (a heater's allowance, a relay):
  published to the (fixed) topic with this node's `qos` and `retain` when the flow
  stops, on SIGTERM and when the node fails, and by the guardian when the runtime is
  killed, hangs or lost power (it is registered there before the first publish). A
  device listening there should also act on the broker's `Offline` last will.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from flowengine.errors import ConfigError
from flowengine.model import JsonValue, Message, NodeSpec
from flowengine.node import Node, node_type, option
from nodes.mqtt.in_ import template_names

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowengine.context import NodeContext, Timer
    from nodes.mqtt.broker import Broker

__all__ = ["MqttOut", "MqttOutConfig", "encode_value", "exporter_topic"]


@dataclass(frozen=True, kw_only=True)
class MqttOutConfig:
    topic: str = option("topic template: {topic}, meta {names}; a final * is the D-Bus path",
                        default="{topic}", example="es-ESS/Grid/*", min_length=1)
    broker: str = option("broker connection: main, local, or a name from the site file",
                         default="main", connection="mqtt")
    format: Literal["plain", "venus_json", "template"] = option(
        "plain value, {\"value\": ...} as Venus OS, or `template`", default="plain")
    template: str | None = option("payload template with {value}, {topic}, meta {names}",
                                  default=None, example='{{"power": {value}}}')
    retain: bool = option("ask the broker to keep the last message of each topic",
                          default=False)
    qos: Literal[0, 1, 2] = option("MQTT quality of service", default=0)
    only_on_change: bool = option("publish a topic only when its payload changed",
                                  default=False)
    min_interval_ms: float | None = option(
        "at most one message per topic in this time (the latest held back goes out after)",
        default=None, minimum=1, example=1000)
    safe_payload: str | None = option(
        "published on stop, failure and by the guardian if the runtime dies (a fixed "
        "topic only)", default=None, example="0")


def encode_value(value: JsonValue) -> str:
    """The plain payload: texts as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    kind = type(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)  # what json.dumps writes, without its machinery
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def exporter_topic(prefix: str, msg: Message) -> str:
    """MqttExporter rule: prefix (the topic without its final *) + path without its /."""
    path = msg.meta.get("path") if msg.meta else None
    if not isinstance(path, str):
        path = msg.topic
    return prefix + path.lstrip("/")


class _Missing(KeyError):
    pass


@node_type("mqtt.out", config=MqttOutConfig)
class MqttOut(Node[MqttOutConfig]):
    """Publish values to MQTT: topic templates, plain/Venus JSON/template payloads."""

    def __init__(self, config: MqttOutConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        topic = config.topic
        self._star = topic.endswith("*")
        self._prefix = topic[:-1] if self._star else topic
        for key, text in (("topic", self._prefix), ("template", config.template or "")):
            try:
                template_names(text)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}", mark=self.mark_of(key)) from None
        if "+" in self._prefix or "#" in self._prefix or "*" in self._prefix:
            raise ConfigError(f"'{topic}' cannot be published to",
                              mark=self.mark_of("topic"),
                              hint="+ and # are for subscriptions; * only at the very end")
        if (config.format == "template") != (config.template is not None):
            raise ConfigError("format: template goes with a `template:` and only with it",
                              mark=self.mark_of("template" if config.template else "format"))
        self._fixed = "{" not in self._prefix and not self._star
        if config.safe_payload is not None and not self._fixed:
            raise ConfigError("safe_payload needs a fixed topic", mark=self.mark_of("topic"),
                              hint="write the topic out in full (no {names}, no *): the "
                                   "safe payload goes to that one topic")
        self._guarded = False
        self._plain_topic = self._prefix == "{topic}"
        self._encode: Callable[[Message], str] = {
            "plain": lambda m: encode_value(m.value),
            "venus_json": lambda m: json.dumps({"value": m.value}, ensure_ascii=False),
            "template": self._from_template,
        }[config.format]
        self._interval = None if config.min_interval_ms is None else config.min_interval_ms / 1000
        self._last: dict[str, str] = {}
        self._sent_at: dict[str, float] = {}
        self._held: dict[str, tuple[str, Timer]] = {}
        self.skipped = 0  # messages whose topic or payload could not be filled in
        self._broker: Broker | None = None

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        broker: Broker = await ctx.connections.get("mqtt", self.config.broker)
        self._broker = broker
        self._unlisten = broker.on_change(lambda _b: self._show())
        self._show()

    async def stop(self) -> None:
        if self._broker is not None:
            self._unlisten()
            self._broker = None

    def has_safe_state(self) -> bool:
        return self.config.safe_payload is not None

    async def safe_state(self) -> None:
        """Publish the safe payload; raise if the broker cannot take it now (the guardian,
        which still has it, then publishes it when the runtime ends)."""
        payload, broker = self.config.safe_payload, self._broker
        if payload is None or broker is None:
            return
        for held in self._held.values():
            held[1].cancel()
        self._held.clear()
        if not broker.connected:
            raise RuntimeError(f"not connected to {broker.address}")
        broker.publish(self._prefix, payload, qos=self.config.qos, retain=self.config.retain)
        self._last[self._prefix] = payload

    async def _guard(self, broker: Broker) -> None:
        """Register the safe publish with the guardian (once, before the first publish)."""
        cfg = self.config
        assert cfg.safe_payload is not None
        action = broker.safe_publish_action(self._prefix, cfg.safe_payload, qos=cfg.qos,
                                            retain=cfg.retain)
        self._guarded = await self.ctx.register_safe_action(action)

    def receive(self, port: str, msg: Message) -> bool:
        if self.config.safe_payload is not None and not self._guarded \
                and self._broker is not None:
            return False  # on_message registers the safe publish first (that waits)
        self._publish(msg)
        return True

    async def on_message(self, port: str, msg: Message) -> None:
        if self.config.safe_payload is not None and not self._guarded \
                and self._broker is not None:
            await self._guard(self._broker)
        self._publish(msg)

    def _publish(self, msg: Message) -> None:
        try:
            topic = self._topic(msg)
            payload = self._encode(msg)
        except (KeyError, IndexError, ValueError) as exc:
            self.skipped += 1
            self.ctx.log.debug("message on %s not published: missing %s", msg.topic, exc)
            self._show()
            return
        if self.config.only_on_change and self._last.get(topic) == payload:
            return
        if self._interval is not None:
            wait = self._sent_at.get(topic, -1e18) + self._interval - self.ctx.now()
            if wait > 0:
                held = self._held.get(topic)
                if held is None:
                    timer = self.ctx.after(wait * 1000, lambda: self._release(topic),
                                           name="hold")
                    self._held[topic] = (payload, timer)
                else:
                    self._held[topic] = (payload, held[1])
                return
        self._send(topic, payload, keep=msg.keep)

    def _release(self, topic: str) -> None:
        held = self._held.pop(topic, None)
        if held is not None and not (self.config.only_on_change
                                     and self._last.get(topic) == held[0]):
            self._send(topic, held[0])

    def _send(self, topic: str, payload: str, *, keep: bool = False) -> None:
        """Publish; an event (`keep`) waits in line while the broker is away, a value
        waits as the latest of its topic."""
        broker = self._broker
        if broker is None:
            return
        was_connected = broker.connected
        broker.publish(topic, payload, qos=self.config.qos, retain=self.config.retain,
                       keep=keep)
        self._last[topic] = payload
        if self._interval is not None:
            self._sent_at[topic] = self.ctx.now()
        if not was_connected:
            self._show()

    def _topic(self, msg: Message) -> str:
        if self._plain_topic:
            return msg.topic
        prefix = self._prefix if self._fixed else self._fill(self._prefix, msg)
        return exporter_topic(prefix, msg) if self._star else prefix

    def _fill(self, template: str, msg: Message, **extra: JsonValue) -> str:
        fields = dict(msg.meta) if msg.meta else {}
        fields["topic"] = msg.topic
        fields.update(extra)
        return template.format_map(fields)

    def _from_template(self, msg: Message) -> str:
        assert self.config.template is not None
        return self._fill(self.config.template, msg, value=encode_value(msg.value))

    def _show(self) -> None:
        broker = self._broker
        if broker is None:
            return
        skipped = f"; {self.skipped} message(s) not published" if self.skipped else ""
        if not broker.connected or skipped or broker.dropped:
            self.ctx.status.warning(broker.describe() + skipped)
        else:
            self.ctx.status.ok(broker.describe())
