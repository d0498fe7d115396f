from __future__ import annotations

import datetime as dt
import importlib.resources
import re
from collections.abc import Callable
from typing import TypedDict
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.calendar import RECOMMENDED_VACATIONS_2025_26, Override, SchoolCalendar
from schedules.windows import (
    DEFAULT_WINDOW,
    MessagingWindow,
    end_of_school_day,
    is_allowed,
    next_allowed,
    openings_between,
    window_end,
)

UTC = dt.UTC
T = dt.time
FIVE = SchoolCalendar()
SIX = SchoolCalendar(six_day_week=True)
FIVE_REC = SchoolCalendar(vacations=RECOMMENDED_VACATIONS_2025_26)
SIX_REC = SchoolCalendar(six_day_week=True, vacations=RECOMMENDED_VACATIONS_2025_26)
CLASS_WINDOW = MessagingWindow(T(9), T(18))

# reference/school-calendar-law.md §3: the 26 "RU" zones of zone.tab plus Europe/Simferopol ("RU,UA").
RUSSIAN_ZONES = (
    "Europe/Kaliningrad",
    "Europe/Moscow",
    "Europe/Simferopol",
    "Europe/Kirov",
    "Europe/Volgograd",
    "Europe/Astrakhan",
    "Europe/Saratov",
    "Europe/Ulyanovsk",
    "Europe/Samara",
    "Asia/Yekaterinburg",
    "Asia/Omsk",
    "Asia/Novosibirsk",
    "Asia/Barnaul",
    "Asia/Tomsk",
    "Asia/Novokuznetsk",
    "Asia/Krasnoyarsk",
    "Asia/Irkutsk",
    "Asia/Chita",
    "Asia/Yakutsk",
    "Asia/Khandyga",
    "Asia/Vladivostok",
    "Asia/Ust-Nera",
    "Asia/Magadan",
    "Asia/Sakhalin",
    "Asia/Srednekolymsk",
    "Asia/Kamchatka",
    "Asia/Anadyr",
)


class Ctx(TypedDict):
    zone: ZoneInfo
    window: MessagingWindow
    calendar: SchoolCalendar


def at(zone: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=ZoneInfo(zone))


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=UTC)


def test_zone_list_matches_tzdata() -> None:
    tab = importlib.resources.files("tzdata").joinpath("zoneinfo/zone1970.tab").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in tab.splitlines() if line and not line.startswith("#")]
    from_tab = {row[2] for row in rows if "RU" in row[0].split(",")}
    assert len(RUSSIAN_ZONES) == 27
    assert set(RUSSIAN_ZONES) == from_tab


