"""The loop watchdog names the task that held the event loop for over a second."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import pytest
from conftest import run

from flowengine.watchdog import LoopWatchdog, WakeupCounter


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
    assert after.endswith(", in task heating/formula:inputs, tests/unit/test_watchdog.py:27 "
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


def test_a_busy_loop_arms_the_alarm_a_few_times_a_second_not_twice_a_wake_up(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    calls: list[float] = []
    real = signal.setitimer

    def counting(which: int, seconds: float, interval: float = 0.0) -> tuple[float, float]:
        calls.append(seconds)
        return real(which, seconds, interval)

    monkeypatch.setattr(signal, "setitimer", counting)

    async def scenario() -> tuple[int, int, int]:
        watchdog = LoopWatchdog()
        watchdog.start()
        try:
            writer = await asyncio.create_subprocess_exec(  # data every 2 ms, 250 times
                sys.executable, "-c", "import sys, time\nfor _ in range(250):\n"
                "    sys.stdout.write('x'); sys.stdout.flush(); time.sleep(0.002)",
                stdout=asyncio.subprocess.PIPE)
            assert writer.stdout is not None
            await writer.stdout.read(1)
            calls.clear()
            wakes = 0
            while await writer.stdout.read(1):  # woken by the pipe: no timer near
                wakes += 1
            await writer.wait()
            during = len(calls)
            await asyncio.sleep(1.5)  # the alarm goes off in the selector: not a block
            time.sleep(1.3)  # and a real block after the busy spell is still caught
            await asyncio.sleep(0.3)
            return wakes, during, watchdog.blocked_turns
        finally:
            await watchdog.stop()

    with caplog.at_level(logging.WARNING, logger="flowengine.watchdog"):
        wakes, during, blocked = run(scenario())
    assert wakes > 100
    assert during <= 8, calls  # every TICK_S (0.25 s), not two for each of the wakes
    assert blocked == 1
    during_block, after_block = (r.getMessage() for r in caplog.records)
    assert during_block.startswith("the event loop has been blocked for over 1 s")
    assert after_block.startswith("the event loop was held for")


def test_a_wake_up_source_that_is_a_partial_is_named_by_its_function() -> None:
    import functools

    from flowengine.watchdog import _name_handle

    def reader(fd: int) -> None:
        pass

    loop = asyncio.new_event_loop()
    try:
        handle = loop.call_soon(functools.partial(reader, 7))
        name = _name_handle(handle)
        handle.cancel()
    finally:
        loop.close()
    assert name.endswith("reader"), name
    assert "functools" not in name


def test_the_wake_up_counter_charges_each_wake_up_s_cpu_to_what_woke_it(
        tmp_path: Path) -> None:

    def busy_until(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    def heavy() -> None:
        busy_until(0.02)
        asyncio.get_running_loop().call_soon(busy_until, 0.01)  # a turn without a sleep

    def light() -> None:
        pass

    file = tmp_path / "wakeups.json"

    async def scenario() -> dict[str, object]:
        counter = WakeupCounter(str(file))
        counter.start()
        loop = asyncio.get_running_loop()
        try:
            for _ in range(5):
                loop.call_later(0.01, heavy)
                await asyncio.sleep(0.05)
                loop.call_later(0.01, light)
                await asyncio.sleep(0.05)
            counter.write()
        finally:
            counter.stop()
        result: dict[str, object] = json.loads(file.read_text())
        return result

    report = run(scenario())
    cpu = report["cpu_ms"]
    assert isinstance(cpu, dict)
    heavy_ms = next(ms for name, ms in cpu.items() if name.endswith("heavy"))
    light_ms = next(ms for name, ms in cpu.items() if name.endswith("light"))
    assert heavy_ms >= 5 * 30 * 0.95  # its own 20 ms and the 10 ms of the turn it set off
    assert light_ms < heavy_ms / 10
    loop_ms = report["loop_cpu_ms"]
    assert isinstance(loop_ms, float)
    assert sum(cpu.values()) <= loop_ms + 0.5
