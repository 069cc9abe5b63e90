"""Cadences in words, compiled to APScheduler triggers: worked examples, the DST policy as properties
over several zones and the years 2026-2032, the send window, and refused values."""

from __future__ import annotations

import calendar
import json
import pickle
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.cadence import (
    Cadence,
    CadenceError,
    SendWindow,
    check_fires,
    check_time_zone,
    fire_times_between,
    next_fire_times,
    parse_cadence,
)

UTC = timezone.utc
TICK = timedelta(microseconds=1)
ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Phoenix",
    "Europe/London",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Sao_Paulo",
]
PROPERTY = settings(max_examples=80, deadline=None)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------
# Worked examples


def test_first_tuesday_every_month_in_new_york() -> None:
    cadence = parse_cadence({"kind": "monthly_weekday", "ordinal": "1", "weekday": "tue", "time": "09:00"})

    assert cadence.describe() == "Every month on the first Tuesday at 09:00"
    assert next_fire_times(cadence, "America/New_York", utc(2026, 1, 1)) == [
        utc(2026, 1, 6, 14),  # EST
        utc(2026, 2, 3, 14),
        utc(2026, 3, 3, 14),
        utc(2026, 4, 7, 13),  # EDT from 8 March
        utc(2026, 5, 5, 13),
        utc(2026, 6, 2, 13),
        utc(2026, 7, 7, 13),
        utc(2026, 8, 4, 13),
        utc(2026, 9, 1, 13),
        utc(2026, 10, 6, 13),
    ]


def test_every_two_weeks_on_monday_and_thursday_in_london() -> None:
    cadence = parse_cadence(
        {"kind": "weekly", "every_weeks": "2", "weekdays": ["mon", "thu"], "time": "07:30",
         "start_date": "2026-01-05"}
    )

    assert cadence.describe() == "Every 2 weeks on Monday and Thursday at 07:30"
    assert next_fire_times(cadence, "Europe/London", utc(2026, 1, 1), count=14) == [
        utc(2026, 1, 5, 7, 30),
        utc(2026, 1, 8, 7, 30),
        utc(2026, 1, 19, 7, 30),
        utc(2026, 1, 22, 7, 30),
        utc(2026, 2, 2, 7, 30),
        utc(2026, 2, 5, 7, 30),
        utc(2026, 2, 16, 7, 30),
        utc(2026, 2, 19, 7, 30),
        utc(2026, 3, 2, 7, 30),
        utc(2026, 3, 5, 7, 30),
        utc(2026, 3, 16, 7, 30),
        utc(2026, 3, 19, 7, 30),
        utc(2026, 3, 30, 6, 30),  # BST from 29 March
        utc(2026, 4, 2, 6, 30),
    ]


def test_weekly_anchor_week_starts_on_the_start_date() -> None:
    cadence = parse_cadence(
        {"kind": "weekly", "every_weeks": 2, "weekdays": "1,4", "hour": 7, "minute": 30,
         "start_date": "2026-01-07"}
    )

    assert next_fire_times(cadence, "Europe/London", utc(2026, 1, 1), count=3) == [
        utc(2026, 1, 8, 7, 30),  # the Monday of the start week (5 January) is before the start date
        utc(2026, 1, 19, 7, 30),
        utc(2026, 1, 22, 7, 30),
    ]


def test_quarterly_on_day_31_falls_on_the_last_day_of_shorter_months() -> None:
    cadence = parse_cadence({"kind": "quarterly", "day": 31, "hour": 10})

    assert cadence.describe() == "Every quarter on day 31 at 10:00 (the last day in shorter months)"
    assert next_fire_times(cadence, "America/Chicago", utc(2026, 1, 1), count=5) == [
        utc(2026, 1, 31, 16),
        utc(2026, 4, 30, 15),
        utc(2026, 7, 31, 15),
        utc(2026, 10, 31, 15),
        utc(2027, 1, 31, 16),
    ]


