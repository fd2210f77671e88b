"""What a node type is: a config declaration and a class with a small lifecycle.

A node type declares its config once, as a frozen dataclass whose fields are made
with `option()`; the engine derives JSON Schema, defaults, docs and `list-nodes`
from it. The class is marked with `@node_type("name", config=...)`, which sets
class attributes and mutates no global: a `Registry` collects classes from modules.

Lifecycle, driven by the runtime:

- ``__init__(config, spec)``: no I/O; compile what can be compiled, raise
  `ConfigError` for what `validate` should report.
- ``start(ctx)``: open what the node needs, start timers through `ctx`.
- ``on_message(port, msg)``: returning is "done", raising is "failed": the runtime
  logs it, sets the status, applies the safe state and restarts the node with backoff.
  A node that handles a message without waiting overrides ``receive(port, msg)``
  instead, a plain function the emitting node calls directly (the fast path).
- ``stop()``: release resources; timers and children are stopped by the runtime.
- ``safe_state()``: only on nodes that drive the outside world; quick, idempotent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast

from flowengine.model import DEFAULT_PORT, INPUT_PORT, JsonValue, Message, NodeSpec, SourceMark

if TYPE_CHECKING:
    from flowengine.context import NodeContext
    from flowengine.errors import ConfigError

__all__ = ["REQUIRED", "InputMode", "Node", "UpstreamInfo", "node_type", "option"]

ConfigT = TypeVar("ConfigT")
NodeT = TypeVar("NodeT", bound="type[Node[Any]]")

InputMode = Literal["telemetry", "event"]
"""telemetry: queued per topic, the latest value wins; event: every message kept, in order."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of an option the user must set."""


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """Something one node must have to itself: `what` (e.g. "D-Bus name"), its `value`,
    and the `option` that sets it (for the error's line)."""

    what: str
    value: str
    option: str


CONNECTION_META = "x-connection-kind"  # field metadata: the option names a connection


def option(
    description: str,
    *,
    default: Any = REQUIRED,
    example: Any = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    pattern: str | None = None,
    min_items: int | None = None,
    min_length: int | None = None,
    schema: Mapping[str, Any] | None = None,
    connection: str | None = None,
) -> Any:
    """Declare one config option: its help text, default, example and limits.

    `connection`: the option names a connection of this kind ("mqtt", "dbus"); a site
    file that lacks it is refused before anything starts. Mutable defaults (dict, list)
    are copied for each config instance.
    """
    meta: dict[str, Any] = {"description": description}
    if connection is not None:
        meta[CONNECTION_META] = connection
    for key, value in (
        ("example", example),
        ("minimum", minimum),
        ("maximum", maximum),
        ("exclusiveMinimum", exclusive_minimum),
        ("pattern", pattern),
        ("minItems", min_items),
        ("minLength", min_length),
    ):
        if value is not None:
            meta[key] = value
    if schema:
        meta["schema"] = dict(schema)
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    meta["default"] = default
    if isinstance(default, dict | list):
        def factory() -> Any:
            return type(default)(default)

        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class UpstreamInfo:
    """What a node may learn about its wiring at validate time."""

    def __init__(self, topics: frozenset[str] | None, sources: tuple[str, ...]) -> None:
        self.topics = topics  # None when some upstream node cannot say what it emits
        self.sources = sources


class _NotStarted:
    """What `Node.ctx` is before start(): any use of it raises."""

    __slots__ = ("_node_id",)

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"node '{self._node_id}' used before start()")


class Node(Generic[ConfigT]):
    """Base class of every node type. See the module docstring for the lifecycle."""

    type_name: ClassVar[str] = ""
    config_class: ClassVar[type[Any]]
    summary: ClassVar[str] = ""
    inputs: ClassVar[Mapping[str, InputMode]] = {INPUT_PORT: "telemetry"}
    outputs: ClassVar[tuple[str, ...]] = (DEFAULT_PORT,)
    breaks_cycles: ClassVar[bool] = False
    """True for nodes that delay or pace what they pass on (a loop through them is allowed)."""

    def __init__(self, config: ConfigT, spec: NodeSpec) -> None:
        self.config = config
        self.spec = spec
        self.ctx: NodeContext = cast("NodeContext", _NotStarted(spec.id))
        """The node's link to the runtime, set by start(); a plain attribute (it is read
        on every message), which says "used before start()" on any use before."""

    # -- validate-time hooks -------------------------------------------------------
    @classmethod
    def output_ports(cls, config: Any) -> tuple[str, ...]:
        """Output ports for this config (most types have a fixed set)."""
        return cls.outputs

    @classmethod
    def queue_capacity(cls, config: Any) -> int | None:
        """Input messages this node may have waiting, when the runtime's default (256) is
        too few for this config (a burst of retained topics at start); None: the default."""
        return None

    @classmethod
    def output_topics(cls, config: Any) -> frozenset[str] | None:
        """Topics this node emits, if it can tell before running; None when it cannot."""
        return None

    def claims(self) -> list[Claim]:
        """What this node needs to itself among every flow that runs (a D-Bus name, ...);
        `validate` refuses two nodes claiming the same."""
        return []

    def check(self, upstream: UpstreamInfo) -> list[ConfigError]:
        """Cross-node checks (e.g. a formula's names against upstream topics)."""
        return []

    def mark_of(self, *path: str | int) -> SourceMark:
        """Where a config key (or a part of it) was written, for error messages."""
        marks = self.spec.key_marks
        key: tuple[str | int, ...] = tuple(path)
        while key:
            found = marks.get(key)
            if found is not None:
                return found
            key = key[:-1]
        return self.spec.mark

    # -- run time --------------------------------------------------------------------
    async def start(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    async def on_message(self, port: str, msg: Message) -> None:
        """Handle one input message. Nodes without inputs never get called.

        The default hands the message to `receive`: a node that never waits for
        anything overrides `receive` only."""
        self.receive(port, msg)

    def receive(self, port: str, msg: Message) -> bool:
        """Handle one input message without waiting; return False to have `on_message`
        handle it instead (in the node's own task, e.g. when it must await something).

        A type that overrides this is called directly by the node that emits, in the
        same turn of the loop, while its input queue is empty and it is not busy (no
        queue, no task switch: see `NodeRunner.deliver`). It must not await anything and
        must not depend on `asyncio.current_task()`."""
        return False

    async def stop(self) -> None:
        """Release what start() opened. Timers and children are stopped by the runtime."""

    async def safe_state(self) -> None:
        """Put the outside world into its safe state. Override only in nodes that drive it."""

    @classmethod
    def drives_outside_world(cls) -> bool:
        """True for types that may drive the outside world (they have a safe state)."""
        return cls.safe_state is not Node.safe_state

    def has_safe_state(self) -> bool:
        """True if this node, as configured, drives the outside world; override when an
        option decides it (an mqtt.out with a safe payload)."""
        return type(self).drives_outside_world()

    def emit(self, msg: Message | str, value: JsonValue = None, *,
             port: str = DEFAULT_PORT) -> None:
        """Shorthand for ctx.emit()."""
        self.ctx.emit(msg, value, port=port)


def node_type(name: str, *, config: type[Any]) -> Callable[[NodeT], NodeT]:
    """Mark a Node subclass as node type `name` with config dataclass `config`."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config of node type {name!r} must be a dataclass")

    def mark(cls: NodeT) -> NodeT:
        cls.type_name = name
        cls.config_class = config
        doc = (cls.__doc__ or "").strip()
        cls.summary = doc.splitlines()[0] if doc else name
        return cls

    return mark
