"""delay: fixed delays in order, rate pacing with latest-wins, bounds, and loops."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

from flowengine.loader import Secrets, load_flow
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.testing import NodeHarness

REG = Registry()
REG.add_modules(["nodes.logic.delay", "nodes.logic.change"])


def harness(tmp_path: Path, options: str) -> NodeHarness:
    node = "id: later\ntype: delay\n" + textwrap.dedent(options).strip()
    return NodeHarness(node, registry=REG, tmp_dir=tmp_path)


def test_delay_passes_every_message_later_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "delay_ms: 1000") as h:
            await h.send("a", 1)
            await h.advance(400)
            await h.send("a", 2)
            await h.send("b", 3)
            await h.advance(599)
            assert h.values() == []
            await h.advance(1)
            assert h.values() == [1]
            await h.advance(400)
            assert h.values() == [1, 2, 3]
    asyncio.run(scenario())


def test_delay_rate_passes_the_first_at_once_and_paces_the_rest(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "delay_ms: 1000\nmode: rate") as h:
            await h.send("a", 1)
            assert h.values() == [1]
            await h.send("a", 2)
            await h.send("b", 10)
            await h.send("a", 3)
            await h.advance(999)
            assert h.values() == [1]
            await h.advance(1)
            assert h.values() == [1, 3]
            await h.advance(1000)
            assert h.values() == [1, 3, 10]
            await h.advance(5000)
            assert h.values() == [1, 3, 10]
            await h.send("a", 4)
            assert h.values() == [1, 3, 10, 4]
    asyncio.run(scenario())


def test_delay_drops_the_oldest_beyond_1000_waiting(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "delay_ms: 1000") as h:
            for i in range(1005):
                await h.send("a", i)
            assert h.node_status.text == "dropped 5"
            await h.advance(1000)
            assert h.values()[:2] == [5, 6]
            assert len(h.values()) == 1000
    asyncio.run(scenario())


def test_delay_may_close_a_loop(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent("""
        id: loop
        nodes:
          - id: later
            type: delay
            delay_ms: 1000
            to: again
          - id: again
            type: change
            to: later
        """), encoding="utf-8")
    plan_flow(load_flow(path, secrets=Secrets(None, {})), REG)
