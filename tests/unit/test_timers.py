"""A node's timers (`ctx.every`, `ctx.after`): the grid, late ticks, failures, the end.

A timer whose callback returns nothing runs on loop call-backs (no task of the node);
one whose callback returns an awaitable moves to a task. Either way it behaves alike.
"""

from __future__ import annotations

import logging

import pytest
from conftest import run, test_registry

from flowengine.testing import FlowHarness


def ticker(**options: object) -> str:
    extra = "".join(f", {key}: {value}" for key, value in options.items())
    return f"""
        id: clock
        nodes:
          - {{id: tick, type: test.ticker{extra}}}
    """


def ticks(h: FlowHarness) -> list[object]:
    return [m.value for m in h.messages("tick")]


def timer_tasks(h: FlowHarness) -> list[str]:
    return [t.get_name() for t in h.runner("tick").tasks if t.get_name().endswith(":tick")]


@pytest.mark.parametrize("work_ms", [None, 20])
def test_a_timer_ticks_on_its_grid(work_ms: float | None) -> None:
    async def scenario() -> None:
        options = {} if work_ms is None else {"work_ms": work_ms}
        async with FlowHarness(ticker(**options), registry=test_registry()) as h:
            start = h.clock.monotonic()
            await h.advance(1000)
            assert ticks(h) == list(range(1, 11))
            stamps = [round(m.ts - start, 3) for m in h.messages("tick")]
            assert stamps == [round(0.1 * k, 3) for k in range(1, 11)]
            runner = h.runner("tick")
            assert len(runner.timers) == 1
            # a synchronous callback needs no task; an asynchronous one has its own
            assert timer_tasks(h) == ([] if work_ms is None else ["clock/tick:tick"])

    run(scenario())


def test_ticks_due_while_an_asynchronous_callback_runs_are_skipped() -> None:
    async def scenario() -> None:
        async with FlowHarness(ticker(work_ms=250), registry=test_registry()) as h:
            start = h.clock.monotonic()
            await h.advance(1000)
            # 0.1 s: tick 1 works until 0.35 s; the ticks of 0.2 and 0.3 s are skipped
            stamps = [round(m.ts - start, 3) for m in h.messages("tick")]
            assert stamps == [0.1, 0.4, 0.7, 1.0]

    run(scenario())


def test_after_fires_once_and_is_then_inactive() -> None:
    async def scenario() -> None:
        async with FlowHarness(ticker(once="true", every_ms=300),
                               registry=test_registry()) as h:
            node = h.runner("tick").node
            await h.advance(299)
            assert ticks(h) == [] and node.timer.active
            await h.advance(1000)
            assert ticks(h) == [1]
            assert not node.timer.active
            assert h.runner("tick").timers == set()

    run(scenario())


@pytest.mark.parametrize("work_ms", [None, 20])
def test_a_callback_may_cancel_its_own_timer(work_ms: float | None) -> None:
    async def scenario() -> None:
        options: dict[str, object] = {"stop_at": 3}
        if work_ms is not None:
            options["work_ms"] = work_ms
        async with FlowHarness(ticker(**options), registry=test_registry()) as h:
            await h.advance(1000)
            assert ticks(h) == [1, 2, 3]
            node = h.runner("tick").node
            assert not node.timer.active
            assert h.runner("tick").timers == set()
            assert timer_tasks(h) == []
            assert h.status("tick").level != "error"

    run(scenario())


@pytest.mark.parametrize("work_ms", [None, 20])
def test_an_exception_in_a_timer_fails_the_node_and_the_restart_starts_afresh(
        work_ms: float | None, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        options: dict[str, object] = {"raise_at": 2}
        if work_ms is not None:
            options["work_ms"] = work_ms
        async with FlowHarness(ticker(**options), registry=test_registry()) as h:
            old = h.runner("tick").node
            await h.advance(500)  # fails at 0.2 s, restarts 1 s later
            assert ticks(h) == [1, 2]
            status = h.status("tick")
            assert (status.level, status.text) == ("error", "failed: tick 2 fails")
            assert "clock/tick (test.ticker) failed in clock/tick:tick: tick 2 fails" \
                in caplog.text
            assert not old.timer.active
            await h.advance(850)  # restarted at 1.2 s, ticked at 1.3 s
            runner = h.runner("tick")
            assert runner.restarts == 1 and runner.node is not old
            assert ticks(h) == [1, 2, 1]  # the new incarnation counts from 1 again
            assert runner.timers == {runner.node.timer}

    with caplog.at_level(logging.INFO):
        run(scenario())


@pytest.mark.parametrize("work_ms", [None, 20])
def test_no_tick_after_the_flow_stopped(work_ms: float | None) -> None:
    async def scenario() -> None:
        options = {} if work_ms is None else {"work_ms": work_ms}
        async with FlowHarness(ticker(**options), registry=test_registry()) as h:
            await h.advance(250)
            runner = h.runner("tick")
            node = runner.node
        assert ticks(h) == [1, 2]
        assert not node.timer.active
        assert runner.timers == set() and runner.tasks == set()
        await h.clock.advance(1.0)  # the clock moves on: nothing fires any more
        assert ticks(h) == [1, 2]

    run(scenario())
