"""Personal-data retention (152-ФЗ art. 5: kept no longer than the purpose needs, destruction recorded): the
setting, the store's purge on every backend, the daily job once across processes, `zvonok data purge`."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest

from gateway.cli import main
from gateway.clock import ManualClock
from gateway.config import Config, load_config
from gateway.domain import EMAIL, Guardian, Status
from gateway.errors import InvalidInput
from gateway.planner import plan
from gateway.reports import ClassReport, build_report, render_text
from gateway.roster import parse_roster
from gateway.store.base import (
    PURGED_PREFIX,
    RETENTION_ACTOR,
    AnnouncementRecord,
    AttemptRow,
    DeliveryRow,
    GapRow,
    LetterRow,
    Purged,
    Result,
    Store,
)
from gateway.store.sqlite import SqliteStore
from tests.data import ROSTER_CSV, ZVONOK_YAML, write_config
from tests.test_store import request
from tests.world import running_world, two_processes_jobs

DAYS = 365
BOUNCE = "Адрес получателя не принимает почту (550 5.1.1 <anna@mail.test>: no such user)"


def roster(config: Config, *, without: tuple[str, ...] = ()) -> list[Guardian]:
    guardians = parse_roster(ROSTER_CSV.encode(), config.schools["s1"]).guardians("s1")
    return [g for g in guardians if g.name not in without]


async def announce(store: Store, config: Config, when: datetime, *, retry_at: datetime | None = None) -> int:
    """An announcement to all parents, created at `when` and sent at once: every delivery delivered, but Anna's
    letter bounces (the SMTP reply quotes her address) and Irina acknowledges hers; with `retry_at`, one delivery
    waits for a retry then instead (open work)."""
    school = config.schools["s1"]
    p = plan(school, request(), await store.guardians("s1"), dead_chats=set(), earliest=lambda c, n: when)
    announcement_id, _ = await store.create_announcement(request(), p, when)
    claimed = await store.claim(when, 100, 30)
    assert {c.announcement_id for c in claimed} == {announcement_id} and len(claimed) == len(p.deliveries)
    results = []
    for c in claimed:
        if c.target == "anna@mail.test":
            status, outcome, code, error = Status.PERMANENT_FAILURE, "permanent", "smtp:550", BOUNCE
        else:
            status, outcome, code, error = Status.DELIVERED, "delivered", "", ""
        results.append(Result(c.id, c.lease_token, status, when, outcome, f"p-{c.id}", code, error))
    if retry_at is not None:
        last = claimed[-1]
        results[-1] = Result(last.id, last.lease_token, Status.TEMPORARY_FAILURE, when, "transient", retry_at=retry_at)
    assert await store.finish(results, when) == len(results)
    for c in claimed:
        if c.target == "irina@mail.test":
            assert await store.acknowledge(c.id, when + timedelta(hours=1)) is not None
    return announcement_id


class Snapshot(NamedTuple):
    """An announcement's own rows, as the store reads them (coverage without the guardians' current data)."""

    record: AnnouncementRecord | None
    deliveries: list[DeliveryRow]
    attempts: list[list[AttemptRow]]
    letters: list[LetterRow | None]
    coverage: list[tuple[object, ...]]
    gaps: list[GapRow]
    acknowledgements: dict[int, datetime]


async def snapshot(store: Store, announcement_id: int) -> Snapshot:
    deliveries = await store.deliveries(announcement_id)
    coverage = [
        (c.person, c.class_name, c.route, c.note, c.email, c.delivery_id, c.delivery_status, c.delivery_error)
        for c in await store.coverage(announcement_id)
    ]
    return Snapshot(
        await store.announcement(announcement_id),
        deliveries,
        [await store.attempts(d.id) for d in deliveries],
        [await store.letter(d.id) for d in deliveries if d.channel == EMAIL],
        sorted(coverage, key=repr),
        await store.gaps(announcement_id),
        await store.acknowledgements(announcement_id),
    )


def by_class(classes: list[ClassReport]) -> dict[str, tuple[object, ...]]:
    """What a report says of each class, in numbers."""
    return {
        c.name: (c.counts(), len(c.people), sum(p.acknowledged for p in c.people), len(c.chats), c.gaps)
        for c in classes
    }


# ---------------------------------------------------------------------- the store contract, on every backend


async def test_purge_removes_old_finished_personal_data_and_keeps_the_rest(
    store: Store, config: Config, clock: ManualClock
) -> None:
    school = config.schools["s1"]
    now = clock.now()
    cutoff = now - timedelta(days=DAYS)
    old = now - timedelta(days=400)
    await store.sync_chats(school, old)
    await store.replace_roster("s1", roster(config), {}, old)
    finished = await announce(store, config, old)
    unfinished = await announce(store, config, old + timedelta(minutes=5), retry_at=now + timedelta(hours=1))
    await store.replace_roster("s1", roster(config, without=("Петрова Анна",)), {}, old + timedelta(days=1))
    await store.opt_out("s1", "maria@mail.test", old + timedelta(days=2))  # she stays, unsubscribed
    recent = await announce(store, config, now - timedelta(days=10))
    # Olga leaves too, but only now: she stays until her own cut-off
    await store.replace_roster("s1", roster(config, without=("Петрова Анна", "Кузнецова Ольга")), {}, now)

    record = await store.announcement(finished)
    assert record is not None
    report_before = await build_report(store, school, record)
    before = {a: await snapshot(store, a) for a in (finished, unfinished, recent)}
    letters = [d for d in before[finished].deliveries if d.channel == EMAIL]
    people = before[finished].coverage
    assert len(letters) >= 2 and len(people) >= 5

    # A dry run says what would go, and changes nothing.
    expected = [Purged("s1", 1, len(letters), len(people), 1)]
    assert await store.purge_personal_data(cutoff, now, dry_run=True) == expected
    assert {a: await snapshot(store, a) for a in before} == before
    assert await store.audit_log("s1") == []

    assert await store.purge_personal_data(cutoff, now) == expected

    # The old finished announcement names nobody any more ...
    after = await snapshot(store, finished)
    assert after.record == before[finished].record
    for was, row in zip(before[finished].deliveries, after.deliveries, strict=True):
        kept = ("id", "channel", "class_name", "chat_kind", "note", "status", "attempts", "error_code", "provider_id")
        assert [getattr(row, f) for f in kept + ("not_before", "finished_at")] == [
            getattr(was, f) for f in kept + ("not_before", "finished_at")
        ]
        assert row.recipient_name == ""
        if was.channel == EMAIL:
            assert (row.target, row.last_error) == (f"{PURGED_PREFIX}{was.id}", "")
            assert await store.letter(was.id) is None  # an old link finds no address to unsubscribe or thank
            outcome = "permanent" if was.status is Status.PERMANENT_FAILURE else "delivered"
            assert [(a.attempt, a.outcome, a.error_code, a.error) for a in await store.attempts(was.id)] == [
                (1, outcome, was.error_code, "")
            ]
        else:
            assert (row.target, row.last_error) == (was.target, was.last_error)  # a chat's id names no one
    assert any(was.error == BOUNCE for attempts in before[finished].attempts for was in attempts)
    # person, class, route, note, e-mail, delivery, its status, its error
    assert sorted(c[1:4] + c[5:7] for c in after.coverage) == sorted(c[1:4] + c[5:7] for c in people)
    assert all(str(c[0]).startswith(PURGED_PREFIX) and c[4] == "" for c in after.coverage)
    assert len({c[0] for c in after.coverage}) == len(people)
    assert all((c.name, c.phone, c.students) == ("", "", "") for c in await store.coverage(finished))
    assert (after.acknowledgements, after.gaps) == (before[finished].acknowledgements, before[finished].gaps)
    assert after.acknowledgements  # Irina's «Ознакомлен» still counts
    # ... and its report still adds up, without a name, an address, a phone or a guardian key.
    report = await build_report(store, school, record)
    assert (
        report.totals,
        report.chats_total,
        report.chats_delivered,
        report.emails_total,
        report.emails_delivered,
    ) == (
        report_before.totals,
        report_before.chats_total,
        report_before.chats_delivered,
        report_before.emails_total,
        report_before.emails_delivered,
    )
    assert report.counts() == report_before.counts() and len(report.to_call()) == len(report_before.to_call())
    assert by_class(report.classes) == by_class(report_before.classes)
    text, text_before = render_text(report), render_text(report_before)
    oleg = next(g for g in roster(config) if g.name == "Сидоров Олег")  # no e-mail: to be phoned
    personal = {"Петрова Анна", "anna@mail.test", oleg.name, oleg.phone}
    assert {s for s in personal if s in text_before} == personal and not {s for s in personal if s in text}
    assert not any(g.key in text for g in roster(config))

    # Open work and a recent announcement are untouched; current guardians and their opt-outs stay.
    assert await snapshot(store, unfinished) == before[unfinished]
    assert await snapshot(store, recent) == before[recent]
    assert {g.name: g.opted_out for g in await store.guardians("s1")} == {
        "Иванова Мария": True,
        "Сидоров Олег": False,
        "Смирнова Ирина": False,
    }
    # (Anna, deleted, is no longer named even where open work keeps her line.)
    assert "Петрова Анна" not in {c.name for c in await store.coverage(unfinished)}

    # The destruction is recorded: one audit line, by the retention itself.
    [line] = await store.audit_log("s1")
    assert (line.actor, line.action, line.at, line.announcement_id) == (RETENTION_ACTOR, "retention", now, None)
    assert f"до {cutoff:%d.%m.%Y %H:%M} UTC" in line.details
    assert f"объявлений 1 (писем {len(letters)}, строк отчётов {len(people)})" in line.details
    assert "выбывших представителей 1" in line.details

    # Again: nothing more goes, nothing more is written.
    again = {a: await snapshot(store, a) for a in before}
    assert await store.purge_personal_data(cutoff, now + timedelta(minutes=1)) == []
    assert {a: await snapshot(store, a) for a in before} == again
    assert len(await store.audit_log("s1")) == 1

    # The open one's last delivery goes out: its work is done, and its turn comes.
    clock.set(now + timedelta(days=1))
    [retry] = await store.claim(clock.now(), 100, 30)
    assert retry.announcement_id == unfinished
    sent = Result(retry.id, retry.lease_token, Status.DELIVERED, clock.now(), "delivered")
    assert await store.finish([sent], clock.now()) == 1
    later = await store.purge_personal_data(cutoff + timedelta(days=1), clock.now())
    assert [(p.announcements, p.former_guardians) for p in later] == [(1, 0)]
    assert all(d.target.startswith(PURGED_PREFIX) for d in await store.deliveries(unfinished) if d.channel == EMAIL)
    assert await snapshot(store, recent) == before[recent]

    # Anna was deleted: listed again, she is a new guardian (Olga, who only left, comes back).
    change = await store.replace_roster("s1", roster(config), {}, clock.now())
    assert (change.added, change.updated, change.left, change.unchanged) == (1, 1, 0, 3)


async def test_purge_is_per_school_and_spares_open_forwarding(store: Store, config: Config, clock: ManualClock) -> None:
    """A class teacher's forwarding task still open is open work; schools are counted and audited apart."""
    now = clock.now()
    old = now - timedelta(days=400)
    school = config.schools["s1"]
    await store.sync_chats(school, old)
    await store.replace_roster("s1", roster(config), {}, old)
    p = plan(
        school,
        request(via_class_teachers=True),
        await store.guardians("s1"),
        dead_chats=set(),
        earliest=lambda c, n: old,
        deadline=lambda class_name: old + timedelta(hours=8),
    )
    assert p.tasks and all(d.channel == EMAIL for d in p.deliveries)
    forwarded, _ = await store.create_announcement(request(via_class_teachers=True), p, old)
    for c in await store.claim(old, 100, 30):
        await store.finish([Result(c.id, c.lease_token, Status.DELIVERED, old, "delivered")], old)
    await store.replace_roster("s2", roster(config), {}, old)
    await store.replace_roster("s2", [], {}, old + timedelta(hours=1))  # every guardian of s2 left

    purged = await store.purge_personal_data(now - timedelta(days=DAYS), now)
    assert purged == [Purged("s2", 0, 0, 0, len(roster(config)))]  # s1's tasks wait for their class teachers
    assert all(not c.person.startswith(PURGED_PREFIX) for c in await store.coverage(forwarded))
    assert await store.audit_log("s1") == [] and len(await store.audit_log("s2")) == 1

    for task in await store.tasks(announcement_id=forwarded):  # the deadline passed: the author was told
        assert await store.escalate([task.id], old + timedelta(hours=9), "") == [task.id]
    [s1] = await store.purge_personal_data(now - timedelta(days=DAYS), now)
    assert (s1.school_id, s1.announcements, s1.people) == ("s1", 1, len(p.coverage))


