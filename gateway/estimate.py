"""When will the last recipient have it? An estimate made before posting, from the queue, limits and windows.

Each bot token sends at its configured rate (MAX 25/s, VK 18/s per token; VK's `execute` batches 25 sends per
request), after the work already queued for it; e-mail goes at `EMAIL_RATE` (a conservative figure for one
relay with a small connection pool). A delivery cannot start before its `not_before` (the window), and a chat
delivery that would finish after its window closes that day slips to the next opening: the estimate says so,
so the author can narrow the audience, send earlier, or accept it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.domain import EMAIL, Kind, School
from gateway.planner import Plan
from schedules.windows import window_end

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
    backlog: Mapping[tuple[str, str], int],
    rates: Mapping[str, float],
) -> Estimate:
    """Estimate the plan's completion; `backlog` is the open work already due per (channel, account)."""
    groups: dict[tuple[str, str], list[tuple[datetime, str]]] = defaultdict(list)
    for d in plan.deliveries:
        groups[(d.channel, d.account)].append((d.not_before, d.class_name))
    by_channel: dict[str, datetime] = {}
    slipped: dict[str, int] = defaultdict(int)
    for (channel, account), starts in groups.items():
        per_second = EMAIL_RATE if channel == EMAIL else rates.get(channel, 10.0) * (VK_BATCH if channel == "vk" else 1)
        busy = backlog.get((channel, account), 0) / per_second  # seconds from now until the token is free
        for start, class_name in sorted(starts):
            busy = max(busy, (start - now).total_seconds()) + 1 / per_second
            if channel != EMAIL and kind is not Kind.FORCE_MAJEURE:
                window = school.window_for(class_name)
                try:
                    closes = window_end(start, zone=school.zone, window=window, calendar=school.calendar)
                except ValueError:  # not planned inside a window (cannot happen for chats): nothing to compare
                    continue
                if now + timedelta(seconds=busy) > closes:
                    slipped[channel] += 1
        free_at = now + timedelta(seconds=round(busy, 3))
        by_channel[channel] = max(by_channel.get(channel, free_at), free_at)
    warnings = []
    for channel, count in sorted(slipped.items()):
        warnings.append(
            f"{count} сообщ. в {channel.upper()} не успеют уйти до конца окна рассылки и будут отправлены "
            "в начале следующего учебного дня"
        )
    return Estimate(max(by_channel.values()) if by_channel else None, by_channel, warnings)
