"""The loop's own watchdog: a turn that blocks longer than 1 s is logged with its culprit.
With `ESESS_WAKEUPS`, `run` also counts the loop's wake-ups and names their sources.

The watchdog sits in the selector: when the loop wakes up (the selector returns), it
arms a one-shot SIGALRM timer of one second, again at most every TICK_S while the loop
keeps turning; before the loop goes to sleep for longer than the timer has left, it
disarms it. The timer fires only when the loop did not come back to its selector for a
second: a turn took longer than 1 s - TICK_S at least, and every turn longer than 1 s is
caught. Python runs the handler in this thread at the next bytecode the blocking code
executes (or right after a long C call returns), so the handler sees the task whose step
is running: its name is "<flow>/<node>:<role>". The handler logs at once (the guardian
may kill this process soon); when the loop comes back, the watchdog logs how long the
turn held it.

It never wakes the loop itself: an idle loop sleeps until its next timer or event. On
the hot path, a clock read per turn and a timer syscall at most every TICK_S: while
messages keep coming (`_stays_armed`), the alarm is not taken off before each sleep. It
goes off at most once after such a busy spell, in the selector, which ignores it; the
loop wakes for that once (the signal's byte in asyncio's self-pipe), so an idle loop's
own timers never count as busy.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import os
import selectors
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from flowengine.atomic import write_atomically
from flowengine.context import Timer

__all__ = ["WAKEUPS_ENV", "LoopWatchdog", "WakeupCounter"]

log = logging.getLogger(__name__)

BLOCKED_S = 1.0
TICK_S = 0.25
LATE_S = 0.1
"""how late a sleeping selector may come back before the alarm would go off in it"""
BUSY_S, BUSY_RUN = 0.02, 8
"""busy: the last BUSY_RUN wake-ups each came within BUSY_S of the one before"""
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Select = Callable[[float | None], list[tuple[selectors.SelectorKey, int]]]


class _SelectHook:
    """Puts `hook(inner, timeout)` in front of a running asyncio loop's selector.select.

    asyncio's selector loop (the default) calls `self._selector.select(timeout)` once a
    turn; the hook is an attribute of that selector object, taken off again by `remove`
    (hooks are removed in the reverse order of installing)."""

    def __init__(self, hook: Callable[[Select, float | None], Any]) -> None:
        self._hook = hook
        self._selector: Any = None
        self._had: Any = None
        self._bound: Any = None

    def install(self) -> bool:
        """False when the running loop has no selector (not asyncio's selector loop)."""
        selector = getattr(asyncio.get_running_loop(), "_selector", None)
        if selector is None or not callable(getattr(selector, "select", None)):
            return False
        select = functools.partial(self._hook, selector.select)  # no extra frame a turn
        self._selector, self._had, self._bound = selector, vars(selector).get("select"), select
        selector.select = select
        return True

    def remove(self) -> None:
        selector, self._selector = self._selector, None
        if selector is None or vars(selector).get("select") is not self._bound:
            return
        if self._had is None:
            del selector.select
        else:
            selector.select = self._had


class LoopWatchdog:
    """Start with `start()` in the running loop, `stop()` before the loop ends."""

    def __init__(self, blocked_s: float = BLOCKED_S) -> None:
        self.blocked_s = blocked_s
        self.culprit: str | None = None  # what the alarm caught in the turn now ending
        self.blocked_turns = 0
        self._hook = _SelectHook(self._select)
        self._previous: object = None
        self._armed_at: float | None = None  # None: the alarm is off
        self._turn_started = 0.0
        self._caught_at = 0.0
        self._cycle_s = 1.0  # from the wake-up before the last one to the last one
        self._short_run = 0  # wake-ups in a row that came within BUSY_S

    def start(self) -> None:
        if not self._hook.install():
            log.warning("loop watchdog off: the event loop has no selector to watch")
            return
        self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
        self._turn_started = time.monotonic()
        self._arm(self._turn_started)

    async def stop(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._armed_at = None
        self._hook.remove()
        if self._previous is not None:
            signal.signal(signal.SIGALRM, self._previous)  # type: ignore[arg-type]
            self._previous = None

    def _arm(self, now: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, self.blocked_s)
        self._armed_at = now

    def _select(self, inner: Select, timeout: float | None) -> Any:
        if self.culprit is not None:  # the alarm went off: the turn now ending held the loop
            self._report(time.monotonic())
        armed_at = self._armed_at
        if timeout != 0 and armed_at is not None and not self._stays_armed(timeout) and (
                timeout is None
                or time.monotonic() + timeout + LATE_S > armed_at + self.blocked_s):
            signal.setitimer(signal.ITIMER_REAL, 0)  # going to sleep: no alarm in there
            self._armed_at = armed_at = None
        events = inner(timeout)
        now = time.monotonic()
        self._cycle_s = cycle = now - self._turn_started
        self._short_run = self._short_run + 1 if cycle < BUSY_S else 0
        self._turn_started = now
        if armed_at is None or now - armed_at >= TICK_S:
            self._arm(now)
        return events

    def _stays_armed(self, timeout: float | None) -> bool:
        """Messages keep coming: the alarm stays armed over the sleep (no two timer
        syscalls a wake-up). Busy is BUSY_RUN wake-ups in a row within BUSY_S, or, when no
        timer will wake the loop (timeout None), the last one within TICK_S. An idle
        loop's timers (a poll a second) are never busy, so it never wakes for the alarm."""
        return self._short_run >= BUSY_RUN or (timeout is None and self._cycle_s < TICK_S)

    def _report(self, now: float) -> None:
        self.blocked_turns += 1
        log.warning("the event loop was held for %.1f-%.1f s, in %s",
                    self._caught_at - self._turn_started, now - self._turn_started,
                    self.culprit)
        self.culprit = None

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if frame is not None and frame.f_code.co_filename == selectors.__file__:
            return  # the loop sleeps in its selector (it came back late): nothing holds it
        self._caught_at = time.monotonic()
        self.culprit = describe_running(frame)
        log.error("the event loop has been blocked for over %.0f s, in %s", self.blocked_s,
                  self.culprit)


def describe_running(frame: FrameType | None) -> str:
    """The running task's name (or node timer's) and the innermost frame of this
    project's code."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    where = timer = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if where is None and filename.startswith(_ROOT) and "-packages" not in filename \
                and filename != __file__:
            where = f"{os.path.relpath(filename, _ROOT)}:{frame.f_lineno} " \
                    f"{frame.f_code.co_name}"
        if frame.f_code is _TIMER_FIRE:  # a node's timer, called by the loop, no task
            timer = getattr(frame.f_locals.get("self"), "wakeup_name", None)
            break
        frame = frame.f_back
    parts = []
    if task is not None:
        parts.append(f"task {task.get_name()}")
    elif isinstance(timer, str):
        parts.append(timer)
    if where is not None:
        parts.append(where)
    return ", ".join(parts) or "no task of ours"


# -- wake-ups ------------------------------------------------------------------------------

_TIMER_FIRE = Timer._fire.__code__

WAKEUPS_ENV = "ESESS_WAKEUPS"
"""a file name: `run` counts the loop's wake-ups and names what caused each (see
`WakeupCounter`); SIGUSR1 writes the counts since the last SIGUSR1 (or the start) there"""


TIMELINE_MAX = 10_000


class WakeupCounter:
    """Count the event loop's wake-ups and name their sources: a diagnostic, off unless
    `ESESS_WAKEUPS` names a file.

    A wake-up is a return from the selector after the loop went to sleep (a select with
    a timeout other than 0); a select that only polls while callbacks are ready is a
    turn, not a wake-up. Each wake-up is charged to what woke it: the readers whose file
    descriptors became ready (`<protocol class> <peer>`, the signal pipe, a server
    socket), or, when none did, the timers that fell due (`task <name>` for a task's
    sleep or timeout, `timer <flow>/<node>:<role>` for a node's timer, else the
    callback). Each wake-up's CPU (the loop thread's, from the wake-up until the loop
    sleeps again: the callbacks it set off and the turns that follow it without a
    sleep) is charged to its sources, shared evenly when several woke it together; the
    sleeps themselves are in `loop_cpu_ms` only. SIGUSR1 writes the window so far to
    the file, `{"window_s", "wakeups", "turns", "sources": {name: count}, "cpu_ms":
    {name: ms}, "loop_cpu_ms", "timeline": [[s, name]]}`, and starts a new one. It reads
    private attributes of asyncio's selector loop, so it is for measuring, not for
    running a site.
    """

    def __init__(self, file: str) -> None:
        self.file = Path(file)
        self._hook = _SelectHook(self._select)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reset()

    @classmethod
    def from_environment(cls) -> WakeupCounter | None:
        file = os.environ.get(WAKEUPS_ENV)
        return cls(file) if file else None

    def _reset(self) -> None:
        self.since = time.monotonic()
        self.wakeups = 0
        self.turns = 0
        self.sources: collections.Counter[str] = collections.Counter()
        self.cpu_s: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.timeline: list[tuple[float, str]] = []  # (s into the window, source)
        self.since_cpu = time.thread_time()
        self._woken_by: list[str] = []  # the sources of the wake-up now running
        self._woken_cpu = 0.0

    def start(self) -> None:
        if not self._hook.install():
            log.warning("%s: the event loop has no selector; nothing is counted", WAKEUPS_ENV)
            return
        self._loop = loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self.write)
        self._reset()
        log.info("counting the event loop's wake-ups; SIGUSR1 writes them to %s", self.file)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.remove_signal_handler(signal.SIGUSR1)
            self._hook.remove()

    def write(self) -> None:
        """Write the window so far to the file; start a new one."""
        self._charge()
        report = {"window_s": round(time.monotonic() - self.since, 3),
                  "wakeups": self.wakeups, "turns": self.turns,
                  "sources": dict(self.sources.most_common()),
                  "cpu_ms": {name: round(seconds * 1000, 3) for name, seconds in
                             sorted(self.cpu_s.items(), key=lambda item: -item[1])},
                  "loop_cpu_ms": round((time.thread_time() - self.since_cpu) * 1000, 3),
                  "timeline": self.timeline}
        write_atomically(self.file, json.dumps(report, indent=1) + "\n")
        self._reset()

    def _select(self, inner: Select, timeout: float | None) -> Any:
        sleeps = timeout is None or timeout > 0
        if sleeps:
            self._charge()
        events = inner(timeout)
        self.turns += 1
        if not sleeps:
            return events  # the loop did not sleep
        self.wakeups += 1
        self._woken_cpu = time.thread_time()
        if events:
            for key, mask in events:
                reader, writer = key.data if isinstance(key.data, tuple) else (None, None)
                handle = reader if mask & selectors.EVENT_READ and reader else writer
                self._count(_name_handle(handle) if handle else f"fd {key.fd}")
            return events
        due = [h for h in self._due_timers() if not h.cancelled()]
        for handle in due:
            self._count(_name_handle(handle))
        if not due:
            self._count("(nothing due: the selector came back early)")
        return events

    def _charge(self) -> None:
        """Charge the CPU since the last wake-up to what woke it."""
        woken_by, self._woken_by = self._woken_by, []
        if woken_by:
            share = (time.thread_time() - self._woken_cpu) / len(woken_by)
            for source in woken_by:
                self.cpu_s[source] += share

    def _count(self, source: str) -> None:
        self.sources[source] += 1
        self._woken_by.append(source)
        if len(self.timeline) < TIMELINE_MAX:
            self.timeline.append((round(time.monotonic() - self.since, 3), source))

    def _due_timers(self) -> list[asyncio.TimerHandle]:
        loop = self._loop
        assert loop is not None
        end = loop.time() + loop._clock_resolution  # type: ignore[attr-defined]
        return [h for h in loop._scheduled if h.when() <= end]  # type: ignore[attr-defined]


def _name_handle(handle: Any) -> str:
    """What a loop handle (a timer, a reader) runs: a task's name for a task's sleep or
    timeout, a protocol's class and peer for a transport, else the callback."""
    try:
        return _name(handle)
    except Exception:  # a diagnostic never fails the runtime
        return f"{type(handle).__name__} {handle!r}"[:120]


