"""Node types for engine tests: a source, a recorder, an actuator, and a crasher.

`test.actuator` stands for a node that drives hardware: it writes every value it gets
to a file (its "device"), and its safe state writes the configured safe value there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from flowengine.context import NodeContext
from flowengine.model import JsonValue, Message
from flowengine.node import Node, node_type, option


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    topic: str = option("topic of the counter", default="count")
    every_ms: float = option("emit period", default=100.0)


@node_type("test.source", config=SourceConfig)
class TestSource(Node[SourceConfig]):
    """Emit a counter on a timer."""

    inputs = {}

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        self.n = 0
        ctx.every(self.config.every_ms, self._tick)

    def _tick(self) -> None:
        self.n += 1
        self.emit(self.config.topic, self.n)


@dataclass(frozen=True, kw_only=True)
class ActuatorConfig:
    device: str = option("file standing for the device")
    safe_value: JsonValue = option("value written in the safe state", default=0)
    fail_on: JsonValue = option("a value that makes on_message raise", default=None)


@node_type("test.actuator", config=ActuatorConfig)
class TestActuator(Node[ActuatorConfig]):
    """Write each value to a file; write the safe value on stop and failure."""

    async def on_message(self, port: str, msg: Message) -> None:
        if self.config.fail_on is not None and msg.value == self.config.fail_on:
            raise RuntimeError(f"cannot drive value {msg.value}")
        await self.ctx.register_safe_action({  # what the guardian would do for us
            "type": "http.get", "url": f"http://127.0.0.1:9/safe?value={self.config.safe_value}"})
        Path(self.config.device).write_text(f"{msg.value}\n")

    async def safe_state(self) -> None:
        Path(self.config.device).write_text(f"{self.config.safe_value}\n")


@dataclass(frozen=True, kw_only=True)
class CrashConfig:
    crash_on: JsonValue = option("value that raises", default="boom")
    fail_start: bool = option("raise in start()", default=False)
    crash_always: bool = option("raise on every message", default=False)


@node_type("test.crash", config=CrashConfig)
class TestCrash(Node[CrashConfig]):
    """Pass values on; raise on one value."""

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        if self.config.fail_start:
            raise RuntimeError("start refused")

    async def on_message(self, port: str, msg: Message) -> None:
        if self.config.crash_always or msg.value == self.config.crash_on:
            raise ValueError("crash requested")
        self.emit(msg)


@dataclass(frozen=True, kw_only=True)
class ParentConfig:
    device_dir: str = option("where children keep their device files")


@node_type("test.parent", config=ParentConfig)
class TestParent(Node[ParentConfig]):
    """Own one actuator child per consumer; forward what children emit."""

    inputs = {"in": "event"}

    async def on_message(self, port: str, msg: Message) -> None:
        if port == "child":
            self.emit(msg)
            return
        if msg.topic == "add":
            await self.ctx.spawn(msg.value, "test.actuator", {
                "device": f"{self.config.device_dir}/{msg.value}", "safe_value": "off",
                "fail_on": "bad"})
        elif msg.topic == "add-echo":
            await self.ctx.spawn(msg.value, "test.crash", {})
        elif msg.topic == "remove":
            await self.ctx.remove(msg.value)
        else:
            child, _, topic = msg.topic.partition("/")
            self.ctx.send(child, msg.with_value(msg.value, topic))


@dataclass(frozen=True, kw_only=True)
class PaceConfig:
    pass


@node_type("test.pace", config=PaceConfig)
class TestPace(Node[PaceConfig]):
    """Pass on (marked as pacing, so loops through it are allowed)."""

    breaks_cycles = True

    async def on_message(self, port: str, msg: Message) -> None:
        self.emit(msg)


@dataclass(frozen=True, kw_only=True)
class CounterConfig:
    pass


@node_type("test.counter", config=CounterConfig)
class TestCounter(Node[CounterConfig]):
    """Count messages in persistent state; emit the total."""

    async def on_message(self, port: str, msg: Message) -> None:
        total = self.ctx.state.get("total", 0) + 1
        self.ctx.state.set("total", total)
        self.emit("total", total)


@dataclass(frozen=True, kw_only=True)
class StuckConfig:
    pass


@node_type("test.stuck", config=StuckConfig)
class TestStuck(Node[StuckConfig]):
    """Hang in safe_state() and stop(): shutdown must not wait for it."""

    async def safe_state(self) -> None:
        await asyncio.sleep(3600)

    async def stop(self) -> None:
        await asyncio.sleep(3600)


@dataclass(frozen=True, kw_only=True)
class BlockConfig:
    after_ms: float = option("block the event loop this long after the start", default=1000)
    once_file: str | None = option("block only if this file does not exist (then create it)",
                                   default=None)


@node_type("test.block", config=BlockConfig)
class TestBlock(Node[BlockConfig]):
    """Block the whole event loop (a stand-in for code that hangs in C or in a loop)."""

    inputs = {}
    outputs = ()

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        ctx.after(self.config.after_ms, self._block, name="block")

    def _block(self) -> None:
        marker = self.config.once_file
        if marker is not None:
            if Path(marker).exists():
                return
            Path(marker).write_text("blocked\n")
        while True:  # never returns: only SIGKILL ends this
            time.sleep(3600)


@dataclass(frozen=True, kw_only=True)
class TickerConfig:
    every_ms: float = option("period of the timer", default=100.0)
    once: bool = option("one `after(every_ms)` instead of `every`", default=False)
    work_ms: float | None = option("each tick awaits this long (asynchronous callback)",
                                   default=None)
    raise_at: int | None = option("the tick that raises", default=None)
    stop_at: int | None = option("the tick that cancels its own timer", default=None)


@node_type("test.ticker", config=TickerConfig)
class TestTicker(Node[TickerConfig]):
    """Emit the number of each tick of one timer (`every` or `after`), synchronous or
    awaiting `work_ms`; raise or cancel the timer at a given tick."""

    inputs = {}

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        self.n = 0
        cfg = self.config
        self.timer = ctx.after(cfg.every_ms, self._tick, name="tick") if cfg.once \
            else ctx.every(cfg.every_ms, self._tick, name="tick")

    def _tick(self) -> Awaitable[None] | None:
        self.n += 1
        self.emit("tick", self.n)
        if self.n == self.config.raise_at:
            raise RuntimeError(f"tick {self.n} fails")
        if self.n == self.config.stop_at:
            self.timer.cancel()
        work = self.config.work_ms
        return None if work is None else self.ctx.clock.sleep_until(
            self.ctx.now() + work / 1000)
