"""Per-consumer energy and runtime: today, yesterday and total (pure, no I/O).

The distributor adds one interval at each allowance update (the latest consumption over
the time since the last update, as the original's rectangle rule) and publishes
`topics()` under `Requests/<key>/Energy/`. Days are **local** days (TZ and DST apply,
the original rolled at UTC midnight on a drifting timer): `add` and `roll` compare the
local date of the wall clock with `day`, so a roll-over is never missed or doubled, also
after a restart or a gap of several days (yesterday is then 0). A clock set back (a GX
device before NTP) does not roll back; the values keep accruing to `day`.

`energyToday` carries today's energy (the original's carried the total).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import time
from collections.abc import Collection
from dataclasses import dataclass, fields
from typing import Self, TypeGuard

from flowengine.model import JsonValue

__all__ = ["Usage", "UsageBook", "local_date", "next_local_midnight"]

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TODAY = ("energy_today_wh", "runtime_today_s")
_YESTERDAY = ("energy_yesterday_wh", "runtime_yesterday_s")
_TOTAL = ("energy_total_wh", "runtime_total_s")


def local_date(wall: float) -> dt.date:
    """The local date of `wall` (epoch s); ValueError when it is no usable time."""
    if not math.isfinite(wall):
        raise ValueError(f"wall time {wall!r} is not finite")
    try:
        t = time.localtime(wall)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"wall time {wall!r} is out of range") from exc
    return dt.date(t.tm_year, t.tm_mon, t.tm_mday)


def next_local_midnight(wall: float) -> float:
    """Epoch seconds of the next local midnight after `wall` (the start of the next day).

    Across DST changes a day has 23 or 25 hours; where midnight itself does not exist
    (clocks jump from 24:00 to 01:00), the result is the first second of the next day.
    """
    following = local_date(wall) + dt.timedelta(days=1)
    guess = time.mktime((following.year, following.month, following.day, 0, 0, 0, 0, 0, -1))
    if local_date(guess) >= following and local_date(guess - 1) < following:
        return guess
    # mktime normalised a midnight that does not exist: search near it for the first
    # second of the next day (the local date is monotonic over these few hours)
    low, high = math.floor(guess) - 4 * 3600, math.floor(guess) + 4 * 3600
    while low < high:
        middle = (low + high) // 2
        if local_date(middle) >= following:
            high = middle
        else:
            low = middle + 1
    return float(max(low, math.floor(wall) + 1))


@dataclass
class Usage:
    """One consumer's energy (Wh) and runtime (s); the *today* values belong to `day`."""

    day: str  # local date, ISO "2026-12-01"
    energy_today_wh: float = 0.0
    energy_yesterday_wh: float = 0.0
    energy_total_wh: float = 0.0
    runtime_today_s: float = 0.0
    runtime_yesterday_s: float = 0.0
    runtime_total_s: float = 0.0

    @classmethod
    def new(cls, wall: float) -> Self:
        """Nothing used yet, today being the local date of `wall`."""
        return cls(day=local_date(wall).isoformat())

    def roll(self, wall: float) -> bool:
        """Start a new day when the local date of `wall` is after `day`; True when it did.

        Yesterday := today when `day` was the day before, else 0 (days in between used
        nothing); today := 0. An earlier date (clock set back) or an unusable `wall`
        does not roll.
        """
        try:
            date = local_date(wall)
        except ValueError:
            return False
        current = dt.date.fromisoformat(self.day)
        if date <= current:
            return False
        follows = date - current == dt.timedelta(days=1)
        for today, yesterday in zip(_TODAY, _YESTERDAY, strict=True):
            setattr(self, yesterday, getattr(self, today) if follows else 0.0)
            setattr(self, today, 0.0)
        self.day = date.isoformat()
        return True

    def add(self, watts: float, seconds: float, wall: float) -> None:
        """Add `watts` for the `seconds` up to `wall`, each part to its own local day.

        An interval across a local midnight is split there: the part before it counts
        for the day it belongs to (which becomes yesterday), the rest for the new day.
        Energy goes to today and total; runtime too, when `watts` > 0. Negative or
        non-finite watts or seconds (or an energy that overflows) add nothing.
        """
        if not (_good(watts) and _good(seconds)):
            self.roll(wall)
            return
        with contextlib.suppress(ValueError, OverflowError):
            start = wall - seconds
            midnight = next_local_midnight(start)
            if midnight <= wall and local_date(start).isoformat() >= self.day:
                self._add(watts, midnight - start, start)
                seconds, start = wall - midnight, midnight
        self._add(watts, seconds, wall)

    def _add(self, watts: float, seconds: float, wall: float) -> None:
        self.roll(wall)
        energy = watts * seconds / 3600
        if not math.isfinite(energy):
            return
        self.energy_today_wh += energy
        self.energy_total_wh += energy
        if watts > 0:
            self.runtime_today_s += seconds
            self.runtime_total_s += seconds

    def topics(self) -> dict[str, float]:
        """The published values: Wh to 0.1, runtime in whole seconds."""
        return {
            "energyToday": round(self.energy_today_wh, 1),
            "energyYesterday": round(self.energy_yesterday_wh, 1),
            "energyTotal": round(self.energy_total_wh, 1),
            "runtimeToday": round(self.runtime_today_s),
            "runtimeYesterday": round(self.runtime_yesterday_s),
            "runtimeTotal": round(self.runtime_total_s),
        }

    def to_state(self) -> dict[str, JsonValue]:
        """Every field by its name, unrounded (what `from_state` reads)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state(cls, data: JsonValue, wall: float) -> Self:
        """From `to_state()`'s output, then rolled to `wall`; never raises on bad data.

        Not a dict: a fresh `new(wall)`. A number that is missing, negative or not finite
        is 0. A bad day: today and yesterday cannot be placed, so they are 0 and the day
        is `wall`'s; the totals are kept.
        """
        usage = cls.new(wall)
        if not isinstance(data, dict):
            return usage
        for name in (*_TODAY, *_YESTERDAY, *_TOTAL):
            value = data.get(name)
            if _good(value):
                setattr(usage, name, float(value))
        day = data.get("day")
        if _valid_day(day):
            usage.day = day
        else:
            for name in (*_TODAY, *_YESTERDAY):
                setattr(usage, name, 0.0)
        usage.roll(wall)
        return usage


class UsageBook:
    """The `Usage` of every consumer key, at most `max_keys` of them (kept as one state
    value); a new key past that replaces the oldest key not in use."""

    def __init__(self, max_keys: int = 100) -> None:
        self.max_keys = max_keys
        self.usage: dict[str, Usage] = {}

    def load(self, data: JsonValue, wall: float) -> None:
        """From `to_state()`'s output (anything else: nothing), rolled to `wall`."""
        if isinstance(data, dict):
            for key, value in list(data.items())[:self.max_keys]:
                self.usage[str(key)] = Usage.from_state(value, wall)

    def entry(self, key: str, wall: float, in_use: Collection[str]) -> Usage | None:
        """`key`'s usage, new when it had none; None when every kept key is in use."""
        usage = self.usage.get(key)
        if usage is None:
            if len(self.usage) >= self.max_keys:
                oldest = next((k for k in self.usage if k not in in_use), None)
                if oldest is None:
                    return None
                del self.usage[oldest]
            usage = self.usage[key] = Usage.new(wall)
        return usage

    def roll(self, wall: float) -> bool:
        """Roll every key to the local date of `wall`; True when any rolled."""
        return any([u.roll(wall) for u in self.usage.values()])

    def to_state(self) -> dict[str, JsonValue]:
        return {k: u.to_state() for k, u in self.usage.items()}


def _good(value: object) -> TypeGuard[float]:
    """A finite number ≥ 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an int too big for a float
        return False


def _valid_day(day: object) -> TypeGuard[str]:
    if not isinstance(day, str) or not _DAY.fullmatch(day):
        return False
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        return False
    return True
