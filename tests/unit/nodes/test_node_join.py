"""join: waiting, missing policies, timers, and stale inputs becoming invalid."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from flowengine.registry import Registry
from flowengine.testing import NodeHarness

REG = Registry()
REG.add_modules(["nodes.logic.join"])


def harness(tmp_path: Path, options: str) -> NodeHarness:
    node = "id: both\ntype: join\n" + textwrap.dedent(options).strip()
    return NodeHarness(node, registry=REG, tmp_dir=tmp_path)


def test_join_waits_until_every_topic_has_a_value(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "topics: [soc, power]") as h:
            await h.send("power", 300)
            assert h.values() == []
            assert h.node_status.text == "waiting for soc"
            await h.send("soc", 50)
            assert h.values() == [{"soc": 50, "power": 300}]
            assert list(h.values()[0]) == ["soc", "power"]
            assert h.messages()[0].topic == "joined"
            assert h.node_status.level == "ok"
    asyncio.run(scenario())


def test_join_missing_invalid_emits_none_for_missing_topics(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "topics: [soc, power]\nmissing: invalid") as h:
            await h.send("power", 300)
            assert h.values() == [{"soc": None, "power": 300}]
    asyncio.run(scenario())


def test_join_missing_drop_emits_only_present_topics(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "topics: [soc, power]\nmissing: drop") as h:
            await h.send("power", 300)
            assert h.values() == [{"power": 300}]
    asyncio.run(scenario())


def test_join_ignores_other_topics(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "topics: [soc]\noutput: battery") as h:
            await h.send("voltage", 52.1)
            await h.send("soc", 50)
            assert h.values() == [{"soc": 50}]
            assert h.messages()[0].topic == "battery"
    asyncio.run(scenario())


def test_join_every_ms_emits_on_the_timer_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "topics: [soc]\nevery_ms: 1000") as h:
            await h.send("soc", 50)
            await h.send("soc", 51)
            assert h.values() == []
            await h.advance(1000)
            assert h.values() == [{"soc": 51}]
            await h.advance(1000)
            assert h.values() == [{"soc": 51}, {"soc": 51}]
    asyncio.run(scenario())


def test_join_passes_a_stale_value_on_as_invalid(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, """
            topics: [soc, power]
            every_ms: 1000
            max_age_ms: 2500
        """) as h:
            await h.send("soc", 50)
            await h.send("power", 300)
            await h.advance(2000)
            await h.send("power", 310)
            await h.advance(1000)
            assert h.values() == [{"soc": 50, "power": 300}, {"soc": 50, "power": 300},
                                  {"soc": None, "power": 310}]
            assert h.node_status.level == "warning"
            assert h.node_status.text == "stale: soc"
            await h.send("soc", 49)
            await h.advance(1000)
            assert h.values()[-1] == {"soc": 49, "power": 310}
            assert h.node_status.level == "ok"
    asyncio.run(scenario())


def test_join_emits_by_itself_when_a_silent_input_goes_stale(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "topics: [soc]\nmax_age_ms: 5000") as h:
            await h.send("soc", 50)
            await h.advance(4000)
            await h.send("soc", 51)
            await h.advance(4999)
            assert h.values() == [{"soc": 50}, {"soc": 51}]
            await h.advance(1)
            assert h.values() == [{"soc": 50}, {"soc": 51}, {"soc": None}]
            await h.advance(60_000)
            assert len(h.values()) == 3
    asyncio.run(scenario())


def test_join_logs_a_stale_input_once(tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, """
            topics: [soc]
            every_ms: 1000
            max_age_ms: 1500
        """) as h:
            await h.send("soc", 50)
            await h.advance(10_000)
            assert h.values()[-1] == {"soc": None}
    asyncio.run(scenario())
    stale = [r for r in caplog.records if "older than 1500 ms" in r.getMessage()]
    assert len(stale) == 1
