"""School calendars: which dates are school days, and why the others are not.

A :class:`SchoolCalendar` combines four sources. For a given date the first source that has
an opinion decides (highest precedence first):

1. **Explicit overrides** (:class:`Override`) set by the school: an extra day off (quarantine,
   "актированный день") or an extra school day (e.g. a Sunday made up for a lost day).
   An extra school day wins over everything below, including Sundays, public holidays and
   vacations; an extra day off wins over everything below as well.
2. **Vacations** (:class:`Vacation`, inclusive date ranges): every date inside is a day off.
3. **The Russian production calendar** (``holidays`` library, country ``RU``): public holidays,
   Art. 112 "observed" days and the government's transferred days off are days off for five-
   and six-day schools alike.
4. **The week shape**: Sunday is always a day off. Saturday is a school day for a six-day
   school and a day off for a five-day school.

Working Saturdays of the production calendar (``weekend_workdays``, e.g. 1 Nov 2025) are working
days for adults; they do **not** make a Saturday a school day. The school timetable governs
pupils: a six-day school studies on Saturdays anyway, and a five-day school that studies on such
a Saturday must say so with an extra-school-day override. They only count in
:func:`is_production_working_day` / :func:`production_working_days`, which reproduce the
official production calendar (247 working days in both 2025 and 2026).

The production calendar is built lazily, one ``holidays`` object per year, cached for the process
and shared by all schools. Each object covers exactly one year (``expand=False``) and is only
asked about dates of that year, so lookups never mutate it and cross-year questions (30 Dec 2025
→ next school day in January 2026) always consult the right year. Names are requested with
``language="ru"`` explicitly: the library otherwise follows the process locale.

Known gaps of the production calendar (see ``reference/school-calendar-law.md`` §1): regional
holidays (Tatarstan, Bashkortostan, …) are absent, and a year whose decree is not yet in the
library has only its fixed dates. The six-day production calendar is not modelled: transfers
made for the five-day week also apply to six-day schools. Schools correct all of these with
overrides.

Vacations are per-school data. :data:`RECOMMENDED_VACATIONS_2025_26` holds the Ministry of
Education's *recommended* 2025/26 dates for the quarter system; they are only recommendations,
and no Ministry recommendation for 2026/27 was found, so from September 2026 every school must
configure its own vacations.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import holidays

__all__ = [
    "GRADE_1_EXTRA_VACATION_2026",
    "RECOMMENDED_VACATIONS_2025_26",
    "Override",
    "SchoolCalendar",
    "Vacation",
    "build_production_calendars",
    "calendar_from_config",
    "is_production_working_day",
    "production_day_off",
    "production_working_days",
]

# How far ahead next_school_day() looks before deciding the calendar has no school days at all.
_SEARCH_LIMIT_DAYS = 366


# --------------------------------------------------------------------------- production calendar


@functools.cache
def _production_year(year: int) -> holidays.HolidayBase:
    """The ``holidays`` RU object for one year (built on first use, then cached)."""
    return holidays.country_holidays("RU", years=year, expand=False, language="ru")


def build_production_calendars(*years: int) -> None:
    """Build these years' production calendars now: the first one a process builds takes about 0.1 s (the
    ``holidays`` tables), which a force majeure posted just after a restart should not wait for."""
    for year in years:
        _production_year(year)


def _check_date(day: object) -> dt.date:
    # datetime is a subclass of date; silently taking its date would pick a zone by accident.
    if isinstance(day, dt.datetime):
        raise TypeError("expected a date, got a datetime: convert it to the school's zone and take .date()")
    if not isinstance(day, dt.date):
        raise TypeError(f"expected a date, got {type(day).__name__}")
    return day


def production_day_off(day: dt.date) -> str | None:
    """Russian name(s) of the production calendar's day off on ``day``, or None if it is not one.

    Covers public holidays, observed days and transferred days off; plain weekends are not
    reported here.
    """
    day = _check_date(day)
    names: list[str] = _production_year(day.year).get_list(day)
    return "; ".join(names) if names else None


def is_production_working_day(day: dt.date) -> bool:
    """Whether ``day`` is a working day of the official (five-day week) production calendar."""
    day = _check_date(day)
    year = _production_year(day.year)
    if day in year:
        return False
    return day.weekday() < 5 or day in year.weekend_workdays


def production_working_days(first: dt.date, last: dt.date) -> int:
    """Number of production-calendar working days in the inclusive range ``first``..``last``."""
    first, last = _check_date(first), _check_date(last)
    if last < first:
        raise ValueError(f"range end {last} is before its start {first}")
    return sum(is_production_working_day(first + dt.timedelta(days=i)) for i in range((last - first).days + 1))


# --------------------------------------------------------------------------- school data


@dataclass(frozen=True)
class Vacation:
    """School vacation: every date from ``first`` to ``last`` inclusive is a day off."""

    name: str
    first: dt.date
    last: dt.date

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError(f"каникулы {self.first}–{self.last}: не указано название")
        _check_date(self.first)
        _check_date(self.last)
        if self.last < self.first:
            raise ValueError(f"каникулы «{self.name}»: дата окончания {self.last} раньше начала {self.first}")

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and not isinstance(day, dt.datetime) and self.first <= day <= self.last


@dataclass(frozen=True)
class Override:
    """A school's explicit decision for one date, with the reason shown to staff.

    ``school_day=False`` is an extra day off; ``reason`` is then what :meth:`SchoolCalendar.day_off_reason`
    returns verbatim (e.g. "актированный день: мороз −40 °C", "карантин: грипп").
    ``school_day=True`` is an extra school day (e.g. a Sunday replacing a lost day).
    """

    day: dt.date
    school_day: bool
    reason: str

    def __post_init__(self) -> None:
        _check_date(self.day)
        if not self.reason.strip():
            raise ValueError(f"{_override_label(self.school_day)} {self.day}: не указана причина")


def _override_label(school_day: bool) -> str:
    return "дополнительный учебный день" if school_day else "дополнительный выходной"


RECOMMENDED_VACATIONS_2025_26: tuple[Vacation, ...] = (
    Vacation("осенние", dt.date(2025, 10, 25), dt.date(2025, 11, 2)),
    Vacation("зимние", dt.date(2025, 12, 31), dt.date(2026, 1, 11)),
    Vacation("весенние", dt.date(2026, 3, 28), dt.date(2026, 4, 5)),
    Vacation("летние", dt.date(2026, 5, 27), dt.date(2026, 8, 31)),
)
"""Ministry of Education recommendation for 2025/26, quarter system (TASS 18.08.2025).

