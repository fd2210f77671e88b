"""Time as the engine sees it: the event loop's clock, or a manual one for tests."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Cancellable", "Clock", "LoopClock", "ManualClock"]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock:
    """Monotonic time, wall time, and sleeping until a monotonic deadline.

    `origin` is the monotonic time the clock was made: periodic timers tick on
    multiples of their interval from it (`NodeContext.every`), so those of one interval
    share their wake-ups."""

    origin: float = 0.0

    def monotonic(self) -> float:
        raise NotImplementedError

    def wall(self) -> float:
        raise NotImplementedError

    async def sleep_until(self, deadline: float) -> None:
        raise NotImplementedError

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Cancellable:
        """Call `callback` from the event loop at the monotonic `deadline` (soon if it
        has passed)."""
        raise NotImplementedError


class LoopClock(Clock):
    """The real clock: time.monotonic() and asyncio.sleep."""

    # The functions themselves, not methods calling them: a message is stamped with
    # both on every hop, and a Python frame each costs more than the clock read.
    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    def __init__(self) -> None:
        self.origin = time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        await asyncio.sleep(delay if delay > 0 else 0)

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Cancellable:
        delay = deadline - time.monotonic()  # the loop's own clock may be another one
        return asyncio.get_running_loop().call_later(delay if delay > 0 else 0, callback)


class ManualClock(Clock):
    """A clock that moves only when a test calls `advance()`."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_750_000_000.0) -> None:
        self._now = self.origin = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None] | _Call]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), future))
        await future

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Cancellable:
        call = _Call(callback)
        if deadline <= self._now:
            asyncio.get_running_loop().call_soon(call.run)
        else:
            heapq.heappush(self._sleepers, (deadline, next(self._seq), call))
        return call

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper that is due, in deadline order."""
        target = self._now + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target + 1e-9:  # float sums
            deadline, _, due = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if isinstance(due, _Call):
                due.run()
            elif not due.done():
                due.set_result(None)
            await _settle()
        self._now = target
        await _settle()


class _Call:
    """A call-back of `ManualClock.call_at`, until cancelled."""

    __slots__ = ("_callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self._callback = None

    def run(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


async def _settle(rounds: int = 8) -> None:
    """Let ready tasks run (a few loop turns) so effects of a wake-up become visible."""
    for _ in range(rounds):
        await asyncio.sleep(0)