# ---------------------------------------------------------------------- the setting


def test_retention_days_default_and_validation(tmp_path: Path) -> None:
    def days(settings: str, folder: str) -> int:
        return load_config(write_config(tmp_path / folder, settings=ZVONOK_YAML + settings)).settings.retention.days

    assert days("", "default") == 365
    assert days("retention: {days: 30}\n", "least") == 30
    assert days("retention:\n  days: 730\n", "longer") == 730
    for i, (value, message) in enumerate(
        (
            ("29", "срок хранения персональных данных 29 дн. слишком мал: не меньше 30 дней (по умолчанию 365)"),
            ("365.5", "ожидается целое число"),
            ("год", "ожидается целое число"),
            ("true", "ожидается целое число"),
        )
    ):
        root = write_config(tmp_path / f"bad{i}", settings=ZVONOK_YAML + f"retention:\n  days: {value}\n")
        with pytest.raises(InvalidInput) as caught:
            load_config(root)
        assert [str(p) for p in caught.value.problems] == [
            f"{root / 'zvonok.yaml'}, строка 4, поле «retention.days»: {message}"
        ]
    with pytest.raises(InvalidInput, match=r"retention\.weeks.*неизвестное поле"):
        load_config(write_config(tmp_path / "unknown", settings=ZVONOK_YAML + "retention: {weeks: 52}\n"))