def test_quarterly_on_the_last_friday_from_february() -> None:
    cadence = parse_cadence(
        {"kind": "quarterly", "start_month": "2", "ordinal": "last", "weekday": 5, "hour": 9}
    )

    assert cadence.describe() == (
        "Every quarter (February, May, August and November) on the last Friday at 09:00"
    )
    assert next_fire_times(cadence, "America/Chicago", utc(2026, 1, 1), count=4) == [
        utc(2026, 2, 27, 15),
        utc(2026, 5, 29, 14),
        utc(2026, 8, 28, 14),
        utc(2026, 11, 27, 15),
    ]


def test_monthly_day_31_every_month_includes_february() -> None:
    cadence = parse_cadence({"kind": "monthly_day", "day": "31", "hour": "10"})

    assert cadence.describe() == "Every month on day 31 at 10:00 (the last day in shorter months)"
    times = next_fire_times(cadence, "UTC", utc(2028, 1, 1), count=4)
    assert times == [utc(2028, 1, 31, 10), utc(2028, 2, 29, 10), utc(2028, 3, 31, 10), utc(2028, 4, 30, 10)]


def test_once_on_a_date() -> None:
    cadence = parse_cadence({"kind": "once", "date": "2027-03-14", "time": "09:00"})

    assert cadence.describe() == "Once, on 14 March 2027 at 09:00"
    assert next_fire_times(cadence, "America/New_York", utc(2026, 1, 1)) == [utc(2027, 3, 14, 13)]
    assert next_fire_times(cadence, "America/New_York", utc(2027, 3, 14, 13)) == []


def test_cron_uses_standard_crontab_weekday_numbers() -> None:
    weekdays = parse_cadence({"kind": "cron", "expression": " 0 9  * * 1-5 "})

    assert weekdays.describe() == "Cron: 0 9 * * 1-5"
    assert next_fire_times(weekdays, "America/New_York", utc(2026, 1, 2, 12), count=6) == [
        utc(2026, 1, 2, 14),  # Friday
        utc(2026, 1, 5, 14),  # Monday to Friday, no weekend
        utc(2026, 1, 6, 14),
        utc(2026, 1, 7, 14),
        utc(2026, 1, 8, 14),
        utc(2026, 1, 9, 14),
    ]
    for sunday in ("0", "7", "sun"):
        cadence = parse_cadence({"kind": "cron", "expression": f"0 9 * * {sunday}"})
        assert next_fire_times(cadence, "America/New_York", utc(2026, 1, 1), count=1) == [utc(2026, 1, 4, 14)]


def test_cron_agrees_with_apscheduler_where_there_is_no_dst() -> None:
    expression = "*/20 8-10 1,15 * *"
    cadence = parse_cadence({"kind": "cron", "expression": expression})
    ours = next_fire_times(cadence, "America/Phoenix", utc(2026, 1, 1), count=40)
    theirs, previous = [], None
    trigger = CronTrigger.from_crontab(expression, timezone=ZoneInfo("America/Phoenix"))
    while len(theirs) < 40:
        previous = trigger.get_next_fire_time(previous, previous or utc(2026, 1, 1) + TICK)
        theirs.append(previous.astimezone(UTC))
    assert ours == theirs


# ------------------------------------------------------------------------------------------------
# The DST policy, by example


def test_a_time_in_the_spring_forward_gap_fires_at_the_end_of_the_gap() -> None:
    sundays = Cadence(kind="weekly", weekdays=(7,), hour=2, minute=30)
    assert next_fire_times(sundays, "America/New_York", utc(2026, 3, 1), count=3) == [
        utc(2026, 3, 1, 7, 30),
        utc(2026, 3, 8, 7),  # 02:30 does not exist on 8 March: 03:00 EDT
        utc(2026, 3, 15, 6, 30),
    ]
    daily = Cadence(kind="cron", expression="30 2 * * *")
    assert next_fire_times(daily, "America/New_York", utc(2026, 3, 7), count=3) == [
        utc(2026, 3, 7, 7, 30),
        utc(2026, 3, 8, 7),
        utc(2026, 3, 9, 6, 30),
    ]
    lord_howe = Cadence(kind="weekly", weekdays=(7,), hour=2, minute=15)  # a 30-minute gap, 02:00-02:30
    assert next_fire_times(lord_howe, "Australia/Lord_Howe", utc(2026, 9, 30), count=2) == [
        utc(2026, 10, 3, 15, 30),  # 02:30 +11:00
        utc(2026, 10, 10, 15, 15),
    ]
    once = Cadence(kind="once", date=date(2027, 3, 14), hour=2, minute=30)
    assert next_fire_times(once, "America/New_York", utc(2027, 1, 1)) == [utc(2027, 3, 14, 7)]


