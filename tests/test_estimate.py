"""The completion estimate shown before posting: queue, provider rates and windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.clock import ManualClock
from gateway.domain import EMAIL, AnnouncementRequest, Audience, ChatKind, Group, Kind, School
from gateway.estimate import EMAIL_RATE, Backlog, estimate
from gateway.planner import Note, Plan, PlannedDelivery
from gateway.store.base import Store
from schedules.calendar import SchoolCalendar
from tests.world import running_world

SCHOOL = School("s", "Школа", ZoneInfo("Asia/Yekaterinburg"), calendar=SchoolCalendar())
MON_10 = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 10:00 local


def chats(n: int, at: datetime, channel: str = "max") -> list[PlannedDelivery]:
    return [PlannedDelivery(channel, "s", str(-i), "5А", ChatKind.PARENTS, Note.IN_CHAT, at) for i in range(1, n + 1)]


def letters(n: int, at: datetime) -> list[PlannedDelivery]:
    return [PlannedDelivery("email", "", f"p{i}@x.ru", "5А", None, Note.NOT_IN_CHAT, at) for i in range(n)]


def test_rate_and_backlog_set_the_last_delivery() -> None:
    plan = Plan(chats(50, MON_10) + letters(60, MON_10))
    rates = {"max": 25.0, "vk": 18.0}
    alone = estimate(plan, SCHOOL, Kind.GENERAL, now=MON_10, backlog={}, rates=rates)
    assert alone.by_channel["max"] == MON_10 + timedelta(seconds=2)  # 50 at 25/s
    assert alone.by_channel["email"] == MON_10 + timedelta(seconds=60 / EMAIL_RATE)
    assert alone.last == alone.by_channel["max"]
    assert alone.warnings == []
    queued = estimate(plan, SCHOOL, Kind.GENERAL, now=MON_10, backlog={("max", "s"): [(MON_10, 250)]}, rates=rates)
    assert queued.by_channel["max"] == MON_10 + timedelta(seconds=12)  # 250 queued first
    other_token = estimate(plan, SCHOOL, Kind.GENERAL, now=MON_10, backlog={("max", "t"): [(MON_10, 250)]}, rates=rates)
    assert other_token.by_channel["max"] == MON_10 + timedelta(seconds=2)


def test_vk_execute_batches_count() -> None:
    plan = Plan(chats(450, MON_10, channel="vk"))
    result = estimate(plan, SCHOOL, Kind.GENERAL, now=MON_10, backlog={}, rates={"vk": 18.0})
    assert result.by_channel["vk"] == MON_10 + timedelta(seconds=1)  # 450 / (18 requests/s x 25 sends)


def test_warns_when_chats_would_slip_past_the_window() -> None:
    late = datetime(2026, 11, 23, 13, 59, 50, tzinfo=UTC)  # 18:59:50 local, ten seconds before the window closes
    plan = Plan(chats(600, late))
    result = estimate(plan, SCHOOL, Kind.GENERAL, now=late, backlog={}, rates={"max": 25.0})
    assert result.warnings == [
        "350 сообщ. в MAX не успеют уйти до конца окна рассылки и будут отправлены в начале следующего учебного дня"
    ]
    # the last of them goes at the next opening, 08:00 on Tuesday, after the 349 slipped before it
    assert result.last == datetime(2026, 11, 24, 3, 0, tzinfo=UTC) + timedelta(seconds=350 / 25)
    urgent = estimate(plan, SCHOOL, Kind.FORCE_MAJEURE, now=late, backlog={}, rates={"max": 25.0})
    assert urgent.warnings == []  # force majeure is not held to the window
    assert urgent.last == late + timedelta(seconds=600 / 25)


def test_a_post_at_night_waits_behind_what_is_held_for_the_same_opening() -> None:
    night = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 21:00 local
    opening = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # 08:00 local, Tuesday
    plan = Plan(chats(50, opening))
    rates = {"max": 25.0}
    alone = estimate(plan, SCHOOL, Kind.GENERAL, now=night, backlog={}, rates=rates)
    assert alone.last == opening + timedelta(seconds=2)
    behind = estimate(plan, SCHOOL, Kind.GENERAL, now=night, backlog={("max", "s"): [(opening, 500)]}, rates=rates)
    assert behind.last == opening + timedelta(seconds=22)  # 500 held for 08:00 go first
    # work due now is done long before the morning: it does not delay the opening's queue
    evening = estimate(plan, SCHOOL, Kind.GENERAL, now=night, backlog={("max", "s"): [(night, 500)]}, rates=rates)
    assert evening.last == opening + timedelta(seconds=2)


def test_empty_plan() -> None:
    assert estimate(Plan(), SCHOOL, Kind.GENERAL, now=MON_10, backlog={}, rates={}).last is None


# ------------------------------------------- the queues, read at most once a second (on each backend: `store`)

MAIL = (EMAIL, "")
POST = AnnouncementRequest("s", "dep", Kind.FORCE_MAJEURE, "Школа закрыта", "Занятий нет.", Audience(frozenset()))


async def test_backlog_reads_the_store_again_after_a_second_and_adds_what_this_process_committed(
    store: Store,
) -> None:
    backlog = Backlog(store)
    assert await backlog.read(MON_10, MON_10, [MAIL]) == {}
    ticket = backlog.commit()
    ours = Plan(letters(60, MON_10))
    await store.create_announcement(POST, ours, MON_10)
    backlog.committed(ticket, ours.deliveries)
    await store.create_announcement(POST, Plan(letters(40, MON_10)), MON_10)  # another process's post
    soon = MON_10 + timedelta(milliseconds=900)
    assert await backlog.read(soon, soon, [MAIL]) == {MAIL: [(soon, 60)]}  # ours only, without a read
    later = MON_10 + timedelta(milliseconds=1100)
    assert await backlog.read(later, later, [MAIL]) == {MAIL: [(later, 100)]}
    assert await store.backlog(later, later, [MAIL]) == {MAIL: [(later, 100)]}


async def test_backlog_counts_a_commit_once_when_a_read_came_after_it_began(store: Store) -> None:
    backlog = Backlog(store)
    ticket = backlog.commit()
    ours = Plan(letters(30, MON_10))
    await store.create_announcement(POST, ours, MON_10)
    assert await backlog.read(MON_10, MON_10, [MAIL]) == {MAIL: [(MON_10, 30)]}  # read after: counted there
    backlog.committed(ticket, ours.deliveries)
    assert await backlog.read(MON_10, MON_10, [MAIL]) == {MAIL: [(MON_10, 30)]}


async def test_backlog_reads_again_for_a_later_horizon(store: Store) -> None:
    backlog = Backlog(store)
    tomorrow = MON_10 + timedelta(days=1)
    await store.create_announcement(POST, Plan(chats(5, tomorrow)), MON_10)  # held for tomorrow's window
    assert await backlog.read(MON_10, MON_10, [("max", "s")]) == {}
    assert await backlog.read(MON_10, tomorrow, [("max", "s")]) == {("max", "s"): [(tomorrow, 5)]}


async def test_a_second_post_is_estimated_behind_the_first(tmp_path: Path, clock: ManualClock) -> None:
    async with running_world(tmp_path, clock) as world:
        gateway = world.gateway
        request = AnnouncementRequest(
            "s1", "dep", Kind.FORCE_MAJEURE, "Школа закрыта", "Занятий нет.", Audience(frozenset({Group.PARENTS}))
        )
        first = await gateway.post(request)
        assert first.preview.plan.count(EMAIL) > 0
        second = await gateway.preview(request)  # at the same moment: the queue comes from the first post's read
        now = clock.now()
        school = gateway.current_school("s1")
        fresh = await gateway.store.backlog(now, now, [("email", "")])
        expected = estimate(second.plan, school, request.kind, now=now, backlog=fresh, rates={"max": 28, "vk": 18})
        assert second.estimate.by_channel[EMAIL] == expected.by_channel[EMAIL]
        assert second.estimate.by_channel[EMAIL] > first.preview.estimate.by_channel[EMAIL]
