"""The loop watchdog names the task that held the event loop for over a second."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from conftest import run

from flowengine.watchdog import LoopWatchdog


def test_a_turn_over_one_second_is_logged_with_the_task_that_held_the_loop(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> int:
        watchdog = LoopWatchdog()
        watchdog.start()
        try:
            await asyncio.sleep(0.6)

            async def stuck() -> None:
                time.sleep(1.4)  # what a runaway node does to everyone else

            await asyncio.create_task(stuck(), name="heating/formula:inputs")
            await asyncio.sleep(0.6)
            return watchdog.blocked_turns
        finally:
            await watchdog.stop()

    with caplog.at_level(logging.WARNING, logger="flowengine.watchdog"):
        assert run(scenario()) == 1
    during, after = [r.getMessage() for r in caplog.records]
    assert during.startswith("the event loop has been blocked for over 1 s, in task "
                             "heating/formula:inputs, tests/unit/test_watchdog.py:")
    low, high = (float(x) for x in after.split(" s, in ")[0].rsplit(" ", 1)[1].split("-"))
    assert low <= 1.4 <= high + 0.05  # the 1.4 s it was held, within the watchdog's tick
    assert after.startswith("the event loop was held for ")
    assert after.endswith(", in task heating/formula:inputs, tests/unit/test_watchdog.py:24 "
                          "stuck")


def test_short_turns_are_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> int:
        watchdog = LoopWatchdog()
        watchdog.start()
        try:
            for _ in range(4):
                time.sleep(0.3)  # noticeable, but under the second
                await asyncio.sleep(0.1)
            return watchdog.blocked_turns
        finally:
            await watchdog.stop()

    with caplog.at_level(logging.WARNING, logger="flowengine.watchdog"):
        assert run(scenario()) == 0
    assert caplog.records == []