def test_gap_occurrences_collapse_into_one_fire() -> None:
    half_hourly = Cadence(kind="cron", expression="*/30 * * * *")
    start, end = utc(2026, 3, 8, 6, 29), utc(2026, 3, 8, 7, 31)
    assert fire_times_between(half_hourly, "America/New_York", start, end) == [
        utc(2026, 3, 8, 6, 30),  # 01:30 EST
        utc(2026, 3, 8, 7),  # 02:00, 02:30 and 03:00 EDT: one fire
        utc(2026, 3, 8, 7, 30),
    ]


def test_a_repeated_time_at_fall_back_fires_once() -> None:
    daily = Cadence(kind="cron", expression="30 1 * * *")
    assert next_fire_times(daily, "America/New_York", utc(2026, 10, 31), count=3) == [
        utc(2026, 10, 31, 5, 30),
        utc(2026, 11, 1, 5, 30),  # the first 01:30 (EDT); the second (EST) is not a fire
        utc(2026, 11, 2, 6, 30),
    ]
    half_hourly = Cadence(kind="cron", expression="*/30 * * * *")
    start, end = utc(2026, 11, 1, 4, 59), utc(2026, 11, 1, 7, 1)
    assert fire_times_between(half_hourly, "America/New_York", start, end) == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 7),  # 02:00 EST; the repeated 01:00 and 01:30 do not fire again
    ]


def test_the_scheduler_resuming_inside_the_repeated_hour_does_not_fire_again() -> None:
    trigger = Cadence(kind="cron", expression="30 1 * * *").trigger("America/New_York")
    first_one_thirty, during_the_second = utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 31)
    assert trigger.get_next_fire_time(first_one_thirty, during_the_second) == utc(2026, 11, 2, 6, 30)
    assert trigger.get_next_fire_time(None, utc(2026, 11, 1, 5, 31)) == utc(2026, 11, 2, 6, 30)


# ------------------------------------------------------------------------------------------------
# Properties over zones and years

hours = st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(0, 23))
minutes = st.one_of(st.sampled_from([0, 15, 30, 45]), st.integers(0, 59))
month_steps = st.sampled_from([1, 2, 3, 6, 12])
months = st.integers(1, 12)
iso_weekdays = st.integers(1, 7)
ordinals = st.sampled_from([1, 2, 3, 4, -1])
zones = st.sampled_from(ZONES)
years = st.integers(2026, 2031)
moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2032, 12, 31), timezones=st.just(UTC))

monthly_cadences = st.one_of(
    st.builds(Cadence, kind=st.just("monthly_day"), day=st.integers(1, 31), hour=hours, minute=minutes,
              every_months=month_steps, start_month=months),
    st.builds(Cadence, kind=st.just("monthly_weekday"), ordinal=ordinals, weekday=iso_weekdays, hour=hours,
              minute=minutes, every_months=month_steps, start_month=months),
    st.builds(Cadence, kind=st.just("quarterly"), day=st.integers(1, 31), hour=hours, minute=minutes,
              start_month=months),
    st.builds(Cadence, kind=st.just("quarterly"), ordinal=ordinals, weekday=iso_weekdays, hour=hours,
              minute=minutes, start_month=months),
)
weekly_cadences = st.builds(
    Cadence,
    kind=st.just("weekly"),
    weekdays=st.sets(iso_weekdays, min_size=1).map(lambda days: tuple(sorted(days))),
    every_weeks=st.integers(1, 5),
    start_date=st.dates(date(2025, 12, 1), date(2032, 6, 30)),
    hour=hours,
    minute=minutes,
)
daily_crons = st.builds(
    lambda hour, minute: Cadence(kind="cron", expression=f"{minute} {hour} * * *"), hours, minutes
)
cadences = st.one_of(monthly_cadences, weekly_cadences, daily_crons)


