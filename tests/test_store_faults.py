"""Outcomes the provider confirmed survive a store that cannot take them, on both backends.

The fault is the database's own: a trigger makes every attempt to record a delivered outcome fail, as a full
disk or a database restarting would, while the dispatcher runs. The letters reach the SMTP server; their
outcomes cannot be committed; the manual clock then moves far past the lease, as time passes during an outage.
The outcomes stay in memory and their commit is retried while the heartbeat keeps the leases: once the store
takes writes again, every letter is recorded as delivered, and none was sent twice. (Before, the failed commit
left the deliveries "sending", their leases ran out and the letters went again: 184 of 1,988 on a full SQLite
disk, 16 in a PostgreSQL restart.)
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from gateway.clock import ManualClock
from gateway.domain import Group, Status
from tests.test_store import emails, request
from tests.world import World, running_world

SQLITE_FAULT = """
CREATE TABLE fault (on_ INTEGER);
CREATE TRIGGER fail_outcomes BEFORE UPDATE OF status ON deliveries
WHEN NEW.status = 'delivered' AND EXISTS (SELECT 1 FROM fault)
BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
"""
PG_FAULT = """
CREATE TABLE fault (on_ integer);
CREATE FUNCTION fail_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'delivered' AND EXISTS (SELECT 1 FROM fault) THEN
        RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fail_outcomes BEFORE UPDATE OF status ON deliveries FOR EACH ROW EXECUTE FUNCTION fail_outcomes();
"""


async def database_sql(database: str, tmp_path: Path, sql: str) -> None:
    """Run `sql` on the store's database from outside, as an operator (or a failing disk) would."""
    if database.startswith("sqlite:///"):
        with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
            conn.executescript(sql)
        return
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        await conn.execute(sql)  # type: ignore[arg-type]


async def test_outcomes_survive_a_store_that_cannot_take_them(
    tmp_path: Path, clock: ManualClock, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_world(tmp_path, clock, database=database) as world:
        dispatcher = world.gateway.dispatcher
        dispatcher.settings = replace(dispatcher.settings, lease_seconds=0.6, poll_seconds=0.1)
        on_sqlite = database.startswith("sqlite:///")
        await database_sql(database, tmp_path, SQLITE_FAULT if on_sqlite else PG_FAULT)
        await database_sql(database, tmp_path, "INSERT INTO fault VALUES (1)")
        announcement_id = await world.post({Group.PARENTS}, classes=frozenset({"5А", "5Б", "7Б"}))
        letters = {d.target for d in await world.gateway.store.deliveries(announcement_id) if d.channel == "email"}
        stop = asyncio.Event()
        with caplog.at_level(logging.WARNING, logger="zvonok.dispatcher"):
            running = asyncio.create_task(dispatcher.run(stop))
            try:
                await eventually(lambda: set(world.letters()) == letters, "the letters reach the relay")
                for _ in range(6):  # an outage of an hour on the clock, two seconds of the test's time
                    clock.advance(timedelta(minutes=10))
                    await asyncio.sleep(0.35)
                assert Status.DELIVERED not in await world.gateway.store.progress(announcement_id)
                await database_sql(database, tmp_path, "DELETE FROM fault")
                await eventually(lambda: complete(world, announcement_id), "the outcomes are recorded")
            finally:
                stop.set()
                await asyncio.wait_for(running, timeout=10)
        assert world.letters() == dict.fromkeys(letters, 1)  # none sent twice
        rows = [d for d in await world.gateway.store.deliveries(announcement_id) if d.channel == "email"]
        assert {(r.status, r.attempts) for r in rows} == {(Status.DELIVERED, 1)}
        [alert] = await world.gateway.store.alerts("s1")  # the IT admin learns it happened, once it is over
        assert alert.kind == "store" and re.search("база данных не принимала записи [1-9][0-9] мин", alert.message)
        assert ("диск" in alert.message) if on_sqlite else ("нет места на диске" in alert.message)
    failures = [r for r in caplog.records if "the store failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]  # one warning per outage
    assert not [r for r in caplog.records if r.exc_info]  # and no traceback


async def complete(world: World, announcement_id: int) -> bool:
    return (await world.gateway.report(announcement_id)).complete


async def eventually(check: object, what: str, within: float = 15.0) -> None:
    for _ in range(int(within / 0.05)):
        result = check()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what}")


async def test_a_relay_back_after_an_outage_brings_every_waiting_letter_forward(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with running_world(tmp_path, clock) as world:
        store, dispatcher = world.gateway.store, world.gateway.dispatcher
        world.smtp.refuse(421, count=None, seconds=3600, stage="connect")  # the relay is down
        announcement_id, _ = await store.create_announcement(request(), emails(200, clock.now()), clock.now())
        await dispatcher.run_once()
        clock.advance(timedelta(seconds=61))
        await dispatcher.run_once()  # down for over a minute now: the IT admin is told, not by e-mail
        [alert] = await store.alerts("s1")
        assert (alert.kind, alert.subject) == ("outage", "email:")
        assert "Почтовый сервер (SMTP) не принимает сообщения уже 1 мин" in alert.message
        waiting = [d for d in await store.deliveries(announcement_id)]
        assert {d.status for d in waiting} == {Status.TEMPORARY_FAILURE}
        world.smtp.reset_faults()  # the relay is back
        due = sorted(d.not_before for d in waiting)  # each letter's own retry, spread by the backoff's jitter
        assert due[-1] - due[0] > timedelta(seconds=3)
        clock.set(due[0])  # the first retry falls due
        await dispatcher.run_once()  # ... the first goes through, and the rest come with it, at once
        assert len(world.letters()) == 200
        assert {d.status for d in await store.deliveries(announcement_id)} == {Status.DELIVERED}
        assert await store.alerts("s1") == []  # closed on recovery
