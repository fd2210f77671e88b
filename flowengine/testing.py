"""A test kit: run one node (or a small flow) from YAML on a manual clock.

    async with NodeHarness.from_yaml('''
        id: calc
        type: formula
        expression: 5000 - 40 * soc
    ''') as h:
        await h.send("soc", 50)
        assert h.values() == [3000]
        await h.advance(1000)            # milliseconds on the manual clock

The node goes through the real loader, schema and plan, and runs in the real
runtime; only the clock is manual and its outputs are captured.
"""

from __future__ import annotations

import asyncio
import tempfile
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowengine.clock import ManualClock
from flowengine.context import NodeStatus
from flowengine.loader import Secrets, load_flow
from flowengine.model import INPUT_PORT, JsonValue, Message
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.runner import NodeRunner
from flowengine.runtime import FlowRun, Runtime
from flowengine.state import StateStore

__all__ = ["FlowHarness", "NodeHarness"]


class FlowHarness:
    """Runs one flow from YAML text; captures every emitted message of every node."""

    def __init__(self, flow_yaml: str, *, vars: Mapping[str, Any] | None = None,
                 registry: Registry | None = None, state_dir: str | Path | None = None,
                 tmp_dir: str | Path | None = None) -> None:
        self.clock = ManualClock()
        self.registry = registry or Registry.default(plugins=False)
        self._yaml = textwrap.dedent(flow_yaml)
        self._vars = dict(vars or {})
        self._tmp = Path(tmp_dir) if tmp_dir else None
        self._own_tmp: tempfile.TemporaryDirectory[str] | None = None
        self.runtime = Runtime(self.registry, state=StateStore(state_dir), clock=self.clock)
        self.emitted: list[tuple[str, str, Message]] = []  # node id, port, message
        self.run: FlowRun | None = None

    def _write(self) -> Path:
        directory = self._tmp
        if directory is None:
            self._own_tmp = tempfile.TemporaryDirectory(prefix="esess-harness-")
            directory = Path(self._own_tmp.name)
        path = directory / "flow.yaml"
        path.write_text(self._yaml, encoding="utf-8")
        return path

    async def __aenter__(self) -> FlowHarness:
        try:
            spec = load_flow(self._write(), values=self._vars, secrets=Secrets(None, {}))
            plan = plan_flow(spec, self.registry)
            self.run = await self.runtime.start_flow(plan, tap=self._capture)
        except BaseException:
            await self.__aexit__()
            raise
        await self.settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.runtime.stop()
        finally:
            if self._own_tmp is not None:
                self._own_tmp.cleanup()
                self._own_tmp = None

    def _capture(self, runner: NodeRunner, port: str, msg: Message) -> None:
        self.emitted.append((runner.node_id, port, msg))

    def runner(self, node_id: str) -> NodeRunner:
        assert self.run is not None
        for r in self.run.all_runners():
            if r.node_id == node_id:
                return r
        raise KeyError(node_id)

    async def send(self, node_id: str, topic: str, value: JsonValue, *,
                   port: str = INPUT_PORT, meta: Mapping[str, JsonValue] | None = None) -> None:
        """Put a message into a node's input and let the flow work."""
        msg = Message(topic, value, self.clock.monotonic(), self.clock.wall(), meta)
        self.runner(node_id).mailbox.put(port, msg)
        await self.settle()

    async def advance(self, ms: float) -> None:
        """Move the manual clock forward; due timers fire in order."""
        await self.clock.advance(ms / 1000)

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    def status(self, node_id: str) -> NodeStatus:
        return self.runner(node_id).status

    def messages(self, node_id: str | None = None, port: str | None = None) -> list[Message]:
        return [m for n, p, m in self.emitted
                if (node_id is None or n == node_id) and (port is None or p == port)]


class NodeHarness(FlowHarness):
    """One node from a YAML mapping (id, type and options); `send` goes to it."""

    def __init__(self, node_yaml: str, **kwargs: Any) -> None:
        node = textwrap.indent(textwrap.dedent(node_yaml).strip(), "    ")
        node = "  - " + node[4:]
        super().__init__(f"id: harness\nnodes:\n{node}\n", **kwargs)
        first = textwrap.dedent(node_yaml).strip().splitlines()
        self.node_id = next(line.split(":", 1)[1].strip() for line in first
                            if line.startswith("id:"))

    @classmethod
    def from_yaml(cls, node_yaml: str, **kwargs: Any) -> NodeHarness:
        return cls(node_yaml, **kwargs)

    async def send(self, topic: str, value: JsonValue, *,  # type: ignore[override]
                   port: str = INPUT_PORT, meta: Mapping[str, JsonValue] | None = None,
                   node_id: str | None = None) -> None:
        await super().send(node_id or self.node_id, topic, value, port=port, meta=meta)

    def values(self, port: str | None = None) -> list[JsonValue]:
        return [m.value for m in self.messages(self.node_id, port)]

    @property
    def node_status(self) -> NodeStatus:
        return self.status(self.node_id)

    @property
    def node(self) -> Any:
        return self.runner(self.node_id).node
