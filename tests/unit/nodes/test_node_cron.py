"""The cron schedule of `timer`: fields, day rules, and schedules that never come due."""

from __future__ import annotations

from datetime import datetime

import pytest

from nodes.logic.cron import Cron, CronError


def next_after(schedule: str, start: datetime) -> datetime | None:
    return Cron.parse(schedule).next_after(start)


@pytest.mark.parametrize(("schedule", "start", "due"), [
    ("*/15 * * * *", datetime(2025, 6, 1, 12, 7, 30), datetime(2025, 6, 1, 12, 15)),
    ("*/15 * * * *", datetime(2025, 6, 1, 12, 15), datetime(2025, 6, 1, 12, 30)),
    ("* * * * *", datetime(2025, 12, 31, 23, 59, 59), datetime(2026, 1, 1, 0, 0)),
    ("0,30 8-10 * * *", datetime(2025, 6, 1, 10, 31), datetime(2025, 6, 2, 8, 0)),
    ("10-50/20 * * * *", datetime(2025, 6, 1, 12, 31), datetime(2025, 6, 1, 12, 50)),
    ("5/20 * * * *", datetime(2025, 6, 1, 12, 26), datetime(2025, 6, 1, 12, 45)),
    ("0 3 * * 1-5", datetime(2025, 6, 6, 12, 0), datetime(2025, 6, 9, 3, 0)),
    ("0 0 * * 7", datetime(2025, 6, 2), datetime(2025, 6, 8)),
    ("0 0 1 1 *", datetime(2025, 6, 1), datetime(2026, 1, 1)),
    ("0 0 29 2 *", datetime(2025, 3, 1), datetime(2028, 2, 29)),
])
def test_cron_finds_the_next_due_minute(schedule: str, start: datetime,
                                        due: datetime) -> None:
    assert next_after(schedule, start) == due


def test_cron_day_fields_both_restricted_match_either() -> None:
    # 2025-06-01 is a Sunday: due on the 15th or on a Sunday, whichever comes first
    assert next_after("0 12 15 * 0", datetime(2025, 6, 2)) == datetime(2025, 6, 8, 12)
    assert next_after("0 12 15 * 0", datetime(2025, 6, 9)) == datetime(2025, 6, 15, 12)


def test_cron_day_of_month_step_with_weekday_matches_both() -> None:
    assert next_after("0 0 */2 * 1", datetime(2025, 6, 1)) == datetime(2025, 6, 9)


@pytest.mark.parametrize(("schedule", "wording"), [
    ("* * * *", "has 4"),
    ("*/0 * * * *", "the step must be at least 1"),
    ("0 24 * * *", "hour '24' is outside 0-23"),
    ("5-1 * * * *", "reversed"),
    ("0 0 31 4 *", "never comes due"),
    ("-1 * * * *", "'' is not a number"),
])
def test_cron_refuses_bad_schedules(schedule: str, wording: str) -> None:
    with pytest.raises(CronError, match=wording):
        Cron.parse(schedule)
