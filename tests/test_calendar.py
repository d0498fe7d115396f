from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import textwrap

import holidays
import pytest
import yaml

from schedules.calendar import (
    GRADE_1_EXTRA_VACATION_2026,
    RECOMMENDED_VACATIONS_2025_26,
    Override,
    SchoolCalendar,
    Vacation,
    _production_year,
    build_production_calendars,
    calendar_from_config,
    is_production_working_day,
    production_day_off,
    production_working_days,
)

D = dt.date
FIVE = SchoolCalendar()
SIX = SchoolCalendar(six_day_week=True)
FIVE_REC = SchoolCalendar(vacations=RECOMMENDED_VACATIONS_2025_26)
SIX_REC = SchoolCalendar(six_day_week=True, vacations=RECOMMENDED_VACATIONS_2025_26)


# --------------------------------------------------------------------------- production calendar


def test_production_calendars_are_built_ahead_and_then_reused() -> None:
    _production_year.cache_clear()
    build_production_calendars(2031, 2032)
    assert _production_year.cache_info().currsize == 2
    assert production_day_off(D(2031, 1, 1)) is not None
    assert production_day_off(D(2032, 5, 9)) is not None
    assert _production_year.cache_info().misses == 2  # both answered from what was built ahead


@pytest.mark.parametrize("year", [2025, 2026])
def test_production_calendar_has_247_working_days(year: int) -> None:
    first, last = D(year, 1, 1), D(year, 12, 31)
    assert production_working_days(first, last) == 247
    # The same figure straight from the library we wrap (guards against a wrong local rule).
    ru = holidays.country_holidays("RU", years=year)
    assert ru.get_working_days_count(first, last) == 247


@pytest.mark.parametrize(
    ("day", "name"),
    [
        pytest.param(D(2026, 1, 9), "Выходной (перенесено с 03.01.2026)", id="2026-01-09-transfer"),
        pytest.param(D(2026, 12, 31), "Выходной (перенесено с 04.01.2026)", id="2026-12-31-transfer"),
        pytest.param(D(2026, 3, 9), "Международный женский день (выходной)", id="2026-03-09-observed"),
        pytest.param(D(2026, 5, 11), "День Победы (выходной)", id="2026-05-11-observed"),
    ],
)
def test_2026_transferred_days_off_are_days_off(day: dt.date, name: str) -> None:
    assert day.weekday() < 5, "a weekday, so only the production calendar can make it a day off"
    assert production_day_off(day) == name
    assert not is_production_working_day(day)
    for calendar in (FIVE, SIX):
        assert not calendar.is_school_day(day)
        assert calendar.day_off_reason(day) == f"праздник: {name}"


def test_working_saturday_is_a_production_working_day() -> None:
    assert is_production_working_day(D(2025, 11, 1))
    assert not is_production_working_day(D(2025, 11, 8))
    assert production_day_off(D(2025, 11, 1)) is None


def test_holiday_names_are_russian_whatever_the_locale() -> None:
    code = textwrap.dedent(
        """
        import datetime as dt
        from schedules.calendar import SchoolCalendar
        print(SchoolCalendar().day_off_reason(dt.date(2025, 11, 4)))
        """
    )
    env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "LANGUAGE": "en_US", "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, encoding="utf-8"
    )
    assert result.stdout.strip() == "праздник: День народного единства"


def test_dates_and_datetimes_are_not_confused() -> None:
    with pytest.raises(TypeError, match="datetime"):
        FIVE.is_school_day(dt.datetime(2025, 11, 5, 10, tzinfo=dt.UTC))
    with pytest.raises(TypeError):
        FIVE.day_off_reason("2025-11-05")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- school days


@pytest.mark.parametrize(
    ("calendar", "expected"),
    [
        pytest.param(SIX, None, id="six-day-no-vacations-studies"),
        pytest.param(FIVE, "выходной", id="five-day-no-vacations-off"),
        pytest.param(SIX_REC, "каникулы: осенние", id="six-day-autumn-vacation-off"),
        pytest.param(FIVE_REC, "каникулы: осенние", id="five-day-autumn-vacation-off"),
    ],
)
def test_working_saturday_2025_11_01(calendar: SchoolCalendar, expected: str | None) -> None:
    assert calendar.day_off_reason(D(2025, 11, 1)) == expected
    assert calendar.is_school_day(D(2025, 11, 1)) is (expected is None)


