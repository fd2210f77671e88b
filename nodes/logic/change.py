"""change: rename the topic, and map, invert, scale, offset or round the value.

The steps run in this order, each only when configured:

    - id: to-kw
      type: change
      topic: "{topic}_kw"      # {topic} stands for the old topic
      scale: 0.001
      decimals: 2

1. `map`: the value, written as text, is looked up (booleans as `true`/`false`,
   whole floats without `.0`); a value the map lacks is kept, made invalid (None) or
   dropped, as `unmapped` says.
2. `invert`: boolean not; 0 and 1 become 1 and 0, true and false become false and true.
3. `scale` and `offset`: value * scale + offset.
4. `decimals`: round a number.

Invalid (None) stays invalid and is never turned into 0: only the topic changes. A
value that cannot be inverted or scaled (a text, say) is passed on as None, and the
status turns to a warning until a value works again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flowengine.errors import shown
from flowengine.model import JsonValue, Message, NodeSpec
from flowengine.node import Node, node_type, option
from nodes.logic.bounded import MAX_NDIGITS

__all__ = ["Change", "ChangeConfig"]


@dataclass(frozen=True, kw_only=True)
class ChangeConfig:
    topic: str | None = option("new topic; {topic} stands for the old one", default=None,
                               example="grid_{topic}")
    map: dict[str, JsonValue] | None = option("replace values: value (as text) -> new value",
                                              default=None, example={"0": "off", "1": "on"})
    unmapped: Literal["keep", "invalid", "drop"] = option(
        "a value the map lacks: keep it, pass on None (invalid), or drop the message",
        default="keep")
    invert: bool = option("boolean not (0 and 1 become 1 and 0)", default=False)
    scale: float = option("multiply the value by this", default=1.0, example=0.001)
    offset: float = option("then add this", default=0.0, example=-273.15)
    decimals: int | None = option("round numbers to this many decimals", default=None,
                                  example=1, minimum=-MAX_NDIGITS, maximum=MAX_NDIGITS)


class _Unusable(ValueError):
    """The value cannot go through a step (inverting or scaling a text)."""


def map_key(value: JsonValue) -> str:
    """How a value (or a key of `map`) is written for the lookup."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_NUMBER = (int, float)  # a tuple: `int | float` would be built again on every call


def _is_number(value: JsonValue) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


@node_type("change", config=ChangeConfig)
class Change(Node[ChangeConfig]):
    """Rename the topic, scale, offset, round or map the value."""

    def __init__(self, config: ChangeConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        self._map = None if config.map is None else \
            {map_key(k): v for k, v in config.map.items()}
        self._arithmetic = config.scale != 1.0 or config.offset != 0.0
        self._only_arithmetic = self._arithmetic and not config.invert \
            and config.decimals is None
        self._templated = config.topic is not None and "{topic}" in config.topic
        self._problem = ""

    @classmethod
    def output_topics(cls, config: ChangeConfig) -> frozenset[str] | None:
        topic = config.topic
        return None if topic is None or "{topic}" in topic else frozenset({topic})

    def receive(self, port: str, msg: Message) -> bool:
        cfg = self.config
        topic = msg.topic if cfg.topic is None else cfg.topic
        if self._templated:
            topic = topic.replace("{topic}", msg.topic)
        value = msg.value
        if value is not None:
            if self._map is not None:
                key = map_key(value)
                if key in self._map:
                    value = self._map[key]
                elif cfg.unmapped == "drop":
                    self.ctx.log.trace("dropped unmapped value %r", value)
                    return True
                elif cfg.unmapped == "invalid":
                    value = None
            if self._only_arithmetic and value.__class__ is float and not self._problem:
                value = value * cfg.scale + cfg.offset  # what _convert does to it, inline
            else:
                try:
                    value = self._convert(value)
                except _Unusable as exc:
                    self._warn(str(exc))
                    value = None
                else:
                    if self._problem:
                        self._recover()
        self.ctx.emit(msg.with_value(value, topic))
        return True

    def _convert(self, value: JsonValue) -> JsonValue:
        cfg = self.config
        if value is None:
            return None
        number = isinstance(value, _NUMBER) and not isinstance(value, bool)
        if cfg.invert:
            if isinstance(value, bool):
                value = not value
            elif number:
                value = 0 if value else 1
            else:
                raise _Unusable(f"cannot invert {shown(value)}")
            number = not isinstance(value, bool)
        if self._arithmetic:
            if not number:
                raise _Unusable(f"cannot scale {shown(value)}")
            try:
                value = value * cfg.scale + cfg.offset
            except OverflowError:  # an integer beyond a double (JSON allows any)
                raise _Unusable(f"cannot scale {shown(value)}: too large") from None
        decimals = cfg.decimals
        if decimals is not None and number:
            value = round(value, decimals) if decimals > 0 else int(round(value, decimals))
        return value

    def _warn(self, problem: str) -> None:
        if not self._problem:
            self.ctx.log.warning("%s; passing on None (invalid)", problem)
        self._problem = problem
        self.ctx.status.warning(problem[:120])

    def _recover(self) -> None:
        self.ctx.log.info("values convert again")
        self._problem = ""
        self.ctx.status.ok()
