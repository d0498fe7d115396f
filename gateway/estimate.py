"""When will the last recipient have it? An estimate made before posting, from the queue, limits and windows.

Each bot token sends at its configured rate (`gateway.config.provider_rate`; VK's `execute` batches 25 sends
per request), after the work already queued for it; e-mail goes at `EMAIL_RATE` (a conservative figure for one
relay with a small connection pool). A delivery cannot start before its `not_before` (the window), and a chat
delivery that would finish after its window closes that day slips to the next opening: the estimate says so,
so the author can narrow the audience, send earlier, or accept it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.domain import EMAIL, Kind, School
from gateway.planner import Plan, PlannedDelivery
from gateway.store.base import Store
from schedules.windows import next_allowed, window_end

EMAIL_RATE = 30.0  # letters per second through one relay: conservative; measure your relay (bench/)
VK_BATCH = 25  # sends per VK execute request


@dataclass(frozen=True, slots=True)
class Estimate:
    last: datetime | None  # when the last delivery is expected to be done; None for an empty plan
    by_channel: dict[str, datetime] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # Russian


def estimate(
    plan: Plan,
    school: School,
    kind: Kind,
    *,
    now: datetime,
    backlog: Mapping[tuple[str, str], Sequence[tuple[datetime, int]]],
    rates: Mapping[str, float],
) -> Estimate:
    """Estimate the plan's completion. `backlog` is the open work queued per (channel, account), as (when due, how
    many) (`Store.backlog`): a token sends it first, each part from when it is due, so a post at 21:00 waits at
    08:00 behind what is already held for that opening. A chat delivery that would finish after its window
    closes goes at the next opening instead, behind the others that slipped."""
    groups: dict[tuple[str, str], list[tuple[datetime, str]]] = defaultdict(list)
    for d in plan.deliveries:
        groups[(d.channel, d.account)].append((d.not_before, d.class_name))
    by_channel: dict[str, datetime] = {}
    slipped: dict[str, int] = defaultdict(int)
    held = kind is not Kind.FORCE_MAJEURE
    for (channel, account), starts in groups.items():
        per_second = EMAIL_RATE if channel == EMAIL else rates.get(channel, 10.0) * (VK_BATCH if channel == "vk" else 1)
        queue = [(due, 0, count, "") for due, count in backlog.get((channel, account), ())]
        queue += [(start, 1, 1, class_name) for start, class_name in starts]  # the queued part first at a tie
        busy = 0.0  # seconds from now until the token is free of what is before
        next_day = 0.0  # the same, of what slipped to the next opening
        done = 0.0
        for due, new, count, class_name in sorted(queue):
            busy = max(busy, (due - now).total_seconds()) + count / per_second
            if not new:
                continue
            finish = busy
            if channel != EMAIL and held:
                window = school.window_for(class_name)
                try:
                    closes = window_end(due, zone=school.zone, window=window, calendar=school.calendar)
                except ValueError:  # not planned inside a window (cannot happen for chats): nothing to compare
                    closes = None
                if closes is not None and now + timedelta(seconds=busy) > closes:
                    slipped[channel] += 1
                    opens = next_allowed(closes, zone=school.zone, window=window, calendar=school.calendar)
                    next_day = max(next_day, (opens - now).total_seconds()) + 1 / per_second
                    finish = next_day
            done = max(done, finish)
        free_at = now + timedelta(seconds=round(done, 3))
        by_channel[channel] = max(by_channel.get(channel, free_at), free_at)
    warnings = []
    for channel, count in sorted(slipped.items()):
        warnings.append(
            f"{count} сообщ. в {channel.upper()} не успеют уйти до конца окна рассылки и будут отправлены "
            "в начале следующего учебного дня"
        )
    return Estimate(max(by_channel.values()) if by_channel else None, by_channel, warnings)


Account = tuple[str, str]  # (channel, account)


@dataclass(slots=True)
class _Queue:
    asked: int  # Backlog's order of the store read it came from
    read_at: datetime
    until: datetime
    due: dict[datetime, int]  # how many open deliveries become due when, as read plus what was committed since


class Backlog:
    """The queues a post's estimate waits behind (`Store.backlog`), each read at most `max_age` ago, plus what
    this process committed since (`commit`, `committed`).

    In a region's closure every school posts within seconds, and each post counted the e-mail queue that all
    schools share again: posting the region took time growing with the square of the schools (187 schools: 5 ms
    a post at the end, 1 s in all). The estimate needs no more than the queue of a moment ago: within `max_age`
    it may miss what other processes committed and count what was sent meanwhile.
    """

    def __init__(self, store: Store, max_age: timedelta = timedelta(seconds=1)) -> None:
        self._store = store
        self._max_age = max_age
        self._queues: dict[Account, _Queue] = {}
        self._order = itertools.count()

    async def read(
        self, now: datetime, until: datetime, accounts: Iterable[Account]
    ) -> dict[Account, list[tuple[datetime, int]]]:
        """As `Store.backlog(now, until, accounts)`, from the queues read recently where they reach `until`."""
        wanted = list(dict.fromkeys(accounts))
        stale = [a for a in wanted if not self._fresh(self._queues.get(a), now, until)]
        if stale:
            asked = next(self._order)
            horizon = until + self._max_age  # so that the next second's posts find what is due by their `until`
            found = await self._store.backlog(now, horizon, stale)
            for account in stale:
                self._queues[account] = _Queue(asked, now, horizon, dict(found.get(account, ())))
        out: dict[Account, list[tuple[datetime, int]]] = {}
        for account in wanted:
            due = self._queues[account].due
            parts = sorted((max(when, now), count) for when, count in due.items() if when <= until)
            if parts:
                out[account] = parts
        return out

    def commit(self) -> int:
        """Call just before committing deliveries; pass what it returns to `committed`."""
        return next(self._order)

    def committed(self, ticket: int, deliveries: Iterable[PlannedDelivery]) -> None:
        """Deliveries this process has just committed join the queues read before the commit began (a queue read
        since may have counted them already)."""
        for d in deliveries:
            queue = self._queues.get((d.channel, d.account))
            if queue is not None and queue.asked < ticket and d.not_before <= queue.until:
                queue.due[d.not_before] = queue.due.get(d.not_before, 0) + 1

    def _fresh(self, queue: _Queue | None, now: datetime, until: datetime) -> bool:
        return queue is not None and queue.read_at <= now <= queue.read_at + self._max_age and until <= queue.until