# ---------------------------------------------------------------------- the daily job, once across processes


async def test_the_retention_job_runs_once_a_day_across_processes(
    tmp_path: Path, database: str, clock: ManualClock
) -> None:
    async with running_world(tmp_path, clock, database=database) as world:
        announcement_id = await world.post(classes=frozenset({"5А"}))
        await world.deliver()
        store = world.gateway.store
        assert all(d.status.final for d in await store.deliveries(announcement_id))
        async with two_processes_jobs(world, clock, "retention") as jobs:  # two processes, one database
            fire = [job.func for job in jobs]
            # Every process tries every hour, whenever it started: a restart does not put the day off.
            moment = datetime(2026, 11, 23, 5, 20, tzinfo=UTC)
            tries = [job.trigger.get_next_fire_time(None, moment) for job in jobs]
            assert tries == [datetime(2026, 11, 23, 6, 17, tzinfo=UTC)] * 2

            async def retention_lines() -> int:
                return len([a for a in await store.audit_log("s1") if a.action == "retention"])

            clock.advance(timedelta(days=DAYS - 1))  # not old enough yet: the day's run removes nothing
            assert sorted(await asyncio.gather(*(f() for f in fire))) == [False, True]
            assert await retention_lines() == 0
            clock.advance(timedelta(days=2))
            assert sorted(await asyncio.gather(*(f() for f in fire))) == [False, True]
            letters = [d for d in await store.deliveries(announcement_id) if d.channel == EMAIL]
            assert letters and all(d.target == f"{PURGED_PREFIX}{d.id}" for d in letters)
            assert await retention_lines() == 1
            clock.advance(timedelta(hours=1))  # the same UTC day: nobody runs it again
            assert await asyncio.gather(*(f() for f in fire)) == [False, False]
            clock.advance(timedelta(days=1))  # the next day runs, and has nothing more to remove
            assert sorted(await asyncio.gather(*(f() for f in fire))) == [False, True]
            assert await retention_lines() == 1


