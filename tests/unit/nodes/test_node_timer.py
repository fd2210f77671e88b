"""timer: interval ticks, at_start, cron ticks in local time, config errors."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from flowengine.errors import ConfigErrors
from flowengine.loader import Secrets, load_flow
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.testing import NodeHarness
from nodes.logic.cron import Cron

REG = Registry()
REG.add_modules(["nodes.logic.timer"])


def harness(tmp_path: Path, options: str) -> NodeHarness:
    node = "id: clock\ntype: timer\n" + textwrap.dedent(options).strip()
    return NodeHarness(node, registry=REG, tmp_dir=tmp_path)


def plan_errors(tmp_path: Path, options: str) -> str:
    path = tmp_path / "flow.yaml"
    body = textwrap.indent(textwrap.dedent(options).strip(), "    ")
    path.write_text(f"id: ticks\nnodes:\n  - id: clock\n    type: timer\n{body}\n",
                    encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        plan_flow(load_flow(path, secrets=Secrets(None, {})), REG)
    return str(info.value)


def test_timer_ticks_every_interval_with_the_wall_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "interval_ms: 1000") as h:
            start = h.clock.wall()
            await h.advance(999)
            assert h.values() == []
            await h.advance(1)
            await h.advance(1000)
            assert h.values() == [start + 1, start + 2]
            assert h.messages()[0].topic == "tick"
            assert h.node_status.text == "every 1000 ms"
    asyncio.run(scenario())


def test_timer_at_start_emits_right_away(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "interval_ms: 1000\nat_start: true") as h:
            await h.advance(0)
            assert len(h.values()) == 1
            await h.advance(1000)
            assert len(h.values()) == 2
    asyncio.run(scenario())


def test_timer_emits_the_configured_value_and_topic(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "interval_ms: 500\ntopic: poll\nvalue: {go: 1}") as h:
            await h.advance(500)
            assert [(m.topic, m.value) for m in h.messages()] == [("poll", {"go": 1})]
    asyncio.run(scenario())


def test_timer_cron_ticks_at_the_due_minute_in_local_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "cron: '*/15 * * * *'") as h:
            now = h.clock.wall()
            due = Cron.parse("*/15 * * * *").next_after(datetime.fromtimestamp(now))
            assert due is not None
            assert h.node_status.text == f"next {due:%Y-%m-%d %H:%M}"
            wait_ms = (due.timestamp() - now) * 1000
            await h.advance(wait_ms - 1)
            assert h.values() == []
            await h.advance(1)
            assert h.values() == [pytest.approx(due.timestamp())]
            await h.advance(15 * 60 * 1000)
            assert h.values()[1] == pytest.approx(due.timestamp() + 900)
            assert len(h.values()) == 2
    asyncio.run(scenario())


def test_timer_cron_at_start_emits_right_away(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "cron: '0 3 * * *'\nat_start: true") as h:
            await h.advance(0)
            assert len(h.values()) == 1
    asyncio.run(scenario())


def test_timer_needs_interval_or_cron(tmp_path: Path) -> None:
    text = plan_errors(tmp_path, "topic: tick")
    assert "flow.yaml:3:5: flow 'ticks', node 'clock' (timer): set exactly one of " \
           "'interval_ms' and 'cron'; `interval_ms: 1000` ticks every second" in text


def test_timer_refuses_interval_and_cron_together(tmp_path: Path) -> None:
    text = plan_errors(tmp_path, "interval_ms: 1000\ncron: '* * * * *'")
    assert "flow.yaml:6:5:" in text
    assert "set exactly one of 'interval_ms' and 'cron'" in text


@pytest.mark.parametrize(("cron", "wording"), [
    ("'*/15 * * *'", "cron: a schedule has 5 fields, '*/15 * * *' has 4"),
    ("'61 * * * *'", "cron: minute '61' is outside 0-59 or reversed"),
    ("'0 x * * *'", "cron: hour 'x': 'x' is not a number"),
    ("'0 0 30 2 *'", "cron: '0 0 30 2 *' never comes due"),
])
def test_timer_refuses_a_bad_cron_with_its_line(tmp_path: Path, cron: str,
                                                wording: str) -> None:
    text = plan_errors(tmp_path, f"cron: {cron}")
    assert f"flow.yaml:5:5: flow 'ticks', node 'clock' (timer): {wording}; five fields" in text


def test_timer_refuses_a_too_short_interval(tmp_path: Path) -> None:
    text = plan_errors(tmp_path, "interval_ms: 1")
    assert "option 'interval_ms' must be at least 10" in text


def test_interval_ticks_lie_on_the_grid_of_the_clock_whenever_the_node_starts(
        tmp_path: Path) -> None:
    """Timers of one interval share their wake-ups: a node started 0.3 s after the
    clock's origin ticks at origin + 1 s, + 2 s, ..., not at its start + 1 s."""
    async def scenario() -> None:
        h = harness(tmp_path, "interval_ms: 1000")
        h.clock.origin -= 0.3  # the runtime started 0.3 s before this node
        async with h:
            start = h.clock.wall()
            await h.advance(699)
            assert h.values() == []
            await h.advance(1)
            await h.advance(1000)
            assert h.values() == [pytest.approx(start + 0.7), pytest.approx(start + 1.7)]
    asyncio.run(scenario())


@pytest.mark.parametrize(("now", "interval", "origin", "tick"), [
    (1000.0, 1.0, 1000.0, 1001.0), (1000.3, 1.0, 1000.0, 1001.0),
    (1000.999, 0.5, 1000.0, 1001.0), (1001.0, 0.1, 1000.0, 1001.1),
    (1003.7, 2.0, 1000.0, 1004.0), (5.0, 0.3, 0.2, 5.3)])
def test_the_next_tick_is_the_first_grid_point_after_now(
        now: float, interval: float, origin: float, tick: float) -> None:
    from flowengine.context import _tick_after
    found = _tick_after(now, interval, origin)
    assert found > now
    assert found == pytest.approx(tick)
