"""Cadences a marketer can say in words, compiled to APScheduler 3.11 triggers, and the send window.

A cadence is a rule on the wall clock of the campaign's IANA time zone ("the first Tuesday of every
month at 09:00"). Each wall-clock occurrence becomes an instant under one DST policy:

* a time that does not exist (spring forward) fires at the first instant after the gap;
* a time that happens twice (fall back) fires once, at its first occurrence;
* a monthly or quarterly day 29-31 falls on the last day of shorter months.

APScheduler's ``CronTrigger`` follows none of these: it fires a skipped 02:30 at 03:30, fires a
repeated 01:30 twice, skips the months without a 31st, and reads crontab weekdays with 0 = Monday.
So every cadence compiles to a :class:`CadenceTrigger`, and :func:`next_fire_times` iterates that
same trigger: the campaign builder's preview and the scheduler cannot disagree.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from crm.errors import FieldError

UTC = dt.timezone.utc
TICK = dt.timedelta(microseconds=1)

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")
ORDINAL_NAMES = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
MONTH_STEPS = (1, 2, 3, 6, 12)
LATEST_DATE = dt.date(2199, 12, 31)
CRONTAB_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 and 7 are Sunday

# The settings each kind uses, in the order ``to_dict`` writes them.
SETTINGS = ("hour", "minute", "every_months", "start_month", "ordinal", "weekday", "day", "weekdays",
            "every_weeks", "start_date", "date", "expression")
KIND_SETTINGS = {
    "monthly_weekday": {"hour", "minute", "every_months", "start_month", "ordinal", "weekday"},
    "monthly_day": {"hour", "minute", "every_months", "start_month", "day"},
    "quarterly": {"hour", "minute", "start_month", "ordinal", "weekday", "day"},
    "weekly": {"hour", "minute", "weekdays", "every_weeks", "start_date"},
    "once": {"hour", "minute", "date"},
    "cron": {"expression"},
}
KIND_LABELS = {
    "monthly_weekday": "monthly (on a weekday)",
    "monthly_day": "monthly (on a day of the month)",
    "quarterly": "quarterly",
    "weekly": "weekly",
    "once": "one-time",
    "cron": "cron",
}
DEFAULTS = {"minute": 0, "every_months": 1, "start_month": 1, "every_weeks": 1}
MESSAGES = {
    "kind": "Choose how often to send: monthly, weekly, quarterly, once or cron.",
    "hour": "Choose an hour from 0 to 23.",
    "minute": "Choose a minute from 0 to 59.",
    "time": "Enter a time like 09:00.",
    "every_months": "Choose every 1, 2, 3, 6 or 12 months.",
    "start_month": "Choose a starting month from 1 (January) to 12 (December).",
    "ordinal": "Choose the first, second, third, fourth or last weekday of the month.",
    "weekday": "Choose a day of the week.",
    "weekdays": "Choose at least one day of the week.",
    "day": "Choose a day of the month from 1 to 31.",
    "every_weeks": "Choose every 1 to 52 weeks.",
    "start_date": "Choose a start date like 2026-01-05, before 2200.",
    "date": "Choose the date to send on, like 2026-01-05, before 2200.",
    "expression": "Write a cron expression of five fields (minute, hour, day of month, month, day of "
                  "week), like 0 9 * * 1-5.",
}


class CadenceError(FieldError):
    """A cadence, time zone or send window was refused; ``field`` names the setting."""


# ------------------------------------------------------------------------------------------------
# Time zones and the DST policy


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    """IANA zone names; some systems also list their own "localtime" and tzdata's placeholders."""
    return frozenset(available_timezones() - {"localtime", "posixrules", "Factory"})


def check_time_zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; CadenceError("time_zone", ...) for anything else."""
    if not isinstance(name, str) or name not in _zone_names():
        raise CadenceError("time_zone",
                           f"Choose a known time zone, like America/New_York (“{name}” is not one).")
    return ZoneInfo(name)


def _as_utc(moment: dt.datetime, name: str) -> dt.datetime:
    if not isinstance(moment, dt.datetime) or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return moment.astimezone(UTC)


def _wall(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The naive wall-clock reading of ``moment`` in ``zone``."""
    return moment.astimezone(zone).replace(tzinfo=None, fold=0)


