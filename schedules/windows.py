"""Messaging windows: when, in the school's own time zone, a message may be posted.

A :class:`MessagingWindow` is a wall-clock interval ``[start, end)`` of the school's zone (the
regulations say 08:00–19:00; a class teacher may narrow it for the class). A message may be posted
at instant ``t`` when ``t``, seen in the school's zone, falls on a school day of the school's
:class:`~schedules.calendar.SchoolCalendar` and inside that day's window.

Conventions of every function here:

* instants are timezone-aware ``datetime`` objects; a naive one raises ``ValueError``. The caller
  passes the current time in (the clock is injected, nothing here reads it);
* every returned instant is expressed in the school's zone (``zone``). It is an ordinary aware
  datetime, so it compares and subtracts correctly with instants in any other zone, and
  ``.astimezone(UTC)`` gives the UTC form. (Only for zones with DST does the usual PEP 495 caveat
  matter: compare and add in UTC, since ``==`` across zones is False for times in a fold and
  arithmetic within one zone is wall-clock arithmetic. Internally everything is done in UTC.);
* a window boundary on a given date is the first instant of that local date whose wall-clock time
  is at or after the boundary time. Russian zones have had no DST since 2011 (and no shifts since
  2020), so this is simply "that date at that time". For zones with transitions it is exact: a
  boundary that falls into a DST gap opens at the end of the gap, an ambiguous one (fold) at its
  earlier occurrence. Zone abbreviations (``%Z``) are never parsed or used.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from schedules.calendar import SchoolCalendar

__all__ = [
    "DEFAULT_WINDOW",
    "MessagingWindow",
    "end_of_school_day",
    "is_allowed",
    "next_allowed",
    "openings_between",
    "window_end",
]

_UTC = dt.UTC
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class MessagingWindow:
    """Wall-clock interval ``[start, end)`` within one day; defaults to the regulations' 08:00–19:00."""

    start: dt.time = dt.time(8, 0)
    end: dt.time = dt.time(19, 0)

    def __post_init__(self) -> None:
        for value in (self.start, self.end):
            if not isinstance(value, dt.time):
                raise TypeError(f"expected a time, got {type(value).__name__}")
            if value.tzinfo is not None:
                raise ValueError(f"окно рассылки: время {value} задаётся без часового пояса (пояс — у школы)")
        if not self.start < self.end:
            raise ValueError(f"окно рассылки: начало {_hhmm(self.start)} должно быть раньше конца {_hhmm(self.end)}")

    def contains(self, other: MessagingWindow) -> bool:
        """Whether ``other`` lies entirely inside this window."""
        return self.start <= other.start and other.end <= self.end

    def narrow(self, class_window: MessagingWindow) -> MessagingWindow:
        """Return ``class_window`` if it lies inside this (school) window; ValueError in Russian otherwise."""
        if not self.contains(class_window):
            raise ValueError(f"окно класса {class_window} должно лежать внутри окна школы {self}")
        return class_window

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}–{_hhmm(self.end)}"


DEFAULT_WINDOW = MessagingWindow()
"""08:00–19:00: SanPiN's earliest lesson start and latest second-shift end; the regulations' chat window."""


def is_allowed(t: dt.datetime, *, zone: ZoneInfo, window: MessagingWindow, calendar: SchoolCalendar) -> bool:
    """Whether a message may be posted at ``t``: a school day in ``zone`` and inside ``window``."""
    _require_aware(t)
    return _containing_window(t, zone, window, calendar) is not None


def next_allowed(t: dt.datetime, *, zone: ZoneInfo, window: MessagingWindow, calendar: SchoolCalendar) -> dt.datetime:
    """The earliest instant at or after ``t`` when posting is allowed (``t`` itself if it is), in ``zone``."""
    _require_aware(t)
    opening, _ = _next_window(t, zone, window, calendar)
    return max(opening, t.astimezone(_UTC)).astimezone(zone)


def window_end(t: dt.datetime, *, zone: ZoneInfo, window: MessagingWindow, calendar: SchoolCalendar) -> dt.datetime:
    """When the window open at ``t`` closes (exclusive), in ``zone``; ValueError if ``t`` is outside it."""
    _require_aware(t)
    found = _containing_window(t, zone, window, calendar)
    if found is None:
        raise ValueError(f"{t.isoformat()} is outside the messaging window; use next_allowed() first")
    return found[1].astimezone(zone)


