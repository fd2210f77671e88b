"""The exception tree of the flow engine.

::

    FlowEngineError
    ├── ConfigError        found before anything starts; carries SourceMark, flow, node, hint
    │   ├── YamlSyntaxError
    │   ├── SchemaError
    │   ├── GraphError
    │   ├── UnknownNodeType
    │   └── SecretError
    ├── ConfigErrors       several ConfigErrors at once (what `validate` reports)
    ├── FlowStartError     a flow could not be started; it was rolled back
    ├── NodeError          a node failed at run time (the runtime adds flow and node)
    ├── NotConnected       an adapter lost its link; the adapter or runtime reconnects
    ├── DeviceError        a device answered wrongly or not at all
    └── StateError         a state file could not be read; it is set aside, never fatal

A config error renders as one line that says where, what, and how to fix it::

    flows/time-to-go.yaml:21:17: flow 'time-to-go', node 'seconds' (formula):
    unknown name 'SOCC'; did you mean 'soc'?

A message echoes a value with `shown(value)` (or a name with `shorten(name)`), so a
rejected value of 100,000 characters appears as its first 80 and its length. Messages
built elsewhere (a node's own checks) are cut in the middle past MESSAGE_CHARS when
rendered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flowengine.model import SourceMark

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "DeviceError",
    "FlowEngineError",
    "FlowStartError",
    "GraphError",
    "NodeError",
    "NotConnected",
    "SchemaError",
    "SecretError",
    "StateError",
    "UnknownNodeType",
    "YamlSyntaxError",
    "shorten",
    "shown",
]

VALUE_CHARS = 80  # of a value or a name that a message echoes
MESSAGE_CHARS = 500  # of a message or a hint, however it was built


def shorten(text: str, limit: int = VALUE_CHARS) -> str:
    """`text`, or its first `limit` characters and its length: 'aaaa… (100000 characters)'."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def shown(value: Any) -> str:
    """A value as a message echoes it: its repr, shortened (a Secret's repr is '***')."""
    if isinstance(value, str) and len(value) > VALUE_CHARS:
        return f"{value[:VALUE_CHARS]!r}… ({len(value)} characters)"
    return shorten(repr(value))


def _bounded(text: str) -> str:
    """A message or hint cut in the middle if it is longer than MESSAGE_CHARS."""
    if len(text) <= MESSAGE_CHARS:
        return text
    head, tail = text[:MESSAGE_CHARS * 3 // 5], text[-MESSAGE_CHARS // 5:]
    return f"{head}… ({len(text) - len(head) - len(tail)} characters left out) …{tail}"


class FlowEngineError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(eq=False)
class ConfigError(FlowEngineError):
    """A problem in a flow or site file, found before anything starts."""

    message: str
    mark: SourceMark | None = None
    flow: str | None = None
    node: str | None = None
    node_type: str | None = None
    hint: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        parts: list[str] = []
        if self.mark is not None:
            parts.append(f"{self.mark}:")
        where: list[str] = []
        if self.flow:
            where.append(f"flow '{self.flow}'")
        if self.node:
            node = f"node '{self.node}'"
            if self.node_type:
                node += f" ({self.node_type})"
            where.append(node)
        if where:
            parts.append(", ".join(where) + ":")
        text = _bounded(self.message)
        if self.hint:
            text += f"; {_bounded(self.hint)}"
        parts.append(text)
        return " ".join(parts)

    def sort_key(self) -> tuple[str, int, int, str]:
        if self.mark is None:
            return ("", 0, 0, self.message)
        return (self.mark.file, self.mark.line, self.mark.column, self.message)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.mark.file if self.mark else None,
            "line": self.mark.line if self.mark else None,
            "column": self.mark.column if self.mark else None,
            "flow": self.flow,
            "node": self.node,
            "node_type": self.node_type,
            "kind": type(self).__name__,
            "message": _bounded(self.message),
            "hint": _bounded(self.hint) if self.hint else self.hint,
            "text": str(self),
        }

    def within(self, *, flow: str | None = None, node: str | None = None,
               node_type: str | None = None) -> ConfigError:
        """Fill in context the raiser did not know (the caller knows flow and node)."""
        if self.flow is None:
            self.flow = flow
        if self.node is None:
            self.node = node
        if self.node_type is None:
            self.node_type = node_type
        return self


class YamlSyntaxError(ConfigError):
    """The file is not valid YAML."""


class SchemaError(ConfigError):
    """A value does not match its JSON Schema (a node config, a flow, the site file)."""


class GraphError(ConfigError):
    """The wiring is wrong: duplicate ids, dangling targets, unknown ports, cycles, vars."""


class UnknownNodeType(ConfigError):
    """A node names a type no registered module provides."""


class SecretError(ConfigError):
    """A `!secret` could not be resolved."""


class ConfigErrors(FlowEngineError):
    """Every problem found in one validation run, sorted by file and line."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors: Sequence[ConfigError] = sorted(errors, key=ConfigError.sort_key)
        super().__init__("\n".join(str(e) for e in self.errors))


class FlowStartError(FlowEngineError):
    """A flow failed to start; what had started was stopped again (safe states applied)."""


class NodeError(FlowEngineError):
    """A node failed while running. The runtime logs it with flow and node id."""


class NotConnected(FlowEngineError):
    """An adapter has no link right now; it reconnects on its own."""


class DeviceError(FlowEngineError):
    """A device answered wrongly or not at all."""


class StateError(FlowEngineError):
    """A persistent state file could not be read; it was set aside."""