def local_year_span(zone: str, first_year: int, last_year: int) -> tuple[datetime, datetime]:
    """(start, end] covering every local instant of the years first_year..last_year."""
    tz = ZoneInfo(zone)
    start = datetime(first_year, 1, 1, tzinfo=tz).astimezone(UTC) - timedelta(seconds=1)
    end = datetime(last_year + 1, 1, 1, tzinfo=tz).astimezone(UTC) - timedelta(seconds=1)
    return start, end


def exists(wall: datetime, tz: ZoneInfo) -> bool:
    return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


def assert_follows_dst_policy(fire: datetime, wall: datetime, zone: str) -> None:
    """``fire`` is the first instant the local clock reads ``wall`` (or later, when ``wall`` falls
    in a gap), and not the repeat of a time that happens twice."""
    tz = ZoneInfo(zone)
    local = fire.astimezone(tz)
    just_before = (fire - TICK).astimezone(tz).replace(tzinfo=None)
    assert local.fold == 0, f"{fire} is the second {wall} in {zone}"
    assert just_before < wall <= local.replace(tzinfo=None), (fire, wall, zone)
    if local.replace(tzinfo=None) != wall:
        assert not exists(wall, tz), (fire, wall, zone)


def expected_day(cadence: Cadence, year: int, month: int) -> date:
    """The rule's day in a month, stated independently of the module (through ``calendar``)."""
    last = calendar.monthrange(year, month)[1]
    if cadence.day is not None:
        return date(year, month, min(cadence.day, last))
    matching = [day for day in range(1, last + 1) if date(year, month, day).isoweekday() == cadence.weekday]
    return date(year, month, matching[cadence.ordinal - 1 if cadence.ordinal > 0 else -1])


@PROPERTY
@given(cadences, zones, moments)
def test_fire_times_are_utc_strictly_increasing_and_never_repeat_a_local_time(cadence, zone, after) -> None:
    times = next_fire_times(cadence, zone, after, count=25)

    assert len(times) == 25
    assert all(moment.tzinfo is UTC for moment in times)
    assert times[0] > after
    assert all(earlier < later for earlier, later in zip(times, times[1:]))
    local_dates = [moment.astimezone(ZoneInfo(zone)).date() for moment in times]
    assert len(set(local_dates)) == len(local_dates)


@PROPERTY
@given(monthly_cadences, zones, years)
def test_monthly_kinds_fire_exactly_once_in_every_month_of_their_cycle(cadence, zone, year) -> None:
    step = 3 if cadence.kind == "quarterly" else cadence.every_months
    cycle = [(y, m) for y in (year, year + 1) for m in range(1, 13) if (m - cadence.start_month) % step == 0]
    start, end = local_year_span(zone, year, year + 1)

    times = fire_times_between(cadence, zone, start, end)

    at = time(cadence.hour, cadence.minute)
    walls = [datetime.combine(expected_day(cadence, y, m), at) for y, m in cycle]
    assert len(times) == len(walls)
    for fire, wall in zip(times, walls):
        assert_follows_dst_policy(fire, wall, zone)


@PROPERTY
@given(st.sets(iso_weekdays, max_size=6).map(lambda days: tuple(sorted(days | {7}))),
       st.integers(1, 3), st.sampled_from([0, 1, 2, 3]), minutes, zones, years)
