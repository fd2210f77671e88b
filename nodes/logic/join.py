"""join: combine the latest value of several topics into one message.

The emitted value is a mapping topic -> latest value, in the order of `topics`, on
the topic `output`; a `formula` wired after it can use the topics as names:

    - id: battery
      type: join
      topics: [soc, power]
      max_age_ms: 5000
      to: limit

By default a message goes out on every input; with `every_ms` on a timer instead.
Until every topic has had a value, `missing` decides: `wait` emits nothing,
`invalid` emits None for the missing topics, `drop` leaves them out.

`max_age_ms` is how a lost input becomes invalid downstream: a value older than
this (by the time of its reading) is passed on as None (invalid), whatever `missing`
says, and the status turns to a warning. Without `every_ms` the node also emits by
itself when a value goes stale, so a silent source cannot freeze its last value; a
hardware node downstream then sees None and applies its safe state. Messages with
other topics are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flowengine.context import NodeContext, Timer
from flowengine.model import JsonValue, Message, NodeSpec
from flowengine.node import Node, node_type, option

__all__ = ["Join", "JoinConfig"]

_SLACK_S = 1e-6  # float rounding between a timer's deadline and an age


@dataclass(frozen=True, kw_only=True)
class JoinConfig:
    topics: list[str] = option("the topics to combine (the keys of the emitted mapping)",
                               example=["soc", "power"], min_items=1)
    output: str = option("topic of the combined message", default="joined")
    every_ms: float | None = option("emit on this interval instead of on each input",
                                    default=None, minimum=10, example=1000)
    missing: Literal["wait", "invalid", "drop"] = option(
        "before a topic has a value: wait = emit nothing, invalid = emit None for it, "
        "drop = leave it out", default="wait")
    max_age_ms: float | None = option(
        "a value older than this is passed on as invalid (None)", default=None,
        minimum=1, example=5000)


@node_type("join", config=JoinConfig)
class Join(Node[JoinConfig]):
    """Combine the latest value of several topics into one message."""

    def __init__(self, config: JoinConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        self._topics = tuple(dict.fromkeys(config.topics))
        self._wanted = frozenset(self._topics)
        self._max_age = None if config.max_age_ms is None else config.max_age_ms / 1000
        self._values: dict[str, JsonValue] = {}
        self._times: dict[str, float] = {}
        self._stale: frozenset[str] = frozenset()
        self._expiry: Timer | None = None

    @classmethod
    def output_topics(cls, config: JoinConfig) -> frozenset[str]:
        return frozenset(config.topics) | {config.output}

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        self._show_status()
        if self.config.every_ms is not None:
            ctx.every(self.config.every_ms, self._emit, name="every")

    def receive(self, port: str, msg: Message) -> bool:
        topic = msg.topic
        if topic not in self._wanted:
            self.ctx.log.trace("ignored topic '%s'", topic)
            return True
        first = topic not in self._values
        self._values[topic] = msg.value
        self._times[topic] = msg.ts
        if first:
            self._show_status()
        if self.config.every_ms is None:
            self._emit()
            if self._max_age is not None and (self._expiry is None or not self._expiry.active):
                self._arm_expiry()
        return True

    def _emit(self) -> None:
        values, missing = self._values, self.config.missing
        if missing == "wait" and len(values) < len(self._topics):
            return
        now, times, max_age = self.ctx.now(), self._times, self._max_age
        out: dict[str, JsonValue] = {}
        stale: list[str] = []
        for topic in self._topics:
            if topic in values:
                value = values[topic]
                if max_age is not None and value is not None \
                        and now - times[topic] >= max_age - _SLACK_S:
                    value = None
                    stale.append(topic)
                out[topic] = value
            elif missing == "invalid":
                out[topic] = None
        if stale or self._stale:
            self._note_stale(frozenset(stale))
        if out:
            self.ctx.emit(self.ctx.message(self.config.output, out))

    def _arm_expiry(self) -> None:
        """Wake when the oldest valid, fresh value goes stale (emit-on-input mode)."""
        assert self._max_age is not None
        fresh = [self._times[t] for t, v in self._values.items()
                 if v is not None and t not in self._stale]
        if fresh:
            due = min(fresh) + self._max_age - self.ctx.now()
            self._expiry = self.ctx.after(max(due, 0.0) * 1000, self._expire, name="max-age")

    def _expire(self) -> None:
        self._expiry = None
        assert self._max_age is not None
        now = self.ctx.now()
        went_stale = any(v is not None and t not in self._stale
                         and now - self._times[t] >= self._max_age - _SLACK_S
                         for t, v in self._values.items())
        if went_stale:
            self._emit()
        self._arm_expiry()

    def _note_stale(self, stale: frozenset[str]) -> None:
        if stale == self._stale:
            return
        log = self.ctx.log
        for topic in sorted(stale - self._stale):
            log.warning("'%s' is older than %g ms; passing it on as invalid",
                        topic, self.config.max_age_ms)
        for topic in sorted(self._stale - stale):
            log.info("'%s' is fresh again", topic)
        self._stale = stale
        self._show_status()

    def _show_status(self) -> None:
        status = self.ctx.status
        waiting = [t for t in self._topics if t not in self._values]
        if self._stale:
            status.warning("stale: " + ", ".join(sorted(self._stale)))
        elif waiting:
            status.warning("waiting for " + ", ".join(waiting))
        else:
            status.ok(f"{len(self._topics)} topics")
