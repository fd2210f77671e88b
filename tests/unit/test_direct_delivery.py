"""Direct delivery: a node with `receive` is called by the node that emits, in the same
turn, and everything else a mailbox promised still holds (order, coalescing, failures)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import pickle
from dataclasses import dataclass

import pytest
from conftest import run, test_registry

import nodes.logic.delay
from flowengine.context import NodeContext
from flowengine.model import KeptMessage, Message
from flowengine.node import Node, node_type, option
from flowengine.registry import Registry
from flowengine.runner import MAX_DIRECT_DEPTH
from flowengine.testing import FlowHarness


@dataclass(frozen=True, kw_only=True)
class RelayConfig:
    crash_on: int | None = option("value that raises", default=None)


@node_type("t.relay", config=RelayConfig)
class Relay(Node[RelayConfig]):
    """Pass on; raise on one value."""

    def receive(self, port: str, msg: Message) -> bool:
        if msg.value == self.config.crash_on and msg.value is not None:
            raise ValueError("crash requested")
        self.emit(msg)
        return True


@dataclass(frozen=True, kw_only=True)
class GateConfig:
    pass


@node_type("t.gate", config=GateConfig)
class Gate(Node[GateConfig]):
    """Direct for every value but "wait", which is handled in on_message and waits for
    `opened` before passing on."""

    seen: list[object]

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        self.opened = asyncio.Event()
        self.seen = []

    def receive(self, port: str, msg: Message) -> bool:
        if msg.value == "wait":
            return False
        self.seen.append(msg.value)
        self.emit(msg)
        return True

    async def on_message(self, port: str, msg: Message) -> None:
        if msg.value == "wait":
            await self.opened.wait()
            self.seen.append(msg.value)
            self.emit(msg)
            return
        self.receive(port, msg)


def registry() -> Registry:
    reg = test_registry()
    reg.add(Relay)
    reg.add(Gate)
    reg.add(SlowStart)
    reg.add_module(nodes.logic.delay)
    return reg


def values(h: FlowHarness, node: str) -> list[object]:
    return [m.value for m in h.messages(node)]


def test_a_chain_of_direct_nodes_runs_in_the_emitting_call() -> None:
    flow = """
        id: direct
        nodes:
          - {id: a, type: t.relay, to: [b]}
          - {id: b, type: t.relay, to: [c]}
          - {id: c, type: t.relay}
    """

    async def scenario() -> None:
        async with FlowHarness(flow, registry=registry()) as h:
            h.runner("a").deliver("in", Message("x", 1))
            assert values(h, "c") == [1]  # no turn of the loop in between
            assert len(h.runner("b").mailbox) == 0

    run(scenario())


GATED = """
    id: gated
    nodes:
      - {id: gate, type: t.gate, to: [end]}
      - {id: end, type: t.relay}