def local_instant(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant at which the naive wall-clock time ``wall`` in ``zone`` fires: its first
    occurrence, or the first instant after the DST gap when it does not exist."""
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(instant, zone) == wall:
        return instant
    return _gap_end(wall, zone)


def _gap_end(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The transition that swallows ``wall``, found by bisection (transitions fall on whole seconds).

    Inside a gap, fold=1 reads ``wall`` with the offset after the transition (an instant before
    it) and fold=0 with the offset before it (an instant after it)."""
    before = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    after = int(wall.replace(tzinfo=zone, fold=0).timestamp())
    new_offset = dt.datetime.fromtimestamp(after, zone).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if dt.datetime.fromtimestamp(middle, zone).utcoffset() == new_offset:
            after = middle
        else:
            before = middle
    return dt.datetime.fromtimestamp(after, UTC)


# ------------------------------------------------------------------------------------------------
# Cadences


@dataclass(frozen=True)
class Cadence:
    """A send rule on the campaign's local wall clock; validated on construction.

    Weekdays are ISO (1 = Monday .. 7 = Sunday); ``ordinal`` is 1..4 or -1 for the last.
    ``quarterly`` takes either ``day`` or ``ordinal`` and ``weekday``, every 3 months from
    ``start_month``. ``weekly`` runs in the weeks (Monday to Sunday) ``every_weeks`` apart from the
    week of ``start_date``, on or after that date; ``start_date`` is required when ``every_weeks`` > 1.
    """

    kind: str
    hour: int | None = None
    minute: int | None = None
    every_months: int | None = None
    start_month: int | None = None
    ordinal: int | None = None
    weekday: int | None = None
    day: int | None = None
    weekdays: tuple[int, ...] | None = None
    every_weeks: int | None = None
    start_date: dt.date | None = None
    date: dt.date | None = None
    expression: str | None = None
    _crontab: CronTrigger | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KIND_SETTINGS:
            raise CadenceError("cadence.kind", MESSAGES["kind"])
        used = KIND_SETTINGS[self.kind]
        for name in SETTINGS:
            if name not in used and getattr(self, name) is not None:
                raise CadenceError(f"cadence.{name}",
                                   f"This setting does not apply to a {KIND_LABELS[self.kind]} cadence.")
            if name in used and name in DEFAULTS and getattr(self, name) is None:
                object.__setattr__(self, name, DEFAULTS[name])
        if self.kind == "cron":
            self._check_expression()
            return
        _check_int("hour", self.hour, range(24))
        _check_int("minute", self.minute, range(60))
        if self.kind == "weekly":
            self._check_weekly()
        elif self.kind == "once":
            _check_date("date", self.date)
        else:
            self._check_monthly()

    def _check_monthly(self) -> None:
        if self.kind != "quarterly":
            _check_int("every_months", self.every_months, MONTH_STEPS)
        _check_int("start_month", self.start_month, range(1, 13))
        if self.kind == "monthly_day" or self.day is not None:
            if self.ordinal is not None or self.weekday is not None:  # a quarterly cadence given both
                raise CadenceError("cadence.day", "Choose either a day of the month or a weekday like the "
                                                  "first Tuesday, not both.")
            _check_int("day", self.day, range(1, 32))
        else:
            _check_int("ordinal", self.ordinal, ORDINAL_NAMES)
            _check_int("weekday", self.weekday, range(1, 8))

    def _check_weekly(self) -> None:
        if not self.weekdays:
            raise CadenceError("cadence.weekdays", MESSAGES["weekdays"])
        for weekday in self.weekdays:
            _check_int("weekdays", weekday, range(1, 8))
        object.__setattr__(self, "weekdays", tuple(sorted(set(self.weekdays))))
        _check_int("every_weeks", self.every_weeks, range(1, 53))
        if self.start_date is None and self.every_weeks > 1:
            raise CadenceError("cadence.start_date", f"Choose a start date, so that every {self.every_weeks} "
                                                     f"weeks always means the same weeks.")
        if self.start_date is not None:
            _check_date("start_date", self.start_date)

    def _check_expression(self) -> None:
        if not isinstance(self.expression, str):
            raise CadenceError("cadence.expression", MESSAGES["expression"])
        expression = " ".join(self.expression.split())
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "_crontab", _compile_crontab(expression))

    @property
    def _month_step(self) -> int:
        return 3 if self.kind == "quarterly" else self.every_months

    @property
    def _time(self) -> dt.time:
        return dt.time(self.hour, self.minute)

    def to_dict(self) -> dict[str, Any]:
        """The cadence as JSON-able data that :func:`parse_cadence` reads back to an equal cadence."""
        data: dict[str, Any] = {"kind": self.kind}
        for name in SETTINGS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, dt.date):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            data[name] = value
        return data

    def describe(self) -> str:
        """The cadence in words, e.g. "Every month on the first Tuesday at 09:00"."""
        if self.kind == "cron":
            return f"Cron: {self.expression}"
        at = f"at {self.hour:02d}:{self.minute:02d}"
        if self.kind == "once":
            return f"Once, on {_long_date(self.date)} {at}"
        if self.kind == "weekly":
            every = "Every week" if self.every_weeks == 1 else f"Every {self.every_weeks} weeks"
            return f"{every} on {_join(WEEKDAY_NAMES[weekday - 1] for weekday in self.weekdays)} {at}"
        if self.day is not None:
            on = f"day {self.day}"
        else:
            on = f"the {ORDINAL_NAMES[self.ordinal]} {WEEKDAY_NAMES[self.weekday - 1]}"
        return f"{self._describe_months()} on {on} {at}{self._short_month_note()}"

    def _months(self) -> list[int]:
        """The months of the year the cadence fires in."""
        return [month for month in range(1, 13) if (month - self.start_month) % self._month_step == 0]

    def _describe_months(self) -> str:
        step = self._month_step
        if step == 1:
            return "Every month"
        if step == 12:
            return f"Every year in {MONTH_NAMES[self.start_month - 1]}"
        every = "Every quarter" if step == 3 else f"Every {step} months"
        if (self.start_month - 1) % step == 0:
            return every
        return f"{every} ({_join(MONTH_NAMES[month - 1] for month in self._months())})"

    def _short_month_note(self) -> str:
        if self.day is None or all(calendar.monthrange(2001, month)[1] >= self.day for month in self._months()):
            return ""
        return " (the last day in shorter months)"

    def trigger(self, time_zone: str, window: SendWindow | None = None) -> CadenceTrigger:
        """The APScheduler trigger firing this cadence in ``time_zone`` (moved into ``window``)."""
        return CadenceTrigger(self, check_time_zone(time_zone), window)

    def next_occurrence(self, after: dt.datetime) -> dt.datetime | None:
        """The first wall-clock occurrence strictly after the naive local time ``after``."""
        if self.kind == "cron":
            fire = self._crontab.get_next_fire_time(None, after.replace(tzinfo=UTC) + TICK)
            return fire.replace(tzinfo=None) if fire else None
        if self.kind == "once":
            occurrence = dt.datetime.combine(self.date, self._time)
            return occurrence if occurrence > after else None
        if self.kind == "weekly":
            return self._next_weekly(after)
        return self._next_monthly(after)

    def _next_monthly(self, after: dt.datetime) -> dt.datetime:
        step = self._month_step
        index = after.year * 12 + after.month - 1  # months since year 0
        index += -(index - (self.start_month - 1)) % step  # the first month of the cycle from here
        while True:
            year, month = divmod(index, 12)
            occurrence = dt.datetime.combine(self._day_in(year, month + 1), self._time)
            if occurrence > after:
                return occurrence
            index += step

    def _day_in(self, year: int, month: int) -> dt.date:
        """The rule's day in a month: ``day`` (at most the last day) or the ordinal weekday."""
        last = calendar.monthrange(year, month)[1]
        if self.day is not None:
            return dt.date(year, month, min(self.day, last))
        if self.ordinal == -1:
            return dt.date(year, month, last - (dt.date(year, month, last).isoweekday() - self.weekday) % 7)
        first = 1 + (self.weekday - dt.date(year, month, 1).isoweekday()) % 7
        return dt.date(year, month, first + 7 * (self.ordinal - 1))

    def _next_weekly(self, after: dt.datetime) -> dt.datetime:
        day = max(after.date(), self.start_date) if self.start_date else after.date()
        anchor_day = self.start_date or day
        anchor = anchor_day - dt.timedelta(days=anchor_day.isoweekday() - 1)  # Monday of the first week
        while True:
            weeks = (day - anchor).days // 7
            if weeks % self.every_weeks:
                day = anchor + dt.timedelta(weeks=weeks + (-weeks % self.every_weeks))
                continue
            if day.isoweekday() in self.weekdays:
                occurrence = dt.datetime.combine(day, self._time)
                if occurrence > after:
                    return occurrence
            day += dt.timedelta(days=1)


