"""The scheduler: start and stop flows, route messages, supervise, redeploy one flow.

One event loop, no threads. Each node has a bounded mailbox and one input task;
`emit` puts a message into the mailbox of every wired node without blocking.

Stopping a flow is bounded in time and puts the outside world first:

1. cancel every node's timers and input task (nothing new is produced);
2. close the inputs of nodes that drive the outside world and run their
   `safe_state()` together (at most SAFE_TIMEOUT_S);
3. let the other nodes work off their queues (at most DRAIN_S);
4. `stop()` every node (at most STOP_TIMEOUT_S each, together), flush state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowengine.clock import Clock, LoopClock
from flowengine.connections import Connections
from flowengine.context import NodeStatus
from flowengine.errors import FlowEngineError, FlowStartError
from flowengine.log import MessageTrace
from flowengine.model import FlowSpec, JsonValue, Message
from flowengine.runner import START_TIMEOUT_S, NodeRunner
from flowengine.state import StateStore

if TYPE_CHECKING:
    from flowengine.guard import GuardianLink
    from flowengine.plan import FlowPlan
    from flowengine.registry import Registry

__all__ = ["EngineEvent", "FlowRun", "PendingFlow", "Runtime"]

log = logging.getLogger(__name__)

DRAIN_S = 0.5
RETRY_FIRST_S = 1.0  # a flow that did not start is tried again after this, doubling
RETRY_MAX_S = 60.0
EXPECTED_START_ERRORS = (FlowEngineError, LookupError, TimeoutError)
"""Start failures that say what is wrong in their message: logged without a traceback."""

Tap = Callable[[NodeRunner, str, Message], None]


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """An operational message: flow started/stopped, node failed, safe state applied."""

    flow: str
    level: int
    text: str
    wall: float


@dataclass(slots=True)
class PendingFlow:
    """A flow that did not start and is tried again: why, how often, when next."""

    plan: FlowPlan
    error: str
    attempts: int
    next_try: float  # on the runtime's monotonic clock
    task: asyncio.Task[None] | None = None


class FlowRun:
    """One started flow: its runners and their wiring."""

    def __init__(self, runtime: Runtime, plan: FlowPlan) -> None:
        self.runtime = runtime
        self.plan = plan
        self.spec: FlowSpec = plan.spec
        self._tap: Tap | None = None
        # decided once, at start: with TRACE off routing pays nothing for it
        self._trace = runtime.trace if runtime.trace.enabled() else None
        self.watch: Tap | None = None  # what route() calls: the tap, the trace, or both
        self.tap = None
        self.runners: dict[str, NodeRunner] = {
            nid: NodeRunner(self, p.spec, p.cls, p.config, p.node)
            for nid, p in plan.nodes.items()
        }
        for nid, planned in plan.nodes.items():
            runner = self.runners[nid]
            for port, targets in planned.routes.items():
                runner.routes[port] = [(self.runners[t], tp) for t, tp in targets]
        self.started: list[NodeRunner] = []

    @property
    def tap(self) -> Tap | None:
        """Sees every emitted message (tests, the admin API, benchmarks)."""
        return self._tap

    @tap.setter
    def tap(self, tap: Tap | None) -> None:
        self._tap = tap
        trace = self._trace
        if trace is None:
            self.watch = tap
        elif tap is None:
            self.watch = lambda r, port, msg: trace(r.flow_id, r.node_id, port, msg.topic,
                                                    msg.value)
        else:
            def both(r: NodeRunner, port: str, msg: Message) -> None:
                trace(r.flow_id, r.node_id, port, msg.topic, msg.value)
                tap(r, port, msg)
            self.watch = both

    def make_child(self, parent: NodeRunner, child_id: str, type_name: str,
                   config: Mapping[str, JsonValue]) -> NodeRunner:
        spec, cls, cfg, node = self.plan.child(parent.spec, child_id, type_name, config)
        return NodeRunner(self, spec, cls, cfg, node, parent=parent,
                          node_id=f"{parent.node_id}/{child_id}")

    async def start(self, *, traceback: bool = True) -> None:
        """Start every node, downstream first; all or nothing (also when cancelled).

        An expected failure (FlowEngineError: no bus, a name taken, a connection not
        configured) becomes a one-line FlowStartError; anything else is a bug, and its
        traceback is logged here (`traceback`: the first time; a retry does not repeat it).
        """
        for nid in self.plan.order:
            runner = self.runners[nid]
            self.started.append(runner)
            try:
                await runner.start()
            except BaseException as exc:
                await self.stop(reason="failed start")
                if not isinstance(exc, Exception):
                    raise
                if traceback and not isinstance(exc, EXPECTED_START_ERRORS):
                    log.error("flow '%s': node '%s' did not start", self.spec.id, nid,
                              exc_info=exc)
                raise FlowStartError(
                    f"flow '{self.spec.id}': node '{nid}' ({runner.cls.type_name}) did not "
                    f"start: {_why(exc)}") from exc

    async def stop(self, reason: str = "stop") -> None:
        runners = list(reversed(self.started))
        self.started = []
        await asyncio.gather(*(r.halt_inputs() for r in runners))
        hardware = [r for r in runners if r.drives_outside_world or r.children]
        others = [r for r in runners if r not in hardware]
        await asyncio.gather(*(r.stop_now(reason) for r in hardware))
        for runner in others:  # restart input tasks briefly so queued values go out
            if len(runner.mailbox) and runner.node is not None:
                runner.spawn_task(runner.work(runner.node), "drain")
        deadline = time.monotonic() + DRAIN_S
        await asyncio.gather(*(r.drain(deadline) for r in others))
        await asyncio.gather(*(r.stop_now(reason) for r in others))
        self.runtime.state.flush(self.spec.id)

    def all_runners(self) -> list[NodeRunner]:
        out: list[NodeRunner] = []
        stack = list(self.runners.values())
        while stack:
            runner = stack.pop(0)
            out.append(runner)
            stack.extend(runner.children.values())
        return out


class Runtime:
    """Runs flows; owns the clock, the state store and the shared connections."""

    def __init__(self, registry: Registry, *, state: StateStore | None = None,
                 connections: Connections | None = None, clock: Clock | None = None,
                 queue_capacity: int = 256, guardian: GuardianLink | None = None) -> None:
        self.registry = registry
        self.state = state or StateStore(None)
        self.connections = connections or Connections(registry.connection_kinds)
        self.clock = clock or LoopClock()
        self.queue_capacity = queue_capacity
        self.guardian = guardian  # None: nobody keeps safe states if this process dies
        self.flows: dict[str, FlowRun] = {}
        self.pending: dict[str, PendingFlow] = {}  # did not start; tried again with backoff
        self.trace = MessageTrace(clock=self.clock.monotonic)
        self._status_listeners: list[Callable[[str, str, NodeStatus], None]] = []
        self._event_listeners: list[Callable[[EngineEvent], None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._state_dirty = asyncio.Event()
        self.state.on_dirty = self._state_dirty.set

    # -- observation -----------------------------------------------------------------------
    def on_status(self, listener: Callable[[str, str, NodeStatus], None]) -> None:
        self._status_listeners.append(listener)

    def on_event(self, listener: Callable[[EngineEvent], None]) -> None:
        self._event_listeners.append(listener)

    def status_changed(self, runner: NodeRunner, status: NodeStatus) -> None:
        for listener in self._status_listeners:
            listener(runner.flow_id, runner.node_id, status)

    def event(self, flow: str, level: int, text: str) -> None:
        log.log(level, "flow '%s': %s", flow, text)
        item = EngineEvent(flow, level, text, time.time())
        for listener in self._event_listeners:
            listener(item)

    def snapshot(self) -> dict[str, Any]:
        """Every flow and node with its status and last value (for `status`)."""
        flows: dict[str, Any] = {}
        for fid, run in self.flows.items():
            nodes = {}
            for r in run.all_runners():
                nodes[r.node_id] = {
                    "type": r.cls.type_name, "status": r.status.level, "text": r.status.text,
                    "restarts": r.restarts, "dropped": r.mailbox.dropped,
                    "last": None if r.last_message is None else
                    {"topic": r.last_message.topic, "value": r.last_message.value},
                }
            flows[fid] = {"description": run.spec.description, "nodes": nodes}
        for fid, pending in self.pending.items():
            flows[fid] = {"description": pending.plan.spec.description, "nodes": {},
                          "status": "error", "text": self._pending_text(pending)}
        return flows

    def _pending_text(self, pending: PendingFlow) -> str:
        wait = max(0.0, pending.next_try - self.clock.monotonic())
        return f"not started ({pending.attempts}x): {pending.error}; next try in {wait:.0f} s"

    # -- lifecycle ---------------------------------------------------------------------------
    async def start_flow(self, plan: FlowPlan, *, tap: Tap | None = None,
                         traceback: bool = True) -> FlowRun:
        """Start a validated flow. All or nothing: on failure what started is stopped.

        `tap` sees every emitted message from the first one on (tests, the admin API).
        """
        if plan.spec.id in self.flows:
            raise FlowEngineError(f"flow '{plan.spec.id}' is running already")
        self._ensure_flusher()
        run = FlowRun(self, plan)
        run.tap = tap
        await run.start(traceback=traceback)
        self.flows[plan.spec.id] = run
        self.event(plan.spec.id, logging.INFO, f"started ({len(plan.nodes)} nodes)")
        return run

    async def stop_flow(self, flow_id: str, reason: str = "stop") -> None:
        run = self.flows.pop(flow_id, None)
        if run is None:
            return
        await run.stop(reason)
        self.state.discard(flow_id)
        self.event(flow_id, logging.INFO, f"stopped ({reason})")

    async def replace_flow(self, plan: FlowPlan) -> FlowRun:
        """Hot deploy of one flow: stop the running version, start the new one.

        Other flows are untouched. If the new version fails to start, the old one is
        started again from its plan and FlowStartError is raised.
        """
        old = self.flows.get(plan.spec.id)
        if old is None:
            return await self.start_flow(plan)
        await self.stop_flow(plan.spec.id, reason="redeploy")
        try:
            return await self.start_flow(plan)
        except FlowStartError:
            self.event(plan.spec.id, logging.ERROR, "new version failed to start; rolling back")
            await self.start_flow(old.plan.fresh())
            raise

    def retry_flow(self, plan: FlowPlan, error: FlowStartError) -> PendingFlow:
        """Try a flow that did not start again later: after 1 s, doubling to 60 s, for as
        long as it keeps failing; `snapshot()` and the events say why and when next."""
        fid = plan.spec.id
        pending = PendingFlow(plan, _reason(fid, error), 1,
                              self.clock.monotonic() + RETRY_FIRST_S)
        self.pending[fid] = pending
        self.event(fid, logging.ERROR, f"{pending.error}; next try in {RETRY_FIRST_S:.0f} s")
        pending.task = asyncio.ensure_future(self._keep_starting(pending))
        pending.task.set_name(f"runtime:retry/{fid}")
        return pending

    async def _keep_starting(self, pending: PendingFlow) -> None:
        fid = pending.plan.spec.id
        while True:
            await self.clock.sleep_until(pending.next_try)
            if fid in self.flows:  # started meanwhile (a redeploy)
                del self.pending[fid]
                return
            try:
                await self.start_flow(pending.plan.fresh(), traceback=False)
            except FlowStartError as exc:
                pending.attempts += 1
                delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (pending.attempts - 1))
                pending.next_try = self.clock.monotonic() + delay
                reason = _reason(fid, exc)
                if reason != pending.error:  # a new reason is news; the same one is not
                    pending.error = reason
                    self.event(fid, logging.ERROR, f"{reason}; next try in {delay:.0f} s")
                else:
                    log.info("flow '%s': attempt %d did not start either; next try in %.0f s",
                             fid, pending.attempts, delay)
                continue
            del self.pending[fid]
            self.event(fid, logging.INFO, f"started at attempt {pending.attempts + 1}")
            return

    async def stop(self, reason: str = "stop") -> None:
        """Stop every flow (together, each bounded), flush state, close connections."""
        retries = [p.task for p in self.pending.values() if p.task is not None]
        for task in retries:
            task.cancel()
        await asyncio.gather(*retries, return_exceptions=True)
        self.pending.clear()
        ids = list(self.flows)
        await asyncio.gather(*(self.stop_flow(fid, reason) for fid in ids))
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        self.state.flush()
        await self.connections.aclose()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _ensure_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_loop())
            self._flusher.set_name("runtime:state-flush")

    async def _flush_loop(self) -> None:
        """Write changed node states when due; sleeps until a state changes (no polling)."""
        while True:
            due = self.state.next_due_in()
            if due is None:
                self._state_dirty.clear()
                await self._state_dirty.wait()
                continue
            await self.clock.sleep_until(self.clock.monotonic() + max(due, 0.05))
            self.state.flush_due()


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no start within {START_TIMEOUT_S:g} s"
    return str(exc) or type(exc).__name__


def _reason(flow_id: str, error: FlowStartError) -> str:
    """The error without the "flow 'x': " the event puts in front again."""
    text = str(error)
    prefix = f"flow '{flow_id}': "
    return text[len(prefix):] if text.startswith(prefix) else text