# ---------------------------------------------------------------------- zvonok data purge


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def seed_old_school(db: Path, config: Config) -> int:
    """Two years ago: the roster, a finished announcement, then Anna left. (The CLI runs on the real clock.)"""

    async def seed() -> int:
        old = datetime.now(UTC) - timedelta(days=730)
        store = await SqliteStore.open(db)
        try:
            await store.sync_chats(config.schools["s1"], old)
            await store.replace_roster("s1", roster(config), {}, old)
            announcement_id = await announce(store, config, old)
            await store.replace_roster("s1", roster(config, without=("Петрова Анна",)), {}, old + timedelta(days=1))
            return announcement_id
        finally:
            await store.close()

    return asyncio.run(seed())


def personal_data(db: Path) -> tuple[list[tuple[object, ...]], ...]:
    with sqlite3.connect(db) as conn:
        return (
            conn.execute("SELECT target, recipient_name, last_error FROM deliveries ORDER BY id").fetchall(),
            conn.execute("SELECT person, email FROM coverage ORDER BY rowid").fetchall(),
            conn.execute("SELECT key, name, email, phone, left_at FROM guardians ORDER BY key").fetchall(),
            conn.execute("SELECT error FROM attempts ORDER BY id").fetchall(),
            conn.execute("SELECT actor, details FROM audit").fetchall(),
        )


def test_data_purge_dry_run_changes_nothing_and_the_purge_is_audited(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "z.db"
    cfg = write_config(tmp_path / "config", settings=ZVONOK_YAML + f"database: sqlite:///{db}\n", roster=ROSTER_CSV)
    seed_old_school(db, load_config(cfg))
    before = personal_data(db)
    assert "anna@mail.test" in {r[0] for r in before[0]} and len(before[2]) == 5

    code, out, _ = run(capsys, "data", "purge", "--dry-run", "--config", str(cfg))
    assert code == 0
    assert "Срок хранения персональных данных: 365 дн." in out
    assert "Школа «Школа № 1» (s1): будут удалены данные получателей объявлений: 1" in out
    assert "выбывших представителей: 1." in out
    assert "ничего не изменено" in out
    assert personal_data(db) == before

    code, out, _ = run(capsys, "data", "purge", "--config", str(cfg))
    assert code == 0
    assert "Школа «Школа № 1» (s1): удалены данные получателей объявлений: 1" in out
    after = personal_data(db)
    assert "anna@mail.test" not in str(after[:4]) and "Петрова Анна" not in str(after[:4])
    assert len(after[2]) == 4 and [r[0] for r in after[4]] == [RETENTION_ACTOR]

    code, out, _ = run(capsys, "audit", "--config", str(cfg))
    assert code == 0 and f"{RETENTION_ACTOR}: удалены персональные данные старше срока хранения" in out

    code, out, _ = run(capsys, "data", "purge", "--config", str(cfg))
    assert code == 0 and "Удалять нечего" in out
    assert personal_data(db) == after