def test_weekly_fires_on_every_chosen_day_across_dst_changes(
    weekdays, every_weeks, hour, minute, zone, year
) -> None:
    start_date = date(year, 1, 1) + timedelta(days=every_weeks * 3)
    cadence = Cadence(kind="weekly", weekdays=weekdays, every_weeks=every_weeks, start_date=start_date,
                      hour=hour, minute=minute)
    anchor = start_date - timedelta(days=start_date.isoweekday() - 1)
    days = [date(year, 1, 1) + timedelta(days=offset) for offset in range(366)]
    chosen = [
        day for day in days
        if day.year == year and day >= start_date and day.isoweekday() in weekdays
        and (day - anchor).days // 7 % every_weeks == 0
    ]
    start, end = local_year_span(zone, year, year)

    times = fire_times_between(cadence, zone, start, end)

    assert len(times) == len(chosen)
    for fire, day in zip(times, chosen):
        assert_follows_dst_policy(fire, datetime.combine(day, time(hour, minute)), zone)


@PROPERTY
@given(hours, minutes, zones, years)
def test_daily_cron_fires_once_a_day_across_dst_changes(hour, minute, zone, year) -> None:
    cadence = Cadence(kind="cron", expression=f"{minute} {hour} * * *")
    start, end = local_year_span(zone, year, year)

    times = fire_times_between(cadence, zone, start, end)

    days = [date(year, 1, 1) + timedelta(days=offset) for offset in range(calendar.isleap(year) + 365)]
    assert len(times) == len(days)
    for fire, day in zip(times, days):
        assert_follows_dst_policy(fire, datetime.combine(day, time(hour, minute)), zone)


@PROPERTY
@given(cadences, zones, moments, st.lists(st.integers(0, 10**7), min_size=15, max_size=15))
def test_the_scheduler_trigger_gives_the_preview_times(cadence, zone, after, delays) -> None:
    preview = next_fire_times(cadence, zone, after, count=15)
    trigger = cadence.trigger(zone)
    fired, previous, now = [], None, after + TICK
    for delay in delays:  # the scheduler asks again after each run, some seconds late
        previous = trigger.get_next_fire_time(previous, now)
        fired.append(previous)
        now = previous + timedelta(seconds=delay)
    assert fired == preview


@PROPERTY
@given(cadences, zones, moments, st.integers(1, 120 * 24))
def test_missed_occurrences_are_the_runs_the_scheduler_catches_up(
    cadence, zone, last_check, hours_down
) -> None:
    back_up = last_check + timedelta(hours=hours_down)
    trigger = cadence.trigger(zone)
    caught_up = []  # as APScheduler's Job._get_run_times walks the trigger up to "now"
    next_run = trigger.get_next_fire_time(None, last_check + TICK)
    while next_run is not None and next_run <= back_up:
        caught_up.append(next_run)
        next_run = trigger.get_next_fire_time(next_run, back_up)

    assert fire_times_between(cadence, zone, last_check, back_up) == caught_up


@PROPERTY
@given(cadences)
def test_to_dict_is_json_and_round_trips(cadence) -> None:
    assert parse_cadence(json.loads(json.dumps(cadence.to_dict()))) == cadence
    assert cadence.describe()


def test_the_trigger_is_an_apscheduler_trigger_that_survives_a_job_store() -> None:
    trigger = Cadence(kind="cron", expression="0 9 * * 1-5").trigger("America/New_York")
    restored = pickle.loads(pickle.dumps(trigger))

    assert isinstance(trigger, BaseTrigger)
    assert restored.get_next_fire_time(None, utc(2026, 1, 3)) == utc(2026, 1, 5, 14)
    assert "Cron: 0 9 * * 1-5" in str(trigger)


def test_an_apscheduler_scheduler_runs_the_trigger() -> None:
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.start(paused=True)
    try:
        once = Cadence(kind="once", date=date(2031, 5, 1), hour=9)
        job = scheduler.add_job(print, once.trigger("America/New_York"))
        assert job.next_run_time == utc(2031, 5, 1, 13)
    finally:
        scheduler.shutdown(wait=False)


# ------------------------------------------------------------------------------------------------
# The send window

WEEKDAYS_8_TO_17 = SendWindow.parse("12345", 8, 17)


