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


class DatabaseClock:
    """The database server's time, read through this process's clock: `base` plus the offset last measured
    against the database (`Gateway.sync_clock`). On PostgreSQL every process acts on times the others wrote
    (leases, retries, the periodic jobs' periods), so all of them take their time from one clock, the server's: a
    machine whose own clock is hours off still leases, retries and opens windows in step with the rest."""

    def __init__(self, base: Clock) -> None:
        self.base = base
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self.base.now() + self.offset


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