# --------------------------------------------------------------------------- the window itself


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        pytest.param(T(19), T(8), "окно рассылки: начало 19:00 должно быть раньше конца 08:00", id="reversed"),
        pytest.param(T(9), T(9), "окно рассылки: начало 09:00 должно быть раньше конца 09:00", id="empty"),
        pytest.param(
            T(9, tzinfo=UTC),
            T(18),
            "окно рассылки: время 09:00:00+00:00 задаётся без часового пояса (пояс — у школы)",
            id="aware-time",
        ),
    ],
)
def test_window_validation(start: dt.time, end: dt.time, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        MessagingWindow(start, end)


def test_default_window_is_eight_to_seven() -> None:
    assert MessagingWindow() == DEFAULT_WINDOW == MessagingWindow(T(8), T(19))
    assert str(DEFAULT_WINDOW) == "08:00–19:00"


@pytest.mark.parametrize(
    ("class_window", "ok"),
    [
        pytest.param(MessagingWindow(T(9), T(18)), True, id="inside"),
        pytest.param(MessagingWindow(T(8), T(19)), True, id="same"),
        pytest.param(MessagingWindow(T(7, 30), T(18)), False, id="starts-early"),
        pytest.param(MessagingWindow(T(9), T(19, 30)), False, id="ends-late"),
    ],
)
def test_class_window_must_lie_inside_school_window(class_window: MessagingWindow, ok: bool) -> None:
    assert DEFAULT_WINDOW.contains(class_window) is ok
    if ok:
        assert DEFAULT_WINDOW.narrow(class_window) is class_window
    else:
        with pytest.raises(
            ValueError, match=f"^окно класса {class_window} должно лежать внутри окна школы 08:00–19:00$"
        ):
            DEFAULT_WINDOW.narrow(class_window)


# --------------------------------------------------------------------------- next_allowed


@pytest.mark.parametrize(
    ("now", "calendar", "window", "expected"),
    [
        pytest.param(
            at("Asia/Kamchatka", 2025, 10, 17, 19),
            FIVE,
            DEFAULT_WINDOW,
            at("Asia/Kamchatka", 2025, 10, 20, 8),
            id="kamchatka-fri-1900-to-mon",
        ),
        pytest.param(
            at("Asia/Kamchatka", 2025, 10, 17, 18, 59, 59),
            FIVE,
            DEFAULT_WINDOW,
            at("Asia/Kamchatka", 2025, 10, 17, 18, 59, 59),
            id="kamchatka-fri-185959-now",
        ),
        pytest.param(
            at("Asia/Kamchatka", 2025, 10, 31, 19),
            FIVE,
            DEFAULT_WINDOW,
            at("Asia/Kamchatka", 2025, 11, 5, 8),
            id="kamchatka-fri-1900-mon-tue-off-to-wed",
        ),
        pytest.param(
            at("Asia/Kamchatka", 2025, 12, 30, 20),
            FIVE,
            DEFAULT_WINDOW,
            at("Asia/Kamchatka", 2026, 1, 12, 8),
            id="kamchatka-new-year",
        ),
        pytest.param(
            at("Europe/Kaliningrad", 2025, 12, 30, 10),
            FIVE,
            DEFAULT_WINDOW,
            at("Europe/Kaliningrad", 2025, 12, 30, 10),
            id="kaliningrad-open",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 10, 31, 20),
            SIX,
            DEFAULT_WINDOW,
            at("Europe/Moscow", 2025, 11, 1, 8),
            id="moscow-six-day-working-saturday",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 10, 31, 20),
            FIVE,
            DEFAULT_WINDOW,
            at("Europe/Moscow", 2025, 11, 5, 8),
            id="moscow-five-day-skips-working-saturday",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 10, 24, 20),
            SIX_REC,
            DEFAULT_WINDOW,
            at("Europe/Moscow", 2025, 11, 5, 8),
            id="moscow-six-day-autumn-vacation",
        ),
        pytest.param(
            at("Asia/Yekaterinburg", 2026, 3, 6, 20),
            FIVE,
            DEFAULT_WINDOW,
            at("Asia/Yekaterinburg", 2026, 3, 10, 8),
            id="yekaterinburg-march-8-weekend",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 11, 5, 7, 59),
            FIVE,
            DEFAULT_WINDOW,
            at("Europe/Moscow", 2025, 11, 5, 8),
            id="before-opening-same-day",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 11, 5, 7),
            FIVE,
            CLASS_WINDOW,
            at("Europe/Moscow", 2025, 11, 5, 9),
            id="class-window-opens-0900",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 11, 5, 7),
            FIVE,
            DEFAULT_WINDOW,
            at("Europe/Moscow", 2025, 11, 5, 8),
            id="school-window-opens-0800",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 11, 5, 18, 30),
            FIVE,
            CLASS_WINDOW,
            at("Europe/Moscow", 2025, 11, 6, 9),
            id="class-window-closed-at-1830",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 11, 5, 18, 30),
            FIVE,
            DEFAULT_WINDOW,
            at("Europe/Moscow", 2025, 11, 5, 18, 30),
            id="school-window-open-at-1830",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 11, 10, 20),
            SchoolCalendar(
                overrides=(Override(dt.date(2025, 11, 11), school_day=False, reason="актированный день: метель"),)
            ),
            DEFAULT_WINDOW,
            at("Europe/Moscow", 2025, 11, 12, 8),
            id="override-day-off-tuesday",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 11, 15, 12),
            SchoolCalendar(overrides=(Override(dt.date(2025, 11, 16), school_day=True, reason="отработка"),)),
            DEFAULT_WINDOW,
            at("Europe/Moscow", 2025, 11, 16, 8),
            id="override-school-sunday",
        ),
        pytest.param(
            utc(2025, 10, 17, 7, 0),
            FIVE,
            DEFAULT_WINDOW,
            at("Asia/Kamchatka", 2025, 10, 20, 8),
            id="utc-input-kamchatka-friday-1900",
        ),
    ],
)
def test_next_allowed(
    now: dt.datetime, calendar: SchoolCalendar, window: MessagingWindow, expected: dt.datetime
) -> None:
    zone = expected.tzinfo
    assert isinstance(zone, ZoneInfo)
    result = next_allowed(now, zone=zone, window=window, calendar=calendar)
    assert result == expected
    assert result.tzinfo is zone, "returned in the school's zone"
    assert result.utcoffset() == expected.utcoffset()
    assert is_allowed(result, zone=zone, window=window, calendar=calendar)
    assert is_allowed(now, zone=zone, window=window, calendar=calendar) is (result == now)