def test_send_window_parse_accepts_form_values() -> None:
    assert SendWindow.parse("12345", "9", "17:00") == SendWindow(frozenset({1, 2, 3, 4, 5}), 9, 17)
    assert SendWindow.parse("67", 0, 24).days == frozenset({6, 7})


def test_send_window_contains_only_its_days_and_hours() -> None:
    zone = "America/New_York"
    assert WEEKDAYS_8_TO_17.contains(utc(2026, 1, 6, 13), zone)  # Tuesday 08:00
    assert WEEKDAYS_8_TO_17.contains(utc(2026, 1, 6, 21, 59), zone)  # Tuesday 16:59
    assert not WEEKDAYS_8_TO_17.contains(utc(2026, 1, 6, 22), zone)  # Tuesday 17:00
    assert not WEEKDAYS_8_TO_17.contains(utc(2026, 1, 3, 15), zone)  # Saturday


@pytest.mark.parametrize(
    ("moment", "opening"),
    [
        (utc(2026, 1, 6, 17), utc(2026, 1, 6, 17)),  # inside: itself
        (utc(2026, 1, 6, 12, 59), utc(2026, 1, 6, 13)),  # Tuesday 07:59 -> 08:00
        (utc(2026, 1, 9, 22), utc(2026, 1, 12, 13)),  # Friday 17:00 -> Monday 08:00
        (utc(2026, 1, 3, 15), utc(2026, 1, 5, 13)),  # Saturday -> Monday 08:00
        (utc(2026, 3, 7, 15), utc(2026, 3, 9, 12)),  # across spring forward: Monday 08:00 EDT
    ],
)
def test_next_open_moves_to_the_next_opening(moment: datetime, opening: datetime) -> None:
    assert WEEKDAYS_8_TO_17.next_open(moment, "America/New_York") == opening


def test_next_open_skips_a_window_swallowed_by_the_spring_forward_gap() -> None:
    window = SendWindow.parse("7", 2, 3)  # Sundays 02:00-03:00; on 8 March 2026 that hour does not exist
    assert window.next_open(utc(2026, 3, 7, 15), "America/New_York") == utc(2026, 3, 15, 6)


@PROPERTY
@given(st.sets(iso_weekdays, min_size=1), st.integers(0, 23), st.integers(1, 24), zones, moments)
def test_next_open_is_the_first_instant_inside_the_window(days, start_hour, end_hour, zone, moment) -> None:
    if start_hour >= end_hour:
        start_hour, end_hour = end_hour - 1, start_hour + 1
    window = SendWindow(frozenset(days), start_hour, end_hour)

    opening = window.next_open(moment, zone)

    assert opening.tzinfo is UTC
    assert window.contains(opening, zone)
    assert opening >= moment
    assert (opening == moment) == window.contains(moment, zone)
    probe = moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0) + timedelta(minutes=15)
    while probe < opening:  # every opening is on a UTC quarter hour in these zones
        assert not window.contains(probe, zone), (probe, opening)
        probe += timedelta(minutes=15)


def test_fire_times_move_into_the_window_and_shifted_duplicates_collapse() -> None:
    early = Cadence(kind="monthly_weekday", ordinal=1, weekday=2, hour=7)
    assert next_fire_times(early, "America/New_York", utc(2026, 1, 1), count=2, window=WEEKDAYS_8_TO_17) == [
        utc(2026, 1, 6, 13),
        utc(2026, 2, 3, 13),
    ]
    weekends = Cadence(kind="weekly", weekdays=(6, 7), hour=10)
    assert next_fire_times(weekends, "America/New_York", utc(2026, 1, 1), count=3, window=WEEKDAYS_8_TO_17) == [
        utc(2026, 1, 5, 13),  # Saturday and Sunday both wait for Monday 08:00: one send
        utc(2026, 1, 12, 13),
        utc(2026, 1, 19, 13),
    ]


@PROPERTY
@given(st.one_of(monthly_cadences, weekly_cadences, daily_crons), zones, moments,
       st.sets(iso_weekdays, min_size=1), st.integers(0, 22), st.integers(1, 6))