def _name(handle: Any) -> str:
    callback, args = handle._callback, handle._args  # diagnostics: asyncio's own fields
    for arg in args or ():
        for waiter, _ in getattr(arg, "_callbacks", None) or ():  # a future a task awaits
            task = getattr(waiter, "__self__", None)
            if isinstance(task, asyncio.Task):
                return f"task {task.get_name()}"
    owner: Any = getattr(callback, "__self__", None)
    named = getattr(owner, "wakeup_name", None)  # a node's timer (flowengine.context.Timer)
    if isinstance(named, str):
        return named
    task = getattr(owner, "_task", None)
    if isinstance(task, asyncio.Task):  # asyncio.timeout() of a task
        return f"task {task.get_name()} ({type(owner).__name__})"
    protocol = getattr(owner, "_protocol", None)
    if isinstance(owner, asyncio.Transport) and protocol is not None:  # its _read_ready
        peer = owner.get_extra_info("peername")
        where = f" {peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        return f"{type(protocol).__module__}.{type(protocol).__qualname__}{where}"
    if owner is not None:
        return f"{type(owner).__module__}.{type(owner).__qualname__}." \
               f"{getattr(callback, '__name__', '?')}"
    if isinstance(callback, functools.partial):  # dbus-fast's reader: name what it calls
        callback = callback.func
    return f"{getattr(callback, '__module__', '?')}.{getattr(callback, '__qualname__', '?')}"
