"""Per-consumer energy and runtime by local day: roll-over at local midnight (TZ and DST),
gaps, a clock set back, and state that comes back as garbage."""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodes.energy.usage import Usage, local_date, next_local_midnight

# the rule Europe/Berlin has followed since 1996, where the zone database is missing
BERLIN = ("Europe/Berlin" if os.path.exists("/usr/share/zoneinfo/Europe/Berlin")
          else "CET-1CEST,M3.5.0,M10.5.0/3")
SANTIAGO = "<-04>4<-03>,M9.1.6/24,M4.1.6/24"  # Chile: DST starts at 24:00, midnight skipped
HOUR = 3600.0


@contextmanager
def local_zone(tz: str) -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", BERLIN)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    """Epoch seconds of a local time in the current zone."""
    return time.mktime((year, month, day, hour, minute, 0, 0, 0, -1))


# --- days -----------------------------------------------------------------------------


def test_new_takes_the_local_date(berlin: None) -> None:
    wall = dt.datetime(2026, 11, 30, 23, 30, tzinfo=dt.UTC).timestamp()  # 00:30 in Berlin
    assert Usage.new(wall) == Usage(day="2026-12-01")


def test_add_counts_energy_and_runtime(berlin: None) -> None:
    u = Usage.new(at(2026, 12, 1, 10))
    u.add(750.0, 60.0, at(2026, 12, 1, 10, 1))
    u.add(0.0, 60.0, at(2026, 12, 1, 10, 2))
    assert u.energy_today_wh == pytest.approx(12.5)
    assert u.energy_total_wh == pytest.approx(12.5)
    assert u.runtime_today_s == 60.0
    assert u.runtime_total_s == 60.0
    assert u.energy_yesterday_wh == 0.0 and u.runtime_yesterday_s == 0.0


@pytest.mark.parametrize(("watts", "seconds"), [
    (-100.0, 60.0), (100.0, -60.0), (math.nan, 60.0), (100.0, math.nan), (math.inf, 60.0),
    (100.0, math.inf), (1e300, 1e300),
])
def test_add_ignores_impossible_intervals(berlin: None, watts: float, seconds: float) -> None:
    u = Usage.new(at(2026, 12, 1, 10))
    u.add(watts, seconds, at(2026, 12, 1, 10, 1))
    assert u == Usage(day="2026-12-01")


def test_add_rolls_even_when_the_interval_is_ignored(berlin: None) -> None:
    u = Usage(day="2026-12-01", energy_today_wh=5.0, energy_total_wh=5.0)
    u.add(math.nan, 60.0, at(2026, 12, 2, 0, 1))
    assert (u.day, u.energy_today_wh, u.energy_yesterday_wh) == ("2026-12-02", 0.0, 5.0)


def test_an_unusable_wall_time_neither_rolls_nor_raises(berlin: None) -> None:
    u = Usage(day="2026-12-01")
    assert u.roll(math.nan) is False
    assert u.roll(1e300) is False
    u.add(100.0, 36.0, math.inf)
    assert u.energy_today_wh == pytest.approx(1.0)


def test_local_midnight_rolls_today_into_yesterday(berlin: None) -> None:
    u = Usage.new(at(2026, 12, 1, 8))
    u.add(1000.0, 3600.0, at(2026, 12, 1, 23, 59))
    assert u.roll(at(2026, 12, 1, 23, 59)) is False
    u.add(500.0, 60.0, at(2026, 12, 2, 0, 1))  # the interval ends after midnight: the new day
    assert u.day == "2026-12-02"
    assert u.energy_yesterday_wh == pytest.approx(1000.0)
    assert u.runtime_yesterday_s == 3600.0
    assert u.energy_today_wh == pytest.approx(500.0 / 60)
    assert u.runtime_today_s == 60.0
    assert u.energy_total_wh == pytest.approx(1000.0 + 500.0 / 60)
    assert u.runtime_total_s == 3660.0


def test_an_interval_across_midnight_is_split_between_the_two_days(berlin: None) -> None:
    usage = Usage.new(at(2026, 12, 1, 23, 0))
    usage.add(1000.0, 3600.0, at(2026, 12, 2, 0, 30))  # 23:30 .. 00:30 at 1 kW
    assert usage.day == "2026-12-02"
    assert usage.energy_yesterday_wh == pytest.approx(500.0)
    assert usage.energy_today_wh == pytest.approx(500.0)
    assert usage.runtime_yesterday_s == pytest.approx(1800.0)
    assert usage.energy_total_wh == pytest.approx(1000.0)


def test_an_interval_that_ends_at_midnight_belongs_to_its_day(berlin: None) -> None:
    usage = Usage.new(at(2026, 12, 1, 22, 0))
    usage.add(1000.0, 3600.0, at(2026, 12, 2, 0, 0))  # 23:00 .. 00:00
    assert (usage.energy_yesterday_wh, usage.energy_today_wh) == (1000.0, 0.0)


def test_the_day_follows_local_time_not_utc(berlin: None) -> None:
    u = Usage(day="2026-12-01", energy_today_wh=7.0)
    # 23:30 UTC on Dec 1 is already Dec 2 in Berlin (the original rolled at UTC midnight)
    assert u.roll(dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC).timestamp()) is True
    assert (u.day, u.energy_yesterday_wh, u.energy_today_wh) == ("2026-12-02", 7.0, 0.0)


def test_a_gap_of_days_leaves_yesterday_empty(berlin: None) -> None:
    u = Usage(day="2026-12-01", energy_today_wh=7.0, energy_yesterday_wh=3.0,
              energy_total_wh=100.0, runtime_today_s=70.0, runtime_yesterday_s=30.0,
              runtime_total_s=1000.0)
    assert u.roll(at(2026, 12, 3, 12)) is True
    assert u == Usage(day="2026-12-03", energy_total_wh=100.0, runtime_total_s=1000.0)


def test_a_roll_happens_once(berlin: None) -> None:
    u = Usage(day="2026-12-01", energy_today_wh=7.0)
    assert u.roll(at(2026, 12, 2, 0, 0)) is True
    assert u.roll(at(2026, 12, 2, 0, 1)) is False
    assert u.energy_yesterday_wh == 7.0


def test_a_clock_set_back_does_not_roll(berlin: None) -> None:
    u = Usage(day="2026-12-01", energy_today_wh=7.0, energy_yesterday_wh=3.0)
    assert u.roll(at(2026, 11, 30, 12)) is False
    assert u.roll(0.0) is False  # a GX device before NTP: 1970
    u.add(3600.0, 1.0, at(2026, 11, 30, 12))
    assert (u.day, u.energy_today_wh, u.energy_yesterday_wh) == ("2026-12-01", 8.0, 3.0)


@pytest.mark.parametrize(("day", "hours"), [
    ((2026, 3, 29), 23),  # CET -> CEST
    ((2026, 10, 25), 25),  # CEST -> CET
    ((2026, 12, 1), 24),
])
def test_dst_days_roll_at_their_own_midnight(berlin: None, day: tuple[int, int, int],
                                             hours: int) -> None:
    start = at(*day)
    assert next_local_midnight(start) - start == hours * HOUR
    u = Usage.new(start)
    assert u.roll(start + hours * HOUR - 1) is False
    assert u.roll(start + hours * HOUR) is True


# --- next_local_midnight ------------------------------------------------------------


def test_next_local_midnight_on_an_ordinary_day(berlin: None) -> None:
    assert next_local_midnight(at(2026, 12, 1, 10, 30)) == at(2026, 12, 2)
    assert next_local_midnight(at(2026, 12, 2)) == at(2026, 12, 3)  # at midnight: the next one
    assert next_local_midnight(at(2026, 12, 31, 23, 59)) == at(2027, 1, 1)


@pytest.mark.parametrize(("day", "hours"), [((2026, 3, 29), 23), ((2026, 10, 25), 25)])
def test_next_local_midnight_across_dst(berlin: None, day: tuple[int, int, int],
                                        hours: int) -> None:
    assert next_local_midnight(at(*day)) - at(*day) == hours * HOUR
    assert next_local_midnight(at(*day, 1, 30)) - at(*day, 1, 30) == (hours - 1.5) * HOUR


def test_next_local_midnight_where_midnight_does_not_exist() -> None:
    with local_zone(SANTIAGO):
        # 2026-09-05 24:00 -04 jumps to 2026-09-06 01:00 -03: the day begins at 01:00
        begins = dt.datetime(2026, 9, 6, 4, 0, tzinfo=dt.UTC).timestamp()
        noon = dt.datetime(2026, 9, 5, 16, 0, tzinfo=dt.UTC).timestamp()
        assert next_local_midnight(noon) == begins
        assert local_date(begins) == dt.date(2026, 9, 6)
        assert local_date(begins - 1) == dt.date(2026, 9, 5)


@pytest.mark.parametrize("tz", ["UTC0", BERLIN, SANTIAGO, "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0"])
@given(st.floats(min_value=0, max_value=4_102_444_800))  # 1970 .. 2100
def test_next_local_midnight_is_the_start_of_the_next_day(tz: str, wall: float) -> None:
    with local_zone(tz):
        midnight = next_local_midnight(wall)
        assert midnight > wall
        assert local_date(midnight) == local_date(wall) + dt.timedelta(days=1)
        assert local_date(midnight - 1) == local_date(wall)
        assert midnight - wall <= 25 * HOUR


# --- topics and state ---------------------------------------------------------------


def test_topics_carry_today_not_the_total(berlin: None) -> None:
    u = Usage(day="2026-12-01", energy_today_wh=12.345, energy_yesterday_wh=1000.04,
              energy_total_wh=98765.4321, runtime_today_s=59.6, runtime_yesterday_s=3600.4,
              runtime_total_s=123456.5)
    assert u.topics() == {
        "energyToday": 12.3, "energyYesterday": 1000.0, "energyTotal": 98765.4,
        "runtimeToday": 60, "runtimeYesterday": 3600, "runtimeTotal": 123456,
    }


def test_state_round_trips(berlin: None) -> None:
    u = Usage(day="2026-12-01", energy_today_wh=1.25, energy_yesterday_wh=2.5,
              energy_total_wh=10.125, runtime_today_s=1.5, runtime_yesterday_s=2.0,
              runtime_total_s=30.75)
    assert Usage.from_state(u.to_state(), at(2026, 12, 1, 20)) == u


def test_state_from_an_earlier_day_is_rolled(berlin: None) -> None:
    u = Usage(day="2026-12-01", energy_today_wh=4.0, energy_total_wh=10.0)
    restored = Usage.from_state(u.to_state(), at(2026, 12, 2, 8))
    assert restored == Usage(day="2026-12-02", energy_yesterday_wh=4.0, energy_total_wh=10.0)


def test_state_from_a_later_day_is_kept(berlin: None) -> None:
    u = Usage(day="2026-12-01", energy_today_wh=4.0, energy_total_wh=10.0)
    assert Usage.from_state(u.to_state(), 0.0) == u  # restarted before NTP set the clock


@pytest.mark.parametrize("data", [None, [], "2026-12-01", 5, 1.5, True, {}])
def test_state_that_is_no_dict_gives_a_fresh_usage(berlin: None, data: object) -> None:
    assert Usage.from_state(data, at(2026, 12, 1, 20)) == Usage(day="2026-12-01")


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "12", True, None, 10**400, [1]])
def test_a_bad_number_in_state_is_zero(berlin: None, bad: object) -> None:
    data = Usage(day="2026-12-01", energy_today_wh=4.0, energy_total_wh=10.0,
                 runtime_total_s=60.0).to_state()
    data["energy_total_wh"] = bad
    assert Usage.from_state(data, at(2026, 12, 1, 20)) == Usage(
        day="2026-12-01", energy_today_wh=4.0, runtime_total_s=60.0)


def test_a_whole_number_in_state_is_read_as_float(berlin: None) -> None:
    restored = Usage.from_state({"day": "2026-12-01", "energy_total_wh": 10},
                                at(2026, 12, 1, 20))
    assert restored.energy_total_wh == 10.0
    assert type(restored.energy_total_wh) is float


@pytest.mark.parametrize("day", ["2026-13-01", "2026-02-30", "20261201", "2026-12-01T00:00",
                                 "", None, 20261201, "\uff12\uff10\uff12\uff16-12-01"])
def test_a_bad_day_in_state_keeps_only_the_totals(berlin: None, day: object) -> None:
    data = Usage(day="2026-12-01", energy_today_wh=4.0, energy_yesterday_wh=3.0,
                 energy_total_wh=10.0, runtime_today_s=40.0, runtime_yesterday_s=30.0,
                 runtime_total_s=100.0).to_state()
    data["day"] = day
    assert Usage.from_state(data, at(2026, 12, 5, 20)) == Usage(
        day="2026-12-05", energy_total_wh=10.0, runtime_total_s=100.0)


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_state_from_garbage_never_raises(data: object) -> None:
    with local_zone(BERLIN):
        u = Usage.from_state(data, at(2026, 12, 1, 20))
        assert all(math.isfinite(v) and v >= 0 for v in u.topics().values())


def test_next_local_midnight_when_mktime_lands_before_a_skipped_midnight(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """glibc moves a skipped 00:00 forward to 01:00; another C library may move it back."""
    real = time.mktime
    monkeypatch.setattr(time, "mktime", lambda t: real(t) - 2 * HOUR)
    with local_zone(SANTIAGO):
        begins = dt.datetime(2026, 9, 6, 4, 0, tzinfo=dt.UTC).timestamp()
        noon = dt.datetime(2026, 9, 5, 16, 0, tzinfo=dt.UTC).timestamp()
        assert next_local_midnight(noon) == begins