"""


def gate_busy_then_open(make: type[Message], later: list[object]) -> tuple[int, list[object]]:
    """Busy the gate (a "wait" goes to on_message, which waits), deliver `later` while it
    is, then open it: (what waited in its queue, what came out at the end)."""
    async def scenario() -> tuple[int, list[object]]:
        async with FlowHarness(GATED, registry=registry()) as h:
            gate = h.runner("gate")
            gate.deliver("in", make("cmd", "wait"))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            for value in later:
                gate.deliver("in", make("cmd", value))
            assert values(h, "end") == []
            waited = len(gate.mailbox)
            node = gate.node
            assert isinstance(node, Gate)
            node.opened.set()
            for _ in range(10):
                await asyncio.sleep(0)
            return waited, values(h, "end")

    return run(scenario())


def test_a_busy_node_queues_and_keeps_the_order() -> None:
    assert gate_busy_then_open(KeptMessage, [0, 1, 2]) == (3, ["wait", 0, 1, 2])


def test_telemetry_still_coalesces_while_the_node_is_busy() -> None:
    # the latest value of the topic only waits; the events above all did
    assert gate_busy_then_open(Message, list(range(1000))) == (1, ["wait", 999])


def test_a_direct_node_that_raises_fails_itself_not_the_sender() -> None:
    flow = """
        id: fail
        nodes:
          - {id: a, type: t.relay, to: [bad, good]}
          - {id: bad, type: t.relay, crash_on: 2}
          - {id: good, type: t.relay}
    """

    async def scenario() -> None:
        async with FlowHarness(flow, registry=registry()) as h:
            a = h.runner("a")
            for i in (1, 2, 3):
                a.deliver("in", Message("x", i))
            assert values(h, "good") == [1, 2, 3]  # the other target got all of them
            assert a.phase == "running"
            bad = h.runner("bad")
            assert bad.phase == "failed"
            assert bad.status.level == "error"
            assert values(h, "bad") == [1]
            await h.advance(1500)  # the restart backoff (1 s)
            assert bad.phase == "running"
            assert values(h, "bad") == [1, 3]  # 3 waited in its queue while it was down
            a.deliver("in", Message("x", 4))
            assert values(h, "bad") == [1, 3, 4]

    run(scenario())


def test_a_delay_always_queues_so_a_loop_never_calls_back_into_a_node() -> None:
    flow = """
        id: loop
        nodes:
          - {id: a, type: t.relay, to: [d]}
          - {id: d, type: delay, delay_ms: 100, to: [a]}
    """

    async def scenario() -> None:
        async with FlowHarness(flow, registry=registry()) as h:
            assert h.runner("a")._direct
            assert not h.runner("d")._direct
            h.runner("a").deliver("in", Message("x", 1))
            assert len(h.runner("d").mailbox) == 1

    run(scenario())


def test_a_chain_deeper_than_the_cap_delivers_everything_through_queues_beyond_it() -> None:
    n = MAX_DIRECT_DEPTH + 10
    lines = [f"  - {{id: n{i}, type: t.relay, to: [n{i + 1}]}}" for i in range(n)]
    flow = "id: deep\nnodes:\n" + "\n".join(lines) + f"\n  - {{id: n{n}, type: t.relay}}\n"

    async def scenario() -> None:
        async with FlowHarness(flow, registry=registry()) as h:
            h.runner("n0").deliver("in", Message("x", 1))
            assert values(h, f"n{n}") == []  # the rest waits in a queue
            assert len(h.runner(f"n{MAX_DIRECT_DEPTH}").mailbox) == 1
            for _ in range(20):
                await asyncio.sleep(0)
            assert values(h, f"n{n}") == [1]

    run(scenario())


def test_a_stopped_node_gets_nothing_directly() -> None:
    flow = """
        id: halt
        nodes:
          - {id: a, type: t.relay, to: [b]}
          - {id: b, type: t.relay}
    """

    async def scenario() -> None:
        async with FlowHarness(flow, registry=registry()) as h:
            b = h.runner("b")
            await b.halt_inputs()
            h.runner("a").deliver("in", Message("x", 1))
            assert values(h, "b") == []
            assert len(b.mailbox) == 1

    run(scenario())


@pytest.mark.parametrize("cls", [Message, KeptMessage])
def test_a_derived_message_is_a_frozen_message_like_any_other(cls: type[Message]) -> None:
    first = cls("soc", 50, 1.0, 2.0, {"unit": "%"})
    derived = first.with_value(51, "soc2")
    assert type(derived) is cls
    assert derived == cls("soc2", 51, 1.0, 2.0, {"unit": "%"})
    plain = cls("soc", 50, 1.0, 2.0).with_value(51)
    assert hash(plain) == hash(cls("soc", 51, 1.0, 2.0))
    assert derived.keep is cls.keep
    with pytest.raises(dataclasses.FrozenInstanceError):
        derived.value = 3  # type: ignore[misc]
    assert copy.copy(derived) == derived
    assert pickle.loads(pickle.dumps(derived)) == derived
    assert dataclasses.replace(derived, value=7).value == 7
    made = cls("t", 1)
    assert made.ts > 0 and made.wall > 1e9 and made.meta is None


def test_a_node_gets_nothing_directly_before_its_start_is_done() -> None:
    flow = """
        id: restart
        nodes:
          - {id: a, type: t.relay, to: [slow]}
          - {id: slow, type: t.slowstart}
    """

    async def scenario() -> None:
        async with FlowHarness(flow, registry=registry()) as h:
            slow = h.runner("slow")
            await slow.stop_now()
            SlowStart.release = asyncio.Event()
            starting = asyncio.create_task(slow.start())  # a restart, as after a failure
            await asyncio.sleep(0)
            h.runner("a").deliver("in", KeptMessage("x", 1))
            h.runner("a").deliver("in", KeptMessage("x", 2))
            node = slow.node
            assert isinstance(node, SlowStart)
            assert node.seen == [] and len(slow.mailbox) == 2  # waiting, not lost
            SlowStart.release.set()
            await starting
            for _ in range(5):
                await asyncio.sleep(0)
            assert node.seen == [1, 2]
            h.runner("a").deliver("in", KeptMessage("x", 3))
            assert node.seen == [1, 2, 3]  # running now: directly

    run(scenario())


@node_type("t.slowstart", config=GateConfig)
class SlowStart(Node[GateConfig]):
    """Its start waits for `release` (a broker that takes a while); records what came."""

    release: asyncio.Event | None = None

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        self.seen: list[object] = []
        if SlowStart.release is not None:
            await SlowStart.release.wait()

    def receive(self, port: str, msg: Message) -> bool:
        self.seen.append(msg.value)
        return True


@node_type("t.driver", config=RelayConfig)
class Driver(Node[RelayConfig]):
    """Drives something directly; raises on one value; records its safe states."""

    safe_states = 0

    def receive(self, port: str, msg: Message) -> bool:
        if msg.value == self.config.crash_on:
            raise ValueError("crash requested")
        return True

    async def safe_state(self) -> None:
        Driver.safe_states += 1


def test_a_direct_node_that_fails_is_put_into_its_safe_state() -> None:
    flow = """
        id: driven
        nodes:
          - {id: a, type: t.relay, to: [drive]}
          - {id: drive, type: t.driver, crash_on: 7}
    """

    async def scenario() -> None:
        Driver.safe_states = 0
        reg = registry()
        reg.add(Driver)
        async with FlowHarness(flow, registry=reg) as h:
            h.runner("a").deliver("in", Message("x", 1))
            assert Driver.safe_states == 0
            h.runner("a").deliver("in", Message("x", 7))  # fails in the sender's call
            for _ in range(20):
                await asyncio.sleep(0)
            assert h.runner("drive").phase == "failed"
            assert Driver.safe_states == 1
            assert h.runner("a").phase == "running"

    run(scenario())
