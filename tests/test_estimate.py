"""The completion estimate shown before posting: queue, provider rates and windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.domain import ChatKind, Kind, School
from gateway.estimate import EMAIL_RATE, estimate
from gateway.planner import Note, Plan, PlannedDelivery
from schedules.calendar import SchoolCalendar

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
    queued = estimate(plan, SCHOOL, Kind.GENERAL, now=MON_10, backlog={("max", "s"): 250}, rates=rates)
    assert queued.by_channel["max"] == MON_10 + timedelta(seconds=12)  # 250 queued first


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
    urgent = estimate(plan, SCHOOL, Kind.FORCE_MAJEURE, now=late, backlog={}, rates={"max": 25.0})
    assert urgent.warnings == []  # force majeure is not held to the window


def test_empty_plan() -> None:
    assert estimate(Plan(), SCHOOL, Kind.GENERAL, now=MON_10, backlog={}, rates={}).last is None
