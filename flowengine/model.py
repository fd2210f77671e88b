"""Plain data of the engine: messages, marks, and the specs a flow file loads into.

Everything here is immutable and does no I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

__all__ = [
    "DEFAULT_PORT",
    "FlowSpec",
    "JsonValue",
    "KeptMessage",
    "Message",
    "NodeSpec",
    "Secret",
    "SourceMark",
    "VarSpec",
    "Wire",
    "finite_number",
]

JsonValue: TypeAlias = Any
"""A value that came from JSON/YAML or goes to it: None, bool, int, float, str, list, dict."""


DEFAULT_PORT = "out"
"""The output port a plain `to: [ids]` list wires."""

INPUT_PORT = "in"
"""The input port a `to:` target without `:port` reaches."""


@dataclass(frozen=True, slots=True)
class SourceMark:
    """Where something was written: file, 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Message:
    """One value travelling along a wire.

    `value` None means invalid / unknown, as on Venus OS; it is never replaced by 0.
    `ts` is the monotonic time of the reading, `wall` the wall-clock time (epoch seconds).
    `keep` is True for a `KeptMessage` (an event rather than a reading).
    """

    topic: str
    value: JsonValue
    ts: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)
    meta: Mapping[str, JsonValue] | None = None
    keep: ClassVar[bool] = False
    """Every input queue keeps this message, in order, instead of replacing it by a newer
    message of its topic (see `Mailbox`). A class attribute, not a field: a reading costs
    nothing extra to make."""

    def with_value(self, value: JsonValue, topic: str | None = None) -> Message:
        """A new message of the same kind (a KeptMessage stays kept), with the same times
        and meta, another value (and topic).

        It runs on every hop of every flow: filled in as a writable `_Blank` and turned
        into this class by assigning `__class__` (the slot layout is the same), about 2.5
        times as fast as the frozen __init__; the result is frozen like any other
        (tests/unit/test_direct_delivery.py)."""
        made = _Blank()
        made.topic = self.topic if topic is None else topic
        made.value = value
        made.ts = self.ts
        made.wall = self.wall
        made.meta = self.meta
        made.__class__ = self.__class__  # type: ignore[assignment]
        return made  # type: ignore[return-value]

    def with_meta(self, **meta: JsonValue) -> Message:
        merged = dict(self.meta or {})
        merged.update(meta)
        return Message(self.topic, self.value, self.ts, self.wall, merged)


@dataclass(frozen=True, slots=True)
class KeptMessage(Message):
    """An event (a button press, a command, a counted pulse): every input queue keeps it,
    in order, also on telemetry ports; messages made from it by `with_value` and
    `with_meta` are kept too."""

    keep: ClassVar[bool] = True

    def with_meta(self, **meta: JsonValue) -> KeptMessage:
        merged = dict(self.meta or {})
        merged.update(meta)
        return KeptMessage(self.topic, self.value, self.ts, self.wall, merged)


def _fast_init() -> Any:
    """An __init__ for Message that fills the slots through their descriptors.

    The one dataclass generates goes through object.__setattr__ for each field (what a
    frozen class must do) and costs about twice as much; messages are made on every hop
    of every flow. Same signature, defaults and immutability (assignment after __init__
    still raises FrozenInstanceError).
    """
    slots = Message.__dict__
    set_topic, set_value, set_ts, set_wall, set_meta = (
        slots[name].__set__ for name in ("topic", "value", "ts", "wall", "meta"))
    monotonic, wall_clock = time.monotonic, time.time

    def __init__(self: Message, topic: str, value: JsonValue, ts: float | None = None,
                 wall: float | None = None, meta: Mapping[str, JsonValue] | None = None
                 ) -> None:
        set_topic(self, topic)
        set_value(self, value)
        set_ts(self, monotonic() if ts is None else ts)
        set_wall(self, wall_clock() if wall is None else wall)
        set_meta(self, meta)

    return __init__


Message.__init__ = KeptMessage.__init__ = _fast_init()  # type: ignore[method-assign]


class _Blank:
    """Message's slots, writable: `Message.with_value` fills one and makes it a Message."""

    __slots__ = ("meta", "topic", "ts", "value", "wall")  # Python sorts slots: same layout
    topic: str
    value: JsonValue
    ts: float
    wall: float
    meta: Mapping[str, JsonValue] | None


class Secret:
    """A password or token from a secrets file or the environment.

    Its repr and str are '***' so that it never reaches a log line or an error
    message by accident; `reveal()` gives the real text to the one adapter that
    needs it.
    """

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Wire:
    """One connection: output port of `source` to input port of `target`."""

    source: str
    port: str
    target: str
    target_port: str = INPUT_PORT
    mark: SourceMark | None = None


@dataclass(frozen=True, slots=True)
class VarSpec:
    """A flow variable: the typed replacement of an es-ESS config.ini key."""

    name: str
    type: str
    description: str = ""
    default: JsonValue = None
    has_default: bool = False
    example: JsonValue = None
    mark: SourceMark | None = None
    # limits a value must keep (JSON Schema keywords: enum, minimum, maximum)
    limits: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of a flow after loading: its typed config is built by the registry."""

    id: str
    type: str
    config: Mapping[str, JsonValue]
    mark: SourceMark
    wires: tuple[Wire, ...] = ()
    # where each config key was written, for error messages from nodes
    key_marks: Mapping[tuple[str | int, ...], SourceMark] = field(default_factory=dict)
    # config key -> its text in the flow file, for values made from vars ("${paths}")
    var_uses: Mapping[tuple[str | int, ...], str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """A flow instance ready to validate or start: vars already substituted."""

    id: str
    description: str
    nodes: tuple[NodeSpec, ...]
    file: str
    mark: SourceMark
    vars: Mapping[str, JsonValue] = field(default_factory=dict)
    source_id: str = ""  # the flow file's own id; differs from `id` for instances
    # var -> where its value was written: the site file, or the var's default or example
    var_marks: Mapping[str, SourceMark] = field(default_factory=dict)

    def node(self, node_id: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.id == node_id:
                return spec
        raise KeyError(node_id)


def finite_number(value: object) -> float | None:
    """A message value as a reading: a float, or None for anything that is not a number
    (None, a bool, a text), NaN, infinite or beyond a double."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
