"""Time as the engine sees it: the event loop's clock, or a manual one for tests."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

__all__ = ["Clock", "LoopClock", "ManualClock"]


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


class LoopClock(Clock):
    """The real clock: time.monotonic() and asyncio.sleep."""

    def __init__(self) -> None:
        self.origin = time.monotonic()

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        await asyncio.sleep(delay if delay > 0 else 0)


class ManualClock(Clock):
    """A clock that moves only when a test calls `advance()`."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_750_000_000.0) -> None:
        self._now = self.origin = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
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

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper that is due, in deadline order."""
        target = self._now + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target + 1e-9:  # float sums
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
            await _settle()
        self._now = target
        await _settle()


async def _settle(rounds: int = 8) -> None:
    """Let ready tasks run (a few loop turns) so effects of a wake-up become visible."""
    for _ in range(rounds):
        await asyncio.sleep(0)