@pytest.mark.parametrize(
    ("calendar", "day", "expected"),
    [
        pytest.param(FIVE, D(2025, 11, 5), None, id="plain-wednesday"),
        pytest.param(FIVE, D(2025, 11, 8), "выходной", id="five-day-saturday"),
        pytest.param(SIX, D(2025, 11, 8), None, id="six-day-saturday"),
        pytest.param(SIX, D(2025, 11, 9), "выходной", id="six-day-sunday"),
        pytest.param(SIX, D(2025, 11, 3), "праздник: Выходной (перенесено с 01.11.2025)", id="six-day-transfer"),
        pytest.param(FIVE, D(2025, 11, 4), "праздник: День народного единства", id="holiday"),
        pytest.param(FIVE, D(2026, 3, 8), "праздник: Международный женский день", id="holiday-on-sunday"),
        pytest.param(FIVE_REC, D(2026, 1, 5), "каникулы: зимние", id="vacation-beats-holiday"),
        pytest.param(FIVE_REC, D(2026, 3, 29), "каникулы: весенние", id="vacation-beats-sunday"),
        pytest.param(FIVE_REC, D(2026, 5, 26), None, id="last-day-of-the-year"),
        pytest.param(FIVE_REC, D(2026, 8, 31), "каникулы: летние", id="vacation-last-day-inclusive"),
        pytest.param(FIVE_REC, D(2026, 9, 1), None, id="first-of-september"),
    ],
)
def test_day_off_reason(calendar: SchoolCalendar, day: dt.date, expected: str | None) -> None:
    assert calendar.day_off_reason(day) == expected


QUARANTINE = Override(D(2025, 11, 11), school_day=False, reason="карантин: грипп")
FROST = Override(D(2026, 1, 20), school_day=False, reason="актированный день: мороз −40 °C")
SUNDAY_CLASSES = Override(D(2025, 11, 16), school_day=True, reason="отработка 11 ноября")
HOLIDAY_CLASSES = Override(D(2025, 11, 4), school_day=True, reason="праздничный концерт")
VACATION_CLASSES = Override(D(2025, 10, 27), school_day=True, reason="отработка")
SATURDAY_CLASSES = Override(D(2025, 11, 1), school_day=True, reason="рабочая суббота")
VACATION_DAY_OFF = Override(D(2025, 10, 28), school_day=False, reason="актированный день: метель")


@pytest.mark.parametrize(
    ("calendar", "day", "expected"),
    [
        pytest.param(SchoolCalendar(overrides=(QUARANTINE,)), D(2025, 11, 11), "карантин: грипп", id="off-tuesday"),
        pytest.param(
            SchoolCalendar(overrides=(FROST,)), D(2026, 1, 20), "актированный день: мороз −40 °C", id="aktirovanny"
        ),
        pytest.param(SchoolCalendar(overrides=(SUNDAY_CLASSES,)), D(2025, 11, 16), None, id="school-sunday"),
        pytest.param(SchoolCalendar(overrides=(HOLIDAY_CLASSES,)), D(2025, 11, 4), None, id="school-holiday"),
        pytest.param(
            SchoolCalendar(vacations=RECOMMENDED_VACATIONS_2025_26, overrides=(VACATION_CLASSES,)),
            D(2025, 10, 27),
            None,
            id="school-in-vacation",
        ),
        pytest.param(SchoolCalendar(overrides=(SATURDAY_CLASSES,)), D(2025, 11, 1), None, id="five-day-works-saturday"),
        pytest.param(
            SchoolCalendar(vacations=RECOMMENDED_VACATIONS_2025_26, overrides=(VACATION_DAY_OFF,)),
            D(2025, 10, 28),
            "актированный день: метель",
            id="off-in-vacation-own-reason",
        ),
    ],
)
def test_overrides_take_precedence(calendar: SchoolCalendar, day: dt.date, expected: str | None) -> None:
    assert calendar.day_off_reason(day) == expected
    # Without the override the answer differs: the override really decided it.
    plain = SchoolCalendar(six_day_week=calendar.six_day_week, vacations=calendar.vacations)
    assert plain.day_off_reason(day) != expected