def test_windowed_times_are_the_collapsed_next_openings_of_the_cadence(
    cadence, zone, after, days, start, length
) -> None:
    window = SendWindow(frozenset(days), start, min(start + length, 24))
    shifted = []
    for moment in next_fire_times(cadence, zone, after, count=120):
        opening = window.next_open(moment, zone)
        if not shifted or opening != shifted[-1]:
            shifted.append(opening)

    windowed = next_fire_times(cadence, zone, after, count=10, window=window)

    assert windowed == shifted[:10]
    assert all(window.contains(moment, zone) for moment in windowed)
    trigger = cadence.trigger(zone, window)
    assert trigger.get_next_fire_time(windowed[0], windowed[0]) == windowed[1]


@pytest.mark.parametrize(
    ("days", "start_hour", "end_hour", "field"),
    [
        ("", 8, 17, "send_days"),
        ("089", 8, 17, "send_days"),
        ("mon", 8, 17, "send_days"),
        ("12345", 17, 8, "send_end_hour"),
        ("12345", 9, 9, "send_end_hour"),
        ("12345", 24, 24, "send_start_hour"),
        ("12345", 8, 25, "send_end_hour"),
        ("12345", "9:30", 17, "send_start_hour"),
        ("12345", "nine", 17, "send_start_hour"),
    ],
)
def test_a_window_that_excludes_every_hour_or_is_malformed_is_refused(
    days, start_hour, end_hour, field
) -> None:
    with pytest.raises(CadenceError) as refused:
        SendWindow.parse(days, start_hour, end_hour)
    assert refused.value.field == field
    assert refused.value.message.endswith(".")


# ------------------------------------------------------------------------------------------------
# Refused values