Grades 9 and 11 end the year by the state exam timetable, so their summer differs. There is no
recommendation for 2026/27 (none was found); schools must configure their own vacations.
"""

GRADE_1_EXTRA_VACATION_2026 = Vacation("дополнительные для 1-х классов", dt.date(2026, 2, 16), dt.date(2026, 2, 22))
"""Extra February week for first-graders (recommended). Class-specific, so not part of the default."""


@dataclass(frozen=True)
class SchoolCalendar:
    """One school's calendar; see the module docstring for the precedence of its sources."""

    six_day_week: bool = False
    vacations: tuple[Vacation, ...] = ()
    overrides: tuple[Override, ...] = ()
    _by_day: Mapping[dt.date, Override] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vacations", tuple(sorted(self.vacations, key=lambda v: v.first)))
        object.__setattr__(self, "overrides", tuple(self.overrides))
        for earlier, later in zip(self.vacations, self.vacations[1:], strict=False):
            if later.first <= earlier.last:
                raise ValueError(f"каникулы «{earlier.name}» и «{later.name}» пересекаются")
        by_day: dict[dt.date, Override] = {}
        for override in self.overrides:
            if (seen := by_day.get(override.day)) is not None:
                if seen.school_day == override.school_day:
                    raise ValueError(f"{_override_label(override.school_day)} {override.day} указан дважды")
                raise ValueError(
                    f"дата {override.day} указана и как дополнительный выходной, и как дополнительный учебный день"
                )
            by_day[override.day] = override
        object.__setattr__(self, "_by_day", by_day)

    def is_school_day(self, day: dt.date) -> bool:
        """Whether pupils study on ``day``."""
        return self.day_off_reason(day) is None

    def day_off_reason(self, day: dt.date) -> str | None:
        """None on a school day, else why not, in Russian.

        "выходной", "праздник: <name>", "каникулы: <name>", or an extra day off's own reason.
        """
        day = _check_date(day)
        override = self._by_day.get(day)
        if override is not None:
            return None if override.school_day else override.reason
        for vacation in self.vacations:
            if day in vacation:
                return f"каникулы: {vacation.name}"
        if (name := production_day_off(day)) is not None:
            return f"праздник: {name}"
        weekday = day.weekday()
        if weekday == 6 or (weekday == 5 and not self.six_day_week):
            return "выходной"
        return None

    def next_school_day(self, day: dt.date, *, include_today: bool) -> dt.date:
        """The first school day on or after ``day`` (``include_today``) or strictly after it.

        Raises LookupError when there is none within a year (a misconfigured calendar).
        """
        day = _check_date(day)
        candidate = day if include_today else day + dt.timedelta(days=1)
        for _ in range(_SEARCH_LIMIT_DAYS):
            if self.is_school_day(candidate):
                return candidate
            candidate += dt.timedelta(days=1)
        raise LookupError(f"в календаре школы нет ни одного учебного дня в течение года после {day}")


