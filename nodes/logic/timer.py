"""timer: emit a tick on an interval or on a cron-like schedule.

Set exactly one of `interval_ms` (a fixed period, without drift) and `cron` (five
fields, "minute hour day-of-month month day-of-week", in local time):

    - id: quarter-hour
      type: timer
      cron: "*/15 * * * *"
      to: report

Each tick is a message on `topic` (default `tick`) whose value is `value`, or, when
`value` is not set, the wall-clock time in epoch seconds. `at_start: true` also emits
once right when the flow starts.

A cron timer sleeps until the next due minute (re-checking the wall clock at least
once a minute, since the clock of a Venus device may be set late by NTP). A tick
whose time the clock jumped over by more than a minute is skipped, not made up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flowengine.context import NodeContext
from flowengine.errors import ConfigError
from flowengine.model import JsonValue, NodeSpec
from flowengine.node import Node, node_type, option
from nodes.logic.cron import Cron, CronError

__all__ = ["Timer", "TimerConfig"]

RECHECK_S = 60.0  # longest sleep before the wall clock is looked at again
LATE_S = 60.0  # a tick later than this (the clock jumped) is skipped
EARLY_S = 0.001  # float rounding between the monotonic and the wall clock
_FORMAT_HINT = ('five fields "minute hour day-of-month month day-of-week", '
                'e.g. "*/15 * * * *" or "0 6 * * 1-5"')


@dataclass(frozen=True, kw_only=True)
class TimerConfig:
    interval_ms: float | None = option("time between ticks", default=None, minimum=10,
                                       example=1000)
    cron: str | None = option("schedule in local time: minute hour day-of-month month "
                              "day-of-week", default=None, example="*/15 * * * *")
    topic: str = option("topic of the tick", default="tick")
    value: JsonValue = option("value of the tick (default: the wall-clock time in epoch "
                              "seconds)", default=None)
    at_start: bool = option("also emit once right at start", default=False)


@node_type("timer", config=TimerConfig)
class Timer(Node[TimerConfig]):
    """Emit a tick on an interval or a cron-like schedule."""

    inputs = {}

    def __init__(self, config: TimerConfig, spec: NodeSpec) -> None:
        super().__init__(config, spec)
        if (config.interval_ms is None) == (config.cron is None):
            raise ConfigError(
                "set exactly one of 'interval_ms' and 'cron'",
                mark=self.mark_of("cron") if config.cron is not None else spec.mark,
                hint="`interval_ms: 1000` ticks every second, `cron: \"0 * * * *\"` "
                     "every full hour")
        self._cron: Cron | None = None
        if config.cron is not None:
            try:
                self._cron = Cron.parse(config.cron)
            except CronError as exc:
                raise ConfigError(f"cron: {exc}", mark=self.mark_of("cron"),
                                  hint=_FORMAT_HINT) from None
        self._due = 0.0  # wall-clock seconds of the next cron tick
        self._due_local: datetime | None = None
        self._last_local: datetime | None = None  # the last cron tick (fired or skipped)

    async def start(self, ctx: NodeContext) -> None:
        await super().start(ctx)
        cfg = self.config
        if cfg.interval_ms is not None:
            ctx.every(cfg.interval_ms, self._tick, name="interval",
                      first_ms=0 if cfg.at_start else None)
            ctx.status.ok(f"every {cfg.interval_ms:g} ms")
            return
        if cfg.at_start:
            ctx.after(0, self._tick, name="at-start")
        self._schedule()

    def _tick(self) -> None:
        ctx = self.ctx
        value = self.config.value
        ctx.emit(ctx.message(self.config.topic, ctx.clock.wall() if value is None else value))

    def _schedule(self) -> None:
        assert self._cron is not None
        ctx = self.ctx
        now = datetime.fromtimestamp(ctx.clock.wall())
        start, last = now, self._last_local
        if last is not None and 0 <= (last - now).total_seconds() < 2 * 3600:
            start = last  # the clock went back an hour (DST) or a little: no double tick
        due = self._cron.next_after(start)
        if due is None:  # cannot happen for a schedule that parsed; never spin
            ctx.status.error("the schedule never comes due")
            return
        self._due_local, self._due = due, due.timestamp()
        ctx.status.ok(f"next {due:%Y-%m-%d %H:%M}")
        self._sleep()

    def _sleep(self) -> None:
        wait = min(max(self._due - self.ctx.clock.wall(), 0.0), RECHECK_S)
        self.ctx.after(wait * 1000, self._wake, name="cron")

    def _wake(self) -> None:
        late = self.ctx.clock.wall() - self._due
        if late < -EARLY_S:  # not yet, or the clock went back: look again
            self._schedule()
            return
        if late <= LATE_S:
            self._tick()
        else:
            self.ctx.log.info("skipped the tick due at %s: the clock jumped %.0f s ahead",
                              self._due_local, late)
        self._last_local = self._due_local
        self._schedule()
