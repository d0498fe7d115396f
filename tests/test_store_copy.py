"""`zvonok store copy`: a school's SQLite file moved into PostgreSQL, everything in it, the installation id kept."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.domain import Group, Kind
from gateway.errors import NotFound, ZvonokError
from gateway.store.base import Store
from gateway.store.copy import copy_store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.conftest import PgSchemas
from tests.test_store import emails, request
from tests.world import MAX_TOKEN, running_world

TICK = ("forwarding-deadlines", "2026-11-23T05:00Z")


async def snapshot(store: Store) -> dict[str, Any]:
    """Everything the store says, through its contract."""
    announcements = await store.announcements(limit=1000)
    deliveries = {a.id: await store.deliveries(a.id) for a in announcements}
    return {
        "installation": await store.installation(),
        "announcements": announcements,
        "deliveries": deliveries,
        "coverage": {a.id: await store.coverage(a.id) for a in announcements},
        "gaps": {a.id: await store.gaps(a.id) for a in announcements},
        "attempts": {d.id: await store.attempts(d.id) for rows in deliveries.values() for d in rows},
        "progress": await store.progress(),
        "tasks": await store.tasks(),
        "audit": await store.audit_log("s1"),
        "alerts": await store.alerts(),
        "chats": await store.chats(),
        "dead": await store.dead_chats("s1"),
        "guardians": await store.guardians("s1"),
    }


async def school_on_sqlite(tmp_path: Path, clock: ManualClock) -> dict[str, Any]:
    """A school that has lived a while on SQLite: sent, failed over to e-mail, audited, escalated, ticked."""
    async with running_world(tmp_path, clock) as world:
        await world.post({Group.PARENTS, Group.STUDENTS}, parallels=frozenset({5}))
        await world.deliver()
        await world.max.remove_bot_from_chat(-502, MAX_TOKEN)  # 5А students' chat gone: dead chat, alert
        await world.post({Group.PARENTS, Group.STUDENTS}, author="dir", kind=Kind.FORCE_MAJEURE, title="Мороз")
        await world.post(classes=frozenset({"5А"}), author="dir", via_class_teachers=True, title="Собрание")
        await world.deliver()
        clock.advance(timedelta(hours=10))  # past the forwarding deadline: escalated
        await world.gateway.handle_overdue_tasks()
        await world.deliver()
        assert await world.gateway.store.claim_tick(*TICK, "host:1", clock.now())
        before = await snapshot(world.gateway.store)
    assert before["alerts"] and before["audit"] and before["dead"]
    assert [t.status for t in before["tasks"]] == ["escalated"]
    assert sum(len(rows) for rows in before["attempts"].values()) >= 10
    return before


async def test_copy_moves_everything_and_keeps_the_installation(
    tmp_path: Path, clock: ManualClock, pg_schemas: PgSchemas
) -> None:
    before = await school_on_sqlite(tmp_path, clock)
    _, target = await pg_schemas.new()
    copied = await copy_store(f"sqlite:///{tmp_path / 'z.db'}", target)
    assert copied["deliveries"] == sum(len(rows) for rows in before["deliveries"].values())
    assert copied["ticks"] == 1
    store = await PostgresStore.open(target)
    try:
        after = await snapshot(store)
        for key in before:
            assert after[key] == before[key], key
        # The tick was copied: the period is not run a second time by the new processes.
        assert not await store.claim_tick(*TICK, "host:2", clock.now())
        # New rows continue after the copied ones (the sequences moved past them).
        old_delivery = max(d.id for rows in before["deliveries"].values() for d in rows)
        new_id, created = await store.create_announcement(request(), emails(2, clock.now()), clock.now())
        assert created and new_id > max(a.id for a in before["announcements"])
        assert min(d.id for d in await store.deliveries(new_id)) > old_delivery
        # The target is no longer empty: a second copy is refused and changes nothing.
        with pytest.raises(ZvonokError, match="не пуста"):
            await copy_store(f"sqlite:///{tmp_path / 'z.db'}", target)
        assert len(await store.announcements(limit=1000)) == len(before["announcements"]) + 1
    finally:
        await store.close()


async def test_copy_refuses_what_it_cannot_do(tmp_path: Path, pg_schemas: PgSchemas) -> None:
    _, target = await pg_schemas.new()
    with pytest.raises(NotFound):
        await copy_store(f"sqlite:///{tmp_path / 'missing.db'}", target)
    assert not (tmp_path / "missing.db").exists()  # not created by trying
    with pytest.raises(ZvonokError, match="в базу PostgreSQL"):
        await copy_store(f"sqlite:///{tmp_path / 'z.db'}", f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(ZvonokError, match="из базы SQLite"):
        await copy_store(target, target)


async def test_cli_store_copy(tmp_path: Path, clock: ManualClock, pg_schemas: PgSchemas) -> None:
    source = await SqliteStore.open(tmp_path / "school.db")
    await source.create_announcement(request(), emails(3, clock.now()), clock.now())
    installation = await source.installation()
    await source.close()
    _, target = await pg_schemas.new()

    async def zvonok(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            *args,
            cwd=tmp_path,  # a relative sqlite:/// path is relative to where the command runs
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        return process.returncode or 0, out.decode(), err.decode()

    code, out, err = await zvonok("store", "copy", "--from", "sqlite:///school.db", "--to", target)
    assert code == 0, err
    assert "Перенесено в PostgreSQL" in out and "deliveries: 3" in out
    assert "postgresql://" not in out  # the address (it may hold a password) is not printed
    store = await PostgresStore.open(target)
    try:
        assert await store.installation() == installation
    finally:
        await store.close()
    code, _, err = await zvonok("store", "copy", "--from", "sqlite:///school.db", "--to", target)
    assert code == 1 and "не пуста" in err and "Traceback" not in err
    code, _, err = await zvonok("store", "copy", "--from", "sqlite:///nothing.db", "--to", target)
    assert code == 4 and "Не найдено" in err
