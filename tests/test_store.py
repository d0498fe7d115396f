"""The store contract, run against every backend (the `store` fixture: SQLite and PostgreSQL): one-transaction
outbox, idempotency, leases that survive a killed process, fencing, fallback. Then what only one backend has:
SQLite's file format; PostgreSQL's migration lock, concurrent claimers, the idempotency race, LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import sys
import textwrap
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from psycopg.rows import TupleRow

from gateway.clock import ManualClock
from gateway.config import Config
from gateway.domain import EMAIL, AnnouncementRequest, Audience, ChatKind, Group, Kind, Status
from gateway.errors import NotFound
from gateway.planner import ForwardingTask, Note, Plan, PlannedDelivery, plan
from gateway.roster import parse_roster
from gateway.store import open_store
from gateway.store import postgres as pg
from gateway.store.base import Claimed, Result, Store, TaskRow
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore, migrations
from schedules.windows import MessagingWindow
from tests.conftest import PgSchemas
from tests.data import ROSTER_CSV
from tests.world import running_world

T = TypeVar("T")

# What each backend raises when a constraint is violated; the contract only says "nothing is committed".
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


def request(**overrides: object) -> AnnouncementRequest:
    fields: dict[str, object] = dict(
        school_id="s1",
        author="dep",
        kind=Kind.SCHEDULE_CHANGE,
        title="Уроки сокращены",
        text="Завтра уроки по 30 минут.",
        audience=Audience(frozenset({Group.PARENTS})),
    )
    fields.update(overrides)
    return AnnouncementRequest(**fields)  # type: ignore[arg-type]


async def seeded(store: Store, config: Config, clock: ManualClock) -> Plan:
    school = config.schools["s1"]
    roster = parse_roster(ROSTER_CSV.encode(), school)
    await store.sync_chats(school, clock.now())
    await store.replace_roster("s1", roster.guardians("s1"), {}, clock.now())
    return plan(school, request(), await store.guardians("s1"), dead_chats=set(), earliest=lambda c, n: clock.now())


def emails(count: int, when: datetime) -> Plan:
    """A plan of `count` e-mails and nothing else (no roster needed)."""
    return Plan(
        [PlannedDelivery("email", "", f"parent{i}@mail.test", "5А", None, Note.NOT_IN_CHAT, when) for i in range(count)]
    )


def done(claimed_id: int, token: str, status: Status, clock: ManualClock, **kw: object) -> Result:
    return Result(claimed_id, token, status, clock.now(), status.value, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the contract, on every backend


async def lines_point_at_own_deliveries(store: Store, announcement_id: int) -> None:
    """Each report line reached through a delivery names a delivery of its own announcement (no foreign key keeps
    it since the migrations 0010 of either backend)."""
    own = {d.id for d in await store.deliveries(announcement_id)}
    assert {c.delivery_id for c in await store.coverage(announcement_id)} - {None} <= own


async def test_announcement_and_plan_commit_together(store: Store, config: Config, clock: ManualClock) -> None:
    p = await seeded(store, config, clock)
    announcement_id, created = await store.create_announcement(request(), p, clock.now())
    assert created
    rows = await store.deliveries(announcement_id)
    assert [(d.channel, d.target) for d in rows] == [(d.channel, d.target) for d in p.deliveries]
    assert all(d.status is Status.PENDING for d in rows)
    assert all(d.not_before == clock.now() and d.finished_at is None for d in rows)
    coverage = await store.coverage(announcement_id)
    assert len(coverage) == len(p.coverage)
    assert {c.name for c in coverage} >= {"Иванова Мария", "Сидоров Олег"}
    mapped = {(c.person, c.class_name): c.delivery_id for c in coverage}
    for c in p.coverage:  # coverage points at the very delivery the plan meant
        expected = None if c.delivery is None else rows[c.delivery].id
        assert mapped[(c.person, c.class_name)] == expected
    # and so does the next announcement's, whose deliveries' ids follow the first one's
    second, _ = await store.create_announcement(request(idempotency_key="second"), p, clock.now())
    later = await store.deliveries(second)
    assert min(d.id for d in later) > max(d.id for d in rows)
    mapped = {(c.person, c.class_name): c.delivery_id for c in await store.coverage(second)}
    expected = {(c.person, c.class_name): None if c.delivery is None else later[c.delivery].id for c in p.coverage}
    assert mapped == expected
    assert [(g.class_name, g.chat_kind) for g in await store.gaps(announcement_id)] == [("7Б", "parents")]
    record = await store.announcement(announcement_id)
    assert record is not None and record.title == "Уроки сокращены" and record.created_at == clock.now()
    assert record.audience_label == request().audience.describe() and record.send_at is None
    assert await store.announcement(announcement_id + 1000) is None


async def test_same_idempotency_key_creates_once(store: Store, config: Config, clock: ManualClock) -> None:
    p = await seeded(store, config, clock)
    first = await store.create_announcement(request(idempotency_key="k-1"), p, clock.now())
    again = await store.create_announcement(request(idempotency_key="k-1", title="другой"), p, clock.now())
    other = await store.create_announcement(request(idempotency_key="k-2"), p, clock.now())
    assert first == (first[0], True)
    assert again == (first[0], False)
    assert other[1] and other[0] != first[0]
    assert len(await store.announcements()) == 2
    assert sum((await store.progress()).values()) == 2 * len(p.deliveries)
    assert [a.id for a in await store.announcements("s1", limit=1)] == [other[0]]
    assert await store.announcements("s2") == []


async def test_failure_inside_the_transaction_leaves_nothing(store: Store, config: Config, clock: ManualClock) -> None:
    p = await seeded(store, config, clock)
    duplicate = PlannedDelivery("email", "", "anna@mail.test", "5А", None, Note.NOT_IN_CHAT, clock.now())
    broken = Plan(p.deliveries + [duplicate], p.coverage, p.gaps)  # violates UNIQUE(announcement, channel, target)
    with pytest.raises(INTEGRITY_ERRORS):
        await store.create_announcement(request(idempotency_key="k-1"), broken, clock.now())
    assert await store.announcements() == []
    assert await store.progress() == {}
    # ... and the key is free again: the failed attempt did not keep it
    assert (await store.create_announcement(request(idempotency_key="k-1"), p, clock.now()))[1]


async def test_naive_times_are_refused(store: Store, config: Config, clock: ManualClock) -> None:
    p = await seeded(store, config, clock)
    naive = clock.now().replace(tzinfo=None)
    with pytest.raises(ValueError, match="naive"):
        await store.create_announcement(request(), p, naive)
    with pytest.raises(ValueError, match="naive"):
        await store.claim(naive, 10, 30)
    assert await store.announcements() == []


async def test_claim_lease_expiry_and_fencing(store: Store, config: Config, clock: ManualClock) -> None:
    p = await seeded(store, config, clock)
    announcement_id, _ = await store.create_announcement(request(), p, clock.now())
    total = len(p.deliveries)
    first = await store.claim(clock.now(), 100, lease_seconds=30)
    assert len(first) == total and not any(c.maybe_sent for c in first)
    assert [c.id for c in first] == sorted(c.id for c in first)  # oldest first: not_before, then id
    assert all(c.attempt == 1 and c.announcement_id == announcement_id for c in first)
    assert len({c.lease_token for c in first}) == total
    assert await store.claim(clock.now(), 100, lease_seconds=30) == []  # leased: nobody else gets them
    assert await store.next_due() == clock.now() + timedelta(seconds=30)  # when the leases run out

    # One is finished; the worker holding the others "dies" (its lease runs out).
    assert (
        await store.finish(
            [done(first[0].id, first[0].lease_token, Status.DELIVERED, clock, provider_id="m1")], clock.now()
        )
        == 1
    )
    clock.advance(31)
    second = await store.claim(clock.now(), 100, lease_seconds=30)
    assert {c.id for c in second} == {c.id for c in first[1:]}  # the delivered one is never handed out again
    assert all(c.maybe_sent and c.attempt == 2 for c in second)

    # The dead worker's late answer is dropped; the new holder's is recorded.
    stale = done(first[1].id, first[1].lease_token, Status.PERMANENT_FAILURE, clock, error="late")
    assert await store.finish([stale], clock.now()) == 0
    fresh = done(second[0].id, second[0].lease_token, Status.DELIVERED, clock)
    assert await store.finish([stale, fresh], clock.now()) == 1
    rows = {d.id: d for d in await store.deliveries(announcement_id)}
    row = rows[first[1].id]
    assert row.status is Status.DELIVERED and row.last_error == "" and row.finished_at == clock.now()
    assert rows[first[0].id].provider_id == "m1" and rows[first[0].id].attempts == 1
    attempts = await store.attempts(first[1].id)
    assert [(a.attempt, a.outcome) for a in attempts] == [(2, "delivered")]
    assert attempts[0].finished_at == clock.now()
    assert await store.progress(announcement_id) == {Status.DELIVERED: 2, Status.SENDING: total - 2}


async def test_channel_filter_and_due_time(store: Store, config: Config, clock: ManualClock) -> None:
    p = await seeded(store, config, clock)
    later = Plan(
        [
            PlannedDelivery(
                d.channel, d.account, d.target, d.class_name, d.chat_kind, d.note, clock.now() + timedelta(hours=1)
            )
            for d in p.deliveries
        ],
        p.coverage,
        p.gaps,
    )
    assert await store.next_due() is None
    await store.create_announcement(request(), later, clock.now())
    assert await store.claim(clock.now(), 100, 30) == []
    assert await store.next_due() == clock.now() + timedelta(hours=1)
    clock.advance(3600)
    emails = await store.claim(clock.now(), 100, 30, channels=("email",))
    assert emails and {c.channel for c in emails} == {"email"}
    assert {c.channel for c in await store.claim(clock.now(), 100, 30)} == {"max", "vk"}


async def test_claim_skips_the_accounts_the_caller_is_sending_for(store: Store, clock: ManualClock) -> None:
    # Two schools' bots: the first has a long queue. A claimer already sending for it gets the other's work.
    queue = [
        PlannedDelivery("max", account, f"-{n}", "5А", ChatKind.PARENTS, Note.IN_CHAT, clock.now())
        for account, n in [*(("school-1", n) for n in range(1, 6)), ("school-2", 100), ("school-2", 101)]
    ]
    await store.create_announcement(request(), Plan(queue), clock.now())
    first = await store.claim(clock.now(), 3, 30)
    assert [c.target for c in first] == ["-1", "-2", "-3"]
    other = await store.claim(clock.now(), 3, 30, skip_accounts=["school-1"])
    assert [(c.account, c.target) for c in other] == [("school-2", "-100"), ("school-2", "-101")]
    assert await store.claim(clock.now(), 3, 30, skip_accounts=["school-1", "school-2"]) == []
    assert [c.target for c in await store.claim(clock.now(), 3, 30, skip_accounts=["school-2"])] == ["-4", "-5"]


async def test_temporary_failure_waits_for_its_retry_time(store: Store, config: Config, clock: ManualClock) -> None:
    p = await seeded(store, config, clock)
    await store.create_announcement(request(), p, clock.now())
    claimed = (await store.claim(clock.now(), 1, 30))[0]
    retry = clock.now() + timedelta(seconds=120)
    result = done(claimed.id, claimed.lease_token, Status.TEMPORARY_FAILURE, clock, error="421", retry_at=retry)
    await store.finish([result], clock.now())
    assert claimed.id not in {c.id for c in await store.claim(clock.now() + timedelta(seconds=119), 100, 30)}
    again = await store.claim(retry, 100, 30)
    assert next(c for c in again if c.id == claimed.id).maybe_sent is False  # a known failure, not a maybe


async def test_dead_chat_falls_back_to_email_in_the_same_transaction(
    store: Store, config: Config, clock: ManualClock
) -> None:
    p = await seeded(store, config, clock)
    announcement_id, _ = await store.create_announcement(request(), p, clock.now())
    claimed = {c.target: c for c in await store.claim(clock.now(), 100, 30)}
    chat = claimed["-501"]  # the 5А parents' chat
    dead = done(
        chat.id, chat.lease_token, Status.PERMANENT_FAILURE, clock, error="бот удалён", fallback=True, dead_chat=True
    )
    await store.finish([dead], clock.now())

    emails = {d.target: d for d in await store.deliveries(announcement_id) if d.channel == "email"}
    # Мария (in the 5А chat) now gets an e-mail; Анна already had one and does not get a second.
    assert set(emails) == {"anna@mail.test", "irina@mail.test", "maria@mail.test"}
    assert emails["maria@mail.test"].note == "chat_failed"
    assert emails["maria@mail.test"].status is Status.PENDING
    routes = {(c.name, c.class_name): (c.route, c.note) for c in await store.coverage(announcement_id)}
    assert routes[("Иванова Мария", "5А")] == ("email", "chat_failed")
    assert routes[("Иванова Мария", "5Б")] == ("email", "chat_failed")  # she was reached through the 5А chat
    assert routes[("Сидоров Олег", "5А")] == ("none", "not_in_chat")  # never reached by that chat
    assert await store.dead_chats("s1") == {("max", "-501")}
    alerts = await store.alerts("s1")
    assert [a.kind for a in alerts] == ["dead_chat"] and "5А" in alerts[0].message
    # the same failure reported again does not pile up alerts
    await store.finish([dead], clock.now())
    assert len(await store.alerts("s1")) == 1
    # the new e-mail is due now and is claimed like any other
    assert "maria@mail.test" in {c.target for c in await store.claim(clock.now(), 100, 30, channels=("email",))}
    await lines_point_at_own_deliveries(store, announcement_id)


async def test_credential_alert_is_raised_once(store: Store, config: Config, clock: ManualClock) -> None:
    p = await seeded(store, config, clock)
    students = PlannedDelivery("max", "s1", "-502", "5А", ChatKind.STUDENTS, Note.IN_CHAT, clock.now())
    await store.create_announcement(request(), Plan([*p.deliveries, students], p.coverage, p.gaps), clock.now())
    claimed = [c for c in await store.claim(clock.now(), 100, 30) if c.channel == "max"]
    refused = [
        done(c.id, c.lease_token, Status.PERMANENT_FAILURE, clock, error="401", alert="токен MAX отклонён")
        for c in claimed
    ]
    assert await store.finish(refused, clock.now()) == len(claimed) >= 2
    alerts = await store.alerts()
    assert [(a.kind, a.subject, a.message) for a in alerts] == [("credential", "max:s1", "токен MAX отклонён")]
    assert await store.alerts("s2") == []


async def test_chat_registry(store: Store, config: Config, clock: ManualClock) -> None:
    await store.sync_chats(config.schools["s1"], clock.now())
    known = await store.chats("s1")
    assert [(c.class_name, c.kind, c.address) for c in known] == sorted(
        (c.class_name, c.kind, c.address) for c in known
    )
    assert {(c.address, c.class_name, c.kind, c.source, c.status) for c in known} >= {
        ("-501", "5А", "parents", "config", "active"),
        ("2000000001", "5Б", "parents", "config", "active"),
    }
    # the bot is added to a new chat: known from now on, but nobody's chat until mapped
    assert await store.chat_seen(
        "s1", "max", "-601", alive=True, reason="", title="Родители 6А", source="webhook", now=clock.now()
    )
    assert not await store.chat_seen(
        "s1", "max", "-601", alive=True, reason="", title="", source="webhook", now=clock.now()
    )
    new = {c.address: c for c in await store.chats()}["-601"]
    assert (new.title, new.source, new.class_name, new.status, new.checked_at) == (
        "Родители 6А",
        "webhook",
        "",
        "active",
        None,
    )
    await store.map_chat("s1", "max", "-601", "5Б", "students", clock.now())
    with pytest.raises(NotFound):
        await store.map_chat("s1", "max", "-999", "5Б", "students", clock.now())
    # another school's webhook or admin cannot touch the chat
    with pytest.raises(NotFound):
        await store.map_chat("s2", "max", "-601", "5А", "parents", clock.now())
    gone = {"alive": False, "reason": "бот удалён", "title": "Чужой", "source": "webhook", "now": clock.now()}
    assert not await store.chat_seen("s2", "max", "-601", **gone)  # type: ignore[arg-type]
    kept = {c.address: c for c in await store.chats()}["-601"]
    assert (kept.school_id, kept.title, kept.class_name, kept.status) == ("s1", "Родители 6А", "5Б", "active")
    # a health check finds it gone: dead, with an open alert; then back: alive, the alert resolved
    clock.advance(60)
    assert await store.chat_seen(
        "s1", "max", "-601", alive=False, reason="бот удалён", title="", source="check", now=clock.now()
    )
    gone = {c.address: c for c in await store.chats("s1")}["-601"]
    assert (gone.class_name, gone.kind, gone.status, gone.status_reason) == ("5Б", "students", "dead", "бот удалён")
    assert gone.checked_at == clock.now()
    assert await store.dead_chats("s1") == {("max", "-601")}
    assert [(a.kind, a.subject) for a in await store.alerts("s1")] == [("dead_chat", "max:-601")]
    assert await store.chat_seen("s1", "max", "-601", alive=True, reason="", title="", source="check", now=clock.now())
    assert await store.dead_chats("s1") == set()
    assert await store.alerts("s1") == []


async def test_roster_reimport_marks_leavers(store: Store, config: Config, clock: ManualClock) -> None:
    school = config.schools["s1"]
    roster = parse_roster(ROSTER_CSV.encode(), school)
    first = await store.replace_roster("s1", roster.guardians("s1"), {}, clock.now())
    assert (first.added, first.updated, first.left) == (5, 0, 0)
    again = await store.replace_roster("s1", roster.guardians("s1"), {}, clock.now())
    assert (again.added, again.updated, again.left, again.unchanged) == (0, 0, 0, 5)
    smaller = [g for g in roster.guardians("s1") if g.name != "Петрова Анна"]
    change = await store.replace_roster("s1", smaller, {}, clock.now())
    assert change.left == 1
    assert "Петрова Анна" not in {g.name for g in await store.guardians("s1")}
    back = await store.replace_roster("s1", roster.guardians("s1"), {}, clock.now())
    assert (back.added, back.updated, back.left, back.unchanged) == (0, 1, 0, 4)  # she came back
    stored = {g.key: g for g in await store.guardians("s1")}
    assert stored == {g.key: g for g in roster.guardians("s1")}
    assert [g.name for g in await store.guardians("s1")] == sorted(g.name for g in roster.guardians("s1"))


# ---------------------------------------------------------------------- the school's rules, on every backend


def chat(
    target: str, when: datetime, *, held: bool = True, channel: str = "max", class_name: str = "5А"
) -> PlannedDelivery:
    """A parents' chat delivery, held back by the window (or not)."""
    return PlannedDelivery(channel, "bot", target, class_name, ChatKind.PARENTS, Note.IN_CHAT, when, held=held)