def _check_int(name: str, value: Any, allowed: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise CadenceError(f"cadence.{name}", MESSAGES[name])


def _check_date(name: str, value: Any) -> None:
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date) or value > LATEST_DATE:
        raise CadenceError(f"cadence.{name}", MESSAGES[name])


def _compile_crontab(expression: str) -> CronTrigger:
    """APScheduler's CronTrigger for a standard crontab line, in UTC, for matching naive wall times."""
    fields = expression.split()
    if len(fields) != 5:
        raise CadenceError("cadence.expression", MESSAGES["expression"])
    minute, hour, day, month, weekdays = fields
    if day != "*" and weekdays != "*":
        raise CadenceError("cadence.expression",
                           "Restrict the day of the month or the day of the week, not both (cron would send "
                           "when either matches); for a rule like the first Monday, choose a monthly cadence.")
    try:
        return CronTrigger.from_crontab(f"{minute} {hour} {day} {month} {_apscheduler_weekdays(weekdays)}",
                                        timezone=UTC)
    except ValueError as error:
        raise CadenceError("cadence.expression", f"This cron expression is not valid ({error}).") from None


def _apscheduler_weekdays(text: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday, 1 = Monday) as names, which APScheduler 3 reads
    the same way (its numbers count from 0 = Monday)."""
    if text == "*":
        return text
    days: set[int] = set()
    for item in text.split(","):
        span, slash, step = item.partition("/")
        if span == "*":
            first, last = 0, 6
        else:
            first_text, dash, last_text = span.partition("-")
            first = _crontab_day(first_text)
            last = _crontab_day(last_text) if dash else first
            if first > last or (slash and not dash):
                raise CadenceError("cadence.expression", f"The day-of-week range “{item}” is not valid.")
        if slash and not (_digits(step) and int(step) > 0):
            raise CadenceError("cadence.expression", f"The step in “{item}” is not valid.")
        days.update(day % 7 for day in range(first, last + 1, int(step) if slash else 1))
    return ",".join(CRONTAB_DAYS[day] for day in sorted(days))


def _crontab_day(text: str) -> int:
    if _digits(text) and int(text) <= 7:
        return int(text)
    if text.lower() in CRONTAB_DAYS:
        return CRONTAB_DAYS.index(text.lower())
    raise CadenceError("cadence.expression",
                       "Days of the week are 0 to 7 (0 and 7 are Sunday) or sun to sat.")


def _join(words: Iterable[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _long_date(day: dt.date) -> str:
    return f"{day.day} {MONTH_NAMES[day.month - 1]} {day.year}"


# ------------------------------------------------------------------------------------------------
# Parsing forms and JSON


def _digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also accepts "²" and other scripts' digits)."""
    return re.fullmatch(r"[0-9]{1,6}", text) is not None


