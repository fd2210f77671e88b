"""What a node gets from the runtime: emit, status, timers, state, connections, children.

A `NodeContext` belongs to one incarnation of one node: when the node fails and is
restarted, its timers die with the old context and the new incarnation gets a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from flowengine.model import DEFAULT_PORT, INPUT_PORT, JsonValue, Message

if TYPE_CHECKING:
    from flowengine.clock import Cancellable, Clock
    from flowengine.connections import Connections
    from flowengine.log import NodeLogger
    from flowengine.state import NodeState

__all__ = ["NodeContext", "NodeStatus", "StatusHandle", "Timer", "TimerCallback"]

StatusLevel = Literal["idle", "ok", "warning", "error"]
TimerCallback = Callable[[], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What a user sees next to a node: a level and a short text."""

    level: StatusLevel = "idle"
    text: str = ""
    since: float = 0.0  # wall-clock time of the change


class _Host(Protocol):
    """The part of the runtime's node runner a context talks to."""

    flow_id: str
    node_id: str
    clock: Clock
    connections: Connections
    vars: Mapping[str, JsonValue]

    def route(self, port: str, msg: Message) -> None: ...
    def set_node_status(self, status: NodeStatus) -> None: ...
    def get_status(self) -> NodeStatus: ...
    def spawn_task(self, coro: Awaitable[None], role: str) -> asyncio.Task[None]: ...
    def add_timer(self, timer: Timer) -> None: ...
    def drop_timer(self, timer: Timer) -> None: ...
    def fail(self, exc: BaseException, where: str) -> None: ...
    def node_state(self) -> NodeState: ...
    def event(self, level: int, text: str) -> None: ...
    async def hold_safe_action(self, action: Mapping[str, Any]) -> bool: ...
    async def release_safe_action(self) -> None: ...
    async def spawn_child(self, child_id: str, type_name: str,
                          config: Mapping[str, JsonValue]) -> None: ...
    def send_child(self, child_id: str, msg: Message, port: str) -> None: ...
    async def remove_child(self, child_id: str) -> None: ...
    def child_ids(self) -> list[str]: ...


class StatusHandle:
    """Set the node's status; only changes are passed on."""

    __slots__ = ("_host",)

    def __init__(self, host: _Host) -> None:
        self._host = host

    def _set(self, level: StatusLevel, text: str) -> None:
        current = self._host.get_status()
        if current.level != level or current.text != text:
            self._host.set_node_status(NodeStatus(level, text, self._host.clock.wall()))

    def ok(self, text: str = "") -> None:
        self._set("ok", text)

    def warning(self, text: str) -> None:
        self._set("warning", text)

    def error(self, text: str) -> None:
        self._set("error", text)

    def clear(self) -> None:
        self._set("idle", "")

    @property
    def current(self) -> NodeStatus:
        return self._host.get_status()


class Timer:
    """A running `every`/`after` timer; `cancel()` stops it.

    While its callback returns nothing, a tick is one call-back of the event loop, no
    task wakes for it; once the callback returns an awaitable, a task of the node runs
    the timer from then on, awaiting each before the next tick (a tick that falls due
    meanwhile is skipped). Either way the node's runner cancels it when the incarnation
    ends, and an exception in the callback fails the node."""

    __slots__ = ("_callback", "_clock", "_deadline", "_done", "_handle", "_host",
                 "_interval", "_role", "_task", "wakeup_name")

    def __init__(self, host: _Host, callback: TimerCallback, interval: float | None,
                 role: str, deadline: float) -> None:
        self.wakeup_name = f"timer {host.flow_id}/{host.node_id}:{role}"  # watchdog's name
        self._host = host
        self._clock = host.clock
        self._callback = callback
        self._interval = interval  # None: once (`after`)
        self._role = role
        self._deadline = deadline
        self._task: asyncio.Task[None] | None = None
        self._done = False
        host.add_timer(self)
        self._handle: Cancellable | None = self._clock.call_at(deadline, self._fire)

    def cancel(self) -> None:
        if self._done:
            return
        self._finish()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()  # its own task ends at its loop's test instead

    @property
    def active(self) -> bool:
        return not self._done

    def _finish(self) -> None:
        self._done = True
        self._host.drop_timer(self)

    def _fire(self) -> None:
        self._handle = None
        try:
            result = self._callback()
        except Exception as exc:
            self._finish()
            self._host.fail(exc, f"{self._host.flow_id}/{self._host.node_id}:{self._role}")
            return
        if result is not None:
            self._task = self._host.spawn_task(self._run(result), self._role)
        elif self._done:
            pass  # the callback cancelled its own timer
        elif self._interval is None:
            self._finish()
        else:
            self._deadline = self._next()
            self._handle = self._clock.call_at(self._deadline, self._fire)

    def _next(self) -> float:
        assert self._interval is not None
        clock = self._clock
        return _tick_after(max(self._deadline, clock.monotonic()), self._interval,
                           clock.origin)

    async def _run(self, pending: Awaitable[None]) -> None:
        """The timer once its callback is asynchronous."""
        try:
            await pending
            while self._interval is not None and not self._done:
                self._deadline = self._next()
                await self._clock.sleep_until(self._deadline)
                result = self._callback()
                if result is not None:
                    await result
        finally:
            self._finish()


