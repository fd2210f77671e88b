"""Step a model in real time on the running event loop (for the demo and simulators).

    async with ModelDriver(model, interval_s=1.0):
        ...  # model.step(elapsed real seconds) runs every interval_s

Each step passes the real time elapsed since the previous one, so a late tick makes
a longer step rather than a lost one; `ModelParams.time_scale` speeds the day up.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

from sim.model import EnergyModel

__all__ = ["ModelDriver"]


class ModelDriver:
    """Advance an `EnergyModel` every `interval_s` real seconds until the block ends."""

    def __init__(self, model: EnergyModel, *, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.model = model
        self.interval_s = interval_s
        self.steps = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="sim/model:step")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            self.model.step(now - last)
            self.steps += 1
            last = now
