"""The shared store: one PostgreSQL database for several gateway processes (web, dispatchers) on several machines.

Same contract as `SqliteStore`, every method one transaction. What PostgreSQL adds:

- `claim` takes due deliveries with `FOR UPDATE SKIP LOCKED`, so concurrent dispatchers never wait for each
  other and never get the same delivery; leases, fencing tokens and `maybe_sent` work exactly as in SQLite.
  Held chat deliveries (the bundles) are claimed a chat at a time: a claimer takes a chat's transaction-level
  advisory lock with `pg_try_advisory_xact_lock` (a chat another claimer holds is left to it, never waited
  for) and only then locks and bundles that chat's deliveries, so two claimers never split a bundle.
- `create_announcement` COPYs the plan (ids for the deliveries are reserved from their sequence first, so
  coverage points at them without reading anything back) and is race-free on the idempotency key: two
  concurrent creates with one key make one announcement, and both callers get its id.
- After a commit that makes new work (an announcement, a retry, a chat's e-mail fallback, a forwarded task,
  added deliveries) the store NOTIFYs its channel; `wait_for_work` sleeps on a dedicated LISTEN connection until
  then, or until a timeout.
- `claim_tick` is an INSERT … ON CONFLICT DO NOTHING into `ticks`: one process per (job, period) runs a periodic
  job. `extend_leases` is a sender's heartbeat.
- It keeps the providers' rate limits for every process (`shares_rate_limits`): `reserve_permits` moves a
  token's `next_free` on in the UNLOGGED `rate_buckets` table by the server's clock, in one upsert, on a
  connection of its own (its round trip is part of the pacing error; adapters.ratelimit.ReservingBucket).

Driver: psycopg 3 (async), with psycopg_pool, rather than asyncpg, because
- typing: psycopg and psycopg_pool ship complete inline type hints (py.typed), so `mypy --strict` checks our
  calls; asyncpg has none (only third-party stubs), which would leave every row an `Any`;
- LISTEN/NOTIFY: `AsyncConnection.notifies()` is an async generator, an easy fit for a long-lived listener
  task; asyncpg's callback listeners would do too, so this is a tie;
- pooling: psycopg_pool is the project's own pool (min/max size, health, reconnection, `configure` hook);
  asyncpg's built-in pool is as good, another tie;
- bulk speed: asyncpg's binary COPY is the fastest Python client there is, but psycopg's binary COPY (C
  extension from psycopg[binary]) formats a 54,000-delivery, 200,000-coverage plan in about 0.2 s of client
  CPU, and `executemany` is pipelined; the rest of the ~2.5 s such a plan takes is the server's index and
  foreign-key work, which no driver changes (bench/store_plan.py measures it);
- procrastinate, the PostgreSQL job queue DESIGN.md points to, is built on the same pair.

Schema versions live in `migrations/postgresql/NNNN_*.sql`, applied forward in one transaction when the store
opens, under a transaction-level advisory lock per schema (two processes starting at once: the second waits,
then finds nothing to do); `schema_migrations` records each version applied. The tables go into the first
schema of the connection's `search_path`, so one database can hold several installations (and the tests use
one throwaway schema each): `postgresql://host/db?options=-csearch_path%3Dzvonok`.

Beyond the contract: `PostgresStore.open(url, min_size=, max_size=)` (the pool's size); the NOTIFY channel is
`channel`, which is `zvonok_work_<installation>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from gateway.clock import require_aware
from gateway.domain import EMAIL, AnnouncementRequest, Guardian, School, Status
from gateway.errors import NotFound, ZvonokError
from gateway.planner import Note, Plan, PlannedDelivery
from gateway.store.base import (
    PURGED_PREFIX,
    RETENTION_ACTOR,
    Alert,
    AnnouncementRecord,
    AttemptRow,
    AuditRow,
    ChatRow,
    Claimed,
    ClassWindowRow,
    CoverageRow,
    DeliveryRow,
    GapRow,
    LetterRow,
    Purged,
    Result,
    RosterChange,
    SessionRow,
    Store,
    TaskRow,
    TokenRow,
    deliveries_json,
    hhmm,
    text_columns,
    window_of,
)
from schedules.windows import MessagingWindow

Connection = AsyncConnection[TupleRow]

CHANNEL_PREFIX = "zvonok_work_"
"""NOTIFY channel of an installation: the prefix and the installation id (channels are per database, not per
schema, so installations sharing a database do not wake each other)."""


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every PostgreSQL migration, in order."""
    folder = resources.files("gateway.store") / "migrations" / "postgresql"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class PostgresStore(Store):
    def __init__(self, conninfo: str, pool: AsyncConnectionPool[Connection], installation: str) -> None:
        self._conninfo = conninfo
        self._pool = pool
        self._installation = installation
        self.channel = CHANNEL_PREFIX + installation
        self._work = asyncio.Event()
        self._listen_lock = asyncio.Lock()
        self._listen_conn: Connection | None = None
        self._listener: asyncio.Task[None] | None = None
        self._bucket_lock = asyncio.Lock()
        self._bucket_conn: Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PostgresStore:
        """Connect to the database a libpq URL names, migrate its schema forward, and open a connection pool."""
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            installation = await _migrate(conn)
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},  # transactions are explicit: `async with conn.transaction()`
            configure=_configure,
            open=False,
            name="zvonok",
        )
        try:
            await pool.open(wait=True)
        except BaseException:
            await pool.close()
            raise
        return cls(url, pool, installation)

    # ------------------------------------------------------------------ plumbing

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Connection]:
        """A pooled connection inside one transaction (committed on exit, rolled back on an exception)."""
        async with self._pool.connection() as conn, conn.transaction():
            yield conn

    async def _all(
        self, query: str, params: Sequence[Any] | dict[str, Any] = (), *, prepare: bool | None = None
    ) -> list[TupleRow]:
        """The rows of one statement (one statement in autocommit is one transaction). `prepare=False`: planned
        for its parameters each time, never from a prepared statement's generic plan (psycopg prepares a
        statement on its fifth run)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params, prepare=prepare)
            return await cur.fetchall()

    async def close(self) -> None:
        self._closed = True
        await self._stop_listening()
        async with self._bucket_lock:
            if self._bucket_conn is not None:
                await self._bucket_conn.close()
                self._bucket_conn = None
        await self._pool.close()

    async def installation(self) -> str:
        return self._installation  # made with the schema, never changed

    # ------------------------------------------------------------------ waiting for work (LISTEN/NOTIFY)

    async def listen(self) -> None:
        """Start listening for new work now, if not yet: from then on no notification is missed.

        `wait_for_work` starts listening itself; a dispatcher calls this before its first `claim`, so that work
        committed between that claim and its first wait is not slept through.
        """
        async with self._listen_lock:
            if self._listener is not None and not self._listener.done():
                return
            await self._stop_listening()
            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            try:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            except BaseException:
                await conn.close()
                raise
            self._listen_conn = conn
            self._listener = asyncio.create_task(self._receive(conn), name=f"zvonok-listen-{self.channel}")

    async def wait_for_work(self, timeout: float) -> bool:  # noqa: ASYNC109 (a timeout is an answer here: False)
        """Wait until another transaction commits new work (True) or `timeout` seconds pass (False).

        Notifications that came since the last call count at once. A True can be spurious (the listening
        connection was lost and is made anew on the next call): the caller re-checks the store either way.
        """
        await self.listen()
        if not self._work.is_set():
            try:
                await asyncio.wait_for(self._work.wait(), timeout)
            except TimeoutError:
                return False
        self._work.clear()
        return True

    async def _receive(self, conn: Connection) -> None:
        try:
            async for _ in conn.notifies():
                self._work.set()
        except psycopg.Error:
            pass  # the connection is gone; the next wait_for_work listens anew
        finally:
            self._work.set()  # whatever happened meanwhile was missed: let the waiter look

    async def _stop_listening(self) -> None:
        task, conn = self._listener, self._listen_conn
        self._listener = self._listen_conn = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if conn is not None:
            await conn.close()

    # ------------------------------------------------------------------ heartbeats, periodic jobs, shared rate limits

    async def extend_leases(self, leases: Sequence[tuple[int, str]], until: datetime) -> set[int]:
        if not leases:
            return set()
        params = {"id": [i for i, _ in leases], "token": [t for _, t in leases], "until": require_aware(until)}
        return {int(row[0]) for row in await self._all(_EXTEND_LEASES, params)}

    async def claim_tick(self, job: str, period: str, owner: str, now: datetime) -> bool:
        require_aware(now)
        async with self._tx() as conn:
            cur = await conn.execute(_CLAIM_TICK, (job, period, owner, now))
            won = await cur.fetchone() is not None
            if won:
                await conn.execute(_PURGE_TICKS, (job, now - TICKS_KEPT))
        return won

    shares_rate_limits = True

    async def reserve_permits(self, key: str, count: int, rate: float, burst: int = 1) -> tuple[float, float, float]:
        """One statement: the bucket's `next_free` moves `count`/`rate` seconds on from itself, or from now when
        it lies in the past (an idle credential; with a burst, from up to (burst - 1)/rate before now). Answers
        where the reserved run starts, in seconds from the database's now (negative within a burst), and the
        time.monotonic() moments just before the statement went out and just after its answer came.
        Concurrent reservations queue on the row, so no two get the same permit."""
        if count < 1 or rate <= 0 or burst < 1:
            raise ValueError("count and burst must be at least 1, rate positive")
        rows, sent, answered = await self._buckets(
            _RESERVE_PERMITS, {"key": key, "span": count / rate, "slack": (burst - 1) / rate}
        )
        return float(rows[0][0]), sent, answered

    async def hold_permits(self, key: str, seconds: float) -> None:
        await self._buckets(_HOLD_PERMITS, {"key": key, "seconds": max(0.0, seconds)})

    async def _buckets(self, query: str, params: dict[str, Any]) -> tuple[list[TupleRow], float, float]:
        """One statement on the store's own connection for the rate buckets (made anew after a failure), and
        the time.monotonic() moments it went out and was answered. Its round trip is part of the pacing error,
        so it never queues for a pooled connection behind claims and finishes; the moments are taken once this
        connection is ours, so the wait for it (other tokens' reservations) is not. The table is UNLOGGED, so the
        commit waits for no disk either."""
        async with self._bucket_lock:
            if self._closed:
                raise psycopg.OperationalError("the store is closed")
            conn = self._bucket_conn
            if conn is None or conn.closed:
                conn = self._bucket_conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            try:
                sent = time.monotonic()
                cur = await conn.execute(query, params)
                rows = await cur.fetchall()
                return rows, sent, time.monotonic()
            except psycopg.Error:
                self._bucket_conn = None
                await conn.close()
                raise

    # ------------------------------------------------------------------ schools, chats, roster

    async def sync_chats(self, school: School, now: datetime) -> None:
        require_aware(now)
        rows = [
            (c.channel, c.address, school.id, _class_of(school, c.channel, c.address), c.kind.value, now)
            for c in school.chats()
        ]
        async with self._tx() as conn:
            await conn.cursor().executemany(_UPSERT_CHAT, rows)

    async def chats(self, school_id: str | None = None) -> list[ChatRow]:
        only = "" if school_id is None else "WHERE school_id = %(school)s"  # one plan each: the index, or a scan
        rows = await self._all(
            f"""SELECT {_CHAT_COLUMNS} FROM chats {only}
                ORDER BY school_id COLLATE "C", class_name COLLATE "C", kind COLLATE "C", address COLLATE "C" """,
            {"school": school_id},
        )
        return [ChatRow(*r) for r in rows]

    async def chat_seen(
        self,
        school_id: str,
        channel: str,
        address: str,
        *,
        alive: bool,
        reason: str,
        title: str,
        source: str,
        now: datetime,
    ) -> bool:
        require_aware(now)
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT status, school_id FROM chats WHERE channel = %s AND address = %s FOR UPDATE", (channel, address)
            )
            row = await cur.fetchone()
            if row is not None and row[1] != school_id:
                return False  # another school's chat
            before = None if row is None else row[0]
            await conn.execute(_REGISTER_CHAT, (channel, address, school_id, title, source, now))
            if source == "check":
                await conn.execute(
                    "UPDATE chats SET checked_at = %s WHERE channel = %s AND address = %s", (now, channel, address)
                )
            if alive:
                await conn.execute(_CHAT_ALIVE, {"now": now, "channel": channel, "address": address})
            else:
                await _mark_dead(conn, school_id, channel, address, reason, now)
        return before != ("active" if alive else "dead")

    async def map_chat(
        self, school_id: str, channel: str, address: str, class_name: str, kind: str, now: datetime
    ) -> None:
        require_aware(now)
        async with self._tx() as conn:
            cur = await conn.execute(
                """UPDATE chats SET class_name = %s, kind = %s, updated_at = %s
                   WHERE channel = %s AND address = %s AND school_id = %s""",
                (class_name, kind, now, channel, address, school_id),
            )
            if cur.rowcount == 0:
                raise NotFound(
                    f"чат {channel.upper()} {address} не зарегистрирован в этой школе: бот не добавлен в него"
                )

    async def dead_chats(self, school_id: str) -> set[tuple[str, str]]:
        rows = await self._all(
            "SELECT channel, address FROM chats WHERE school_id = %s AND status = 'dead'", (school_id,)
        )
        return {(r[0], r[1]) for r in rows}

    async def replace_roster(
        self,
        school_id: str,
        guardians: Sequence[Guardian],
        students: dict[tuple[str, str], str],
        now: datetime,
    ) -> RosterChange:
        require_aware(now)
        async with self._tx() as conn:
            await conn.execute(_ROSTER_LOCK, (school_id,))  # one import per school at a time
            cur = await conn.execute(
                "SELECT key, name, email, phone, left_at FROM guardians WHERE school_id = %s", (school_id,)
            )
            known = {r[0]: (r[1], r[2], r[3], r[4]) for r in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT key, class_name, students, in_chat FROM guardian_classes WHERE school_id = %s", (school_id,)
            )
            known_classes: dict[str, set[tuple[str, str, bool]]] = {}
            for r in await cur.fetchall():
                known_classes.setdefault(r[0], set()).add((r[1], r[2], r[3]))
            added = updated = unchanged = 0
            changed: list[Guardian] = []
            classes_rows: list[tuple[str, str, str, str, bool]] = []
            for g in guardians:
                classes = {(c, students.get((g.key, c), ""), in_chat) for c, in_chat in g.classes.items()}
                before = known.get(g.key)
                if before is None:
                    added += 1
                elif before == (g.name, g.email, g.phone, None) and known_classes.get(g.key) == classes:
                    unchanged += 1
                    continue
                else:
                    updated += 1
                changed.append(g)
                classes_rows.extend((school_id, g.key, c, s, in_chat) for c, s, in_chat in sorted(classes))
            listed = {g.key for g in guardians}
            gone = [k for k, v in known.items() if k not in listed and v[3] is None]
            db = conn.cursor()
            await db.executemany(_UPSERT_GUARDIAN, [(school_id, g.key, g.name, g.email, g.phone, now) for g in changed])
            await db.execute(
                "DELETE FROM guardian_classes WHERE school_id = %s AND key = ANY (%s)",
                (school_id, [g.key for g in changed]),
            )
            await db.executemany(_INSERT_GUARDIAN_CLASS, classes_rows)
            await db.execute(
                "UPDATE guardians SET left_at = %s, updated_at = %s WHERE school_id = %s AND key = ANY (%s)",
                (now, now, school_id, gone),
            )
            return RosterChange(added=added, updated=updated, left=len(gone), unchanged=unchanged)

    async def guardians(self, school_id: str) -> list[Guardian]:
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT key, class_name, in_chat FROM guardian_classes WHERE school_id = %s", (school_id,)
            )
            classes: dict[str, dict[str, bool]] = {}
            for r in await cur.fetchall():
                classes.setdefault(r[0], {})[r[1]] = r[2]
            cur = await conn.execute(
                """SELECT key, name, email, phone, opted_out FROM guardians
                   WHERE school_id = %s AND left_at IS NULL ORDER BY name COLLATE "C" """,
                (school_id,),
            )
            return [Guardian(r[0], r[1], r[2], r[3], r[4], classes.get(r[0], {})) for r in await cur.fetchall()]

    # ------------------------------------------------------------------ announcements

    async def create_announcement(
        self, request: AnnouncementRequest, plan: Plan, now: datetime, *, audit: str = ""
    ) -> tuple[int, bool]:
        audience = Jsonb(
            {
                "groups": sorted(g.value for g in request.audience.groups),
                "parallels": sorted(request.audience.parallels),
                "classes": sorted(request.audience.classes),
            }
        )
        key = request.idempotency_key or None
        require_aware(now)
        if request.send_at is not None:
            require_aware(request.send_at)
        tasks = [
            (request.school_id, t.class_name, t.teacher, list(t.groups), require_aware(t.deadline)) for t in plan.tasks
        ]
        async with self._tx() as conn:
            # The idempotency key is claimed first: a concurrent create with the same key waits here on the
            # unique index until this transaction ends, then finds the announcement (or makes it, if we fail).
            cur = await conn.execute(
                _INSERT_ANNOUNCEMENT,
                (
                    request.school_id,
                    request.author,
                    request.kind.value,
                    request.title,
                    request.text,
                    audience,
                    request.audience.describe(),
                    request.send_at,
                    key,
                    request.digest() if key else None,
                    now,
                ),
            )
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(
                    "SELECT id FROM announcements WHERE school_id = %s AND idempotency_key = %s",
                    (request.school_id, key),
                )
                existing = await cur.fetchone()
                assert existing is not None, "the conflicting announcement is committed"
                return int(existing[0]), False
            announcement_id = int(row[0])

            cur = await conn.execute(_RESERVE_DELIVERY_IDS, (len(plan.deliveries),))
            ids = sorted(int(r[0]) for r in await cur.fetchall())  # increasing, so id order is plan order
            db = conn.cursor()
            if plan.deliveries:
                async with db.copy(_COPY_DELIVERIES) as copy:
                    copy.set_types(_DELIVERY_TYPES)
                    for delivery_id, d in zip(ids, plan.deliveries, strict=True):
                        await copy.write_row(
                            (
                                delivery_id,
                                announcement_id,
                                *text_columns(d),
                                d.held,
                                require_aware(d.not_before),
                                now,
                                now,
                            )
                        )
            if plan.coverage:
                async with db.copy(_COPY_COVERAGE) as copy:
                    copy.set_types(_COVERAGE_TYPES)
                    for c in plan.coverage:
                        await copy.write_row(
                            (
                                announcement_id,
                                c.person,
                                c.class_name,
                                c.route.value,
                                None if c.delivery is None else ids[c.delivery],
                                c.email,
                                c.note.value,
                            )
                        )
            await db.executemany(
                "INSERT INTO gaps (announcement_id, class_name, chat_kind, note) VALUES (%s, %s, %s, %s)",
                [(announcement_id, g.class_name, g.chat_kind.value, g.note.value) for g in plan.gaps],
            )
            await db.executemany(_INSERT_TASK, [(announcement_id, *t) for t in tasks])
            if audit:
                await conn.execute(
                    _INSERT_AUDIT, (request.school_id, now, request.author, "force_majeure", announcement_id, audit)
                )
            if plan.deliveries:
                await _notify(conn, self.channel, f"announcement {announcement_id}")
        return announcement_id, True

    async def announcement(self, announcement_id: int) -> AnnouncementRecord | None:
        rows = await self._all(f"SELECT {_ANN_COLUMNS} FROM announcements WHERE id = %s", (announcement_id,))
        return _announcement(rows[0]) if rows else None

    async def announcement_by_key(self, school_id: str, idempotency_key: str) -> AnnouncementRecord | None:
        rows = await self._all(
            f"SELECT {_ANN_COLUMNS} FROM announcements WHERE school_id = %s AND idempotency_key = %s",
            (school_id, idempotency_key),
        )
        return _announcement(rows[0]) if rows else None

    async def announcements(self, school_id: str | None = None, limit: int = 50) -> list[AnnouncementRecord]:
        if school_id is None:
            rows = await self._all(f"SELECT {_ANN_COLUMNS} FROM announcements ORDER BY id DESC LIMIT %s", (limit,))
        else:
            rows = await self._all(
                f"SELECT {_ANN_COLUMNS} FROM announcements WHERE school_id = %s ORDER BY id DESC LIMIT %s",
                (school_id, limit),
            )
        return [_announcement(r) for r in rows]

    async def audit_log(self, school_id: str, limit: int = 100) -> list[AuditRow]:
        rows = await self._all(_AUDIT_LOG, (school_id, limit))
        return [AuditRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    # ------------------------------------------------------------------ forwarding by class teachers

    async def tasks(
        self, *, school_id: str | None = None, announcement_id: int | None = None, teacher: str | None = None
    ) -> list[TaskRow]:
        rows = await self._all(_TASKS, {"school": school_id, "announcement": announcement_id, "teacher": teacher})
        return [
            TaskRow(
                id=r[0],
                announcement_id=r[1],
                school_id=r[2],
                class_name=r[3],
                teacher=r[4],
                groups=tuple(r[5]),
                deadline=r[6],
                status=r[7],
                note=r[8],
                done_at=r[9],
                done_by=r[10],
            )
            for r in rows
        ]

    async def forward(
        self, task_id: int, *, actor: str, note: str, status: str, deliveries: Sequence[PlannedDelivery], now: datetime
    ) -> bool:
        require_aware(now)
        async with self._tx() as conn:
            # A concurrent forward of the same task waits here on its row, then finds it no longer open.
            cur = await conn.execute(_CLOSE_TASK, (status, note, now, actor, task_id))
            row = await cur.fetchone()
            if row is None:
                return False
            announcement_id, class_name = int(row[0]), str(row[1])
            added = await _insert_deliveries(conn, announcement_id, deliveries, now, addendum=note)
            await conn.execute(
                _COVER_FORWARDED,
                {
                    "announcement": announcement_id,
                    "class": class_name,
                    "waiting": Note.FORWARDING.value,
                    "reached": Note.IN_CHAT.value,
                },
            )
            # Whoever still waits had no parents' chat to wait for (it is gone): they are e-mailed instead.
            cur = await conn.execute("SELECT school_id FROM forwarding_tasks WHERE id = %s", (task_id,))
            row = await cur.fetchone()
            assert row is not None
            await _fall_back_to_email(
                conn, announcement_id, str(row[0]), now, waiting_class=class_name, note=Note.CHAT_DEAD
            )
            if added:
                await _notify(conn, self.channel, f"forwarded {task_id}")
        return True

    async def add_deliveries(
        self, announcement_id: int, deliveries: Sequence[PlannedDelivery], now: datetime, *, addendum: str = ""
    ) -> int:
        require_aware(now)
        async with self._tx() as conn:
            added = await _insert_deliveries(
                conn, announcement_id, deliveries, now, addendum=addendum, skip_existing=True
            )
            if added:
                await _notify(conn, self.channel, f"announcement {announcement_id}")
        return added

    async def escalate(self, task_ids: Sequence[int], now: datetime, alert: str) -> list[int]:
        require_aware(now)
        order: dict[int, int] = {}  # the callers' order: the first task escalated names the alert
        for i, task_id in enumerate(task_ids):
            order.setdefault(task_id, i)
        async with self._tx() as conn:
            cur = await conn.execute(_ESCALATE, {"ids": list(order), "now": now})
            escalated = sorted(await cur.fetchall(), key=lambda r: order[r[0]])
            if escalated and alert:
                first, school_id = escalated[0]
                await _alert(conn, school_id, "forwarding_late", f"tasks:{first}", alert, now)
        return [int(r[0]) for r in escalated]

    # ------------------------------------------------------------------ dispatch

    async def claim(
        self,
        now: datetime,
        limit: int,
        lease_seconds: float,
        *,
        channels: Sequence[str] = (),
        skip_accounts: Sequence[str] = (),
    ) -> list[Claimed]:
        params = {
            "now": require_aware(now),
            "until": now + timedelta(seconds=lease_seconds),
            "channels": list(channels) or None,
            "skip": list(skip_accounts),
            "limit": limit,
        }
        async with self._tx() as conn:
            cur = await conn.execute(_HELD_DUE, params)
            held = await cur.fetchall()
            if held:
                rows = await _claim_with_bundles(conn, held, params)
            else:  # the usual case: one statement
                cur = await conn.execute(_CLAIM, params, prepare=False)  # never a generic plan: see _TAKE
                rows = await cur.fetchall()
        rows.sort(key=lambda r: (r[11], r[0]))  # RETURNING has no order of its own: not_before, id
        return [
            Claimed(
                id=r[0],
                announcement_id=r[1],
                channel=r[2],
                account=r[3],
                target=r[4],
                class_name=r[5],
                chat_kind=r[6],
                recipient_name=r[7],
                attempt=r[8],
                maybe_sent=r[9],
                lease_token=r[10],
                bundle=r[12],
                addendum=r[13],
                note=r[14],
                taken_over=r[15],
            )
            for r in rows
        ]

    async def finish(self, results: Sequence[Result], now: datetime) -> int:
        if not results:
            return 0
        # A deferred delivery (due, but outside its window) only waits again: no attempt, no outcome.
        deferred = [r for r in results if r.outcome == "deferred"]
        attempted = [(i, r) for i, r in enumerate(results) if r.outcome != "deferred"]
        params = {
            "ord": [i for i, _ in attempted],
            "id": [r.delivery_id for _, r in attempted],
            "token": [r.lease_token for _, r in attempted],
            "status": [r.status.value for _, r in attempted],
            "provider_id": [r.provider_id for _, r in attempted],
            "error_code": [r.error_code for _, r in attempted],
            "error": [r.error for _, r in attempted],
            "retry_at": [None if r.retry_at is None else require_aware(r.retry_at) for _, r in attempted],
            "started_at": [require_aware(r.started_at) for _, r in attempted],
            "outcome": [r.outcome for _, r in attempted],
            "now": require_aware(now),
        }
        postponed = {
            "id": [r.delivery_id for r in deferred],
            "token": [r.lease_token for r in deferred],
            "retry_at": [None if r.retry_at is None else require_aware(r.retry_at) for r in deferred],
            "status": [r.status.value for r in deferred],  # pending, or unknown when it may have gone out
            "now": now,
        }
        async with self._tx() as conn:
            waiting = 0
            if deferred:
                cur = await conn.execute(_DEFER, postponed)
                waiting = len(await cur.fetchall())
            recorded: list[TupleRow] = []
            if attempted:
                cur = await conn.execute(_FINISH, params)
                recorded = await cur.fetchall()
            more_work = False  # (a deferral makes no new work: it only puts the delivery off)
            for ord_, announcement_id, school_id, channel, account, target in recorded:
                r = results[ord_]
                if r.dead_chat:
                    await _mark_dead(conn, school_id, channel, target, r.error, now)
                if r.alert:
                    await _alert(conn, school_id, "credential", f"{channel}:{account}", r.alert, now)
                if r.fallback and channel != EMAIL:
                    await _fall_back_to_email(conn, announcement_id, school_id, now, delivery_id=r.delivery_id)
                    more_work = True
                more_work = more_work or r.retry_at is not None
            if more_work:
                await _notify(conn, self.channel, "retry")
        return len(recorded) + waiting

    async def bring_forward(self, channel: str, account: str, now: datetime) -> int:
        async with self._tx() as conn:
            cur = await conn.execute(
                """UPDATE deliveries SET not_before = %(now)s
                   WHERE channel = %(channel)s AND account = %(account)s AND status = 'temporary_failure'
                     AND not_before > %(now)s""",
                {"now": require_aware(now), "channel": channel, "account": account},
            )
            if cur.rowcount:
                await _notify(conn, self.channel, "retry")
            return cur.rowcount

    async def probe(self, channel: str, account: str, when: datetime, *, below: int) -> bool:
        params = {"when": require_aware(when), "channel": channel, "account": account, "below": below}
        return bool(await self._all(_PROBE, params))

    async def backlog(
        self, now: datetime, until: datetime, accounts: Sequence[tuple[str, str]] | None = None
    ) -> dict[tuple[str, str], list[tuple[datetime, int]]]:
        params = {"now": require_aware(now), "until": require_aware(until)}
        if accounts is None:
            rows = await self._all(_BACKLOG.format(only=""), params)
        else:
            pairs = list(dict.fromkeys(accounts))
            # Never a generic plan: one made while the table was small (a new installation's first busy morning)
            # went on scanning it as it grew. A school's MAX queue took 10-12 ms to count at the end of a
            # 187-school closure, against 1 ms planned for its parameters (bench/plan_region.py).
            rows = await self._all(
                _BACKLOG.format(
                    only="AND (channel, account) IN (SELECT * FROM unnest(%(channels)s::text[], %(accounts)s::text[]))"
                ),
                {**params, "channels": [c for c, _ in pairs], "accounts": [a for _, a in pairs]},
                prepare=False,
            )
        queues: dict[tuple[str, str], list[tuple[datetime, int]]] = {}
        for r in rows:
            queues.setdefault((r[0], r[1]), []).append((now if r[2] is None else r[2], int(r[3])))
        return {key: sorted(parts) for key, parts in queues.items()}

    async def next_due(self, *, channels: Sequence[str] = (), skip_accounts: Sequence[str] = ()) -> datetime | None:
        rows = await self._all(_NEXT_DUE, {"channels": list(channels) or None, "skip": list(skip_accounts)})
        when: datetime | None = rows[0][0]
        return when

    # ------------------------------------------------------------------ reading

    async def progress(self, announcement_id: int | None = None) -> dict[Status, int]:
        if announcement_id is None:
            rows = await self._all("SELECT status, count(*) FROM deliveries GROUP BY status")
        else:
            rows = await self._all(
                "SELECT status, count(*) FROM deliveries WHERE announcement_id = %s GROUP BY status", (announcement_id,)
            )
        return {Status(r[0]): int(r[1]) for r in rows}

    async def deliveries(self, announcement_id: int) -> list[DeliveryRow]:
        rows = await self._all(_DELIVERIES, (announcement_id,))
        return [
            DeliveryRow(
                id=r[0],
                channel=r[1],
                target=r[2],
                class_name=r[3],
                chat_kind=r[4],
                recipient_name=r[5],
                note=r[6],
                status=Status(r[7]),
                attempts=r[8],
                error_code=r[9],
                last_error=r[10],
                provider_id=r[11],
                not_before=r[12],
                finished_at=r[13],
            )
            for r in rows
        ]

    async def coverage(self, announcement_id: int) -> list[CoverageRow]:
        rows = await self._all(_COVERAGE, (announcement_id,))
        return [
            CoverageRow(
                person=r[0],
                class_name=r[1],
                route=r[2],
                note=r[3],
                email=r[4],
                name=r[5],
                phone=r[6],
                students=r[7],
                opted_out=r[8],
                delivery_id=r[9],
                delivery_status=None if r[10] is None else Status(r[10]),
                delivery_error=r[11],
            )
            for r in rows
        ]

    async def gaps(self, announcement_id: int) -> list[GapRow]:
        rows = await self._all(
            """SELECT class_name, chat_kind, note FROM gaps WHERE announcement_id = %s
               ORDER BY class_name COLLATE "C", chat_kind COLLATE "C" """,
            (announcement_id,),
        )
        return [GapRow(r[0], r[1], r[2]) for r in rows]

    async def attempts(self, delivery_id: int) -> list[AttemptRow]:
        rows = await self._all(
            """SELECT delivery_id, attempt, started_at, finished_at, outcome, error_code, error
               FROM attempts WHERE delivery_id = %s ORDER BY id""",
            (delivery_id,),
        )
        return [AttemptRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    async def alerts(self, school_id: str | None = None) -> list[Alert]:
        rows = await self._all(
            """SELECT id, school_id, created_at, kind, subject, message FROM alerts
               WHERE resolved_at IS NULL AND (%(school)s::text IS NULL OR school_id = %(school)s) ORDER BY id""",
            {"school": school_id},
        )
        return [Alert(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def raise_alert(self, school_id: str, kind: str, subject: str, message: str, now: datetime) -> None:
        await self._all(_ALERT + " RETURNING id", (school_id, require_aware(now), kind, subject, message))

    async def resolve_alerts(self, kind: str, subject: str, now: datetime) -> int:
        rows = await self._all(
            """UPDATE alerts SET resolved_at = %s WHERE kind = %s AND subject = %s AND resolved_at IS NULL
               RETURNING id""",
            (require_aware(now), kind, subject),
        )
        return len(rows)

    async def database_time(self) -> datetime | None:
        [(now,)] = await self._all("SELECT clock_timestamp()")
        return now  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ staff accounts, sessions, API tokens

    async def set_password(self, school_id: str, staff_id: str, password_hash: str, now: datetime) -> None:
        require_aware(now)
        async with self._tx() as conn:
            await conn.execute(
                """INSERT INTO staff_accounts (school_id, staff_id, password_hash, updated_at) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (school_id, staff_id) DO UPDATE SET
                     password_hash = excluded.password_hash, updated_at = excluded.updated_at""",
                (school_id, staff_id, password_hash, now),
            )
            await conn.execute("DELETE FROM sessions WHERE school_id = %s AND staff_id = %s", (school_id, staff_id))

    async def password_hash(self, school_id: str, staff_id: str) -> str | None:
        rows = await self._all(
            "SELECT password_hash FROM staff_accounts WHERE school_id = %s AND staff_id = %s", (school_id, staff_id)
        )
        return str(rows[0][0]) if rows else None

    async def create_session(
        self, id_hash: str, school_id: str, staff_id: str, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        require_aware(now)
        require_aware(expires_at)
        async with self._tx() as conn:
            await conn.execute("DELETE FROM sessions WHERE expires_at <= %s", (now,))
            await conn.execute(
                """INSERT INTO sessions (id_hash, school_id, staff_id, csrf_token, created_at, expires_at)
                   VALUES (%s, %s, %s, %s, %s, %s)""",
                (id_hash, school_id, staff_id, csrf_token, now, expires_at),
            )

    async def admit_login(
        self, keys: Sequence[str], hold: Callable[[str, int], timedelta], now: datetime, forget: datetime
    ) -> datetime | None:
        require_aware(now)
        ordered = sorted(set(keys))
        async with self._tx() as conn:
            await conn.execute("DELETE FROM login_attempts WHERE last_at < %s", (forget,))
            # Every key's row is made where missing and locked, in one order (no deadlock between two logins),
            # before any is read: concurrent attempts on a key queue here, each seeing the hold the one before set.
            await conn.execute(_MAKE_LOGIN_KEYS, {"now": now, "keys": ordered})
            cur = await conn.execute(
                "SELECT key, failures, held_until FROM login_attempts WHERE key = ANY(%s) ORDER BY key FOR UPDATE",
                (ordered,),
            )
            found: dict[str, tuple[int, datetime]] = {r[0]: (int(r[1]), r[2]) for r in await cur.fetchall()}
            held = [until for _, until in found.values() if until > now]
            if held:
                return max(held)
            async with conn.cursor() as db:
                await db.executemany(
                    "UPDATE login_attempts SET failures = %s, held_until = %s, last_at = %s WHERE key = %s",
                    [(found[key][0] + 1, now + hold(key, found[key][0] + 1), now, key) for key in ordered],
                )
        return None

    async def login_succeeded(self, forget: Sequence[str], undo: Sequence[str], now: datetime) -> None:
        async with self._tx() as conn:
            await conn.execute("DELETE FROM login_attempts WHERE key = ANY(%s)", (list(forget),))
            await conn.execute(
                "UPDATE login_attempts SET failures = greatest(failures - 1, 0) WHERE key = ANY(%s)", (list(undo),)
            )

    async def session(self, id_hash: str, now: datetime) -> SessionRow | None:
        rows = await self._all(
            """SELECT school_id, staff_id, csrf_token, created_at, expires_at FROM sessions
               WHERE id_hash = %s AND expires_at > %s""",
            (id_hash, require_aware(now)),
        )
        return SessionRow(*rows[0]) if rows else None

    async def delete_session(self, id_hash: str) -> None:
        await self._all("DELETE FROM sessions WHERE id_hash = %s RETURNING id_hash", (id_hash,))

    async def create_api_token(self, token_hash: str, school_id: str, staff_id: str, label: str, now: datetime) -> int:
        rows = await self._all(
            """INSERT INTO api_tokens (token_hash, school_id, staff_id, label, created_at)
               VALUES (%s, %s, %s, %s, %s) RETURNING id""",
            (token_hash, school_id, staff_id, label, require_aware(now)),
        )
        return int(rows[0][0])

    async def api_token(self, token_hash: str) -> TokenRow | None:
        rows = await self._all(
            """SELECT id, school_id, staff_id, label, created_at FROM api_tokens
               WHERE token_hash = %s AND revoked_at IS NULL""",
            (token_hash,),
        )
        return TokenRow(*rows[0]) if rows else None

    async def revoke_api_token(self, token_id: int, now: datetime) -> bool:
        rows = await self._all(
            "UPDATE api_tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL RETURNING id",
            (require_aware(now), token_id),
        )
        return bool(rows)

    async def api_tokens(self, school_id: str) -> list[TokenRow]:
        rows = await self._all(
            """SELECT id, school_id, staff_id, label, created_at, revoked_at FROM api_tokens
               WHERE school_id = %s ORDER BY id""",
            (school_id,),
        )
        return [TokenRow(*r) for r in rows]

    # ------------------------------------------------------------------ class windows set at run time

    async def class_windows(self, school_id: str | None = None) -> list[ClassWindowRow]:
        rows = await self._all(
            """SELECT school_id, class_name, opens, closes, set_by, set_at FROM class_windows
               WHERE %(school)s::text IS NULL OR school_id = %(school)s ORDER BY school_id, class_name""",
            {"school": school_id},
        )
        return [ClassWindowRow(r[0], r[1], window_of(r[2], r[3]), r[4], r[5]) for r in rows]

    async def set_class_window(
        self, school_id: str, class_name: str, window: MessagingWindow, actor: str, now: datetime, *, audit: str
    ) -> None:
        require_aware(now)
        async with self._tx() as conn:
            await conn.execute(
                _SET_CLASS_WINDOW, (school_id, class_name, hhmm(window.start), hhmm(window.end), actor, now)
            )
            await conn.execute(_AUDIT_CLASS_WINDOW, (school_id, now, actor, audit))

    async def reset_class_window(
        self, school_id: str, class_name: str, actor: str, now: datetime, *, audit: str
    ) -> bool:
        require_aware(now)
        async with self._tx() as conn:
            cur = await conn.execute(
                "DELETE FROM class_windows WHERE school_id = %s AND class_name = %s RETURNING class_name",
                (school_id, class_name),
            )
            if not await cur.fetchall():
                return False
            await conn.execute(_AUDIT_CLASS_WINDOW, (school_id, now, actor, audit))
        return True

    # ------------------------------------------------------------------ parents' links, cancelling

    async def letter(self, delivery_id: int) -> LetterRow | None:
        rows = await self._all(_LETTER, (delivery_id,))
        return LetterRow(*rows[0]) if rows else None

    async def acknowledge(self, delivery_id: int, now: datetime) -> datetime | None:
        require_aware(now)
        async with self._tx() as conn:
            await conn.execute(_ACKNOWLEDGE, (now, delivery_id))
            cur = await conn.execute("SELECT at FROM acknowledgements WHERE delivery_id = %s", (delivery_id,))
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def acknowledgements(self, announcement_id: int) -> dict[int, datetime]:
        rows = await self._all(
            "SELECT delivery_id, at FROM acknowledgements WHERE announcement_id = %s", (announcement_id,)
        )
        return {int(r[0]): r[1] for r in rows}

    async def opt_out(self, school_id: str, email: str, now: datetime) -> int:
        rows = await self._all(
            """UPDATE guardians SET opted_out = true, opted_out_at = %(now)s, updated_at = %(now)s
               WHERE school_id = %(school)s AND email = %(email)s AND email <> '' AND NOT opted_out
                 AND left_at IS NULL
               RETURNING key""",
            {"now": require_aware(now), "school": school_id, "email": email},
        )
        return len(rows)

    async def cancel_announcement(self, announcement_id: int, actor: str, now: datetime) -> int:
        require_aware(now)
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT school_id, cancelled_at FROM announcements WHERE id = %s FOR UPDATE", (announcement_id,)
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"объявление № {announcement_id} не найдено")
            cur = await conn.execute(_CANCEL_DELIVERIES, {"announcement": announcement_id, "now": now})
            cancelled = len(await cur.fetchall())
            await conn.execute(
                """UPDATE forwarding_tasks SET status = 'cancelled', done_at = %s, done_by = %s
                   WHERE announcement_id = %s AND status IN ('open', 'escalated')""",
                (now, actor, announcement_id),
            )
            if row[1] is None:
                await conn.execute(
                    "UPDATE announcements SET cancelled_at = %s, cancelled_by = %s WHERE id = %s",
                    (now, actor, announcement_id),
                )
                await conn.execute(
                    _INSERT_AUDIT,
                    (row[0], now, actor, "cancel", announcement_id, f"отмена рассылки: не отправлено {cancelled}"),
                )
        return cancelled

    async def add_audit(
        self, school_id: str, actor: str, action: str, details: str, now: datetime, announcement_id: int | None = None
    ) -> None:
        async with self._tx() as conn:
            await conn.execute(_INSERT_AUDIT, (school_id, require_aware(now), actor, action, announcement_id, details))

    # ------------------------------------------------------------------ personal-data retention

    async def purge_personal_data(self, cutoff: datetime, now: datetime, *, dry_run: bool = False) -> list[Purged]:
        params: dict[str, Any] = {"cutoff": require_aware(cutoff), "now": require_aware(now), "prefix": PURGED_PREFIX}
        async with self._tx() as conn:
            if dry_run:
                cur = await conn.execute(_PURGE_DUE, params)
            else:
                # Lock them (skipping those another transaction holds: it is cancelling one, or adding to it), then
                # look again: a delivery or report line added since the first look would wait for these locks
                # (its foreign key), so what the second look finds stays as found until the commit.
                cur = await conn.execute(_PURGE_DUE + " FOR UPDATE OF a SKIP LOCKED", params)
                params["ids"] = [r[0] for r in await cur.fetchall()]
                cur = await conn.execute(_PURGE_DUE_AGAIN, params)
            due = await cur.fetchall()
            params["ids"] = [r[0] for r in due]
            counts: dict[str, list[int]] = {}
            for _, school_id in due:
                counts.setdefault(school_id, [0, 0, 0, 0])[0] += 1
            cur = await conn.execute(_PURGE_COUNT_LETTERS, params)
            for school_id, n in await cur.fetchall():
                counts[school_id][1] = n
            cur = await conn.execute(_PURGE_COUNT_PEOPLE, params)
            for school_id, n in await cur.fetchall():
                counts[school_id][2] = n
            if dry_run:
                cur = await conn.execute(_COUNT_LEAVERS, params)
            else:
                await conn.execute(_PURGE_DELIVERIES, params)
                await conn.execute(_PURGE_ATTEMPTS, params)
                await conn.execute(_PURGE_COVERAGE, params)
                await conn.execute(_MARK_PURGED, params)
                cur = await conn.execute(_PURGE_LEAVERS, params)
            for (school_id,) in await cur.fetchall():
                counts.setdefault(school_id, [0, 0, 0, 0])[3] += 1
            purged = [Purged(school_id, *counts[school_id]) for school_id in sorted(counts)]
            if purged and not dry_run:
                await conn.cursor().executemany(
                    _INSERT_AUDIT,
                    [(p.school_id, now, RETENTION_ACTOR, "retention", None, p.audit(cutoff)) for p in purged],
                )
        return purged


# ---------------------------------------------------------------------- class windows set at run time

_SET_CLASS_WINDOW = """
INSERT INTO class_windows (school_id, class_name, opens, closes, set_by, set_at) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (school_id, class_name) DO UPDATE
SET opens = excluded.opens, closes = excluded.closes, set_by = excluded.set_by, set_at = excluded.set_at"""

_AUDIT_CLASS_WINDOW = """
INSERT INTO audit (school_id, at, actor, action, announcement_id, details)
VALUES (%s, %s, %s, 'class_window', NULL, %s)"""


# ---------------------------------------------------------------------- migrations

# One lock per schema: installations in other schemas of the same database migrate independently.
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('zvonok.migrate:' || current_schema(), 0))"

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


async def _migrate(conn: Connection) -> str:
    """Apply the migrations this schema lacks, in one transaction; return the installation id."""
    async with conn.transaction():
        cur = await conn.execute("SELECT current_schema(), current_setting('search_path')")
        row = await cur.fetchone()
        assert row is not None
        if row[0] is None:
            raise ZvonokError(
                f"в базе PostgreSQL нет ни одной схемы из search_path ({row[1]}): создайте схему "
                "или укажите существующую в адресе базы (options=-csearch_path=…)"
            )
        await conn.execute(_MIGRATION_LOCK)
        await conn.execute(_MIGRATIONS_TABLE)
        cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
        version_row = await cur.fetchone()
        assert version_row is not None
        current = int(version_row[0])
        for version, script in migrations():
            if version <= current:
                continue
            await conn.execute(script.encode())  # no parameters: sent as a simple query, several statements
            await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        cur = await conn.execute("SELECT value FROM meta WHERE key = 'installation'")
        installation = await cur.fetchone()
        assert installation is not None
        return str(installation[0])


async def _configure(conn: Connection) -> None:
    """Every pooled connection reads times back in UTC, as the SQLite store does."""
    await conn.execute("SET TIME ZONE 'UTC'")


async def _notify(conn: Connection, channel: str, payload: str) -> None:
    """Queue a notification; PostgreSQL delivers it when (and only if) the transaction commits."""
    await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


# ---------------------------------------------------------------------- heartbeats, periodic jobs, shared rate limits

# A sender's heartbeat: its leases that are still current run on (never shortened).
_EXTEND_LEASES = """
UPDATE deliveries d SET lease_until = greatest(d.lease_until, %(until)s)
FROM unnest(%(id)s::bigint[], %(token)s::text[]) AS l (id, token)
WHERE d.id = l.id AND d.lease_token = l.token AND d.status = 'sending'
RETURNING d.id"""

TICKS_KEPT = timedelta(days=2)  # a periodic job's tick rows are kept this long (claim_tick purges older ones)

# The first INSERT of a (job, period) wins; every other one meets the primary key (waiting for the winner's
# commit if it is still open) and returns no row.
_CLAIM_TICK = """
INSERT INTO ticks (job, period, owner, claimed_at) VALUES (%s, %s, %s, %s)
ON CONFLICT DO NOTHING
RETURNING 1"""

_PURGE_TICKS = "DELETE FROM ticks WHERE job = %s AND claimed_at < %s"

# GCRA with reservations: the run of `span` seconds (count / rate) starts at next_free, or at now (less the
# burst's `slack`) when next_free is past; next_free moves to its end. The server's clock_timestamp() is the one
# clock every process shares; the answer is relative to it, so the callers' clocks never meet.
_RESERVE_PERMITS = """
INSERT INTO rate_buckets AS b (key, next_free)
VALUES (%(key)s, clock_timestamp() - make_interval(secs => %(slack)s) + make_interval(secs => %(span)s))
ON CONFLICT (key) DO UPDATE
SET next_free = greatest(b.next_free, clock_timestamp() - make_interval(secs => %(slack)s))
                + make_interval(secs => %(span)s)
RETURNING extract(epoch FROM b.next_free - clock_timestamp())::float8 - %(span)s"""

# After a "too many requests": no permit before now + seconds (permits already handed out stay handed out).
_HOLD_PERMITS = """
INSERT INTO rate_buckets AS b (key, next_free) VALUES (%(key)s, clock_timestamp() + make_interval(secs => %(seconds)s))
ON CONFLICT (key) DO UPDATE SET next_free = greatest(b.next_free, excluded.next_free)"""


# ---------------------------------------------------------------------- SQL

_OPEN = "('pending', 'sending', 'temporary_failure', 'unknown')"

_UPSERT_CHAT = """
INSERT INTO chats (channel, address, school_id, class_name, kind, source, updated_at)
VALUES (%s, %s, %s, %s, %s, 'config', %s)
ON CONFLICT (channel, address) DO UPDATE SET
    school_id = excluded.school_id, class_name = excluded.class_name, kind = excluded.kind"""

_CHAT_COLUMNS = (
    "channel, address, school_id, class_name, kind, title, status, status_reason, source, updated_at, checked_at"
)

# A chat a webhook or a health check told of: known from now on (a title, when given, replaces the old one).
_REGISTER_CHAT = """
INSERT INTO chats (channel, address, school_id, title, source, updated_at) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (channel, address) DO UPDATE SET
    title = CASE WHEN excluded.title = '' THEN chats.title ELSE excluded.title END"""

# A chat alive again: active, and its open dead-chat alert resolved.
_CHAT_ALIVE = """
WITH revived AS (
    UPDATE chats SET status = 'active', status_reason = '', updated_at = %(now)s
    WHERE channel = %(channel)s AND address = %(address)s
)
UPDATE alerts SET resolved_at = %(now)s
WHERE kind = 'dead_chat' AND subject = %(channel)s || ':' || %(address)s AND resolved_at IS NULL"""

# The rows of a login's keys, made where missing: such a row counts nothing yet and holds nothing.
_MAKE_LOGIN_KEYS = """
INSERT INTO login_attempts (key, failures, held_until, last_at)
SELECT k, 0, %(now)s, %(now)s FROM unnest(%(keys)s::text[]) AS k ORDER BY k
ON CONFLICT (key) DO NOTHING"""

_ROSTER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('zvonok.roster:' || current_schema() || ':' || %s, 0))"

_UPSERT_GUARDIAN = """
INSERT INTO guardians (school_id, key, name, email, phone, updated_at) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (school_id, key) DO UPDATE SET
    name = excluded.name, email = excluded.email, phone = excluded.phone, left_at = NULL,
    updated_at = excluded.updated_at"""

_INSERT_GUARDIAN_CLASS = """
INSERT INTO guardian_classes (school_id, key, class_name, students, in_chat) VALUES (%s, %s, %s, %s, %s)"""

_INSERT_ANNOUNCEMENT = """
INSERT INTO announcements (school_id, author, kind, title, text, audience, audience_label, send_at,
                           idempotency_key, request_digest, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (school_id, idempotency_key) DO NOTHING
RETURNING id"""

# n fresh ids from the deliveries' identity sequence (nextval is never rolled back, so they are never reused). The
# sequence is looked up once, as a subquery: looked up by name on every row, it took 11.4 ms of a post's 231 ids.
_RESERVE_DELIVERY_IDS = """
SELECT nextval((SELECT pg_get_serial_sequence('deliveries', 'id')::regclass)) FROM generate_series(1, %s)"""

# Binary COPY: the server parses nothing, and the client's share (formatting) is less than half of text's. (Two
# JSON parameters read on the server cost this process 2 ms less a post, but the server more: a 200,000-line plan
# took 3.9-4.1 s against 3.0-3.5 s, and a region's posts 4 at a time no less.)
_COPY_DELIVERIES = """
COPY deliveries (id, announcement_id, channel, account, target, class_name, chat_kind, recipient_name, note,
                 held, not_before, created_at, updated_at) FROM STDIN (FORMAT BINARY)"""
_DELIVERY_TYPES = ["int8", "int8", "text", "text", "text", "text", "text", "text", "text", "bool"] + ["timestamptz"] * 3

_COPY_COVERAGE = """
COPY coverage (announcement_id, person, class_name, route, delivery_id, email, note) FROM STDIN (FORMAT BINARY)"""
_COVERAGE_TYPES = ["int8", "text", "text", "text", "int8", "text", "text"]

_INSERT_TASK = """
INSERT INTO forwarding_tasks (announcement_id, school_id, class_name, teacher, groups, deadline)
VALUES (%s, %s, %s, %s, %s::text[], %s)"""

_INSERT_AUDIT = """
INSERT INTO audit (school_id, at, actor, action, announcement_id, details) VALUES (%s, %s, %s, %s, %s, %s)"""

_AUDIT_LOG = """
SELECT id, school_id, at, actor, action, announcement_id, details FROM audit
WHERE school_id = %s ORDER BY at DESC, id DESC LIMIT %s"""

_TASKS = """
SELECT id, announcement_id, school_id, class_name, teacher, groups, deadline, status, note, done_at, done_by
FROM forwarding_tasks
WHERE (%(school)s::text IS NULL OR school_id = %(school)s)
  AND (%(announcement)s::bigint IS NULL OR announcement_id = %(announcement)s)
  AND (%(teacher)s::text IS NULL OR teacher = %(teacher)s)
ORDER BY deadline, id"""

# Exactly once: only an open (or escalated) task is closed; a concurrent second close waits for the first's
# commit, then no longer matches.
_CLOSE_TASK = """
UPDATE forwarding_tasks SET status = %s, note = %s, done_at = %s, done_by = %s
WHERE id = %s AND status IN ('open', 'escalated')
RETURNING announcement_id, class_name"""

# The class's guardians who waited for the forward are reached by its parents' chat delivery (when it has one).
_COVER_FORWARDED = """
UPDATE coverage c SET delivery_id = p.id, note = %(reached)s
FROM (
    SELECT id FROM deliveries
    WHERE announcement_id = %(announcement)s AND class_name = %(class)s AND chat_kind = 'parents'
      AND channel <> 'email'
    ORDER BY id LIMIT 1
) p
WHERE c.announcement_id = %(announcement)s AND c.class_name = %(class)s AND c.note = %(waiting)s"""

# Open tasks only, locked in id order (two escalations of overlapping sets never deadlock); a task forwarded
# meanwhile no longer matches once its row is free.
_ESCALATE = """
WITH due AS (
    SELECT id FROM forwarding_tasks
    WHERE id = ANY (%(ids)s::bigint[]) AND status = 'open'
    ORDER BY id
    FOR UPDATE
)
UPDATE forwarding_tasks t SET status = 'escalated', done_at = %(now)s
FROM due
WHERE t.id = due.id
RETURNING t.id, t.school_id"""

# Deliveries added after the plan (forwarding, escalation letters), in the order given: a row of
# `deliveries_json` each.
_INSERT_DELIVERIES = """
INSERT INTO deliveries (announcement_id, channel, account, target, class_name, chat_kind, recipient_name, note,
                        not_before, held, addendum, created_at, updated_at)
SELECT %(announcement)s, d->>0, d->>1, d->>2, d->>3, d->>4, d->>5, d->>6, (d->>7)::timestamptz, (d->>8)::boolean,
       %(addendum)s, %(now)s, %(now)s
FROM jsonb_array_elements(%(deliveries)s::jsonb) WITH ORDINALITY AS e (d, ord)
ORDER BY ord"""

_WAITING = "channel = %(channel)s AND account = %(account)s AND status = 'temporary_failure'"
_PROBE = f"""
UPDATE deliveries SET not_before = %(when)s WHERE id = (
    SELECT id FROM deliveries WHERE {_WAITING} AND not_before > %(when)s AND attempts < %(below)s
    ORDER BY attempts, not_before LIMIT 1)
AND NOT EXISTS (SELECT 1 FROM deliveries WHERE {_WAITING} AND not_before <= %(when)s)
RETURNING id"""

_ANN_COLUMNS = (
    "id, school_id, author, kind, title, text, audience_label, created_at, send_at, cancelled_at, request_digest"
)

# A delivery claim may hand out: open, due, not leased (or its lease ran out), in the channels asked for.
_CLAIMABLE = f"""status IN {_OPEN}
      AND (lease_until IS NULL OR lease_until <= %(now)s)"""
_DUE = f"""{_CLAIMABLE}
      AND not_before <= %(now)s
      AND (%(channels)s::text[] IS NULL OR channel = ANY (%(channels)s::text[]))
      AND NOT (account = ANY (%(skip)s::text[]))"""

# Held chat deliveries: those that may form bundles. claim takes them a chat at a time (below); the rest never.
_BUNDLED = "held AND channel <> 'email'"

# Lease the deliveries in `due` (id, previous status); a delivery whose last holder left it 'sending' or
# 'unknown' may have gone out, so the next holder reconciles first. Never run from a prepared statement: a generic
# plan, not knowing how many are due, joins them by scanning the whole table (a 187-school closure's 52,603
# deliveries: 30-34 ms a claim, against 2.2-2.4 ms planned for the parameters, as a custom plan is every time).
_TAKE = """
UPDATE deliveries d
SET status = 'sending', attempts = d.attempts + 1, lease_token = replace(gen_random_uuid()::text, '-', ''),
    lease_until = %(until)s, updated_at = %(now)s
FROM due
WHERE d.id = due.id
RETURNING d.id, d.announcement_id, d.channel, d.account, d.target, d.class_name, d.chat_kind, d.recipient_name,
          d.attempts, due.previous IN ('sending', 'unknown'), d.lease_token, d.not_before, d.bundle, d.addendum,
          d.note, due.previous = 'sending'"""

# Due deliveries, oldest first, that no other transaction is claiming right now (SKIP LOCKED), all in one
# statement: claim when no held chat delivery is due.
_CLAIM = f"""
WITH due AS (
    SELECT id, status AS previous
    FROM deliveries
    WHERE {_DUE}
      AND NOT ({_BUNDLED})
    ORDER BY not_before, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
{_TAKE}"""

# When held chat deliveries are due, claim goes step by step (_claim_with_bundles):
# 1. the due held chat deliveries, oldest first, read without locking (deliveries_held_due), a page at a time:
#    the next page starts after the last row seen, without the chats other claimers hold;
_HELD_DUE = f"""
SELECT id, channel, target, not_before, bundle
FROM deliveries
WHERE {_BUNDLED}
  AND {_DUE}
ORDER BY not_before, id
LIMIT %(limit)s"""

_HELD_DUE_AFTER = f"""
SELECT id, channel, target, not_before, bundle
FROM deliveries
WHERE {_BUNDLED}
  AND {_DUE}
  AND (not_before, id) > (%(after)s::timestamptz, %(after_id)s::bigint)
  AND (channel, target) NOT IN (SELECT * FROM unnest(%(busy_channel)s::text[], %(busy_target)s::text[]))
ORDER BY not_before, id
LIMIT %(limit)s"""

# 2. the chats of those this claimer may bundle: those no other claimer holds (it never waits for one);
_LOCK_CHATS = """
SELECT c.channel, c.target
FROM unnest(%s::text[], %s::text[]) AS c (channel, target)
WHERE pg_try_advisory_xact_lock(
          hashtextextended('zvonok.chat:' || current_schema() || ':' || c.channel || ':' || c.target, 0))"""

# 3. the other due deliveries, locked as in _CLAIM;
_LOCK_DUE = f"""
SELECT id, not_before
FROM deliveries
WHERE {_DUE}
  AND NOT ({_BUNDLED})
ORDER BY not_before, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED"""

# 4. in those chats, every claimable held delivery not yet in a bundle that waits for the same opening as a
#    picked one (its would-be mates), and every claimable member of the bundles the picked ones are in;
_LOCK_MATES = f"""
SELECT id, channel, target, not_before
FROM deliveries
WHERE {_BUNDLED}
  AND bundle IS NULL
  AND {_CLAIMABLE}
  AND (channel, target, not_before) IN (
      SELECT * FROM unnest(%(channel)s::text[], %(target)s::text[], %(not_before)s::timestamptz[]))
ORDER BY id
FOR UPDATE SKIP LOCKED"""

_LOCK_BUNDLES = f"""
SELECT id
FROM deliveries
WHERE bundle = ANY (%(bundles)s::bigint[])
  AND {_CLAIMABLE}
ORDER BY id
FOR UPDATE SKIP LOCKED"""

# 5. new bundles get their leader, the smallest id, for good;
_SET_BUNDLE = """
UPDATE deliveries d SET bundle = b.leader
FROM unnest(%s::bigint[], %s::bigint[]) AS b (id, leader)
WHERE d.id = b.id"""

# 6. and everything picked is leased.
_CLAIM_IDS = f"""
WITH due AS (
    SELECT id, status AS previous FROM deliveries WHERE id = ANY (%(ids)s::bigint[])
)
{_TAKE}"""

# All results of a batch at once: only rows whose lease token is still current change (fencing); each gets one
# attempt row; the answer says which results were recorded (by position) and where they belong.
_FINISH = """
WITH result AS (
    SELECT *
    FROM unnest(%(ord)s::integer[], %(id)s::bigint[], %(token)s::text[], %(status)s::text[],
                %(provider_id)s::text[], %(error_code)s::text[], %(error)s::text[], %(retry_at)s::timestamptz[],
                %(started_at)s::timestamptz[], %(outcome)s::text[])
         AS r (ord, id, token, status, provider_id, error_code, error, retry_at, started_at, outcome)
),
recorded AS (
    UPDATE deliveries d
    SET status = r.status,
        provider_id = CASE WHEN r.provider_id = '' THEN d.provider_id ELSE r.provider_id END,
        error_code = r.error_code, last_error = r.error, not_before = COALESCE(r.retry_at, d.not_before),
        lease_token = NULL, lease_until = NULL, updated_at = %(now)s,
        finished_at = CASE WHEN r.status IN ('delivered', 'permanent_failure') THEN %(now)s::timestamptz END
    FROM result r
    WHERE d.id = r.id AND d.lease_token = r.token
    RETURNING r.ord, d.id, d.announcement_id, d.channel, d.account, d.target, d.attempts
),
logged AS (
    INSERT INTO attempts (delivery_id, attempt, started_at, finished_at, outcome, error_code, error)
    SELECT rec.id, rec.attempts, r.started_at, %(now)s, r.outcome, r.error_code, r.error
    FROM recorded rec JOIN result r ON r.ord = rec.ord
    ORDER BY rec.ord
)
SELECT rec.ord, rec.announcement_id, a.school_id, rec.channel, rec.account, rec.target
FROM recorded rec JOIN announcements a ON a.id = rec.announcement_id
ORDER BY rec.ord"""

# Back to waiting (pending, or unknown when it may have gone out), with the attempt claim taken back; only for
# the lease that is still current.
_DEFER = """
UPDATE deliveries d
SET status = r.status, attempts = d.attempts - 1, not_before = COALESCE(r.retry_at, %(now)s),
    lease_token = NULL, lease_until = NULL, updated_at = %(now)s
FROM unnest(%(id)s::bigint[], %(token)s::text[], %(retry_at)s::timestamptz[], %(status)s::text[])
     AS r (id, token, retry_at, status)
WHERE d.id = r.id AND d.lease_token = r.token
RETURNING d.id"""

_BACKLOG = f"""
SELECT channel, account, NULL::timestamptz, count(*) FROM deliveries
WHERE status IN {_OPEN} AND not_before <= %(now)s {{only}} GROUP BY channel, account
UNION ALL
SELECT channel, account, not_before, count(*) FROM deliveries
WHERE status IN {_OPEN} AND not_before > %(now)s AND not_before <= %(until)s {{only}}
GROUP BY channel, account, not_before"""

_NEXT_DUE = f"""
SELECT min(CASE WHEN status = 'sending' THEN lease_until ELSE not_before END)
FROM deliveries WHERE status IN {_OPEN}
  AND (%(channels)s::text[] IS NULL OR channel = ANY (%(channels)s::text[]))
  AND NOT (account = ANY (%(skip)s::text[]))"""

_DELIVERIES = """
SELECT id, channel, target, class_name, chat_kind, recipient_name, note, status, attempts,
       error_code, last_error, provider_id, not_before, finished_at
FROM deliveries WHERE announcement_id = %s ORDER BY id"""

# Text is ordered byte-wise (COLLATE "C"), as SQLite orders it, whatever the database's collation.
_COVERAGE = """
SELECT c.person, c.class_name, c.route, c.note, c.email,
       COALESCE(g.name, ''), COALESCE(g.phone, ''), COALESCE(gc.students, ''),
       COALESCE(g.opted_out, false), c.delivery_id, d.status, COALESCE(d.last_error, '')
FROM coverage c
JOIN announcements a ON a.id = c.announcement_id
LEFT JOIN guardians g ON g.school_id = a.school_id AND g.key = c.person
LEFT JOIN guardian_classes gc ON gc.school_id = a.school_id AND gc.key = c.person AND gc.class_name = c.class_name
LEFT JOIN deliveries d ON d.id = c.delivery_id
WHERE c.announcement_id = %s
ORDER BY c.class_name COLLATE "C", g.name COLLATE "C", c.person COLLATE "C" """

_LETTER = """
SELECT d.id, d.announcement_id, a.school_id, d.target, a.title, k.at,
       EXISTS (SELECT 1 FROM guardians g WHERE g.school_id = a.school_id AND g.email = d.target
               AND g.left_at IS NULL AND g.opted_out)
FROM deliveries d JOIN announcements a ON a.id = d.announcement_id
LEFT JOIN acknowledgements k ON k.delivery_id = d.id
WHERE d.id = %s AND d.channel = 'email' AND a.purged_at IS NULL"""

_ACKNOWLEDGE = """
INSERT INTO acknowledgements (delivery_id, announcement_id, at)
SELECT id, announcement_id, %s FROM deliveries WHERE id = %s AND channel = 'email'
ON CONFLICT (delivery_id) DO NOTHING"""

# What has not gone out: open deliveries no live lease holds (a sender mid-send finishes its own).
_CANCEL_DELIVERIES = """
UPDATE deliveries SET status = 'cancelled', lease_token = NULL, lease_until = NULL,
    updated_at = %(now)s, finished_at = %(now)s
WHERE announcement_id = %(announcement)s
  AND (status IN ('pending', 'temporary_failure', 'unknown') OR (status = 'sending' AND lease_until <= %(now)s))
RETURNING id"""

_MARK_DEAD = """
INSERT INTO chats (channel, address, school_id, status, status_reason, source, updated_at)
VALUES (%s, %s, %s, 'dead', %s, 'dispatch', %s)
ON CONFLICT (channel, address) DO UPDATE SET
    status = 'dead', status_reason = excluded.status_reason, updated_at = excluded.updated_at
RETURNING class_name, kind"""

# ON CONFLICT DO NOTHING meets the partial unique index `alerts_open`: one open alert per problem.
_ALERT = """
INSERT INTO alerts (school_id, created_at, kind, subject, message) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING"""

# The chat→e-mail fallback, in three statements (a statement does not see the rows its own CTEs insert); {who}
# is _BY_DELIVERY or _BY_WAITING_CLASS below:
# 1. one e-mail delivery per mailbox of the people the failed chat delivery was to reach (unless opted out);
_FALLBACK_EMAILS = """
INSERT INTO deliveries (announcement_id, channel, account, target, class_name, recipient_name, note,
                        not_before, created_at, updated_at)
SELECT DISTINCT ON (c.email)
       c.announcement_id, 'email', '', c.email, c.class_name, COALESCE(g.name, ''), %(note)s, %(now)s, %(now)s, %(now)s
FROM coverage c
LEFT JOIN guardians g ON g.school_id = %(school)s AND g.key = c.person
WHERE c.announcement_id = %(announcement)s AND {who}
  AND c.email <> '' AND NOT COALESCE(g.opted_out, false)
ORDER BY c.email, c.class_name COLLATE "C", c.person COLLATE "C"
ON CONFLICT (announcement_id, channel, target) DO NOTHING"""

# 2. those people are now reached by that e-mail (a new one, or the one the plan already had);
_FALLBACK_COVERAGE_EMAIL = """
UPDATE coverage c
SET route = 'email', delivery_id = e.id, note = %(note)s
FROM deliveries e
WHERE c.announcement_id = %(announcement)s AND {who}
  AND e.announcement_id = c.announcement_id AND e.channel = 'email' AND e.target = c.email
  AND NOT EXISTS (SELECT 1 FROM guardians g WHERE g.school_id = %(school)s AND g.key = c.person AND g.opted_out)"""

# 3. whoever is left (no e-mail, or opted out) is unreachable.
_FALLBACK_COVERAGE_NONE = """
UPDATE coverage c SET route = 'none', delivery_id = NULL, note = %(note)s
WHERE c.announcement_id = %(announcement)s AND {who}"""

# Whom a fallback is for: those a failed chat delivery was to reach, or a class waiting for a forward to a
# parents' chat that is gone. (Statement 3 runs last: by then the e-mailed have a new delivery_id / note.)
_BY_DELIVERY = "c.delivery_id = %(delivery)s"
_BY_WAITING_CLASS = "c.class_name = %(class)s AND c.note = %(waiting)s"


# ---------------------------------------------------------------------- personal-data retention

# Announcements whose personal data is due for removal: older than the cut-off, not purged yet, no open work
# (every delivery final, no forwarding task waiting for its class teacher).
_PURGE_DUE = f"""
SELECT a.id, a.school_id FROM announcements a
WHERE a.purged_at IS NULL AND a.created_at < %(cutoff)s
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.announcement_id = a.id AND d.status IN {_OPEN})
  AND NOT EXISTS (SELECT 1 FROM forwarding_tasks t WHERE t.announcement_id = a.id AND t.status = 'open')"""

_PURGE_DUE_AGAIN = _PURGE_DUE + " AND a.id = ANY (%(ids)s::bigint[]) ORDER BY a.id"

_PURGE_COUNT_LETTERS = """
SELECT a.school_id, count(*) FROM deliveries d JOIN announcements a ON a.id = d.announcement_id
WHERE d.announcement_id = ANY (%(ids)s::bigint[]) AND d.channel = 'email' GROUP BY a.school_id"""

_PURGE_COUNT_PEOPLE = """
SELECT a.school_id, count(*) FROM coverage c JOIN announcements a ON a.id = c.announcement_id
WHERE c.announcement_id = ANY (%(ids)s::bigint[]) GROUP BY a.school_id"""

# Only final deliveries, whatever was found: a delivery still to be sent keeps its address.
_PURGE_DELIVERIES = f"""
UPDATE deliveries SET recipient_name = '',
    target = CASE WHEN channel = 'email' THEN %(prefix)s::text || id ELSE target END,
    last_error = CASE WHEN channel = 'email' THEN '' ELSE last_error END
WHERE announcement_id = ANY (%(ids)s::bigint[]) AND status NOT IN {_OPEN}"""

# An SMTP reply may quote the address; a chat's error (the chat is gone, the bot was removed) names no one.
_PURGE_ATTEMPTS = """
UPDATE attempts SET error = ''
WHERE error <> '' AND delivery_id IN (
    SELECT id FROM deliveries WHERE announcement_id = ANY (%(ids)s::bigint[]) AND channel = 'email')"""

# A report line's person is a guardian key (a hash of the address) or a staff id: "удалено-<n>" instead, n
# numbering the announcement's lines in SQLite's (byte-wise) order (the primary key stays unique; no key begins
# with that prefix).
_PURGE_COVERAGE = """
UPDATE coverage c SET person = %(prefix)s::text || s.n, email = ''
FROM (SELECT announcement_id, person, class_name,
             row_number() OVER (PARTITION BY announcement_id ORDER BY class_name COLLATE "C", person COLLATE "C") AS n
      FROM coverage WHERE announcement_id = ANY (%(ids)s::bigint[])) AS s
WHERE c.announcement_id = s.announcement_id AND c.person = s.person AND c.class_name = s.class_name"""

_MARK_PURGED = "UPDATE announcements SET purged_at = %(now)s WHERE id = ANY (%(ids)s::bigint[])"

# Guardians who left the school before the cut-off: deleted with their classes (ON DELETE CASCADE).
_COUNT_LEAVERS = "SELECT school_id FROM guardians WHERE left_at IS NOT NULL AND left_at < %(cutoff)s"
_PURGE_LEAVERS = "DELETE FROM guardians WHERE left_at IS NOT NULL AND left_at < %(cutoff)s RETURNING school_id"


# ---------------------------------------------------------------------- helpers


def _announcement(r: TupleRow) -> AnnouncementRecord:
    return AnnouncementRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10])


def _class_of(school: School, channel: str, address: str) -> str:
    for cls in school.classes.values():
        for chat in cls.chats.values():
            if (chat.channel, chat.address) == (channel, address):
                return cls.name
    return ""


async def _insert_deliveries(
    conn: Connection,
    announcement_id: int,
    deliveries: Sequence[PlannedDelivery],
    now: datetime,
    *,
    addendum: str = "",
    skip_existing: bool = False,
) -> int:
    """Insert deliveries into an announcement (a target it has already: an error, or skipped); how many were added."""
    if not deliveries:
        return 0
    query = _INSERT_DELIVERIES
    if skip_existing:
        query += "\nON CONFLICT (announcement_id, channel, target) DO NOTHING"
    cur = await conn.execute(
        query + "\nRETURNING id",
        {"announcement": announcement_id, "addendum": addendum, "now": now, "deliveries": deliveries_json(deliveries)},
    )
    return len(await cur.fetchall())


async def _claim_with_bundles(conn: Connection, page: list[TupleRow], params: dict[str, Any]) -> list[TupleRow]:
    """claim when held chat deliveries are due (`page`: _HELD_DUE's rows, id, channel, target, not_before, bundle).

    The first `limit` due deliveries are picked, as in _CLAIM; a picked held chat delivery brings its whole
    bundle (SqliteStore.claim's rule). Held deliveries are locked only under their chat's advisory lock, and
    nothing here waits for a lock (try-locks, SKIP LOCKED): no two claimers split a bundle or deadlock each
    other. Like a locked row in _CLAIM, a chat another claimer holds is skipped: its deliveries are that one's.
    """
    limit = params["limit"]
    ours: set[tuple[str, str]] = set()
    busy: set[tuple[str, str]] = set()
    held: list[TupleRow] = []
    while True:
        if new := sorted({(r[1], r[2]) for r in page} - ours - busy):
            cur = await conn.execute(_LOCK_CHATS, ([c for c, _ in new], [t for _, t in new]))
            got = {(r[0], r[1]) for r in await cur.fetchall()}
            ours |= got
            busy |= set(new) - got
        held.extend(r for r in page if (r[1], r[2]) in ours)
        if len(held) >= limit or len(page) < limit:
            break
        cur = await conn.execute(
            _HELD_DUE_AFTER,
            {
                **params,
                "after": page[-1][3],
                "after_id": page[-1][0],
                "busy_channel": [c for c, _ in busy],
                "busy_target": [t for _, t in busy],
            },
        )
        page = await cur.fetchall()
    cur = await conn.execute(_LOCK_DUE, params)
    others = await cur.fetchall()
    first = sorted([(r[1], r[0], False) for r in others] + [(r[3], r[0], True) for r in held])[:limit]
    picked = [delivery_id for _, delivery_id, is_held in first if not is_held]
    chosen = {delivery_id for _, delivery_id, is_held in first if is_held}
    seeds = [r for r in held if r[0] in chosen]
    # Mates are found by the values read in step 1: a delivery changed since (claimed by a claimer that held its
    # chat then, and finished or deferred) no longer matches, and is left for the next round.
    loose = [r for r in seeds if r[4] is None]
    if loose:
        cur = await conn.execute(
            _LOCK_MATES,
            {
                "now": params["now"],
                "channel": [r[1] for r in loose],
                "target": [r[2] for r in loose],
                "not_before": [r[3] for r in loose],
            },
        )
        groups: dict[tuple[str, str, datetime], list[int]] = {}
        for delivery_id, channel, target, not_before in await cur.fetchall():
            groups.setdefault((channel, target, not_before), []).append(delivery_id)
        leaders = [(m, min(group)) for group in groups.values() if len(group) > 1 for m in group]
        if leaders:
            await conn.execute(_SET_BUNDLE, ([m for m, _ in leaders], [leader for _, leader in leaders]))
        picked.extend(m for group in groups.values() for m in group)
    bundles = sorted({r[4] for r in seeds if r[4] is not None})
    if bundles:
        cur = await conn.execute(_LOCK_BUNDLES, {"now": params["now"], "bundles": bundles})
        picked.extend(r[0] for r in await cur.fetchall())
    if not picked:
        return []
    cur = await conn.execute(_CLAIM_IDS, {**params, "ids": picked}, prepare=False)  # never a generic plan: see _TAKE
    return await cur.fetchall()


async def _mark_dead(conn: Connection, school_id: str, channel: str, address: str, reason: str, now: datetime) -> None:
    cur = await conn.execute(_MARK_DEAD, (channel, address, school_id, reason, now))
    row = await cur.fetchone()
    what = f"{row[0]} ({row[1]})" if row and row[0] else address
    await _alert(
        conn,
        school_id,
        "dead_chat",
        f"{channel}:{address}",
        f"чат {channel.upper()} {what} недоступен: {reason}. Родители класса получают письма; "
        "верните бота в чат и назначьте администратором",
        now,
    )


async def _alert(conn: Connection, school_id: str, kind: str, subject: str, message: str, now: datetime) -> None:
    await conn.execute(_ALERT, (school_id, now, kind, subject, message))


async def _fall_back_to_email(
    conn: Connection,
    announcement_id: int,
    school_id: str,
    now: datetime,
    *,
    delivery_id: int | None = None,
    waiting_class: str | None = None,
    note: Note = Note.CHAT_FAILED,
) -> None:
    """Everyone a chat could not reach gets an e-mail instead (one per mailbox), or is unreachable: those a failed
    chat delivery was to reach (`delivery_id`), or a class waiting for a forward to a dead chat (`waiting_class`)."""
    who = _BY_DELIVERY if delivery_id is not None else _BY_WAITING_CLASS
    params = {
        "announcement": announcement_id,
        "school": school_id,
        "delivery": delivery_id,
        "class": waiting_class,
        "waiting": Note.FORWARDING.value,
        "note": note.value,
        "now": now,
    }
    for statement in (_FALLBACK_EMAILS, _FALLBACK_COVERAGE_EMAIL, _FALLBACK_COVERAGE_NONE):
        await conn.execute(statement.format(who=who), params)