def end_of_school_day(
    t: dt.datetime, *, zone: ZoneInfo, window: MessagingWindow, calendar: SchoolCalendar
) -> dt.datetime:
    """Forwarding deadline for something received at ``t``: the window end of the school day on which it
    can first be posted (today if the window is open or still to open, else the next school day), in ``zone``.
    """
    _require_aware(t)
    _, closing = _next_window(t, zone, window, calendar)
    return closing.astimezone(zone)


def openings_between(
    start: dt.datetime,
    end: dt.datetime,
    *,
    zone: ZoneInfo,
    window: MessagingWindow,
    calendar: SchoolCalendar,
) -> list[dt.datetime]:
    """Window openings on school days in ``[start, end)``, ascending, in ``zone``.

    The scheduler wakes the dispatcher at these instants.
    """
    _require_aware(start)
    _require_aware(end)
    if end < start:
        raise ValueError(f"interval end {end.isoformat()} is before its start {start.isoformat()}")
    lo, hi = start.astimezone(_UTC), end.astimezone(_UTC)
    day = lo.astimezone(zone).date() - _DAY
    last = hi.astimezone(zone).date() + _DAY
    found: list[dt.datetime] = []
    while day <= last:
        bounds = _window_on(day, zone, window, calendar)
        if bounds is not None and lo <= bounds[0] < hi:
            found.append(bounds[0].astimezone(zone))
        day += _DAY
    return found


# --------------------------------------------------------------------------- internals


def _require_aware(t: dt.datetime) -> None:
    if not isinstance(t, dt.datetime):
        raise TypeError(f"expected a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()}: pass a timezone-aware datetime")


def _window_on(
    day: dt.date, zone: ZoneInfo, window: MessagingWindow, calendar: SchoolCalendar
) -> tuple[dt.datetime, dt.datetime] | None:
    """The window of local date ``day`` as UTC instants [opening, closing), or None on a day off.

    Also None when a transition swallows the whole window (both boundaries in one DST gap).
    """
    if not calendar.is_school_day(day):
        return None
    opening, closing = _boundary(day, window.start, zone), _boundary(day, window.end, zone)
    return (opening, closing) if opening < closing else None


def _containing_window(
    t: dt.datetime, zone: ZoneInfo, window: MessagingWindow, calendar: SchoolCalendar
) -> tuple[dt.datetime, dt.datetime] | None:
    u = t.astimezone(_UTC)
    local_day = u.astimezone(zone).date()
    # Neighbouring dates too: around a transition an instant of one local date can lie inside
    # (in absolute time) the span of the window of the adjacent date.
    for day in (local_day - _DAY, local_day, local_day + _DAY):
        bounds = _window_on(day, zone, window, calendar)
        if bounds is not None and bounds[0] <= u < bounds[1]:
            return bounds
    return None


def _next_window(
    t: dt.datetime, zone: ZoneInfo, window: MessagingWindow, calendar: SchoolCalendar
) -> tuple[dt.datetime, dt.datetime]:
    """The first window (UTC instants) that has not closed by ``t``."""
    u = t.astimezone(_UTC)
    day = u.astimezone(zone).date() - _DAY
    while True:
        day = calendar.next_school_day(day, include_today=True)
        bounds = _window_on(day, zone, window, calendar)
        if bounds is not None and u < bounds[1]:
            return bounds
        day += _DAY


def _boundary(day: dt.date, wall: dt.time, zone: ZoneInfo) -> dt.datetime:
    """First instant (UTC) of local date ``day`` whose wall-clock time in ``zone`` is at or after ``wall``."""
    naive = dt.datetime.combine(day, wall)
    earlier = naive.replace(tzinfo=zone, fold=0)
    if _wall(earlier.astimezone(_UTC), zone) == naive:
        return earlier.astimezone(_UTC)  # exists; fold=0 is the earlier one when it is ambiguous
    # ``naive`` falls into a gap. PEP 495: fold=0 maps it with the offset before the transition
    # (an instant after the gap), fold=1 with the offset after it (an instant before the gap).
    # The window opens at the transition itself: bisect between the two.
    lo = naive.replace(tzinfo=zone, fold=1).astimezone(_UTC)
    hi = earlier.astimezone(_UTC)
    while hi - lo > dt.timedelta(microseconds=1):
        mid = lo + (hi - lo) / 2
        if _wall(mid, zone) >= naive:
            hi = mid
        else:
            lo = mid
    return hi


def _wall(u: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """Naive wall-clock time of UTC instant ``u`` in ``zone``."""
    return u.astimezone(zone).replace(tzinfo=None)


def _hhmm(value: dt.time) -> str:
    return value.strftime("%H:%M") if value.second == 0 and value.microsecond == 0 else value.isoformat()
