"""The loop's own watchdog: a turn that blocks longer than 1 s is logged with its culprit.

A task wakes every quarter second and re-arms a one-shot SIGALRM timer of one second.
The timer fires only when no wake-up came for a second: a turn of the loop took longer
than 1 s - TICK_S at least, and every turn longer than 1 s is caught. Python runs the
handler in this thread at the next bytecode the blocking code executes (or right after
a long C call returns), so the handler sees the task whose step is running: its name is
"<flow>/<node>:<role>". The handler logs at once (the guardian may kill this process
soon); when the loop turns again, the watchdog logs how long it was held.

Four wake-ups and timer syscalls a second; nothing is timed on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from types import FrameType

__all__ = ["LoopWatchdog"]

log = logging.getLogger(__name__)

BLOCKED_S = 1.0
TICK_S = 0.25
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LoopWatchdog:
    """Start with `start()` in the running loop, `stop()` before the loop ends."""

    def __init__(self, blocked_s: float = BLOCKED_S) -> None:
        self.blocked_s = blocked_s
        self.culprit: str | None = None  # what the alarm caught in the turn now ending
        self.blocked_turns = 0
        self._task: asyncio.Task[None] | None = None
        self._previous: object = None

    def start(self) -> None:
        self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
        self._task = asyncio.create_task(self._tick(), name="runtime:loop-watchdog")

    async def stop(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)  # type: ignore[arg-type]

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            signal.setitimer(signal.ITIMER_REAL, self.blocked_s)
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            gap, last = now - last, now
            if self.culprit is not None:  # the alarm went off: one turn held the loop
                self.blocked_turns += 1
                log.warning("the event loop was held for %.1f-%.1f s, in %s",
                            max(self.blocked_s - TICK_S, gap - TICK_S), gap, self.culprit)
                self.culprit = None

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        self.culprit = describe_running(frame)
        log.error("the event loop has been blocked for over %.0f s, in %s", self.blocked_s,
                  self.culprit)


def describe_running(frame: FrameType | None) -> str:
    """The running task's name and the innermost frame of this project's code."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    where = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(_ROOT) and "-packages" not in filename \
                and filename != __file__:
            where = f"{os.path.relpath(filename, _ROOT)}:{frame.f_lineno} " \
                    f"{frame.f_code.co_name}"
            break
        frame = frame.f_back
    parts = []
    if task is not None:
        parts.append(f"task {task.get_name()}")
    if where is not None:
        parts.append(where)
    return ", ".join(parts) or "no task of ours"