def _parse_int(name: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,6}", value.strip()):
        return int(value)
    raise CadenceError(f"cadence.{name}", MESSAGES[name])


def _parse_weekday(name: str, value: Any) -> int:
    """An ISO weekday from 1..7, "2", "tue" or "Tuesday"."""
    if isinstance(value, str) and not _digits(value.strip()):
        for number, weekday in enumerate(WEEKDAY_NAMES, start=1):
            if value.strip().lower() in (weekday.lower(), weekday[:3].lower()):
                return number
        raise CadenceError(f"cadence.{name}", MESSAGES[name])
    return _parse_int(name, value)


def _parse_weekdays(name: str, value: Any) -> tuple[int, ...]:
    """Weekdays from a list, "1,4", "mon thu" or a string of digits like "14"."""
    if isinstance(value, str):
        items = re.split(r"[\s,]+", value.strip())
        value = list(items[0]) if len(items) == 1 and _digits(items[0]) else items
    if not isinstance(value, (list, tuple)):
        raise CadenceError(f"cadence.{name}", MESSAGES[name])
    return tuple(_parse_weekday(name, item) for item in value)


def _parse_ordinal(name: str, value: Any) -> int:
    """1..4 or -1, also written "first".."fourth" or "last"."""
    if isinstance(value, str):
        for number, word in ORDINAL_NAMES.items():
            if value.strip().lower() == word:
                return number
    return _parse_int(name, value)


