"""When will the last recipient have it? An estimate made before posting, from the queue, limits and windows.

Each bot token sends at its configured rate (`gateway.config.provider_rate`; VK's `execute` batches 25 sends
per request), after the work already queued for it; e-mail goes at `EMAIL_RATE` (a conservative figure for one
relay with a small connection pool). A delivery cannot start before its `not_before` (the window), and a chat
delivery that would finish after its window closes that day slips to the next opening: the estimate says so,
so the author can narrow the audience, send earlier, or accept it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.domain import EMAIL, Kind, School
from gateway.planner import Plan
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