@pytest.mark.parametrize(
    ("zone", "local_day", "opening_utc", "closing_utc"),
    [
        pytest.param(
            "Europe/Kaliningrad", dt.date(2026, 3, 10), utc(2026, 3, 10, 6), utc(2026, 3, 10, 17), id="kaliningrad"
        ),
        pytest.param("Europe/Moscow", dt.date(2026, 3, 10), utc(2026, 3, 10, 5), utc(2026, 3, 10, 16), id="moscow"),
        # Kamchatka's window opens on the previous UTC date; 9 Mar (UTC date of the opening) is a day off.
        pytest.param("Asia/Kamchatka", dt.date(2026, 3, 10), utc(2026, 3, 9, 20), utc(2026, 3, 10, 7), id="kamchatka"),
    ],
)
def test_windows_in_utc(zone: str, local_day: dt.date, opening_utc: dt.datetime, closing_utc: dt.datetime) -> None:
    z = ZoneInfo(zone)
    kw: Ctx = {"zone": z, "window": DEFAULT_WINDOW, "calendar": FIVE}
    just_before = opening_utc - dt.timedelta(microseconds=1)
    assert not is_allowed(just_before, **kw)
    assert next_allowed(just_before, **kw) == opening_utc
    assert next_allowed(just_before, **kw).date() == local_day
    assert is_allowed(opening_utc, **kw)
    assert window_end(opening_utc, **kw) == closing_utc
    assert is_allowed(closing_utc - dt.timedelta(microseconds=1), **kw)
    assert not is_allowed(closing_utc, **kw)
    assert openings_between(opening_utc - dt.timedelta(hours=1), closing_utc, **kw) == [opening_utc]


def test_historical_offsets_come_from_zoneinfo() -> None:
    # Moscow was UTC+4 in 2012: the window opened at 04:00Z, not 05:00Z.
    moscow = ZoneInfo("Europe/Moscow")
    opening = next_allowed(utc(2012, 6, 5, 0), zone=moscow, window=DEFAULT_WINDOW, calendar=FIVE)
    assert opening == utc(2012, 6, 5, 4)


@pytest.mark.parametrize(
    ("now", "window", "expected"),
    [
        # 30 Mar 2025, 02:00 CET -> 03:00 CEST: 02:30 does not exist; the window opens when the gap ends.
        pytest.param(
            at("Europe/Berlin", 2025, 3, 30, 0), MessagingWindow(T(2, 30), T(5)), utc(2025, 3, 30, 1), id="gap"
        ),
        # 26 Oct 2025, 03:00 CEST -> 02:00 CET: 02:30 happens twice; the window opens at the first one.
        pytest.param(
            at("Europe/Berlin", 2025, 10, 26, 0), MessagingWindow(T(2, 30), T(5)), utc(2025, 10, 26, 0, 30), id="fold"
        ),
        # Both boundaries inside the gap: no window that day, the next day's opens.
        pytest.param(
            at("Europe/Berlin", 2025, 3, 30, 0),
            MessagingWindow(T(2, 15), T(2, 45)),
            at("Europe/Berlin", 2025, 3, 31, 2, 15),
            id="swallowed",
        ),
    ],
)
def test_boundaries_across_dst_transitions(now: dt.datetime, window: MessagingWindow, expected: dt.datetime) -> None:
    # Russian zones have no DST any more; this shows the boundaries are computed by instants, not offsets.
    berlin = ZoneInfo("Europe/Berlin")
    every_day = SchoolCalendar(
        six_day_week=True,
        overrides=(Override(dt.date(2025, 3, 30), True, "x"), Override(dt.date(2025, 10, 26), True, "x")),
    )
    result = next_allowed(now, zone=berlin, window=window, calendar=every_day)
    # Compare and step in UTC: aware arithmetic in one zone is wall-clock arithmetic, and PEP 495
    # makes inter-zone == False for times in a fold.
    assert result.astimezone(UTC) == expected.astimezone(UTC)
    instant = result.astimezone(UTC)
    assert is_allowed(instant, zone=berlin, window=window, calendar=every_day)
    assert not is_allowed(instant - dt.timedelta(microseconds=1), zone=berlin, window=window, calendar=every_day)


# --------------------------------------------------------------------------- window_end, deadlines, openings

MOSCOW = ZoneInfo("Europe/Moscow")


@pytest.mark.parametrize(
    ("now", "window", "expected"),
    [
        pytest.param(
            at("Europe/Moscow", 2025, 11, 5, 10), DEFAULT_WINDOW, at("Europe/Moscow", 2025, 11, 5, 19), id="during"
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 11, 5, 6),
            DEFAULT_WINDOW,
            at("Europe/Moscow", 2025, 11, 5, 19),
            id="before-opening",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 11, 5, 20),
            DEFAULT_WINDOW,
            at("Europe/Moscow", 2025, 11, 6, 19),
            id="after-closing",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 10, 31, 20),
            DEFAULT_WINDOW,
            at("Europe/Moscow", 2025, 11, 5, 19),
            id="over-holidays",
        ),
        pytest.param(
            at("Europe/Moscow", 2025, 11, 5, 10), CLASS_WINDOW, at("Europe/Moscow", 2025, 11, 5, 18), id="class-window"
        ),
    ],
)
def test_end_of_school_day(now: dt.datetime, window: MessagingWindow, expected: dt.datetime) -> None:
    assert end_of_school_day(now, zone=MOSCOW, window=window, calendar=FIVE) == expected