def _parse_date(name: str, value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(value.strip())
    except (AttributeError, ValueError):
        raise CadenceError(f"cadence.{name}", MESSAGES[name]) from None


MAX_EXPRESSION = 100


def _parse_expression(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise CadenceError(f"cadence.{name}", MESSAGES[name])
    if len(value) > MAX_EXPRESSION:
        raise CadenceError(f"cadence.{name}", f"A cron expression has at most {MAX_EXPRESSION} characters.")
    return value


def _parse_time(value: Any) -> tuple[int, int]:
    """(hour, minute) from "09:00", "9:30" or a ``datetime.time``."""
    if isinstance(value, dt.time):
        return value.hour, value.minute
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip()) if isinstance(value, str) else None
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise CadenceError("cadence.time", MESSAGES["time"])
    return int(match[1]), int(match[2])


PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "hour": _parse_int,
    "minute": _parse_int,
    "every_months": _parse_int,
    "start_month": _parse_int,
    "ordinal": _parse_ordinal,
    "weekday": _parse_weekday,
    "day": _parse_int,
    "weekdays": _parse_weekdays,
    "every_weeks": _parse_int,
    "start_date": _parse_date,
    "date": _parse_date,
    "expression": _parse_expression,
}


def _blank(value: Any) -> bool:
    """An unset form field: None, "" or an empty list."""
    return value is None or (isinstance(value, str) and not value.strip()) or value in ([], ())


def parse_cadence(data: Mapping[str, Any]) -> Cadence:
    """A cadence from a form or JSON object. Strict: unknown keys and bad values raise CadenceError
    naming the field; blank fields count as unset, and form strings ("9", "09:00") are accepted."""
    if not isinstance(data, Mapping):
        raise CadenceError("cadence", MESSAGES["kind"])
    unknown = sorted(set(data) - set(PARSERS) - {"kind", "time"})
    if unknown:
        raise CadenceError(f"cadence.{unknown[0]}", "This is not a cadence setting.")
    given = {key: value for key, value in data.items() if not _blank(value)}
    kind = given.pop("kind", None)
    if "time" in given:
        if "hour" in given or "minute" in given:
            raise CadenceError("cadence.time", "Give either a time or an hour and minute, not both.")
        given["hour"], given["minute"] = _parse_time(given.pop("time"))
    return Cadence(kind=kind, **{name: PARSERS[name](name, value) for name, value in given.items()})


# ------------------------------------------------------------------------------------------------
# The send window


@dataclass(frozen=True)
class SendWindow:
    """The ISO weekdays and the hours [start_hour, end_hour) of the local day when sends may go out."""

    days: frozenset[int]
    start_hour: int
    end_hour: int

    def __post_init__(self) -> None:
        if not self.days or not set(self.days) <= set(range(1, 8)):
            raise CadenceError("send_days", "Choose at least one day to send on.")
        object.__setattr__(self, "days", frozenset(self.days))
        if isinstance(self.start_hour, bool) or self.start_hour not in range(24):
            raise CadenceError("send_start_hour", "Choose a start hour from 0 to 23.")
        if isinstance(self.end_hour, bool) or self.end_hour not in range(1, 25):
            raise CadenceError("send_end_hour", "Choose an end hour from 1 to 24.")
        if self.start_hour >= self.end_hour:
            raise CadenceError("send_end_hour", "The send window must end after it starts.")

    @classmethod
    def parse(cls, days: str, start_hour: int | str, end_hour: int | str) -> SendWindow:
        """A window from stored or form values: days like "12345", hours like 9, "9" or "09:00"."""
        if not isinstance(days, str) or not re.fullmatch(r"[1-7, ]*", days):
            raise CadenceError("send_days",
                               "Write the days as digits from 1 (Monday) to 7 (Sunday), like 12345.")
        return cls(
            frozenset(int(digit) for digit in days if digit.isdigit()),
            _parse_hour("send_start_hour", start_hour),
            _parse_hour("send_end_hour", end_hour),
        )

    def contains(self, moment_utc: dt.datetime, time_zone: str) -> bool:
        """Whether sends may go out at ``moment_utc``."""
        return self._contains(_as_utc(moment_utc, "moment_utc"), check_time_zone(time_zone))

    def next_open(self, moment_utc: dt.datetime, time_zone: str) -> dt.datetime:
        """``moment_utc`` if the window is open then, else the instant it next opens (aware UTC)."""
        moment, zone = _as_utc(moment_utc, "moment_utc"), check_time_zone(time_zone)
        if self._contains(moment, zone):
            return moment
        day = moment.astimezone(zone).date()
        while True:  # a valid window opens within two weeks, even when a DST gap swallows one opening
            if day.isoweekday() in self.days:
                opening = local_instant(dt.datetime.combine(day, dt.time(self.start_hour)), zone)
                if opening > moment and self._contains(opening, zone):
                    return opening
            day += dt.timedelta(days=1)

    def _contains(self, moment: dt.datetime, zone: ZoneInfo) -> bool:
        local = moment.astimezone(zone)
        return local.isoweekday() in self.days and self.start_hour <= local.hour < self.end_hour


