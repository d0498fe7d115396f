"""Injectable time. Everything in the gateway asks a `Clock` for the time; nothing calls datetime.now().

Times are always timezone-aware (UTC inside the gateway; a school's own zone only for windows and display).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to: for tests and for the demo's "fast-forward"."""

    def __init__(self, start: datetime) -> None:
        self._now = require_aware(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = require_aware(when)

    def advance(self, delta: timedelta | float) -> None:
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)


class ShiftedClock:
    """The real time moved by a fixed offset: time passes as usual, from another starting point (the demo runs
    "on Monday at 10:00" whatever day it really is)."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def require_aware(when: datetime) -> datetime:
    """`when` itself if it carries a time zone; ValueError for a naive datetime."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when.isoformat()} — the gateway needs timezone-aware times")
    return when
