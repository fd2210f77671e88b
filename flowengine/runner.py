"""One supervised node: its mailbox, its current incarnation, its tasks and children.

Failure path (an exception in on_message, a timer callback or a node task): log it
once with the traceback, set the status, apply the safe state, stop the node and its
children, wait a backoff (1 s doubling to 60 s; reset after a minute without failure),
then start a fresh instance with the same config. Other nodes keep running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowengine.context import NodeContext, NodeStatus, Timer
from flowengine.errors import NodeError
from flowengine.log import NodeLogger
from flowengine.mailbox import Mailbox, MailboxClosed
from flowengine.model import INPUT_PORT, JsonValue, Message, NodeSpec
from flowengine.node import Node

if TYPE_CHECKING:
    from flowengine.runtime import FlowRun
    from flowengine.state import NodeState

__all__ = ["NodeRunner"]

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
STABLE_AFTER_S = 60.0
START_TIMEOUT_S = 10.0
SAFE_TIMEOUT_S = 0.8
STOP_TIMEOUT_S = 1.0
CHILD_PORT = "child"
MAX_DIRECT_DEPTH = 64  # direct calls nested deeper than this queue instead

_depth = 0  # direct calls in progress (one loop, one thread)


class NodeRunner:
    """Runs one node (or one dynamic child) under supervision."""

    def __init__(self, flow: FlowRun, spec: NodeSpec, cls: type[Node[Any]], config: Any,
                 node: Node[Any] | None = None, *, parent: NodeRunner | None = None,
                 node_id: str | None = None) -> None:
        self.flow = flow
        self.spec = spec
        self.cls = cls
        self.config = config
        self.parent = parent
        self.flow_id = flow.spec.id
        self.node_id = node_id or spec.id
        self.clock = flow.runtime.clock
        self.connections = flow.runtime.connections
        self.vars: Mapping[str, JsonValue] = flow.spec.vars
        inputs = dict(cls.inputs)
        if CHILD_PORT not in inputs:
            inputs[CHILD_PORT] = "event"
        capacity = max(flow.runtime.queue_capacity, cls.queue_capacity(config) or 0)
        self.mailbox = Mailbox(inputs, capacity)
        self._waiting = self.mailbox.waiting  # the queue's dict: empty or not, cheaply
        self._direct = cls.receive is not Node.receive and not cls.breaks_cycles
        self._ready = False  # direct, running and not busy: deliver() may call receive()
        self._receive: Callable[[str, Message], bool] = _not_started
        self._input_role = f"{flow.spec.id}/{self.node_id}:inputs"
        self.routes: dict[str, list[tuple[NodeRunner, str]]] = {}
        self._ports = frozenset(cls.output_ports(config))
        self.children: dict[str, NodeRunner] = {}
        self.node: Node[Any] | None = node
        self.tasks: set[asyncio.Task[None]] = set()
        self.timers: set[Timer] = set()  # of the incarnation, running on loop call-backs
        self.status = NodeStatus()
        self._phase = "new"  # new, running, failed, stopping, stopped
        self.failures = 0
        self.restarts = 0
        self.started_at = 0.0
        self.last_message: Message | None = None
        self.logger = NodeLogger(logging.getLogger("flowengine.node"), self.flow_id, self.node_id)
        self._recovery: asyncio.Task[None] | None = None

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, phase: str) -> None:
        self._phase = phase
        self._ready = self._direct and phase == "running"

    # -- the host interface NodeContext uses ---------------------------------------------
    def route(self, port: str, msg: Message) -> None:
        self.last_message = msg
        targets: Sequence[tuple[NodeRunner, str]] | None = self.routes.get(port)
        if targets is None:
            if self.parent is not None:
                self.parent.mailbox.put(CHILD_PORT, msg.with_meta(child=self.node_id))
                return
            if port not in self._ports:
                raise NodeError(f"{self.cls.type_name} emitted on undeclared port '{port}'")
            targets = ()
        watch = self.flow.watch
        if watch is not None:  # before delivering: a direct call may emit further
            watch(self, port, msg)
        for target, in_port in targets:
            target.deliver(in_port, msg)

    def deliver(self, port: str, msg: Message) -> None:
        """Hand a message to this node: a direct call of its `receive` when it has one,
        is running, idle and has nothing queued (so the order stays), else its queue.

        A direct call that raises fails this node, not the one that emitted. Nodes that
        break cycles (delay) always queue, so direct calls never come back to a node
        that is in the middle of one; the depth is capped all the same."""
        global _depth
        if self._ready and not self._waiting and _depth < MAX_DIRECT_DEPTH:
            self._ready = False
            _depth += 1
            try:
                if self._receive(port, msg):
                    return
            except Exception as exc:
                self.fail(exc, self._input_role)
                return
            finally:
                _depth -= 1
                self._ready = self._phase == "running"  # not when it failed meanwhile
        self.mailbox.put(port, msg)

    def set_status(self, status: NodeStatus) -> None:
        self.status = status
        self.flow.runtime.status_changed(self, status)

    def set_node_status(self, status: NodeStatus) -> None:
        """A status from the node itself; not while it is failed (a callback of a shared
        connection would hide why it failed until it is running again)."""
        if self.phase != "failed":
            self.set_status(status)

    def get_status(self) -> NodeStatus:
        return self.status

    def spawn_task(self, coro: Awaitable[None], role: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.flow_id}/{self.node_id}:{role}")
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def add_timer(self, timer: Timer) -> None:
        self.timers.add(timer)

    def drop_timer(self, timer: Timer) -> None:
        self.timers.discard(timer)

    def node_state(self) -> NodeState:
        return self.flow.runtime.state.node_state(self.flow_id, self.node_id)

    def event(self, level: int, text: str) -> None:
        self.flow.runtime.event(self.flow_id, level, f"{self.node_id}: {text}")

    @property
    def guard_key(self) -> str:
        return f"{self.flow_id}/{self.node_id}"

    async def hold_safe_action(self, action: Mapping[str, Any]) -> bool:
        link = self.flow.runtime.guardian
        return True if link is None else await link.hold(self.guard_key, action)

    async def release_safe_action(self) -> None:
        link = self.flow.runtime.guardian
        if link is not None:
            await link.release(self.guard_key)

    @property
    def drives_outside_world(self) -> bool:
        node = self.node
        return node.has_safe_state() if node is not None else self.cls.drives_outside_world()

    async def spawn_child(self, child_id: str, type_name: str,
                          config: Mapping[str, JsonValue]) -> None:
        if child_id in self.children:
            raise ValueError(f"child '{child_id}' exists already")
        child = self.flow.make_child(self, child_id, type_name, config)
        self.children[child_id] = child
        try:
            await child.start()
        except BaseException:
            del self.children[child_id]
            raise

    def send_child(self, child_id: str, msg: Message, port: str = INPUT_PORT) -> None:
        self.children[child_id].mailbox.put(port, msg)

    async def remove_child(self, child_id: str) -> None:
        child = self.children.pop(child_id, None)
        if child is not None:
            await child.stop_now()

    def child_ids(self) -> list[str]:
        return list(self.children)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the current instance (or a fresh one). Raises what start() raised."""
        if self.node is None:
            self.node = self.cls(self.config, self.spec)
        self._receive = self.node.receive
        self.mailbox.reopen()
        ctx = NodeContext(self, self.logger)
        self.phase = "running"
        self._ready = False  # until start() is done: what comes meanwhile waits in line
        self.started_at = self.clock.monotonic()
        async with asyncio.timeout(START_TIMEOUT_S):
            await self.node.start(ctx)
        self._ready = self._direct and self._phase == "running"
        self.spawn_task(self.work(self.node), "inputs")

    async def work(self, node: Node[Any]) -> None:
        """Feed queued messages to the node, one at a time, until the inputs close."""
        mailbox = self.mailbox
        while True:
            try:
                port, msg = await mailbox.get()
            except MailboxClosed:
                return
            self._ready = False  # busy: what comes in meanwhile waits in line
            try:
                await node.on_message(port, msg)
            finally:
                self._ready = self._direct and self._phase == "running"

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.fail(exc, task.get_name())

    def fail(self, exc: BaseException, where: str) -> None:
        """Take the node down after an error and schedule its restart."""
        if self.phase != "running":  # stopping anyway: log it, no restart
            log.error("%s/%s (%s) failed in %s while %s: %s", self.flow_id, self.node_id,
                      self.cls.type_name, where, self.phase, exc, exc_info=exc)
            return
        self.phase = "failed"
        now = self.clock.monotonic()
        if now - self.started_at >= STABLE_AFTER_S:
            self.failures = 0
        self.failures += 1
        log.error("%s/%s (%s) failed in %s: %s", self.flow_id, self.node_id,
                  self.cls.type_name, where, exc, exc_info=exc)
        self.set_status(NodeStatus("error", f"failed: {_short(exc)}", self.clock.wall()))
        self.flow.runtime.event(self.flow_id, logging.ERROR,
                                f"node '{self.node_id}' failed: {_short(exc)}")
        self._recovery = asyncio.ensure_future(self._recover())
        self._recovery.set_name(f"{self.flow_id}/{self.node_id}:recover")

    async def _recover(self) -> None:
        await self._take_down(reason="failure")
        while self.phase == "failed":
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self.failures - 1))
            self.logger.info("restarting in %.0f s (failure %d)", delay, self.failures)
            await self.clock.sleep_until(self.clock.monotonic() + delay)
            if self.phase != "failed":
                return
            self.node = None
            self.restarts += 1
            try:
                await self.start()
            except Exception as exc:  # the supervisor: any start error means try again later
                self.phase = "failed"
                self.failures += 1
                log.error("%s/%s restart failed: %s", self.flow_id, self.node_id, exc,
                          exc_info=exc)
                self.set_status(NodeStatus("error", f"restart failed: {_short(exc)}",
                                           self.clock.wall()))
                await self._take_down(reason="failure")
            else:
                self.logger.info("restarted")
                if self.status.level == "error":
                    self.set_status(NodeStatus("ok", f"restarted ({self.restarts}x)",
                                               self.clock.wall()))
                self.flow.runtime.event(self.flow_id, logging.INFO,
                                        f"node '{self.node_id}' restarted")

    async def _cancel_tasks(self) -> None:
        for timer in list(self.timers):
            timer.cancel()
        current = asyncio.current_task()
        pending = [t for t in self.tasks if t is not current]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=STOP_TIMEOUT_S)

    async def apply_safe_state(self, reason: str) -> None:
        """Run safe_state() of this node if it drives the outside world. Never raises."""
        node = self.node
        if node is None or not node.has_safe_state():
            return
        try:
            async with asyncio.timeout(SAFE_TIMEOUT_S):
                await node.safe_state()
        except Exception as exc:  # a safe state that fails must not stop the others
            log.error("%s/%s: safe state on %s failed: %s", self.flow_id, self.node_id,
                      reason, exc, exc_info=exc)
            self.flow.runtime.event(self.flow_id, logging.CRITICAL,
                                    f"node '{self.node_id}': safe state FAILED on {reason}: "
                                    f"{_short(exc)}")
        else:
            self.logger.info("safe state applied (%s)", reason)
            self.flow.runtime.event(self.flow_id, logging.WARNING,
                                    f"node '{self.node_id}': safe state applied ({reason})")
            await self.release_safe_action()

    async def _stop_node(self) -> None:
        node = self.node
        if node is None:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await node.stop()
        except Exception as exc:  # stop errors are logged; shutdown goes on
            log.error("%s/%s: stop failed: %s", self.flow_id, self.node_id, exc, exc_info=exc)

    async def _take_down(self, reason: str) -> None:
        """Cancel tasks, safe state, stop children and the node (after failure or on stop)."""
        await self._cancel_tasks()
        await self.apply_safe_state(reason)
        await asyncio.gather(*(c.stop_now(reason) for c in list(self.children.values())))
        self.children.clear()
        await self._stop_node()

    # -- stopping in phases (FlowRun drives these) ------------------------------------------
    async def halt_inputs(self) -> None:
        """Stop producing and consuming: cancel timers and the input task."""
        if self._recovery is not None and self._recovery is not asyncio.current_task():
            self._recovery.cancel()
        self.phase = "stopping"
        await self._cancel_tasks()

    async def stop_now(self, reason: str = "stop") -> None:
        """Stop completely: inputs closed, safe state, children, node.stop()."""
        self.phase = "stopping"
        self.mailbox.close()
        if self._recovery is not None and self._recovery is not asyncio.current_task():
            self._recovery.cancel()
        await self._take_down(reason)
        self.phase = "stopped"
        self.set_status(NodeStatus("idle", "stopped", self.clock.wall()))

    async def drain(self, deadline: float) -> None:
        """Let the input task work off what is queued, until `deadline` (monotonic)."""
        while len(self.mailbox) and time.monotonic() < deadline and self.tasks:
            await asyncio.sleep(0.005)


def _not_started(port: str, msg: Message) -> bool:
    return False  # not called: deliver() calls receive only once the node runs


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    first = text.splitlines()[0]
    return first if len(first) <= 120 else first[:117] + "..."