def test_form_strings_are_accepted() -> None:
    form = {"kind": "monthly_day", "day": "15", "hour": " 9 ", "minute": "05", "weekdays": ""}
    assert parse_cadence(form) == Cadence(kind="monthly_day", day=15, hour=9, minute=5)
    assert parse_cadence({"kind": "weekly", "weekdays": "14", "time": "7:30"}).weekdays == (1, 4)
    assert parse_cadence({"kind": "weekly", "weekdays": ["Thursday", "1"], "hour": 7}).weekdays == (1, 4)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "monthly_day", "day": 1, "hour": 9, "colour": "red"}, "cadence.colour"),
        ({"day": 1, "hour": 9}, "cadence.kind"),
        ({"kind": "fortnightly", "hour": 9}, "cadence.kind"),
        ({"kind": "monthly_day", "day": 32, "hour": 9}, "cadence.day"),
        ({"kind": "monthly_day", "day": "1st", "hour": 9}, "cadence.day"),
        ({"kind": "monthly_day", "day": 1}, "cadence.hour"),
        ({"kind": "monthly_day", "day": 1, "hour": 24}, "cadence.hour"),
        ({"kind": "monthly_day", "day": 1, "hour": 9, "minute": "60"}, "cadence.minute"),
        ({"kind": "monthly_day", "day": 1, "hour": True}, "cadence.hour"),
        ({"kind": "monthly_day", "day": 1, "time": "9h"}, "cadence.time"),
        ({"kind": "monthly_day", "day": 1, "time": "25:00"}, "cadence.time"),
        ({"kind": "monthly_day", "day": 1, "time": "09:00", "hour": 9}, "cadence.time"),
        ({"kind": "monthly_day", "day": 1, "hour": 9, "every_months": 4}, "cadence.every_months"),
        ({"kind": "monthly_day", "day": 1, "hour": 9, "start_month": 13}, "cadence.start_month"),
        ({"kind": "monthly_weekday", "ordinal": 5, "weekday": 2, "hour": 9}, "cadence.ordinal"),
        ({"kind": "monthly_weekday", "ordinal": 1, "weekday": 8, "hour": 9}, "cadence.weekday"),
        ({"kind": "monthly_weekday", "ordinal": 1, "weekday": "someday", "hour": 9}, "cadence.weekday"),
        ({"kind": "monthly_weekday", "ordinal": 1, "hour": 9}, "cadence.weekday"),
        ({"kind": "quarterly", "day": 1, "ordinal": 1, "weekday": 2, "hour": 9}, "cadence.day"),
        ({"kind": "quarterly", "day": 1, "hour": 9, "every_months": 3}, "cadence.every_months"),
        ({"kind": "weekly", "weekdays": [1], "hour": 9, "day": 3}, "cadence.day"),
        ({"kind": "weekly", "weekdays": [], "hour": 9}, "cadence.weekdays"),
        ({"kind": "weekly", "weekdays": [1, 9], "hour": 9}, "cadence.weekdays"),
        ({"kind": "weekly", "weekdays": [1], "hour": 9, "every_weeks": 53, "start_date": "2026-01-05"},
         "cadence.every_weeks"),
        ({"kind": "weekly", "weekdays": [1], "hour": 9, "every_weeks": 2}, "cadence.start_date"),
        ({"kind": "weekly", "weekdays": [1], "hour": 9, "start_date": "5 Jan 2026"}, "cadence.start_date"),
        ({"kind": "once", "hour": 9}, "cadence.date"),
        ({"kind": "once", "date": "2027-02-30", "hour": 9}, "cadence.date"),
        ({"kind": "once", "date": "2027-02-03", "hour": 9, "weekday": 1}, "cadence.weekday"),
        ({"kind": "cron"}, "cadence.expression"),
        ({"kind": "cron", "expression": "0 9 * *"}, "cadence.expression"),
        ({"kind": "cron", "expression": "61 9 * * *"}, "cadence.expression"),
        ({"kind": "cron", "expression": "0 9 * * 8"}, "cadence.expression"),
        ({"kind": "cron", "expression": "0 9 * * 5-1"}, "cadence.expression"),
        ({"kind": "cron", "expression": "0 9 1 * 1"}, "cadence.expression"),
        ({"kind": "cron", "expression": "0 9 * * 1", "hour": 9}, "cadence.hour"),
    ],
)
def test_bad_cadences_are_refused_naming_the_field(data, field) -> None:
    with pytest.raises(CadenceError) as refused:
        parse_cadence(data)
    assert refused.value.field == field
    assert refused.value.message[0].isupper() and refused.value.message.endswith(".")


def test_an_unknown_time_zone_is_refused() -> None:
    assert check_time_zone("Pacific/Chatham") == ZoneInfo("Pacific/Chatham")
    for name in ("Mars/Olympus_Mons", "", "../etc/passwd", "localtime"):
        with pytest.raises(CadenceError) as refused:
            check_time_zone(name)
        assert refused.value.field == "time_zone"
    with pytest.raises(CadenceError) as refused:
        next_fire_times(Cadence(kind="monthly_day", day=1, hour=9), "Nowhere/Town", utc(2026, 1, 1))
    assert refused.value.field == "time_zone"


@pytest.mark.parametrize(
    "cadence",
    [
        Cadence(kind="once", date=date(2026, 3, 14), hour=9),
        Cadence(kind="cron", expression="0 9 30 2 *"),
        Cadence(kind="cron", expression="0 9 31 4,6,9,11 *"),
    ],
)
def test_a_cadence_that_never_fires_is_refused(cadence: Cadence) -> None:
    with pytest.raises(CadenceError) as refused:
        check_fires(cadence, "America/New_York", utc(2026, 6, 1), window=WEEKDAYS_8_TO_17)
    assert refused.value.field == "cadence"
    assert "never fires" in refused.value.message


def test_a_cadence_that_fires_passes_the_check() -> None:
    check_fires(Cadence(kind="once", date=date(2026, 6, 2), hour=9), "America/New_York", utc(2026, 6, 1))
    check_fires(Cadence(kind="cron", expression="0 9 29 2 *"), "America/New_York", utc(2026, 6, 1))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire_times(Cadence(kind="monthly_day", day=1, hour=9), "UTC", datetime(2026, 1, 1))