@pytest.mark.parametrize(
    ("calendar", "day", "include_today", "expected"),
    [
        pytest.param(FIVE, D(2025, 11, 5), True, D(2025, 11, 5), id="today-counts"),
        pytest.param(FIVE, D(2025, 11, 5), False, D(2025, 11, 6), id="today-skipped"),
        pytest.param(FIVE, D(2025, 12, 30), False, D(2026, 1, 12), id="across-new-year-five"),
        pytest.param(SIX, D(2025, 12, 30), False, D(2026, 1, 10), id="across-new-year-six-saturday"),
        pytest.param(SIX_REC, D(2025, 12, 30), False, D(2026, 1, 12), id="across-new-year-vacation"),
        pytest.param(FIVE, D(2026, 12, 30), False, D(2027, 1, 11), id="into-2027"),
        pytest.param(FIVE, D(2025, 10, 31), False, D(2025, 11, 5), id="five-day-long-weekend"),
        pytest.param(SIX, D(2025, 10, 31), False, D(2025, 11, 1), id="six-day-working-saturday"),
        pytest.param(FIVE_REC, D(2026, 5, 26), False, D(2026, 9, 1), id="over-the-summer"),
    ],
)
def test_next_school_day(calendar: SchoolCalendar, day: dt.date, include_today: bool, expected: dt.date) -> None:
    assert calendar.next_school_day(day, include_today=include_today) == expected


def test_next_school_day_gives_up_on_a_calendar_without_school_days() -> None:
    endless = SchoolCalendar(vacations=(Vacation("бесконечные", D(2025, 1, 1), D(2027, 1, 1)),))
    with pytest.raises(LookupError, match="нет ни одного учебного дня"):
        endless.next_school_day(D(2025, 6, 1), include_today=True)


