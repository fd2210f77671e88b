"""filter: pass on only values that changed enough, not too often, and within range.

Every topic is filtered on its own, against the last value passed on for it:

    - id: quiet
      type: filter
      deadband: 50            # watts
      min_interval_ms: 1000
      minimum: -20000
      maximum: 20000
      to: {out: [publish], rejected: [debug]}

- `deadband` / `deadband_percent`: a number passes when it differs from the last one
  passed by at least this much (absolute / percent of the last one); with both set,
  by at least both. An unchanged value never passes when either is set, nor with
  `only_on_change: true` (which also works for texts and booleans).
- `min_interval_ms`: at most one value per topic in this time. A value that comes too
  soon is held back, and the latest one held goes out when the time is up, so the
  last value of a burst is never lost; a held value that a newer one replaces goes
  to the `rejected` port.
- `minimum` / `maximum`: a number outside the range is sent to `rejected` (`drop`),
  passed on as None (`invalid`) or as the nearest limit (`clamp`).

Invalid (None) is never filtered away: the first None after a valid value always
passes at once (and only once). The first valid value after None passes too. What
does not pass goes out unchanged on the `rejected` port.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from flowengine.context import Timer
from flowengine.errors import ConfigError
from flowengine.model import JsonValue, Message, NodeSpec
from flowengine.node import Node, node_type, option

__all__ = ["Filter", "FilterConfig"]

REJECTED = "rejected"


@dataclass(frozen=True, kw_only=True)
class FilterConfig:
    deadband: float | None = option(
        "pass a number only when it changed at least this much since the last one passed",
        default=None, minimum=0, example=50)
    deadband_percent: float | None = option(
        "pass a number only when it changed at least this percentage of the last one passed",
        default=None, minimum=0, example=5)
    only_on_change: bool = option("pass a value only when it differs from the last one passed",
                                  default=False)
    min_interval_ms: float | None = option(
        "at most one value per topic in this time (the latest held back goes out after it)",
        default=None, minimum=1, example=1000)
    minimum: float | None = option("lowest valid number", default=None, example=0)
    maximum: float | None = option("highest valid number", default=None, example=100)
    out_of_range: Literal["drop", "invalid", "clamp"] = option(
        "a number outside minimum..maximum: drop = send it to 'rejected', "
        "invalid = pass on None, clamp = pass on the nearest limit", default="drop")


_NUMBER = (int, float)  # a tuple: `int | float` would be built again on every call


def _is_number(value: JsonValue) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


@node_type("filter", config=FilterConfig)
class Filter(Node[FilterConfig]):
    """Pass on only values that changed enough, not too often, and within range."""

    outputs = ("out", REJECTED)

    def __init__(self, config: FilterConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        low, high = config.minimum, config.maximum
        if low is not None and high is not None and low > high:
            raise ConfigError(f"minimum {low:g} is above maximum {high:g}",
                              mark=self.mark_of("minimum"), hint="swap them")
        self._ranged = low is not None or high is not None
        self._compares = (config.only_on_change or config.deadband is not None
                          or config.deadband_percent is not None)
        self._interval = None if config.min_interval_ms is None else config.min_interval_ms / 1000
        self._last: dict[str, JsonValue] = {}  # last value passed, per topic
        self._passed_at: dict[str, float] = {}
        self._held: dict[str, Message] = {}
        self._release_timers: dict[str, Timer] = {}
        self._outside: set[str] = set()  # topics whose last number was out of range

    def receive(self, port: str, msg: Message) -> bool:
        topic, value = msg.topic, msg.value
        if self._ranged and _is_number(value):
            checked = self._in_range(msg)
            if checked is None:
                return True
            msg, value = checked, checked.value
        last = self._last
        if value is None or topic not in last or last[topic] is None:
            if value is None and topic in last and last[topic] is None:
                self._reject(msg)  # invalid already, passed on once
            else:
                self._pass(msg)  # a change to or from invalid, or the first value
            return True
        if self._compares and not self._changed_enough(value, last[topic]):
            self._reject(msg)
            return True
        if self._interval is not None:
            wait = self._passed_at[topic] + self._interval - self.ctx.now()
            if wait > 0:
                self._hold(msg, wait)
                return True
        self._pass(msg)
        return True

    def _in_range(self, msg: Message) -> Message | None:
        """The message to go on with (clamped or invalid), or None when it was dropped."""
        value, cfg = msg.value, self.config
        low = cfg.minimum if cfg.minimum is not None and value < cfg.minimum else None
        high = cfg.maximum if cfg.maximum is not None and value > cfg.maximum else None
        if low is None and high is None:
            self._outside.discard(msg.topic)
            return msg
        if msg.topic not in self._outside:
            self._outside.add(msg.topic)
            self.ctx.log.info("'%s' = %s is outside %s..%s (%s)", msg.topic, value,
                              cfg.minimum, cfg.maximum, cfg.out_of_range)
        if cfg.out_of_range == "drop":
            self._reject(msg)
            return None
        if cfg.out_of_range == "invalid":
            return msg.with_value(None)
        return msg.with_value(low if low is not None else high)

    def _changed_enough(self, value: JsonValue, last: JsonValue) -> bool:
        if value == last:
            return False
        if not (_is_number(value) and _is_number(last)):
            return True
        delta, cfg = abs(value - last), self.config
        if cfg.deadband is not None and delta < cfg.deadband:
            return False
        return cfg.deadband_percent is None or delta >= abs(last) * cfg.deadband_percent / 100

    def _pass(self, msg: Message) -> None:
        topic = msg.topic
        if self._interval is not None:  # held messages and pass times: min_interval_ms only
            held = self._held.pop(topic, None)
            if held is not None:
                self._release_timers.pop(topic).cancel()
                self._reject(held)
            self._passed_at[topic] = self.ctx.now()
        self._last[topic] = msg.value
        self.ctx.emit(msg)

    def _hold(self, msg: Message, wait: float) -> None:
        replaced = self._held.get(msg.topic)
        self._held[msg.topic] = msg
        if replaced is not None:
            self._reject(replaced)  # its release timer is running already
        else:
            self._release_timers[msg.topic] = self.ctx.after(
                wait * 1000, partial(self._release, msg.topic), name="interval")

    def _release(self, topic: str) -> None:
        del self._release_timers[topic]
        msg = self._held.pop(topic)
        self._pass(msg)

    def _reject(self, msg: Message) -> None:
        self.ctx.emit(msg, port=REJECTED)