def mail(target: str, when: datetime, *, held: bool = False) -> PlannedDelivery:
    return PlannedDelivery("email", "", target, "5А", None, Note.NOT_IN_CHAT, when, held=held)


def of_school(school_id: str) -> AnnouncementRequest:
    return request(school_id=school_id)  # for tests whose `request` is pytest's


def deferred(claimed: Claimed, clock: ManualClock, retry_at: datetime) -> Result:
    """What the dispatcher reports for a delivery due but outside its window."""
    return Result(claimed.id, claimed.lease_token, Status.PENDING, clock.now(), "deferred", retry_at=retry_at)


async def forwarding(store: Store, config: Config, clock: ManualClock) -> tuple[int, dict[str, TaskRow]]:
    """An announcement to all parents routed through class teachers: 5А (teacher kt5a) and 5Б (none) get tasks,
    5Б's deadline first; the guardians in those chats wait for the forward."""
    school = config.schools["s1"]
    await store.sync_chats(school, clock.now())
    await store.replace_roster("s1", parse_roster(ROSTER_CSV.encode(), school).guardians("s1"), {}, clock.now())
    deadlines = {"5А": clock.now() + timedelta(hours=9), "5Б": clock.now() + timedelta(hours=8)}
    p = plan(
        school,
        request(via_class_teachers=True),
        await store.guardians("s1"),
        dead_chats=set(),
        earliest=lambda c, n: clock.now(),
        deadline=lambda class_name: deadlines.get(class_name, clock.now()),
    )
    assert [t.class_name for t in p.tasks] == ["5А", "5Б"] and all(d.channel == "email" for d in p.deliveries)
    announcement_id, _ = await store.create_announcement(request(via_class_teachers=True), p, clock.now())
    return announcement_id, {t.class_name: t for t in await store.tasks(announcement_id=announcement_id)}


