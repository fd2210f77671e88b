"""log: write each message to the log.

A sink for looking into a flow; each line starts with `<flow>/<node>:` like every
node's log lines:

    - id: show
      type: log
      level: INFO
      format: "{topic} = {value}"
      min_interval_ms: 10000

`format` may use the fields `{topic}`, `{value}` and `{node}`, with a format
spec (`{value:.1f}`). A value the spec does not fit (None, a text) is written as
`<topic> = <value>`; None means invalid. With `min_interval_ms`, at
most one line per topic is written in that time, and the next line says how many
were skipped. Nothing is formatted while the level is not enabled.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

from flowengine.context import NodeContext
from flowengine.errors import ConfigError
from flowengine.log import LEVELS
from flowengine.model import Message, NodeSpec
from flowengine.node import Node, node_type, option

__all__ = ["Log", "LogConfig"]

FIELDS = ("topic", "value", "node")


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    level: Literal["TRACE", "DEBUG", "APP_DEBUG", "INFO", "WARNING", "ERROR"] = option(
        "log level of the lines", default="INFO")
    format: str = option("the line; fields {topic}, {value} and {node}",
                         default="{topic} = {value}", example="{topic} is {value:.1f} W")
    min_interval_ms: float | None = option("at most one line per topic in this time",
                                           default=None, minimum=1, example=10000)


def check_format(text: str) -> None:
    """ValueError naming the problem if `text` uses more than the plain fields."""
    for _, field, spec, _ in string.Formatter().parse(text):
        if field is None:
            continue
        if field not in FIELDS:
            raise ValueError(f"unknown field '{{{field}}}' in format")
        if spec and "{" in spec:
            raise ValueError(f"nested fields are not allowed in format ('{{{field}:{spec}}}')")


@node_type("log", config=LogConfig)
class Log(Node[LogConfig]):
    """Write each message to the log."""

    inputs = {"in": "event"}
    outputs = ()

    def __init__(self, config: LogConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        try:
            check_format(config.format)
        except ValueError as exc:
            raise ConfigError(str(exc), mark=self.mark_of("format"),
                              hint="fields: {topic}, {value}, {node}") from None
        self._level = LEVELS[config.level]
        self._interval = None if config.min_interval_ms is None else config.min_interval_ms / 1000
        self._written_at: dict[str, float] = {}
        self._skipped: dict[str, int] = {}
        self._format_failed = False

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        self._node_id = ctx.node_id

    def receive(self, port: str, msg: Message) -> bool:
        log = self.ctx.log
        if not log.isEnabledFor(self._level):
            return True
        topic = msg.topic
        if self._interval is not None:
            now = self.ctx.now()
            last = self._written_at.get(topic)
            if last is not None and now - last < self._interval:
                self._skipped[topic] = self._skipped.get(topic, 0) + 1
                return True
            self._written_at[topic] = now
        try:
            text = self.config.format.format(topic=topic, value=msg.value, node=self._node_id)
        except (ValueError, TypeError) as exc:  # a format spec that does not fit the value
            if msg.value is not None and not self._format_failed:
                self._format_failed = True
                self.ctx.status.warning(f"format: {exc}")
            text = f"{topic} = {msg.value!r}"
        skipped = self._skipped.pop(topic, 0)
        if skipped:
            text += f" ({skipped} more skipped)"
        log.log(self._level, "%s", text)
        return True