def test_window_end_requires_an_open_window() -> None:
    kw: Ctx = {"zone": MOSCOW, "window": DEFAULT_WINDOW, "calendar": FIVE}
    assert window_end(at("Europe/Moscow", 2025, 11, 5, 8), **kw) == at("Europe/Moscow", 2025, 11, 5, 19)
    for closed in (at("Europe/Moscow", 2025, 11, 5, 19), at("Europe/Moscow", 2025, 11, 8, 12)):
        with pytest.raises(ValueError, match="outside the messaging window"):
            window_end(closed, **kw)


def test_openings_between() -> None:
    kw: Ctx = {"zone": MOSCOW, "window": DEFAULT_WINDOW, "calendar": SIX}
    # Half-open: an opening exactly at the start counts, one exactly at the end does not.
    found = openings_between(at("Europe/Moscow", 2025, 10, 31, 8), at("Europe/Moscow", 2025, 11, 6, 8), **kw)
    assert found == [
        at("Europe/Moscow", 2025, 10, 31, 8),
        at("Europe/Moscow", 2025, 11, 1, 8),  # working Saturday, six-day school
        at("Europe/Moscow", 2025, 11, 5, 8),  # Sun, Mon (transfer), Tue (holiday) off
    ]
    assert all(o.tzinfo is MOSCOW for o in found)
    assert openings_between(utc(2025, 11, 5), utc(2025, 11, 5), **kw) == []
    with pytest.raises(ValueError, match="before its start"):
        openings_between(utc(2025, 11, 6), utc(2025, 11, 5), **kw)


NAIVE = dt.datetime(2025, 11, 5, 10)
AWARE = at("Europe/Moscow", 2025, 11, 5, 10)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda kw: next_allowed(NAIVE, **kw), id="next_allowed"),
        pytest.param(lambda kw: is_allowed(NAIVE, **kw), id="is_allowed"),
        pytest.param(lambda kw: window_end(NAIVE, **kw), id="window_end"),
        pytest.param(lambda kw: end_of_school_day(NAIVE, **kw), id="end_of_school_day"),
        pytest.param(lambda kw: openings_between(NAIVE, AWARE, **kw), id="openings_between-start"),
        pytest.param(lambda kw: openings_between(AWARE, NAIVE, **kw), id="openings_between-end"),
    ],
)
def test_naive_datetimes_are_rejected(call: Callable[[Ctx], object]) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        call({"zone": MOSCOW, "window": DEFAULT_WINDOW, "calendar": FIVE})


# --------------------------------------------------------------------------- properties

ZONES = [ZoneInfo(name) for name in RUSSIAN_ZONES]


@st.composite
def windows(draw: st.DrawFn) -> MessagingWindow:
    a = draw(st.times())
    b = draw(st.times().filter(lambda b: b != a))
    return MessagingWindow(min(a, b), max(a, b))


@settings(max_examples=300, deadline=None)
@given(
    t=st.datetimes(
        min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 12, 31), timezones=st.sampled_from(ZONES)
    ),
    zone=st.sampled_from(ZONES),
    window=st.one_of(st.just(DEFAULT_WINDOW), st.just(CLASS_WINDOW), windows()),
    calendar=st.sampled_from([FIVE, SIX, FIVE_REC, SIX_REC]),
)
def test_next_allowed_properties(
    t: dt.datetime, zone: ZoneInfo, window: MessagingWindow, calendar: SchoolCalendar
) -> None:
    kw: Ctx = {"zone": zone, "window": window, "calendar": calendar}
    result = next_allowed(t, **kw)
    instant = result.astimezone(UTC)  # compare and step in UTC (see the DST test above)
    assert result >= t
    assert result - t < dt.timedelta(days=120)  # the summer vacation is the longest gap
    assert result.tzinfo is zone
    assert is_allowed(result, **kw)
    assert next_allowed(result, **kw).astimezone(UTC) == instant
    # An independent check of what "allowed" means: a school day, wall clock inside the window.
    assert calendar.is_school_day(result.date())
    assert window.start <= result.time() < window.end
    if instant != t.astimezone(UTC):
        assert not is_allowed(t, **kw)
        openings = openings_between(t, instant + dt.timedelta(microseconds=1), **kw)
        assert instant in [o.astimezone(UTC) for o in openings]
    assert window_end(result, **kw) == end_of_school_day(t, **kw)