async def test_announcement_commits_held_deliveries_tasks_and_audit_together(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    tasks = [
        ForwardingTask("5А", "kt5a", ("parents", "students"), now + timedelta(hours=9)),
        ForwardingTask("5Б", "", ("parents",), now + timedelta(hours=8)),
    ]
    audit = "форс-мажор: прорыв трубы; отправка вне окна рассылки"
    p = Plan([chat("-501", now + timedelta(hours=1)), mail("p@mail.test", now)], tasks=tasks)
    announcement_id, created = await store.create_announcement(request(), p, now, audit=audit)
    assert created
    assert [(d.target, d.not_before) for d in await store.deliveries(announcement_id)] == [
        ("-501", now + timedelta(hours=1)),
        ("p@mail.test", now),
    ]
    rows = await store.tasks(school_id="s1")
    assert [(t.class_name, t.teacher, t.groups, t.deadline) for t in rows] == [
        ("5Б", "", ("parents",), now + timedelta(hours=8)),  # by deadline
        ("5А", "kt5a", ("parents", "students"), now + timedelta(hours=9)),
    ]
    assert all(
        (t.announcement_id, t.school_id, t.status, t.note, t.done_at, t.done_by)
        == (announcement_id, "s1", "open", "", None, "")
        for t in rows
    )
    assert [t.class_name for t in await store.tasks(teacher="kt5a")] == ["5А"]
    assert await store.tasks(school_id="s2") == []
    assert await store.tasks(announcement_id=announcement_id + 1000) == []
    [entry] = await store.audit_log("s1")
    assert (entry.school_id, entry.at, entry.actor, entry.action, entry.announcement_id, entry.details) == (
        "s1",
        now,
        "dep",
        "force_majeure",
        announcement_id,
        audit,
    )
    # no audit text, no audit row; the same key again writes nothing twice
    await store.create_announcement(request(idempotency_key="k"), Plan([mail("q@mail.test", now)]), now)
    await store.create_announcement(request(idempotency_key="k"), p, now, audit=audit)
    assert len(await store.audit_log("s1")) == 1
    assert len(await store.tasks()) == 2


async def test_failure_after_the_deliveries_leaves_no_tasks_and_no_audit(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    task = ForwardingTask("5А", "kt5a", ("parents",), now + timedelta(hours=9))
    broken = Plan([chat("-501", now), mail("p@mail.test", now)], tasks=[task, task])  # UNIQUE(announcement, class)
    with pytest.raises(INTEGRITY_ERRORS):
        await store.create_announcement(request(idempotency_key="k-1"), broken, now, audit="форс-мажор")
    assert await store.announcements() == []
    assert await store.progress() == {}
    assert await store.tasks() == []
    assert await store.audit_log("s1") == []
    fixed = Plan(broken.deliveries, tasks=[task])
    assert (await store.create_announcement(request(idempotency_key="k-1"), fixed, now, audit="форс-мажор"))[1]
    assert len(await store.tasks()) == len(await store.audit_log("s1")) == 1


async def test_held_deliveries_of_one_chat_are_claimed_as_one_bundle(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    later = now + timedelta(hours=1)
    ids: dict[str, int] = {}
    plans = {
        "first": [chat("-501", now), mail("p@mail.test", now, held=True)],
        "second": [chat("-501", now), mail("p@mail.test", now, held=True)],  # e-mails are never bundled
        "not held": [chat("-501", now, held=False)],
        "later": [chat("-501", later)],
        "other chat": [chat("-502", now)],
        "other channel": [chat("-501", now, channel="vk")],
        "third": [chat("-501", now)],
    }
    for name, deliveries in plans.items():
        announcement_id, _ = await store.create_announcement(request(title=name), Plan(deliveries), now)
        ids[name] = (await store.deliveries(announcement_id))[0].id
    mates = [ids["first"], ids["second"], ids["third"]]

    # limit=1 picks the oldest; its mates come along, led by the smallest id
    first = await store.claim(now, 1, 30)
    assert [c.id for c in first] == mates
    assert {c.bundle for c in first} == {ids["first"]}
    assert all(c.note == "in_chat" and c.addendum == "" and c.attempt == 1 for c in first)
    rest = await store.claim(now, 100, 30)
    assert {c.id for c in rest} >= {ids["not held"], ids["other chat"], ids["other channel"]}
    assert ids["later"] not in {c.id for c in rest}
    assert len(rest) == 5 and all(c.bundle is None for c in rest)

    await store.finish([done(c.id, c.lease_token, Status.DELIVERED, clock) for c in rest], now)

    # deferred to the next opening, where they wait; the held one due earlier is alone at its own time
    opening = now + timedelta(hours=20)
    assert await store.finish([deferred(c, clock, opening) for c in first], now) == 3
    [alone] = await store.claim(later, 100, 30)
    assert (alone.id, alone.bundle) == (ids["later"], None)
    await store.finish([done(alone.id, alone.lease_token, Status.DELIVERED, clock)], later)
    assert await store.claim(opening - timedelta(seconds=1), 100, 30) == []

    # at the opening: claimed together again, the same bundle, the deferred attempt not counted
    again = await store.claim(opening, 1, 30)
    assert [(c.id, c.bundle, c.attempt, c.maybe_sent) for c in again] == [(i, ids["first"], 1, False) for i in mates]

    # a temporary failure of the bundle: the same retry time, the same bundle
    retry = opening + timedelta(minutes=2)
    failed = [done(c.id, c.lease_token, Status.TEMPORARY_FAILURE, clock, error="429", retry_at=retry) for c in again]
    assert await store.finish(failed, opening) == 3
    assert await store.claim(retry - timedelta(seconds=1), 100, 30) == []
    retried = await store.claim(retry, 1, 30)
    assert [(c.id, c.bundle, c.attempt) for c in retried] == [(i, ids["first"], 2) for i in mates]

    # its holder dies: after the lease the bundle comes back whole, to be reconciled
    recovered = await store.claim(retry + timedelta(seconds=31), 1, 30)
    assert [(c.id, c.bundle, c.maybe_sent) for c in recovered] == [(i, ids["first"], True) for i in mates]


async def test_bundles_under_a_channel_filter(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    for title in ("a", "b"):
        await store.create_announcement(
            request(title=title), Plan([chat("-501", now), mail(f"{title}@m.test", now)]), now
        )
    assert {c.channel for c in await store.claim(now, 100, 30, channels=("email",))} == {"email"}
    assert await store.claim(now, 100, 30, channels=("vk",)) == []
    bundle = await store.claim(now, 1, 30, channels=("max",))
    assert len(bundle) == 2 and {c.bundle for c in bundle} == {bundle[0].id}


async def test_deferred_delivery_waits_again_without_an_attempt(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    announcement_id, _ = await store.create_announcement(request(), emails(2, now), now)
    a, b = await store.claim(now, 10, 30)
    opening = now + timedelta(hours=14)
    # one batch: a deferral and a delivery; both are recorded, only the delivery is an attempt
    assert (
        await store.finish([deferred(a, clock, opening), done(b.id, b.lease_token, Status.DELIVERED, clock)], now) == 2
    )
    rows = {d.id: d for d in await store.deliveries(announcement_id)}
    assert (rows[a.id].status, rows[a.id].attempts, rows[a.id].not_before) == (Status.PENDING, 0, opening)
    assert rows[a.id].finished_at is None
    assert await store.attempts(a.id) == []
    assert [x.outcome for x in await store.attempts(b.id)] == ["delivered"]
    assert await store.next_due() == opening
    assert await store.claim(now, 10, 30) == []
    [again] = await store.claim(opening, 10, 30)
    assert (again.id, again.attempt, again.maybe_sent) == (a.id, 1, False)
    # a stale lease's deferral is dropped
    assert await store.finish([deferred(a, clock, opening + timedelta(days=1))], opening) == 0
    row = {d.id: d for d in await store.deliveries(announcement_id)}[a.id]
    assert (row.status, row.attempts, row.not_before) == (Status.SENDING, 1, opening)


async def test_deferral_keeps_a_maybe_sent_delivery_maybe_sent(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    await store.create_announcement(request(), emails(1, now), now)
    await store.claim(now, 10, 30)  # its holder dies mid-send: the letter may have left
    clock.advance(31)
    [second] = await store.claim(clock.now(), 10, 30)
    assert second.maybe_sent
    opening = clock.now() + timedelta(hours=14)  # the window closed meanwhile
    # The dispatcher defers a maybe-sent delivery as "unknown", so that it is reconciled before any send.
    later = replace(deferred(second, clock, opening), status=Status.UNKNOWN)
    assert await store.finish([later], clock.now()) == 1
    row = {d.id: d for d in await store.deliveries(1)}[second.id]
    assert (row.status, row.attempts) == (Status.UNKNOWN, 1)
    [third] = await store.claim(opening, 10, 30)
    assert third.maybe_sent  # still not known whether the first send arrived


async def test_forward_happens_exactly_once(store: Store, config: Config, clock: ManualClock) -> None:
    announcement_id, tasks = await forwarding(store, config, clock)
    assert [t.class_name for t in await store.tasks(announcement_id=announcement_id)] == ["5Б", "5А"]
    waiting = {(c.name, c.class_name): c for c in await store.coverage(announcement_id) if c.note == "forwarding"}
    assert set(waiting) == {("Иванова Мария", "5А"), ("Кузнецова Ольга", "5Б")}
    assert all(c.route == "chat" and c.delivery_id is None for c in waiting.values())
    emails_before = len(await store.deliveries(announcement_id))
    task = tasks["5А"]
    parents = chat("-501", clock.now(), held=False)
    students = PlannedDelivery("max", "bot", "-502", "5А", ChatKind.STUDENTS, Note.IN_CHAT, clock.now())
    clock.advance(60)
    note = "Сменную обувь не забудьте"
    assert await store.forward(
        task.id, actor="kt5a", note=note, status="forwarded", deliveries=[parents, students], now=clock.now()
    )
    done_task = {t.id: t for t in await store.tasks()}[task.id]
    assert (done_task.status, done_task.note, done_task.done_at, done_task.done_by) == (
        "forwarded",
        note,
        clock.now(),
        "kt5a",
    )
    rows = await store.deliveries(announcement_id)
    chats = {d.target: d for d in rows if d.channel != "email"}
    assert set(chats) == {"-501", "-502"} and len(rows) == emails_before + 2
    claimed = {c.target: c for c in await store.claim(clock.now(), 100, 30)}
    assert claimed["-501"].addendum == claimed["-502"].addendum == note
    assert all(c.addendum == "" for c in claimed.values() if c.channel == "email")
    coverage = {(c.name, c.class_name): c for c in await store.coverage(announcement_id)}
    assert (coverage[("Иванова Мария", "5А")].note, coverage[("Иванова Мария", "5А")].delivery_id) == (
        "in_chat",
        chats["-501"].id,
    )
    assert coverage[("Кузнецова Ольга", "5Б")].note == "forwarding"  # 5Б forwards on its own
    await lines_point_at_own_deliveries(store, announcement_id)

    # a second forward (another process, the deadline job) does nothing
    other = chat("-599", clock.now())
    assert not await store.forward(
        task.id, actor="dir", note="", status="auto_forwarded", deliveries=[other], now=clock.now()
    )
    assert len(await store.deliveries(announcement_id)) == emails_before + 2
    assert {t.id: t for t in await store.tasks()}[task.id] == done_task

    # an escalated task can still be forwarded, once
    assert await store.escalate([tasks["5Б"].id], clock.now(), "") == [tasks["5Б"].id]
    vk = chat("2000000001", clock.now(), channel="vk", class_name="5Б", held=False)
    assert await store.forward(
        tasks["5Б"].id, actor="система", note="", status="auto_forwarded", deliveries=[vk], now=clock.now()
    )
    assert not await store.forward(
        tasks["5Б"].id, actor="система", note="", status="auto_forwarded", deliveries=[vk], now=clock.now()
    )
    assert {t.class_name: t.status for t in await store.tasks()} == {"5А": "forwarded", "5Б": "auto_forwarded"}
    olga = {(c.name, c.class_name): c for c in await store.coverage(announcement_id)}[("Кузнецова Ольга", "5Б")]
    vk_row = next(d for d in await store.deliveries(announcement_id) if d.channel == "vk")
    assert (olga.note, olga.delivery_id) == ("in_chat", vk_row.id)
    assert (
        await store.forward(10_000, actor="dir", note="", status="forwarded", deliveries=[], now=clock.now()) is False
    )


async def test_escalate_only_open_tasks_with_one_alert(store: Store, config: Config, clock: ManualClock) -> None:
    announcement_id, tasks = await forwarding(store, config, clock)
    ids = [tasks["5А"].id, tasks["5Б"].id]
    clock.advance(9 * 3600)
    alert = "Объявление не переслано классам в срок: 5А, 5Б"
    assert await store.escalate(ids, clock.now(), alert) == ids
    assert [(a.school_id, a.kind, a.subject, a.message) for a in await store.alerts()] == [
        ("s1", "forwarding_late", f"tasks:{ids[0]}", alert)
    ]
    rows = {t.id: t for t in await store.tasks(announcement_id=announcement_id)}
    assert {(t.status, t.done_at) for t in rows.values()} == {("escalated", clock.now())}
    # again (another process): nothing left to escalate, no second alert
    assert await store.escalate(ids, clock.now(), alert) == []
    assert len(await store.alerts()) == 1
    # a forwarded task is not escalated
    _, more = await forwarding(store, config, clock)
    assert await store.forward(more["5А"].id, actor="kt5a", note="", status="forwarded", deliveries=[], now=clock.now())
    assert await store.escalate([more["5А"].id, more["5Б"].id], clock.now(), "") == [more["5Б"].id]
    assert len(await store.alerts()) == 1  # no alert text, no alert
    assert {t.id: t.status for t in await store.tasks()}[more["5А"].id] == "forwarded"


async def test_escalation_alert_goes_to_the_school_of_the_first_task(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    first: dict[str, TaskRow] = {}
    for school in ("s1", "s2"):
        task = ForwardingTask("5А", "", ("parents",), now)
        announcement_id, _ = await store.create_announcement(of_school(school), Plan(tasks=[task]), now)
        [first[school]] = await store.tasks(announcement_id=announcement_id)
    ids = [first["s1"].id, first["s2"].id]
    assert await store.escalate(ids, now, "не переслано") == ids
    assert [(a.school_id, a.subject) for a in await store.alerts()] == [("s1", f"tasks:{ids[0]}")]


async def test_add_deliveries_skips_targets_the_announcement_has(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    announcement_id, _ = await store.create_announcement(request(), emails(2, now), now)
    letter = PlannedDelivery("email", "", "dep@s1.test", "", None, Note.ESCALATION, now, "Завучева Ольга")
    again = mail("parent0@mail.test", now)  # already there
    assert await store.add_deliveries(announcement_id, [again, letter], now, addendum="не переслано: 5А") == 1
    assert await store.add_deliveries(announcement_id, [again, letter], now, addendum="другое") == 0
    assert await store.add_deliveries(announcement_id, [], now) == 0
    rows = await store.deliveries(announcement_id)
    assert [d.target for d in rows] == ["parent0@mail.test", "parent1@mail.test", "dep@s1.test"]
    assert (rows[2].note, rows[2].recipient_name, rows[2].status) == ("escalation", "Завучева Ольга", Status.PENDING)
    claimed = {c.target: c for c in await store.claim(now, 10, 30)}
    assert (claimed["dep@s1.test"].addendum, claimed["dep@s1.test"].note) == ("не переслано: 5А", "escalation")
    assert claimed["parent0@mail.test"].addendum == ""


async def test_backlog_is_the_open_work_per_account_by_when_it_is_due(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    later = now + timedelta(hours=1)
    assert await store.backlog(now, later) == {}
    await store.create_announcement(request(title="a"), emails(3, now - timedelta(minutes=5)), now)
    p = Plan([chat("-501", now), chat("-502", now), chat("-503", later), chat("2000000001", now, channel="vk")])
    await store.create_announcement(request(title="b"), p, now)
    [vk] = await store.claim(now, 10, 30, channels=("vk",))
    await store.finish([done(vk.id, vk.lease_token, Status.DELIVERED, clock)], now)  # finished: not waiting
    [leased] = await store.claim(now, 1, 30, channels=("email",))  # being sent: still in the queue
    # overdue work counts as due now; what is held for later, from when it is due, if due by `until`
    assert await store.backlog(now, now) == {("email", ""): [(now, 3)], ("max", "bot"): [(now, 2)]}
    assert await store.backlog(now, later) == {("email", ""): [(now, 3)], ("max", "bot"): [(now, 2), (later, 1)]}
    await store.finish([done(leased.id, leased.lease_token, Status.PERMANENT_FAILURE, clock)], now)
    assert await store.backlog(now, later) == {("email", ""): [(now, 2)], ("max", "bot"): [(now, 2), (later, 1)]}
    # a post asks for its own tokens' queues only
    assert await store.backlog(now, later, [("max", "bot"), ("vk", "bot")]) == {("max", "bot"): [(now, 2), (later, 1)]}
    assert await store.backlog(now, now, [("email", "")]) == {("email", ""): [(now, 2)]}


async def test_audit_log_is_newest_first_per_school(store: Store, clock: ManualClock) -> None:
    made = []
    for i, school in enumerate(("s1", "s1", "s2", "s1", "s1")):
        if i != 4:  # the last at the same moment as the one before: the later entry still comes first
            clock.advance(60)
        announcement_id, _ = await store.create_announcement(
            request(school_id=school, title=f"№{i}"), emails(1, clock.now()), clock.now(), audit=f"причина {i}"
        )
        made.append(announcement_id)
    await store.create_announcement(request(), emails(1, clock.now()), clock.now())  # no audit
    log = await store.audit_log("s1")
    assert [e.details for e in log] == ["причина 4", "причина 3", "причина 1", "причина 0"]
    assert [e.announcement_id for e in log] == [made[4], made[3], made[1], made[0]]
    assert log[0].at == log[1].at
    assert [e.details for e in await store.audit_log("s1", limit=2)] == ["причина 4", "причина 3"]
    assert [e.details for e in await store.audit_log("s2")] == ["причина 2"]
    assert await store.audit_log("s3") == []


CHILD = """
import asyncio, sys
from datetime import datetime
from gateway.store import open_store

async def main():
    store = await open_store(sys.argv[1])
    claimed = await store.claim(datetime.fromisoformat(sys.argv[2]), 100, lease_seconds=30)
    print(len(claimed), flush=True)
    await asyncio.sleep(60)  # "sending" when the kill comes

asyncio.run(main())
"""


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path, pg_schemas: PgSchemas) -> str:
    """The URL of a fresh store of each backend, for tests that open it from several processes."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return (await pg_schemas.new())[1]


async def test_lease_of_a_killed_process_is_recovered(store_url: str, config: Config, clock: ManualClock) -> None:
    store = await open_store(store_url)
    try:
        p = await seeded(store, config, clock)
        await store.create_announcement(request(), p, clock.now())
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            textwrap.dedent(CHILD),
            store_url,
            clock.now().isoformat(),
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
        assert int(line) == len(p.deliveries)
        child.kill()  # SIGKILL: no cleanup, no goodbye
        await child.wait()
        assert await store.claim(clock.now() + timedelta(seconds=10), 100, 30) == []
        recovered = await store.claim(clock.now() + timedelta(seconds=31), 100, 30)
        assert len(recovered) == len(p.deliveries)
        assert all(c.maybe_sent and c.attempt == 2 for c in recovered)
    finally:
        await store.close()


# ---------------------------------------------------------------------- staff accounts, parents' links, cancelling


async def test_passwords_sessions_and_tokens(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    assert await store.password_hash("s1", "dep") is None
    await store.set_password("s1", "dep", "$argon2id$one", now)
    await store.set_password("s1", "dep", "$argon2id$two", now)  # replaced, not duplicated
    assert await store.password_hash("s1", "dep") == "$argon2id$two"
    assert await store.password_hash("s2", "dep") is None  # staff ids are per school

    later = now + timedelta(hours=12)
    await store.create_session("h-1", "s1", "dep", "csrf-1", now, later)
    await store.create_session("h-2", "s1", "kt5a", "csrf-2", now, now + timedelta(hours=1))
    got = await store.session("h-1", now)
    assert got is not None and (got.school_id, got.staff_id, got.csrf_token) == ("s1", "dep", "csrf-1")
    assert (got.created_at, got.expires_at) == (now, later)
    assert await store.session("h-1", later) is None  # expired
    assert await store.session("nope", now) is None
    await store.delete_session("h-2")
    assert await store.session("h-2", now) is None
    await store.set_password("s1", "dep", "$argon2id$three", now)  # a new password ends the sessions
    assert await store.session("h-1", now) is None

    first = await store.create_api_token("t-hash-1", "s1", "it", "журнал", now)
    second = await store.create_api_token("t-hash-2", "s1", "dep", "", now)
    assert first != second
    token = await store.api_token("t-hash-1")
    assert token is not None and (token.id, token.school_id, token.staff_id, token.label) == (
        first,
        "s1",
        "it",
        "журнал",
    )
    assert token.created_at == now
    assert await store.revoke_api_token(first, now)
    assert not await store.revoke_api_token(first, now)
    assert await store.api_token("t-hash-1") is None
    assert await store.api_token("t-hash-2") is not None
    with pytest.raises(INTEGRITY_ERRORS):
        await store.create_api_token("t-hash-2", "s1", "dep", "", now)


async def test_acknowledgement_is_recorded_once_per_letter(store: Store, config: Config, clock: ManualClock) -> None:
    p = await seeded(store, config, clock)
    announcement_id, _ = await store.create_announcement(request(), p, clock.now())
    rows = await store.deliveries(announcement_id)
    letter = next(d for d in rows if d.channel == "email" and d.target == "anna@mail.test")
    chat_delivery = next(d for d in rows if d.channel != "email")
    row = await store.letter(letter.id)
    assert row is not None
    assert (row.announcement_id, row.school_id, row.target, row.title) == (
        announcement_id,
        "s1",
        "anna@mail.test",
        "Уроки сокращены",
    )
    assert row.acknowledged_at is None and not row.opted_out
    assert await store.letter(chat_delivery.id) is None  # links are for letters only
    assert await store.letter(10_000) is None

    first = clock.now()
    assert await store.acknowledge(letter.id, first) == first
    clock.advance(60)
    assert await store.acknowledge(letter.id, clock.now()) == first  # the first click counts
    assert await store.acknowledge(chat_delivery.id, clock.now()) is None
    assert await store.acknowledge(10_000, clock.now()) is None
    assert await store.acknowledgements(announcement_id) == {letter.id: first}
    again = await store.letter(letter.id)
    assert again is not None and again.acknowledged_at == first


async def test_opt_out_unsubscribes_the_mailbox_and_the_next_plan_skips_it(
    store: Store, config: Config, clock: ManualClock
) -> None:
    await seeded(store, config, clock)
    assert await store.opt_out("s1", "anna@mail.test", clock.now()) == 1
    assert await store.opt_out("s1", "anna@mail.test", clock.now()) == 0  # already
    assert await store.opt_out("s1", "", clock.now()) == 0  # no address is nobody's
    assert await store.opt_out("s2", "olga@mail.test", clock.now()) == 0  # another school's guardians
    by_email = {g.email: g.opted_out for g in await store.guardians("s1")}
    assert by_email["anna@mail.test"] and not by_email["olga@mail.test"]
    school = config.schools["s1"]
    p = plan(school, request(), await store.guardians("s1"), dead_chats=set(), earliest=lambda c, n: clock.now())
    assert "anna@mail.test" not in {d.target for d in p.deliveries}  # 5А, not in its chat: unsubscribed
    announcement_id, _ = await store.create_announcement(request(), p, clock.now())
    anna = [c for c in await store.coverage(announcement_id) if c.email == "anna@mail.test"]
    assert [(c.class_name, c.route, c.opted_out) for c in anna] == [("5А", "none", True)]


async def test_cancel_stops_what_has_not_gone_out(store: Store, config: Config, clock: ManualClock) -> None:
    announcement_id, tasks = await forwarding(store, config, clock)
    rows = await store.deliveries(announcement_id)
    assert len(rows) >= 2
    [sending] = await store.claim(clock.now(), 1, 30)  # one is being sent right now: it is left to its sender
    sent_before = await store.claim(clock.now(), 1, 30)
    await store.finish([done(sent_before[0].id, sent_before[0].lease_token, Status.DELIVERED, clock)], clock.now())
    await store.forward(
        tasks["5А"].id, actor="kt5a", note="", status="forwarded", deliveries=[], now=clock.now()
    )  # a task already done stays done
    clock.advance(5)
    cancelled = await store.cancel_announcement(announcement_id, "dep", clock.now())
    assert cancelled == len(rows) - 2
    statuses = {d.id: d.status for d in await store.deliveries(announcement_id)}
    assert statuses[sending.id] is Status.SENDING and statuses[sent_before[0].id] is Status.DELIVERED
    others = [d for d in await store.deliveries(announcement_id) if d.id not in (sending.id, sent_before[0].id)]
    assert {d.status for d in others} == {Status.CANCELLED} and all(d.finished_at == clock.now() for d in others)
    assert await store.claim(clock.now() + timedelta(seconds=1), 100, 30) == []
    by_class = {t.class_name: t for t in await store.tasks(announcement_id=announcement_id)}
    assert by_class["5А"].status == "forwarded"
    assert (by_class["5Б"].status, by_class["5Б"].done_by, by_class["5Б"].done_at) == ("cancelled", "dep", clock.now())
    assert not await store.forward(
        by_class["5Б"].id, actor="dir", note="", status="forwarded", deliveries=[], now=clock.now()
    )
    record = await store.announcement(announcement_id)
    assert record is not None and record.cancelled_at == clock.now()
    # the lease of the send in flight runs out: now that one is cancelled too; the cancellation is audited once
    clock.advance(60)
    assert await store.cancel_announcement(announcement_id, "dir", clock.now()) == 1
    record = await store.announcement(announcement_id)
    assert record is not None and record.cancelled_at == clock.now() - timedelta(seconds=60)
    audit = await store.audit_log("s1")
    assert [(a.actor, a.action, a.announcement_id) for a in audit] == [("dep", "cancel", announcement_id)]
    with pytest.raises(NotFound):
        await store.cancel_announcement(10_000, "dep", clock.now())


async def test_add_audit_writes_one_line(store: Store, clock: ManualClock) -> None:
    await store.add_audit("s1", "it", "roster_import", "список загружен: новых 3", clock.now())
    [row] = await store.audit_log("s1")
    assert (row.actor, row.action, row.details, row.announcement_id, row.at) == (
        "it",
        "roster_import",
        "список загружен: новых 3",
        None,
        clock.now(),
    )


async def test_api_tokens_of_a_school_are_listed_with_their_revocation(store: Store, clock: ManualClock) -> None:
    assert await store.api_tokens("s1") == []
    made = clock.now()
    first = await store.create_api_token("t-hash-1", "s1", "dep", "журнал", made)
    clock.advance(60)
    second = await store.create_api_token("t-hash-2", "s1", "it", "", clock.now())
    await store.create_api_token("t-hash-3", "s2", "dep", "другая школа", clock.now())
    rows = await store.api_tokens("s1")
    assert [(r.id, r.school_id, r.staff_id, r.label, r.created_at, r.revoked_at) for r in rows] == [
        (first, "s1", "dep", "журнал", made, None),
        (second, "s1", "it", "", clock.now(), None),
    ]
    assert "t-hash" not in repr(rows)  # a listing never carries what logs in
    clock.advance(60)
    assert await store.revoke_api_token(first, clock.now())
    rows = await store.api_tokens("s1")
    assert [(r.id, r.revoked_at) for r in rows] == [(first, clock.now()), (second, None)]  # revoked ones stay listed
    assert await store.api_token("t-hash-1") is None and await store.api_token("t-hash-2") is not None
    assert [r.label for r in await store.api_tokens("s2")] == ["другая школа"]
    assert await store.api_tokens("s3") == []


async def test_class_windows_are_set_replaced_reset_and_audited(store: Store, clock: ManualClock) -> None:
    assert await store.class_windows() == []
    narrow = MessagingWindow(time(9), time(18))
    await store.set_class_window("s1", "7Б", narrow, "kt7b", clock.now(), audit="окно 7Б: 09:00–18:00")
    other = MessagingWindow(time(8, 30), time(17, 45))
    await store.set_class_window("s2", "5А", other, "kt", clock.now(), audit="окно 5А другой школы")
    [row] = await store.class_windows("s1")
    assert (row.school_id, row.class_name, row.window, row.set_by, row.set_at) == (
        "s1",
        "7Б",
        narrow,
        "kt7b",
        clock.now(),
    )
    assert [(r.school_id, r.class_name, r.window) for r in await store.class_windows()] == [
        ("s1", "7Б", narrow),
        ("s2", "5А", other),
    ]
    clock.advance(60)
    wider = MessagingWindow(time(8, 15), time(18, 30))
    await store.set_class_window("s1", "7Б", wider, "dep", clock.now(), audit="окно 7Б: 08:15–18:30")
    [row] = await store.class_windows("s1")  # replaced, not added
    assert (row.window, row.set_by, row.set_at) == (wider, "dep", clock.now())
    clock.advance(60)
    assert await store.reset_class_window("s1", "7Б", "dir", clock.now(), audit="окно 7Б сброшено")
    clock.advance(60)
    assert not await store.reset_class_window("s1", "7Б", "dir", clock.now(), audit="нечего сбрасывать")
    assert await store.class_windows("s1") == []
    assert [r.class_name for r in await store.class_windows()] == ["5А"]
    audit = await store.audit_log("s1")
    assert [(a.actor, a.action, a.details, a.announcement_id) for a in audit] == [
        ("dir", "class_window", "окно 7Б сброшено", None),
        ("dep", "class_window", "окно 7Б: 08:15–18:30", None),
        ("kt7b", "class_window", "окно 7Б: 09:00–18:00", None),
    ]
    with pytest.raises(ValueError, match="whole minutes"):  # the store keeps HH:MM only
        await store.set_class_window(
            "s1", "7Б", MessagingWindow(time(9, 0, 30), time(18)), "dep", clock.now(), audit="не запишется"
        )
    assert await store.class_windows("s1") == []
    assert len(await store.audit_log("s1")) == 3


async def test_a_class_window_change_and_its_audit_line_commit_together(store: Store, clock: ManualClock) -> None:
    narrow = MessagingWindow(time(9), time(18))
    with pytest.raises(INTEGRITY_ERRORS):  # the audit line cannot be written (no text): nor is the window set
        await store.set_class_window("s1", "7Б", narrow, "kt7b", clock.now(), audit=None)  # type: ignore[arg-type]
    assert await store.class_windows() == [] and await store.audit_log("s1") == []
    await store.set_class_window("s1", "7Б", narrow, "kt7b", clock.now(), audit="окно 7Б: 09:00–18:00")
    with pytest.raises(INTEGRITY_ERRORS):
        await store.reset_class_window("s1", "7Б", "dir", clock.now(), audit=None)  # type: ignore[arg-type]
    assert [r.window for r in await store.class_windows("s1")] == [narrow]
    assert len(await store.audit_log("s1")) == 1


# ---------------------------------------------------------------------- SQLite only


async def test_sqlite_schema_migrates_forward_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "z.db"
    s = await SqliteStore.open(path)
    installation = await s.installation()
    await s.close()
    s = await SqliteStore.open(path)  # reopening applies nothing twice
    assert await s.installation() == installation
    await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations()[-1][0]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(installation) == 12


async def test_sqlite_0004_keeps_forwarding_tasks_and_their_ids(tmp_path: Path) -> None:
    path = tmp_path / "z.db"
    with sqlite3.connect(path) as conn:  # a database as version 3 left it, with a task
        for version, script in migrations():
            if version <= 3:
                conn.executescript(script)
        conn.execute("PRAGMA user_version = 3")
        conn.execute(
            """INSERT INTO announcements (school_id, author, kind, title, text, audience, audience_label, created_at)
               VALUES ('s1', 'dep', 'general', 'т', 'т', '{}', 'вся школа', '2026-11-23T05:00:00.000000+00:00')"""
        )
        conn.execute(
            """INSERT INTO forwarding_tasks (id, announcement_id, school_id, class_name, teacher, groups, deadline)
               VALUES (41, 1, 's1', '5А', 'kt5a', 'parents', '2026-11-23T14:00:00.000000+00:00')"""
        )
    s = await SqliteStore.open(path)
    try:
        [task] = await s.tasks()
        assert (task.id, task.class_name, task.status, task.groups) == (41, "5А", "open", ("parents",))
        assert await s.cancel_announcement(1, "dep", datetime(2026, 11, 23, 6, tzinfo=UTC)) == 0
        assert [t.status for t in await s.tasks()] == ["cancelled"]
    finally:
        await s.close()


async def test_sqlite_0010_keeps_the_report_lines_and_drops_their_keys(tmp_path: Path) -> None:
    path = tmp_path / "z.db"
    at = "2026-11-23T05:00:00.000000+00:00"
    with sqlite3.connect(path) as conn:  # a database as version 9 left it, with a report of two lines
        for version, script in migrations():
            if version <= 9:
                conn.executescript(script)
        conn.execute("PRAGMA user_version = 9")
        conn.execute(
            """INSERT INTO announcements (school_id, author, kind, title, text, audience, audience_label, created_at)
               VALUES ('s1', 'dep', 'general', 'т', 'т', '{}', 'вся школа', ?)""",
            (at,),
        )
        conn.execute(
            """INSERT INTO deliveries (id, announcement_id, channel, account, target, class_name, note, not_before,
                                       created_at, updated_at)
               VALUES (7, 1, 'email', '', 'mama@mail.test', '5А', 'not_in_chat', ?, ?, ?)""",
            (at, at, at),
        )
        conn.executemany(
            "INSERT INTO coverage (announcement_id, person, class_name, route, delivery_id, email, note) "
            "VALUES (1, ?, '5А', ?, ?, ?, ?)",
            [("g1", "email", 7, "mama@mail.test", "not_in_chat"), ("g2", "none", None, "", "not_in_chat")],
        )
    s = await SqliteStore.open(path)
    try:
        lines = [(c.person, c.route, c.delivery_id, c.email, c.delivery_status) for c in await s.coverage(1)]
        assert sorted(lines) == [("g1", "email", 7, "mama@mail.test", Status.PENDING), ("g2", "none", None, "", None)]
    finally:
        await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM pragma_foreign_key_list('coverage')").fetchone() == (0,)
        indexes = conn.execute("SELECT name, origin FROM pragma_index_list('coverage')").fetchall()
        assert [origin for _, origin in indexes] == ["pk"]  # the primary key's, and no index by delivery


async def test_sqlite_a_post_finds_what_it_reads_by_index(tmp_path: Path, clock: ManualClock) -> None:
    """Every read a post makes goes through an index to its school's rows: a read that scanned a whole table would
    make each post slower the more schools share the database (a region's closure: time with the square of the
    schools, as the chats were read before migration 0009)."""
    async with running_world(tmp_path, clock) as world:
        store = world.gateway.store
        conns = [store._conn, store._reader]  # type: ignore[attr-defined]  # the writer's and the reads'
        statements: list[str] = []
        for conn in conns:
            conn.set_trace_callback(statements.append)  # with the values bound, as SQLite ran them
        try:
            await world.post({Group.PARENTS, Group.STUDENTS})
        finally:
            for conn in conns:
                conn.set_trace_callback(None)
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        plans = {s: [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + s)] for s in reads}
    assert {re.search(r"FROM (\w+)", s).group(1) for s in reads} >= {"chats", "guardians", "guardian_classes"}  # type: ignore[union-attr]
    scans = {s: steps for s, steps in plans.items() if any(step.startswith("SCAN ") for step in steps)}
    # sqlite_sequence has a row per table, however many schools: the last delivery id, read once per post
    assert scans.keys() <= {"SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'"}


async def test_sqlite_reads_run_beside_a_write_and_see_one_snapshot(
    tmp_path: Path, config: Config, clock: ManualClock
) -> None:
    """Reads have their own connection and thread: a post's roster is read while another post's transaction is
    still open, each read sees one committed snapshot throughout, and a read cannot write."""
    store = await SqliteStore.open(tmp_path / "z.db")
    try:
        await seeded(store, config, clock)
        count = "SELECT COUNT(*) FROM announcements"
        write_open, write_go = threading.Event(), threading.Event()

        def slow_write(conn: sqlite3.Connection) -> None:
            conn.execute(
                """INSERT INTO announcements (school_id, author, kind, title, text, audience, audience_label,
                                             created_at) VALUES ('s1', 'dep', 'general', 'т', 'т', '{}', '', '')"""
            )
            write_open.set()
            assert write_go.wait(10)

        writing = asyncio.create_task(store._tx(slow_write))
        assert await asyncio.to_thread(write_open.wait, 10)
        guardians = await asyncio.wait_for(store.guardians("s1"), 5)  # not queued behind the open transaction
        assert guardians
        assert await store._read(lambda conn: conn.execute(count).fetchone()[0]) == 0  # nor sees it uncommitted

        read_open, read_go = threading.Event(), threading.Event()

        def two_counts(conn: sqlite3.Connection) -> tuple[int, int]:
            first = conn.execute(count).fetchone()[0]
            read_open.set()
            assert read_go.wait(10)
            return first, conn.execute(count).fetchone()[0]

        reading = asyncio.create_task(store._read(two_counts))
        assert await asyncio.to_thread(read_open.wait, 10)
        write_go.set()
        await writing  # committed between the read's two statements
        read_go.set()
        assert await reading == (0, 0)
        assert await store._read(lambda conn: conn.execute(count).fetchone()[0]) == 1

        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await store._read(lambda conn: conn.execute("DELETE FROM announcements"))
    finally:
        await store.close()


def test_sqlite_timestamps_are_utc_and_sortable() -> None:
    from gateway.store.sqlite import ts

    a = ts(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    b = ts(datetime(2026, 1, 1, 20, 0, tzinfo=UTC).astimezone(datetime(2026, 1, 1).astimezone().tzinfo))
    assert a < b and a.endswith("+00:00")
    with pytest.raises(ValueError, match="naive"):
        ts(datetime(2026, 1, 1))


# ---------------------------------------------------------------------- PostgreSQL only


@pytest.fixture
async def pg_stores(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    """Four store instances (four pools) on one schema: four gateway processes sharing a database."""
    stores = [await PostgresStore.open(pg_url) for _ in range(4)]
    yield stores
    for s in stores:
        await s.close()


async def connect(url: str) -> psycopg.AsyncConnection[TupleRow]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def waiting_on(url: str, wait_event: str, count: int) -> None:
    """Until `count` sessions of this test's schema (by application_name) wait for a lock of this kind."""
    async with await connect(url) as observer:
        for _ in range(500):
            cur = await observer.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE application_name = current_setting('application_name') AND pid <> pg_backend_pid()
                     AND wait_event_type = 'Lock' AND wait_event = %s""",
                (wait_event,),
            )
            row = await cur.fetchone()
            if row is not None and row[0] >= count:
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"{count} sessions never waited on a {wait_event} lock")


async def still_pending(task: Awaitable[T], seconds: float = 0.3) -> None:
    done, _ = await asyncio.wait([asyncio.ensure_future(task)], timeout=seconds)
    assert not done, "should still be waiting"


async def test_pg_schema_migrates_forward_and_is_idempotent(pg_schemas: PgSchemas) -> None:
    name, url = await pg_schemas.new("-cTimeZone=Asia/Yekaterinburg")
    s = await PostgresStore.open(url)
    installation = await s.installation()
    await s.close()
    s = await PostgresStore.open(url)  # reopening applies nothing twice
    assert await s.installation() == installation
    await s.close()
    assert len(installation) == 12 and int(installation, 16) >= 0
    async with await connect(url) as conn:
        cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in await cur.fetchall()] == [v for v, _ in pg.migrations()]
        cur = await conn.execute(
            """SELECT table_name || '.' || column_name, data_type FROM information_schema.columns
               WHERE table_schema = %s""",
            (name,),
        )
        types: dict[str, str] = dict(await cur.fetchall())
    times = {c: t for c, t in types.items() if c.endswith(("_at", ".not_before", ".lease_until"))}
    assert len(times) >= 14 and set(times.values()) == {"timestamp with time zone"}
    assert types["announcements.audience"] == "jsonb"
    assert {types[f"{t}.id"] for t in ("announcements", "deliveries", "attempts", "alerts")} == {"bigint"}
    assert types["guardians.opted_out"] == types["guardian_classes.in_chat"] == "boolean"


async def test_pg_times_come_back_in_utc_whatever_the_session_zone(pg_schemas: PgSchemas, clock: ManualClock) -> None:
    _, url = await pg_schemas.new("-cTimeZone=Asia/Yekaterinburg")
    s = await PostgresStore.open(url)
    try:
        local = clock.now().astimezone(datetime(2026, 1, 1, tzinfo=UTC).astimezone().tzinfo)
        announcement_id, _ = await s.create_announcement(request(), emails(1, local), local)
        record = await s.announcement(announcement_id)
        assert record is not None and record.created_at == clock.now()
        assert record.created_at.utcoffset() == timedelta(0)
        assert (await s.deliveries(announcement_id))[0].not_before.utcoffset() == timedelta(0)
    finally:
        await s.close()


async def test_pg_two_processes_opening_at_once_migrate_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(pg_url) for _ in range(4)))
    try:
        assert len({await s.installation() for s in stores}) == 1
        async with await connect(pg_url) as conn:
            cur = await conn.execute("SELECT count(*) FROM schema_migrations")
            assert (await cur.fetchone()) == (len(pg.migrations()),)
    finally:
        for s in stores:
            await s.close()


async def test_pg_migration_waits_for_the_advisory_lock(pg_schemas: PgSchemas) -> None:
    name, url = await pg_schemas.new()
    async with await connect(url) as holder:
        await holder.execute("SELECT pg_advisory_lock(hashtextextended('zvonok.migrate:' || %s, 0))", (name,))
        opening = asyncio.ensure_future(PostgresStore.open(url))
        await waiting_on(url, "advisory", 1)
        await still_pending(opening)
        cur = await holder.execute("SELECT to_regclass('schema_migrations') IS NULL")
        assert await cur.fetchone() == (True,)  # nothing was created while it waited
        await holder.execute("SELECT pg_advisory_unlock(hashtextextended('zvonok.migrate:' || %s, 0))", (name,))
        s = await asyncio.wait_for(opening, timeout=10)
    await s.close()


async def test_pg_urls_open_a_postgres_store(pg_url: str) -> None:
    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        s = await open_store(url)
        try:
            assert isinstance(s, PostgresStore) and s.channel == pg.CHANNEL_PREFIX + await s.installation()
        finally:
            await s.close()


async def test_pg_backlog_is_planned_for_its_parameters_every_time(pg_url: str, clock: ManualClock) -> None:
    """psycopg prepares a statement on its fifth run, and PostgreSQL then keeps a generic plan: one made while the
    deliveries table was small went on scanning it as it grew (a school's queue: 10-12 ms to count at the end of a
    187-school closure, against 1 ms). The backlog read is never prepared."""
    s = await PostgresStore.open(pg_url, min_size=1, max_size=1)  # one connection: the one the reads used
    try:
        for _ in range(8):
            assert await s.backlog(clock.now(), clock.now(), [("max", "s1"), (EMAIL, "")]) == {}
        for _ in range(6):  # an ordinary read, prepared from its fifth run on: the view does list what is prepared
            assert await s.chats("s1") == []
        prepared = [r[0] for r in await s._all("SELECT statement FROM pg_prepared_statements")]
    finally:
        await s.close()
    assert any("FROM chats" in statement for statement in prepared)
    assert not any("unnest" in statement for statement in prepared)


async def test_pg_claims_are_planned_for_their_parameters_every_time(pg_url: str, clock: ManualClock) -> None:
    """A claim's generic plan joins the rows it leases by scanning the whole deliveries table: 30-34 ms a claim on
    a 187-school closure's 52,603 deliveries, against 2.2-2.4 ms planned for its parameters. PostgreSQL has chosen
    custom plans so far, but nothing holds it to that (nor an admin to plan_cache_mode): claims are never
    prepared, neither the one-statement claim nor the last step of one with held chat deliveries."""
    s = await PostgresStore.open(pg_url, min_size=1, max_size=1)  # one connection: the one the claims used
    try:
        for _ in range(6):
            assert await s.claim(clock.now(), 10, 30) == []  # nothing held is due: the one-statement claim
        for i in range(6):
            held = PlannedDelivery("max", "s1", "-501", "5А", ChatKind.PARENTS, Note.IN_CHAT, clock.now(), held=True)
            await s.create_announcement(request(idempotency_key=f"held {i}"), Plan([held]), clock.now())
            assert len(await s.claim(clock.now(), 10, 30)) == 1  # a held chat delivery: claimed step by step
        prepared = [r[0] for r in await s._all("SELECT statement FROM pg_prepared_statements")]
    finally:
        await s.close()
    assert any("FROM deliveries" in statement for statement in prepared)  # the view does list what is prepared
    assert not any("WITH due AS" in statement for statement in prepared)


async def test_pg_missing_schema_is_a_clear_error(pg_schemas: PgSchemas) -> None:
    from gateway.errors import ZvonokError

    await pg_schemas.new()  # only to learn the server is there
    url = f"{pg_schemas.base_url}?options=-csearch_path%3Dzv_missing_{uuid.uuid4().hex[:8]}"
    with pytest.raises(ZvonokError, match="search_path"):
        await PostgresStore.open(url)


async def test_pg_concurrent_claimers_never_share_a_delivery(
    pg_stores: list[PostgresStore], clock: ManualClock
) -> None:
    await pg_stores[0].create_announcement(request(), emails(500, clock.now()), clock.now())

    async def worker(s: PostgresStore) -> list[int]:
        got: list[int] = []
        while batch := await s.claim(clock.now(), 7, 30):
            got.extend(c.id for c in batch)
        return got

    claimed = await asyncio.gather(*(worker(s) for s in pg_stores))
    ids = [i for batch in claimed for i in batch]
    assert len(ids) == len(set(ids)) == 500  # union = all, intersection = empty
    assert sum(1 for batch in claimed if batch) >= 2  # they did run side by side
    assert await pg_stores[1].claim(clock.now(), 100, 30) == []
    assert await pg_stores[2].progress() == {Status.SENDING: 500}


async def test_pg_idempotent_create_race_makes_one_announcement(
    pg_url: str, pg_stores: list[PostgresStore], clock: ManualClock
) -> None:
    a, b = pg_stores[:2]
    p = emails(200, clock.now())
    async with await connect(pg_url) as holder:
        # Hold both creates mid-transaction: the first stops at its COPY into deliveries (table locked), the
        # second at the announcement's unique key, which the first has taken but not yet committed.
        async with holder.transaction():
            await holder.execute("LOCK TABLE deliveries IN SHARE MODE")
            first = asyncio.ensure_future(a.create_announcement(request(idempotency_key="k"), p, clock.now()))
            await waiting_on(pg_url, "relation", 1)
            second = asyncio.ensure_future(b.create_announcement(request(idempotency_key="k"), p, clock.now()))
            await waiting_on(pg_url, "transactionid", 1)
        results = await asyncio.wait_for(asyncio.gather(first, second), timeout=10)
    assert {r[0] for r in results} == {results[0][0]}  # both callers get the one id
    assert sorted(r[1] for r in results) == [False, True]
    assert len(await a.announcements()) == 1
    assert await b.progress() == {Status.PENDING: 200}

    # the same race run freely, many times: still one announcement per key
    for i in range(10):
        raced = await asyncio.gather(
            *(s.create_announcement(request(idempotency_key=f"free-{i}"), p, clock.now()) for s in pg_stores)
        )
        assert len({r[0] for r in raced}) == 1 and sum(r[1] for r in raced) == 1
    assert len(await a.announcements(limit=100)) == 11


async def test_pg_commit_wakes_another_store(
    pg_url: str, pg_schemas: PgSchemas, pg_stores: list[PostgresStore], clock: ManualClock
) -> None:
    writer, listener = pg_stores[:2]
    _, elsewhere_url = await pg_schemas.new()
    elsewhere = await PostgresStore.open(elsewhere_url)  # another installation in the same database
    try:
        await listener.listen()
        await elsewhere.listen()
        assert await listener.wait_for_work(0.2) is False  # nothing yet

        # Not woken before the commit ...
        async with await connect(pg_url) as holder:
            async with holder.transaction():
                await holder.execute("LOCK TABLE deliveries IN SHARE MODE")
                creating = asyncio.ensure_future(
                    writer.create_announcement(request(), emails(3, clock.now()), clock.now())
                )
                await waiting_on(pg_url, "relation", 1)
                assert await listener.wait_for_work(0.3) is False
            await asyncio.wait_for(creating, timeout=10)
        # ... but by it, within a moment, and once.
        assert await listener.wait_for_work(5) is True
        assert await listener.wait_for_work(0.2) is False
        assert await elsewhere.wait_for_work(0.2) is False

        # A retry scheduled by finish wakes it too; a plain delivery does not.
        first, second = await writer.claim(clock.now(), 2, 30)
        await writer.finish([done(first.id, first.lease_token, Status.DELIVERED, clock)], clock.now())
        assert await listener.wait_for_work(0.3) is False
        retry = done(
            second.id, second.lease_token, Status.TEMPORARY_FAILURE, clock, retry_at=clock.now() + timedelta(seconds=9)
        )
        await writer.finish([retry], clock.now())
        assert await listener.wait_for_work(5) is True
    finally:
        await elsewhere.close()


async def test_pg_listener_survives_a_lost_connection(
    pg_url: str, pg_stores: list[PostgresStore], clock: ManualClock
) -> None:
    writer, listener = pg_stores[:2]
    await listener.listen()
    async with await connect(pg_url) as admin:
        cur = await admin.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE application_name = current_setting('application_name') AND query LIKE 'LISTEN %%'"""
        )
        assert await cur.fetchall() == [(True,)]
    assert await listener.wait_for_work(5) is True  # the loss wakes it: whatever came meanwhile was missed
    await listener.listen()  # listening anew
    await writer.create_announcement(request(), emails(1, clock.now()), clock.now())
    assert await listener.wait_for_work(5) is True


async def test_pg_concurrent_roster_imports_of_one_school_take_turns(
    pg_stores: list[PostgresStore], config: Config, clock: ManualClock
) -> None:
    guardians = parse_roster(ROSTER_CSV.encode(), config.schools["s1"]).guardians("s1")
    changes = await asyncio.gather(*(s.replace_roster("s1", guardians, {}, clock.now()) for s in pg_stores))
    assert sorted((c.added, c.unchanged) for c in changes) == [(0, 5), (0, 5), (0, 5), (5, 0)]


async def test_pg_concurrent_claimers_never_split_a_bundle(pg_stores: list[PostgresStore], clock: ManualClock) -> None:
    now = clock.now()
    for i in range(6):  # 20 chats, each with one held delivery of every announcement: 20 bundles of 6
        p = Plan([chat(f"-{500 + c}", now) for c in range(20)] + [mail(f"p{i}-{j}@m.test", now) for j in range(20)])
        await pg_stores[0].create_announcement(request(title=f"№{i}"), p, now)

    async def worker(s: PostgresStore) -> list[list[Claimed]]:
        got: list[list[Claimed]] = []
        while batch := await s.claim(now, 3, 30):
            got.append(batch)
        return got

    claimed = await asyncio.gather(*(worker(s) for s in pg_stores))
    assert sum(1 for got in claimed if got) >= 2  # they did run side by side: a busy chat is skipped, not waited on
    batches = [batch for got in claimed for batch in got]
    ids = [c.id for batch in batches for c in batch]
    assert len(ids) == len(set(ids)) == 6 * 40
    seen: dict[int, int] = {}
    for n, batch in enumerate(batches):
        for c in batch:
            if c.channel == "email":
                assert c.bundle is None
            else:
                assert c.bundle is not None and seen.setdefault(c.bundle, n) == n  # a bundle is one claim's
    assert len(seen) == 20
    for n in set(seen.values()):
        sizes = {b: sum(1 for c in batches[n] if c.bundle == b) for b in seen if seen[b] == n}
        assert set(sizes.values()) == {6}
    assert await pg_stores[1].claim(now, 100, 30) == []


async def test_pg_forwarding_and_added_deliveries_wake_another_store(
    pg_stores: list[PostgresStore], config: Config, clock: ManualClock
) -> None:
    writer, listener = pg_stores[:2]
    announcement_id, tasks = await forwarding(writer, config, clock)
    await listener.listen()
    await listener.wait_for_work(0.2)  # whatever the announcement itself notified
    letter = PlannedDelivery("email", "", "dep@s1.test", "", None, Note.ESCALATION, clock.now())
    assert await writer.add_deliveries(announcement_id, [letter], clock.now()) == 1
    assert await listener.wait_for_work(5) is True
    assert await writer.add_deliveries(announcement_id, [letter], clock.now()) == 0  # nothing new: no wake-up
    assert await writer.escalate([tasks["5Б"].id], clock.now(), "не переслано") == [tasks["5Б"].id]
    assert await listener.wait_for_work(0.3) is False
    parents = chat("-501", clock.now(), held=False)
    assert await writer.forward(
        tasks["5А"].id, actor="kt5a", note="", status="forwarded", deliveries=[parents], now=clock.now()
    )
    assert await listener.wait_for_work(5) is True


async def test_forward_to_a_dead_parents_chat_emails_those_who_waited(
    store: Store, config: Config, clock: ManualClock
) -> None:
    announcement_id, tasks = await forwarding(store, config, clock)
    # The 5А parents' chat died after planning: the forward can only reach the students' chat.
    students = PlannedDelivery("max", "bot", "-502", "5А", ChatKind.STUDENTS, Note.IN_CHAT, clock.now())
    assert await store.forward(
        tasks["5А"].id, actor="kt5a", note="", status="forwarded", deliveries=[students], now=clock.now()
    )
    rows = {(c.name, c.class_name): c for c in await store.coverage(announcement_id)}
    maria = rows[("Иванова Мария", "5А")]
    assert (maria.route, maria.note) == ("email", "chat_dead")
    assert maria.delivery_id is not None
    letters = [d for d in await store.deliveries(announcement_id) if d.target == "maria@mail.test"]
    assert len(letters) == 1  # she already had one for 5Б: the same letter covers both
    assert rows[("Кузнецова Ольга", "5Б")].note == "forwarding"  # 5Б has not forwarded: still waiting