def _tick_after(now: float, interval: float, origin: float) -> float:
    """The first tick of the grid `origin + k * interval` later than `now` (a late
    timer skips the ticks it missed and keeps the grid)."""
    tick = origin + ((now - origin) // interval + 1) * interval
    return tick if tick > now else tick + interval  # float rounding at a tick


class NodeContext:
    """The narrow interface between one node incarnation and the runtime."""

    def __init__(self, host: _Host, log: NodeLogger) -> None:
        self._host = host
        self.flow_id = host.flow_id
        self.node_id = host.node_id
        self.log = log
        self.status = StatusHandle(host)
        self.clock = host.clock
        self._state: NodeState | None = None
        self._route = host.route  # bound once: emit() runs for every message

    # -- messages --------------------------------------------------------------------
    def emit(self, msg: Message | str, value: JsonValue = None, *,
             port: str = DEFAULT_PORT) -> None:
        """Send a message (or topic and value) on an output port to every wired node."""
        if isinstance(msg, str):
            msg = self.message(msg, value)
        self._route(port, msg)

    def message(self, topic: str, value: JsonValue,
                meta: Mapping[str, JsonValue] | None = None) -> Message:
        """A new message stamped with this runtime's clock."""
        return Message(topic, value, self.clock.monotonic(), self.clock.wall(), meta)

    def now(self) -> float:
        """Monotonic seconds, from the runtime's clock (a manual one in tests)."""
        return self.clock.monotonic()

    # -- timers ----------------------------------------------------------------------
    def every(self, interval_ms: float, callback: TimerCallback, *, name: str = "every",
              first_ms: float | None = None) -> Timer:
        """Call `callback` every `interval_ms`, without drift; late ticks are skipped.

        The first call comes after `first_ms` (default: at most one interval: the next
        tick of the grid below). An exception in the callback fails the node like one
        in on_message.

        Ticks lie on a grid of the runtime's clock, its origin plus multiples of the
        interval, so every timer of one interval (and of its multiples) ticks in the
        same wake-up of the loop, whenever its node started: twelve flows with 1 s
        timers wake the process once a second, not twelve times.
        """
        if interval_ms <= 0:
            raise ValueError("interval_ms must be positive")
        interval = interval_ms / 1000
        now = self.clock.monotonic()
        deadline = _tick_after(now, interval, self.clock.origin) if first_ms is None \
            else now + first_ms / 1000
        return Timer(self._host, callback, interval, name, deadline)

    def next_tick(self, interval_ms: float) -> float:
        """The monotonic time of the next tick of the `interval_ms` grid (see `every`):
        two moments lie in one period of the grid when their next ticks are equal."""
        return _tick_after(self.clock.monotonic(), interval_ms / 1000, self.clock.origin)

    def after(self, delay_ms: float, callback: TimerCallback, *, name: str = "after") -> Timer:
        """Call `callback` once after `delay_ms`."""
        return Timer(self._host, callback, None, name,
                     self.clock.monotonic() + delay_ms / 1000)

    # -- state, connections, vars, events ---------------------------------------------
    @property
    def state(self) -> NodeState:
        """Persistent key/value state of this node (JSON values), kept across restarts."""
        if self._state is None:
            self._state = self._host.node_state()
        return self._state

    @property
    def connections(self) -> Connections:
        return self._host.connections

    @property
    def vars(self) -> Mapping[str, JsonValue]:
        return self._host.vars

    def event(self, text: str, level: int = logging.INFO) -> None:
        """An operational message of this flow (logged; published as a service message)."""
        self._host.event(level, text)

    # -- the guardian -------------------------------------------------------------------
    async def register_safe_action(self, action: Mapping[str, Any]) -> bool:
        """Tell the guardian what to do for this node if the runtime dies or hangs.

        Call it before the node first drives the outside world, and again when the action
        changes (only changes are sent). The action is a D-Bus SetValue, an MQTT publish,
        an HTTP GET or Wattpilot setValues (`flowengine.guardian.actions`). It is
        withdrawn by the runtime once the node's `safe_state()` has succeeded. True when
        the guardian has it on disk, or when there is no guardian (development); False if
        it refused or did not answer (logged).
        """
        return await self._host.hold_safe_action(action)

    async def withdraw_safe_action(self) -> None:
        """The outside world is safe without the guardian's help (e.g. nothing requested)."""
        await self._host.release_safe_action()

    # -- dynamic children -------------------------------------------------------------
    async def spawn(self, child_id: str, type_name: str,
                    config: Mapping[str, JsonValue]) -> None:
        """Create and start a child node (validated like a flow node, supervised alike).

        What the child emits reaches this node's `on_message` on port "child" with
        meta["child"] = child_id. Raises ConfigError for a bad config.
        """
        await self._host.spawn_child(child_id, type_name, config)

    def send(self, child_id: str, msg: Message, port: str = INPUT_PORT) -> None:
        """Deliver a message to a child's input."""
        self._host.send_child(child_id, msg, port)

    async def remove(self, child_id: str) -> None:
        """Stop a child (its safe state applied) and forget it."""
        await self._host.remove_child(child_id)

    @property
    def children(self) -> list[str]:
        return self._host.child_ids()

    async def wait(self, awaitable: Awaitable[Any], timeout_ms: float) -> Any:
        """Await with a timeout (every network await in a node needs one)."""
        async with asyncio.timeout(timeout_ms / 1000):
            return await awaitable