# --------------------------------------------------------------------------- plain data (YAML)

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CONFIG_KEYS = frozenset({"six_day_week", "vacations", "extra_days_off", "extra_school_days"})


def calendar_from_config(data: Mapping[str, object]) -> SchoolCalendar:
    """Build a calendar from plain data (a YAML mapping); ValueError with a Russian message on bad data.

    Shape (dates as ISO strings or as ``date`` objects, which YAML produces for unquoted dates)::

        six_day_week: false
        vacations:
          - {name: осенние, first: 2025-10-25, last: 2025-11-02}
        extra_days_off:
          - {date: 2026-01-20, reason: "актированный день: мороз −40 °C"}
        extra_school_days:
          - {date: 2026-03-01, reason: "отработка 20 января"}
    """
    if not isinstance(data, Mapping):
        raise ValueError("календарь школы: ожидается словарь параметров")
    unknown = sorted(str(key) for key in data if key not in _CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"календарь школы: неизвестный параметр «{unknown[0]}» (допустимы: {', '.join(sorted(_CONFIG_KEYS))})"
        )
    six_day_week = data.get("six_day_week", False)
    if not isinstance(six_day_week, bool):
        raise ValueError(f"календарь школы: six_day_week должен быть true или false, получено «{six_day_week}»")

    vacations = [_vacation(i, entry) for i, entry in enumerate(_entries(data, "vacations"), start=1)]
    overrides = [
        _override(i, entry, school_day=False) for i, entry in enumerate(_entries(data, "extra_days_off"), start=1)
    ] + [_override(i, entry, school_day=True) for i, entry in enumerate(_entries(data, "extra_school_days"), start=1)]
    return SchoolCalendar(six_day_week=six_day_week, vacations=tuple(vacations), overrides=tuple(overrides))


def _entries(data: Mapping[str, object], key: str) -> Iterable[object]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ValueError(f"календарь школы: {key} должен быть списком")
    return value


def _vacation(index: int, entry: object) -> Vacation:
    label = f"каникулы №{index}"
    fields = _fields(label, entry, required=("name", "first", "last"))
    name = fields["name"]
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{label}: название должно быть непустой строкой")
    label = f"каникулы «{name}»"
    return Vacation(name, _parse_date(label, "first", fields["first"]), _parse_date(label, "last", fields["last"]))


def _override(index: int, entry: object, *, school_day: bool) -> Override:
    label = f"{_override_label(school_day)} №{index}"
    fields = _fields(label, entry, required=("date", "reason"))
    day = _parse_date(label, "date", fields["date"])
    label = f"{_override_label(school_day)} {day}"
    reason = fields["reason"]
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"{label}: не указана причина")
    return Override(day, school_day, reason)


def _fields(label: str, entry: object, *, required: tuple[str, ...]) -> Mapping[str, object]:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{label}: ожидается словарь с полями {', '.join(required)}")
    for key in entry:
        if key not in required:
            raise ValueError(f"{label}: неизвестное поле «{key}» (допустимы: {', '.join(required)})")
    for key in required:
        if key not in entry:
            raise ValueError(f"{label}: нет поля «{key}»")
    return entry


def _parse_date(label: str, key: str, value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        raise ValueError(f"{label}: в поле «{key}» ожидается дата без времени, получено «{value}»")
    if isinstance(value, dt.date):
        return value
    # date.fromisoformat() also takes "20251025" and week dates; config wants the plain form only.
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{label}: неверная дата «{value}» в поле «{key}» (ожидается ГГГГ-ММ-ДД)")