def _parse_hour(field_name: str, value: int | str) -> int:
    """A whole hour from 9, "9", "09" or "09:00" (range checked by SendWindow)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"(\d{1,2})(:00)?", value.strip()) if isinstance(value, str) else None
    if not match:
        raise CadenceError(field_name, "Choose a whole hour, like 9 or 09:00.")
    return int(match[1])


# ------------------------------------------------------------------------------------------------
# The trigger and fire times


class CadenceTrigger(BaseTrigger):
    """The APScheduler trigger of a cadence in a time zone, moved into a send window if given.

    Wall-clock occurrences become instants under the module's DST policy; with a window each fire
    moves to the window's next opening, and fires that land on the same opening are sent once."""

    __slots__ = ("cadence", "zone", "window")

    def __init__(self, cadence: Cadence, zone: ZoneInfo, window: SendWindow | None = None) -> None:
        self.cadence = cadence
        self.zone = zone
        self.window = window

    def get_next_fire_time(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> dt.datetime | None:
        """The first fire strictly after ``previous_fire_time``, or at or after ``now`` when there is none."""
        threshold = previous_fire_time + TICK if previous_fire_time else now
        fire = self._first_occurrence_from(_as_utc(threshold, "now"))
        if fire is None or self.window is None:
            return fire
        return self.window.next_open(fire, self.zone.key)

    def _first_occurrence_from(self, threshold: dt.datetime) -> dt.datetime | None:
        """The instant of the first occurrence firing at or after ``threshold``.

        Instants never decrease as wall-clock times increase, so the search starts at a wall time
        whose instant is before ``threshold`` and walks the occurrences forward."""
        start = _wall(threshold, self.zone)
        while local_instant(start, self.zone) >= threshold:
            start -= dt.timedelta(hours=1)
        occurrence = self.cadence.next_occurrence(start)
        while occurrence is not None:
            instant = local_instant(occurrence, self.zone)
            if instant >= threshold:
                return instant
            occurrence = self.cadence.next_occurrence(occurrence)
        return None

    def __str__(self) -> str:
        return f"cadence[{self.cadence.describe()}, {self.zone.key}]"

    def __repr__(self) -> str:
        return f"<CadenceTrigger ({self.cadence!r}, timezone={self.zone.key!r}, window={self.window!r})>"


def next_fire_times(
    cadence: Cadence,
    time_zone: str,
    after: dt.datetime,
    count: int = 10,
    window: SendWindow | None = None,
    until: dt.datetime | None = None,
) -> list[dt.datetime]:
    """Up to ``count`` fire times (aware UTC) strictly after ``after`` and not after ``until``, read
    off the scheduler's own trigger; with a window, moved to its openings with duplicates collapsed."""
    trigger = cadence.trigger(time_zone, window)
    until = _as_utc(until, "until") if until is not None else None
    times: list[dt.datetime] = []
    fire = trigger.get_next_fire_time(None, _as_utc(after, "after") + TICK)
    while fire is not None and len(times) < count and (until is None or fire <= until):
        times.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)
    return times


def fire_times_between(
    cadence: Cadence, time_zone: str, start: dt.datetime, end: dt.datetime, limit: int = 1000
) -> list[dt.datetime]:
    """The fire times in (start, end], at most ``limit``: the occurrences missed during downtime."""
    return next_fire_times(cadence, time_zone, start, count=limit, until=end)


def check_fires(
    cadence: Cadence, time_zone: str, now: dt.datetime, window: SendWindow | None = None
) -> None:
    """CadenceError("cadence", ...) when the cadence has no fire time after ``now``."""
    if next_fire_times(cadence, time_zone, now, count=1, window=window):
        return
    if cadence.kind == "once":
        reason = f"{_long_date(cadence.date)} at {cadence.hour:02d}:{cadence.minute:02d} has already passed"
    else:
        reason = "no date from now on matches it"
    raise CadenceError("cadence", f"This cadence never fires: {reason}.")
