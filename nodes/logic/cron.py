"""Cron-like schedules for `timer` (not a node type).

Five fields, "minute hour day-of-month month day-of-week", each `*`, a number, a
range `1-5`, a step `*/15` or `10-50/20`, or a list of those `0,30`. Day of
week 0 and 7 are Sunday. As in cron, when both day fields are restricted (neither
starts with `*`), a day that matches either of them is due. Times are local, naive
datetimes: the caller converts to and from wall-clock seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Cron", "CronError"]

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))
_SEARCH_DAYS = 366 * 8 + 2  # Feb 29 can be eight years away (2096 -> 2104)


class CronError(ValueError):
    """A schedule that does not parse or never comes due."""


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # the day-of-month field starts with '*'
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        fields = text.split()
        if len(fields) != 5:
            raise CronError(f"a schedule has 5 fields, '{text}' has {len(fields)}")
        values = [_parse_field(f, *spec) for f, spec in zip(fields, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in values[4])
        cron = cls(tuple(sorted(values[0])), tuple(sorted(values[1])), frozenset(values[2]),
                   frozenset(values[3]), weekdays, fields[2].startswith("*"),
                   fields[4].startswith("*"))
        if cron.next_after(datetime(2001, 1, 1)) is None:
            raise CronError(f"'{text}' never comes due")
        return cron

    def day_matches(self, day: datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, start: datetime) -> datetime | None:
        """The first due minute after `start` (local, naive), or None within 8 years."""
        t = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=_SEARCH_DAYS)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self.day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            hour = next((h for h in self.hours if h >= t.hour), None)
            if hour is None:
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if hour != t.hour:
                t = t.replace(hour=hour, minute=0)
            minute = next((m for m in self.minutes if m >= t.minute), None)
            if minute is None:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            return t.replace(minute=minute)
        return None


def _parse_field(text: str, name: str, low: int, high: int) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = _number(step_text, name, part) if step_text else 1
        if step < 1:
            raise CronError(f"{name} '{part}': the step must be at least 1")
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = _number(a, name, part), _number(b, name, part)
        else:
            first = _number(body, name, part)
            last = high if step_text else first
        if not low <= first <= last <= high:
            raise CronError(f"{name} '{part}' is outside {low}-{high} or reversed")
        out.update(range(first, last + 1, step))
    return out


def _number(text: str, name: str, part: str) -> int:
    if not text.isdigit():
        raise CronError(f"{name} '{part}': '{text}' is not a number")
    return int(text)