def test_recommended_vacations_are_at_least_seven_days() -> None:
    for vacation in (*RECOMMENDED_VACATIONS_2025_26, GRADE_1_EXTRA_VACATION_2026):
        assert (vacation.last - vacation.first).days + 1 >= 7, vacation
    # The class-specific grade-1 week is not in the school-wide default.
    assert FIVE_REC.is_school_day(D(2026, 2, 17))
    assert not SchoolCalendar(vacations=(GRADE_1_EXTRA_VACATION_2026,)).is_school_day(D(2026, 2, 17))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            lambda: Vacation("осенние", D(2025, 10, 25), D(2025, 10, 1)),
            "каникулы «осенние»: дата окончания 2025-10-01 раньше начала 2025-10-25",
            id="vacation-backwards",
        ),
        pytest.param(
            lambda: SchoolCalendar(
                vacations=(
                    Vacation("зимние", D(2025, 12, 29), D(2026, 1, 11)),
                    Vacation("осенние", D(2025, 10, 25), D(2025, 12, 29)),
                )
            ),
            "каникулы «осенние» и «зимние» пересекаются",
            id="vacations-overlap",
        ),
        pytest.param(
            lambda: SchoolCalendar(overrides=(QUARANTINE, QUARANTINE)),
            "дополнительный выходной 2025-11-11 указан дважды",
            id="override-twice",
        ),
        pytest.param(
            lambda: SchoolCalendar(overrides=(QUARANTINE, Override(D(2025, 11, 11), True, "отработка"))),
            "дата 2025-11-11 указана и как дополнительный выходной, и как дополнительный учебный день",
            id="override-contradiction",
        ),
        pytest.param(
            lambda: Override(D(2025, 11, 11), False, " "),
            "дополнительный выходной 2025-11-11: не указана причина",
            id="override-no-reason",
        ),
    ],
)
def test_invalid_calendar_objects(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build()


# --------------------------------------------------------------------------- plain data


GOOD_YAML = """
six_day_week: true
vacations:
  - {name: осенние, first: 2025-10-25, last: 2025-11-02}      # YAML makes these date objects
  - {name: зимние, first: "2025-12-31", last: "2026-01-11"}   # quoted: ISO strings
extra_days_off:
  - {date: 2026-01-20, reason: "актированный день: мороз −40 °C"}
extra_school_days:
  - date: 2026-01-25
    reason: отработка 20 января
"""


def test_calendar_from_yaml() -> None:
    calendar = calendar_from_config(yaml.safe_load(GOOD_YAML))
    assert calendar.six_day_week
    assert calendar.day_off_reason(D(2025, 11, 1)) == "каникулы: осенние"
    assert calendar.day_off_reason(D(2026, 1, 9)) == "каникулы: зимние"
    assert calendar.day_off_reason(D(2026, 1, 20)) == "актированный день: мороз −40 °C"
    assert calendar.is_school_day(D(2026, 1, 25))  # a Sunday
    assert calendar.is_school_day(D(2026, 1, 24))  # a Saturday of a six-day school
    assert calendar_from_config({}) == SchoolCalendar()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            {"vacations": [{"name": "осенние", "first": "2025-10-25", "last": "2025-10-01"}]},
            "каникулы «осенние»: дата окончания 2025-10-01 раньше начала 2025-10-25",
            id="vacation-backwards",
        ),
        pytest.param(
            {"vacations": [{"name": "осенние", "first": "2025-10-25", "last": "2025-13-01"}]},
            "каникулы «осенние»: неверная дата «2025-13-01» в поле «last» (ожидается ГГГГ-ММ-ДД)",
            id="vacation-bad-month",
        ),
        pytest.param(
            {"vacations": [{"name": "осенние", "first": "20251025", "last": "2025-11-02"}]},
            "каникулы «осенние»: неверная дата «20251025» в поле «first» (ожидается ГГГГ-ММ-ДД)",
            id="vacation-compact-iso",
        ),
        pytest.param(
            {"vacations": [{"name": "осенние", "first": "2025-10-25", "last": "2025-11-02"}, {"name": "зимние"}]},
            "каникулы №2: нет поля «first»",
            id="vacation-missing-field",
        ),
        pytest.param(
            {"vacations": [{"name": "", "first": "2025-10-25", "last": "2025-11-02"}]},
            "каникулы №1: название должно быть непустой строкой",
            id="vacation-no-name",
        ),
        pytest.param(
            {"vacations": [{"name": "осенние", "start": "2025-10-25", "last": "2025-11-02"}]},
            "каникулы №1: неизвестное поле «start» (допустимы: name, first, last)",
            id="vacation-typo-field",
        ),
        pytest.param(
            {"extra_days_off": [{"date": dt.datetime(2026, 1, 20, 6, 30), "reason": "мороз"}]},
            "дополнительный выходной №1: в поле «date» ожидается дата без времени, получено «2026-01-20 06:30:00»",
            id="day-off-datetime",
        ),
        pytest.param(
            {"extra_days_off": [{"date": "2026-01-20", "reason": ""}]},
            "дополнительный выходной 2026-01-20: не указана причина",
            id="day-off-no-reason",
        ),
        pytest.param(
            {"extra_school_days": ["2026-01-25"]},
            "дополнительный учебный день №1: ожидается словарь с полями date, reason",
            id="school-day-bare-date",
        ),
        pytest.param(
            {"six_day_week": "да"},
            "календарь школы: six_day_week должен быть true или false, получено «да»",
            id="six-day-not-bool",
        ),
        pytest.param(
            {"vacation": []},
            "календарь школы: неизвестный параметр «vacation» "
            "(допустимы: extra_days_off, extra_school_days, six_day_week, vacations)",
            id="unknown-key",
        ),
        pytest.param(
            {"vacations": {"name": "осенние"}},
            "календарь школы: vacations должен быть списком",
            id="vacations-not-a-list",
        ),
    ],
)
def test_calendar_from_bad_data(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        calendar_from_config(data)
