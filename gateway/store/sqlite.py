"""The embedded store: one SQLite file, for one school (or a few) on one machine.

Each store method is one transaction, run as a single function on a thread that owns its connection, so a
transaction costs one hop off the event loop however many statements it has. Writes have one connection and
thread, reads another: WAL lets a post's roster be read while another post's transaction commits, and each read
is one snapshot. WAL journal, `synchronous=FULL` by default (a committed announcement survives a power cut),
foreign keys on. Schema versions live in `migrations/sqlite/NNNN_*.sql` and are applied forward, in order, when
the store opens; `PRAGMA user_version` records the last one applied.

One process sends from a SQLite file: it hears no other process's commits (`wait_for_work` is the base's plain
sleep; the dispatcher's poll finds them), and the providers' rate limits stay in that process
(`shares_rate_limits` is False). Ticks (`claim_tick`) and leases work across processes all the same.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from importlib import resources
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from gateway.domain import EMAIL, AnnouncementRequest, Guardian, School, Status
from gateway.errors import NotFound
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
    ts,
    window_of,
)
from schedules.windows import MessagingWindow

T = TypeVar("T")

_OPEN = "('pending', 'sending', 'temporary_failure', 'unknown')"
TICKS_KEPT = timedelta(days=2)  # a periodic job's tick rows are kept this long (claim_tick purges older ones)


def _only(channels: Sequence[str], skip_accounts: Sequence[str]) -> str:
    """The WHERE terms (with their placeholders: the channels, then the accounts) of `claim` and `next_due`."""
    only = f"AND channel IN ({', '.join('?' * len(channels))})" if channels else ""
    if skip_accounts:
        only += f" AND account NOT IN ({', '.join('?' * len(skip_accounts))})"
    return only


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _opt_ts(text: str | None) -> datetime | None:
    return None if text is None else parse_ts(text)


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every SQLite migration, in order."""
    folder = resources.files("gateway.store") / "migrations" / "sqlite"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class SqliteStore(Store):
    def __init__(self, path: Path | str, *, synchronous: str = "FULL") -> None:
        self.path = str(path)
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zvonok-sqlite")
        self._conn: sqlite3.Connection | None = None
        # Reads have a connection and a thread of their own (WAL lets them run beside the writer): a post's roster
        # is read while another post's transaction commits. An in-memory database is one connection's only.
        self._reads = self._executor
        self._reader: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path | str, *, synchronous: str = "FULL") -> SqliteStore:
        store = cls(path, synchronous=synchronous)
        await store._run(store._connect)
        if store.path != ":memory:":
            store._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zvonok-sqlite-read")
            store._reader = await asyncio.get_running_loop().run_in_executor(store._reads, store._open_reader)
        return store

    # ------------------------------------------------------------------ plumbing

    def _connect(self, _: Any = None) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        self._conn = conn
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for version, sql in migrations():
            if version <= current:
                continue
            try:
                conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;PRAGMA user_version={version};\nCOMMIT;")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _open_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA query_only=ON")  # a write slipped into a read fails here rather than racing the writer
        return conn

    async def _run(self, fn: Callable[[Any], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, None)

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` inside one write transaction on the store's thread."""

        def body(_: Any) -> T:
            conn = self._conn
            assert conn is not None, "store is closed"
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

        return await self._run(body)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the reads' connection, in one read transaction: its statements see one snapshot, every
        transaction committed before it began (so a method's reads see its earlier writes)."""

        def body(_: Any) -> T:
            conn = self._reader or self._conn
            assert conn is not None, "store is closed"
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        return await asyncio.get_running_loop().run_in_executor(self._reads, body, None)

    async def close(self) -> None:
        def shut(_: Any) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        def shut_reader(_: Any) -> None:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._reads, shut_reader, None)
        await self._run(shut)
        self._reads.shutdown(wait=True)
        self._executor.shutdown(wait=True)

    async def installation(self) -> str:
        def read(conn: sqlite3.Connection) -> str:
            return str(conn.execute("SELECT value FROM meta WHERE key = 'installation'").fetchone()[0])

        return await self._read(read)

    # ------------------------------------------------------------------ heartbeats, periodic jobs

    async def extend_leases(self, leases: Sequence[tuple[int, str]], until: datetime) -> set[int]:
        stamp = ts(until)

        def tx(conn: sqlite3.Connection) -> set[int]:
            return {
                int(row[0])
                for delivery_id, token in leases
                for row in conn.execute(
                    """UPDATE deliveries SET lease_until = max(lease_until, ?)
                       WHERE id = ? AND lease_token = ? AND status = 'sending' RETURNING id""",
                    (stamp, delivery_id, token),
                )
            }

        return await self._tx(tx)

    async def claim_tick(self, job: str, period: str, owner: str, now: datetime) -> bool:
        stamp = ts(now)
        purge = ts(now - TICKS_KEPT)

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO ticks (job, period, owner, claimed_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (job, period, owner, stamp),
            )
            if cur.rowcount == 1:
                conn.execute("DELETE FROM ticks WHERE job = ? AND claimed_at < ?", (job, purge))
            return cur.rowcount == 1

        return await self._tx(tx)

    # ------------------------------------------------------------------ schools, chats, roster

    async def sync_chats(self, school: School, now: datetime) -> None:
        rows = [
            (c.channel, c.address, school.id, _class_of(school, c.channel, c.address), c.kind.value, ts(now))
            for c in school.chats()
        ]

        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany(
                """INSERT INTO chats (channel, address, school_id, class_name, kind, source, updated_at)
                   VALUES (?, ?, ?, ?, ?, 'config', ?)
                   ON CONFLICT (channel, address) DO UPDATE SET
                     school_id = excluded.school_id, class_name = excluded.class_name, kind = excluded.kind""",
                rows,
            )

        await self._tx(tx)

    async def chats(self, school_id: str | None = None) -> list[ChatRow]:
        def read(conn: sqlite3.Connection) -> list[ChatRow]:
            sql = f"SELECT {_CHAT_COLUMNS} FROM chats"
            args: tuple[Any, ...] = ()
            if school_id is not None:
                sql += " WHERE school_id = ?"
                args = (school_id,)
            return [_chat_row(r) for r in conn.execute(sql + " ORDER BY school_id, class_name, kind, address", args)]

        return await self._read(read)

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
        stamp = ts(now)

        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT status, school_id FROM chats WHERE channel = ? AND address = ?", (channel, address)
            ).fetchone()
            if row is not None and row[1] != school_id:
                return False  # another school's chat
            before = None if row is None else row[0]
            conn.execute(
                """INSERT INTO chats (channel, address, school_id, title, source, updated_at) VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (channel, address) DO UPDATE SET
                     title = CASE WHEN excluded.title = '' THEN chats.title ELSE excluded.title END""",
                (channel, address, school_id, title, source, stamp),
            )
            if source == "check":
                conn.execute(
                    "UPDATE chats SET checked_at = ? WHERE channel = ? AND address = ?", (stamp, channel, address)
                )
            if alive:
                conn.execute(
                    """UPDATE chats SET status = 'active', status_reason = '', updated_at = ?
                       WHERE channel = ? AND address = ?""",
                    (stamp, channel, address),
                )
                conn.execute(
                    """UPDATE alerts SET resolved_at = ?
                       WHERE kind = 'dead_chat' AND subject = ? AND resolved_at IS NULL""",
                    (stamp, f"{channel}:{address}"),
                )
            else:
                _mark_dead(conn, school_id, channel, address, reason, stamp)
            return before != ("active" if alive else "dead")

        return await self._tx(tx)

    async def map_chat(
        self, school_id: str, channel: str, address: str, class_name: str, kind: str, now: datetime
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                """UPDATE chats SET class_name = ?, kind = ?, updated_at = ?
                   WHERE channel = ? AND address = ? AND school_id = ?""",
                (class_name, kind, ts(now), channel, address, school_id),
            )
            if cur.rowcount == 0:
                raise NotFound(
                    f"чат {channel.upper()} {address} не зарегистрирован в этой школе: бот не добавлен в него"
                )

        await self._tx(tx)

    async def dead_chats(self, school_id: str) -> set[tuple[str, str]]:
        def read(conn: sqlite3.Connection) -> set[tuple[str, str]]:
            cur = conn.execute(
                "SELECT channel, address FROM chats WHERE school_id = ? AND status = 'dead'", (school_id,)
            )
            return {(r[0], r[1]) for r in cur}

        return await self._read(read)

    async def replace_roster(
        self,
        school_id: str,
        guardians: Sequence[Guardian],
        students: dict[tuple[str, str], str],
        now: datetime,
    ) -> RosterChange:
        stamp = ts(now)

        def tx(conn: sqlite3.Connection) -> RosterChange:
            known = {
                r["key"]: (r["name"], r["email"], r["phone"], r["left_at"])
                for r in conn.execute(
                    "SELECT key, name, email, phone, left_at FROM guardians WHERE school_id = ?", (school_id,)
                )
            }
            known_classes: dict[str, set[tuple[str, str, bool]]] = {}
            for r in conn.execute(
                "SELECT key, class_name, students, in_chat FROM guardian_classes WHERE school_id = ?",
                (school_id,),
            ):
                known_classes.setdefault(r["key"], set()).add((r["class_name"], r["students"], bool(r["in_chat"])))
            added = updated = unchanged = 0
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
                conn.execute(
                    """INSERT INTO guardians (school_id, key, name, email, phone, updated_at) VALUES (?, ?, ?, ?, ?, ?)
                       ON CONFLICT (school_id, key) DO UPDATE SET name = excluded.name, email = excluded.email,
                         phone = excluded.phone, left_at = NULL, updated_at = excluded.updated_at""",
                    (school_id, g.key, g.name, g.email, g.phone, stamp),
                )
                conn.execute("DELETE FROM guardian_classes WHERE school_id = ? AND key = ?", (school_id, g.key))
                conn.executemany(
                    """INSERT INTO guardian_classes (school_id, key, class_name, students, in_chat)
                       VALUES (?, ?, ?, ?, ?)""",
                    [(school_id, g.key, c, s, int(in_chat)) for c, s, in_chat in sorted(classes)],
                )
            listed = {g.key for g in guardians}
            gone = [k for k, v in known.items() if k not in listed and v[3] is None]
            conn.executemany(
                "UPDATE guardians SET left_at = ?, updated_at = ? WHERE school_id = ? AND key = ?",
                [(stamp, stamp, school_id, k) for k in gone],
            )
            return RosterChange(added=added, updated=updated, left=len(gone), unchanged=unchanged)

        return await self._tx(tx)

    async def guardians(self, school_id: str) -> list[Guardian]:
        def read(conn: sqlite3.Connection) -> list[Guardian]:
            # A school's thousand guardians are read for every post, each table as one JSON text: one step of
            # SQLite, which lets go of the interpreter lock once, where a row at a time took it back for every row
            # and, while other posts were being planned, waited for it each time. Sorted here by code point, the
            # UTF-8 byte order ORDER BY name used.
            classes: dict[str, dict[str, bool]] = {}
            for key, class_name, in_chat in json.loads(
                conn.execute(
                    f"""SELECT json_group_array(json_array(key, class_name, {_json_bool("in_chat")}))
                       FROM guardian_classes WHERE school_id = ?""",
                    (school_id,),
                ).fetchone()[0]
            ):
                classes.setdefault(key, {})[class_name] = in_chat
            rows = json.loads(
                conn.execute(
                    f"""SELECT json_group_array(json_array(key, name, email, phone, {_json_bool("opted_out")}))
                       FROM guardians WHERE school_id = ? AND left_at IS NULL""",
                    (school_id,),
                ).fetchone()[0]
            )
            rows.sort(key=itemgetter(1))
            return [Guardian(k, name, mail, phone, out, classes.get(k, {})) for k, name, mail, phone, out in rows]

        return await self._read(read)

    # ------------------------------------------------------------------ announcements

    async def create_announcement(
        self, request: AnnouncementRequest, plan: Plan, now: datetime, *, audit: str = ""
    ) -> tuple[int, bool]:
        stamp = ts(now)
        audience = json.dumps(
            {
                "groups": sorted(g.value for g in request.audience.groups),
                "parallels": sorted(request.audience.parallels),
                "classes": sorted(request.audience.classes),
            },
            ensure_ascii=False,
        )
        deliveries = deliveries_json(plan.deliveries)
        coverage = json.dumps(plan.coverage, ensure_ascii=False)  # a row per line, in Coverage's own field order

        def tx(conn: sqlite3.Connection) -> tuple[int, bool]:
            key = request.idempotency_key or None
            if key is not None:
                row = conn.execute(
                    "SELECT id FROM announcements WHERE school_id = ? AND idempotency_key = ?",
                    (request.school_id, key),
                ).fetchone()
                if row is not None:
                    return int(row[0]), False
            cur = conn.execute(
                """INSERT INTO announcements (school_id, author, kind, title, text, audience, audience_label, send_at,
                                             idempotency_key, request_digest, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    request.school_id,
                    request.author,
                    request.kind.value,
                    request.title,
                    request.text,
                    audience,
                    request.audience.describe(),
                    None if request.send_at is None else ts(request.send_at),
                    key,
                    request.digest() if key else None,
                    stamp,
                ),
            )
            announcement_id = int(cur.lastrowid or 0)
            # The deliveries get their ids here, in plan order, after the largest ever given (the write lock is
            # ours), so that coverage finds each line's delivery id from its index in the plan.
            last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'").fetchone()
            first = (last[0] if last else 0) + 1
            _insert_deliveries(conn, announcement_id, deliveries, stamp, first_id=first)
            conn.execute(
                f"""INSERT INTO coverage (announcement_id, person, class_name, route, delivery_id, email, note)
                   SELECT ?, {_items(3)}, ? + json_extract(value, '$[3]'), {_items(2, start=4)} FROM json_each(?)""",
                (announcement_id, first, coverage),
            )
            conn.executemany(
                "INSERT INTO gaps (announcement_id, class_name, chat_kind, note) VALUES (?, ?, ?, ?)",
                [(announcement_id, g.class_name, g.chat_kind.value, g.note.value) for g in plan.gaps],
            )
            conn.executemany(
                """INSERT INTO forwarding_tasks (announcement_id, school_id, class_name, teacher, groups, deadline)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                [
                    (announcement_id, request.school_id, t.class_name, t.teacher, ",".join(t.groups), ts(t.deadline))
                    for t in plan.tasks
                ],
            )
            if audit:
                conn.execute(
                    """INSERT INTO audit (school_id, at, actor, action, announcement_id, details)
                       VALUES (?, ?, ?, 'force_majeure', ?, ?)""",
                    (request.school_id, stamp, request.author, announcement_id, audit),
                )
            return announcement_id, True

        return await self._tx(tx)

    async def announcement(self, announcement_id: int) -> AnnouncementRecord | None:
        def read(conn: sqlite3.Connection) -> AnnouncementRecord | None:
            row = conn.execute(f"SELECT {_ANN_COLUMNS} FROM announcements WHERE id = ?", (announcement_id,)).fetchone()
            return None if row is None else _announcement(row)

        return await self._read(read)

    async def announcement_by_key(self, school_id: str, idempotency_key: str) -> AnnouncementRecord | None:
        def read(conn: sqlite3.Connection) -> AnnouncementRecord | None:
            row = conn.execute(
                f"SELECT {_ANN_COLUMNS} FROM announcements WHERE school_id = ? AND idempotency_key = ?",
                (school_id, idempotency_key),
            ).fetchone()
            return None if row is None else _announcement(row)

        return await self._read(read)

    async def announcements(self, school_id: str | None = None, limit: int = 50) -> list[AnnouncementRecord]:
        def read(conn: sqlite3.Connection) -> list[AnnouncementRecord]:
            if school_id is None:
                cur = conn.execute(f"SELECT {_ANN_COLUMNS} FROM announcements ORDER BY id DESC LIMIT ?", (limit,))
            else:
                cur = conn.execute(
                    f"SELECT {_ANN_COLUMNS} FROM announcements WHERE school_id = ? ORDER BY id DESC LIMIT ?",
                    (school_id, limit),
                )
            return [_announcement(r) for r in cur]

        return await self._read(read)

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
        stamp = ts(now)
        until = ts(now + timedelta(seconds=lease_seconds))
        only = _only(channels, skip_accounts)

        def tx(conn: sqlite3.Connection) -> list[Claimed]:
            claimable = f"status IN {_OPEN} AND (lease_until IS NULL OR lease_until <= ?)"
            rows = conn.execute(
                f"""SELECT {_CLAIM_COLUMNS} FROM deliveries
                    WHERE {claimable} AND not_before <= ? {only}
                    ORDER BY not_before, id LIMIT ?""",
                (stamp, stamp, *channels, *skip_accounts, limit),
            ).fetchall()
            # Held chat deliveries of one chat waiting for the same opening form a bundle, claimed whole.
            picked = {r["id"]: r for r in rows}
            for r in rows:
                if r["bundle"] is None and r["held"] and r["channel"] != EMAIL:
                    mates = conn.execute(
                        f"""SELECT id FROM deliveries WHERE {claimable} AND held = 1 AND bundle IS NULL
                            AND channel = ? AND target = ? AND not_before = ?""",
                        (stamp, r["channel"], r["target"], r["not_before"]),
                    ).fetchall()
                    if len(mates) > 1:
                        leader = min(m[0] for m in mates)
                        conn.executemany(
                            "UPDATE deliveries SET bundle = ? WHERE id = ?", [(leader, m[0]) for m in mates]
                        )
            marks = ", ".join("?" * len(picked))
            leaders = {
                row[0]
                for row in conn.execute(
                    f"SELECT DISTINCT bundle FROM deliveries WHERE bundle IS NOT NULL AND id IN ({marks})",
                    tuple(picked),
                )
            }
            for leader in leaders:
                for mate in conn.execute(
                    f"SELECT {_CLAIM_COLUMNS} FROM deliveries WHERE bundle = ? AND {claimable}", (leader, stamp)
                ):
                    picked.setdefault(mate["id"], mate)
            claimed = []
            for r in sorted(picked.values(), key=lambda r: (r["not_before"], r["id"])):
                token = uuid.uuid4().hex
                bundle = conn.execute(
                    """UPDATE deliveries SET status = 'sending', attempts = attempts + 1, lease_token = ?,
                                             lease_until = ?, updated_at = ? WHERE id = ? RETURNING bundle""",
                    (token, until, stamp, r["id"]),
                ).fetchone()[0]
                claimed.append(
                    Claimed(
                        id=r["id"],
                        announcement_id=r["announcement_id"],
                        channel=r["channel"],
                        account=r["account"],
                        target=r["target"],
                        class_name=r["class_name"],
                        chat_kind=r["chat_kind"],
                        recipient_name=r["recipient_name"],
                        attempt=r["attempts"] + 1,
                        maybe_sent=r["status"] in ("sending", "unknown"),
                        lease_token=token,
                        bundle=bundle,
                        addendum=r["addendum"],
                        note=r["note"],
                        taken_over=r["status"] == "sending",
                    )
                )
            return claimed

        return await self._tx(tx)

    async def finish(self, results: Sequence[Result], now: datetime) -> int:
        stamp = ts(now)

        def tx(conn: sqlite3.Connection) -> int:
            recorded = 0
            for r in results:
                if r.outcome == "deferred":  # due but outside its window: wait again, no attempt counted
                    cur = conn.execute(
                        """UPDATE deliveries SET status = ?, attempts = attempts - 1, not_before = ?,
                             lease_token = NULL, lease_until = NULL, updated_at = ?
                           WHERE id = ? AND lease_token = ?""",
                        (r.status.value, ts(r.retry_at or now), stamp, r.delivery_id, r.lease_token),
                    )
                    recorded += cur.rowcount
                    continue
                final = r.status in (Status.DELIVERED, Status.PERMANENT_FAILURE)
                cur = conn.execute(
                    """UPDATE deliveries SET status = ?, provider_id = CASE WHEN ? = '' THEN provider_id ELSE ? END,
                         error_code = ?, last_error = ?, not_before = COALESCE(?, not_before),
                         lease_token = NULL, lease_until = NULL, updated_at = ?, finished_at = ?
                       WHERE id = ? AND lease_token = ?
                       RETURNING announcement_id, channel, account, target, attempts""",
                    (
                        r.status.value,
                        r.provider_id,
                        r.provider_id,
                        r.error_code,
                        r.error,
                        None if r.retry_at is None else ts(r.retry_at),
                        stamp,
                        stamp if final else None,
                        r.delivery_id,
                        r.lease_token,
                    ),
                )
                row = cur.fetchone()
                if row is None:
                    continue  # the lease ran out and someone else holds the delivery now
                recorded += 1
                announcement_id, channel, account, target, attempt = row
                conn.execute(
                    """INSERT INTO attempts (delivery_id, attempt, started_at, finished_at, outcome, error_code, error)
                       VALUES (?, ?, ?, ?, ?, ?, ?)""",
                    (r.delivery_id, attempt, ts(r.started_at), stamp, r.outcome, r.error_code, r.error),
                )
                if not (r.dead_chat or r.alert or (r.fallback and channel != EMAIL)):
                    continue
                school_id = conn.execute(
                    "SELECT school_id FROM announcements WHERE id = ?", (announcement_id,)
                ).fetchone()[0]
                if r.dead_chat:
                    _mark_dead(conn, school_id, channel, target, r.error, stamp)
                if r.alert:
                    _alert(conn, school_id, "credential", f"{channel}:{account}", r.alert, stamp)
                if r.fallback and channel != EMAIL:
                    _fall_back_to_email(conn, announcement_id, school_id, stamp, delivery_id=r.delivery_id)
            return recorded

        return await self._tx(tx)

    async def audit_log(self, school_id: str, limit: int = 100) -> list[AuditRow]:
        def read(conn: sqlite3.Connection) -> list[AuditRow]:
            cur = conn.execute(
                """SELECT id, school_id, at, actor, action, announcement_id, details FROM audit
                   WHERE school_id = ? ORDER BY at DESC, id DESC LIMIT ?""",
                (school_id, limit),
            )
            return [AuditRow(r[0], r[1], parse_ts(r[2]), r[3], r[4], r[5], r[6]) for r in cur]

        return await self._read(read)

    async def tasks(
        self, *, school_id: str | None = None, announcement_id: int | None = None, teacher: str | None = None
    ) -> list[TaskRow]:
        def read(conn: sqlite3.Connection) -> list[TaskRow]:
            where, args = [], []
            for column, value in (("school_id", school_id), ("announcement_id", announcement_id), ("teacher", teacher)):
                if value is not None:
                    where.append(f"{column} = ?")
                    args.append(value)
            sql = f"SELECT {_TASK_COLUMNS} FROM forwarding_tasks"
            if where:
                sql += " WHERE " + " AND ".join(where)
            return [_task_row(r) for r in conn.execute(sql + " ORDER BY deadline, id", args)]

        return await self._read(read)

    async def forward(
        self, task_id: int, *, actor: str, note: str, status: str, deliveries: Sequence[PlannedDelivery], now: datetime
    ) -> bool:
        stamp = ts(now)
        rows = deliveries_json(deliveries)

        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                """UPDATE forwarding_tasks SET status = ?, note = ?, done_at = ?, done_by = ?
                   WHERE id = ? AND status IN ('open', 'escalated') RETURNING announcement_id, class_name""",
                (status, note, stamp, actor, task_id),
            ).fetchone()
            if row is None:
                return False
            announcement_id, class_name = row
            _insert_deliveries(conn, announcement_id, rows, stamp, addendum=note)
            parents = conn.execute(
                """SELECT id FROM deliveries WHERE announcement_id = ? AND class_name = ? AND chat_kind = 'parents'
                   AND channel != 'email'""",
                (announcement_id, class_name),
            ).fetchone()
            if parents is not None:
                conn.execute(
                    """UPDATE coverage SET delivery_id = ?, note = 'in_chat'
                       WHERE announcement_id = ? AND class_name = ? AND note = 'forwarding'""",
                    (parents[0], announcement_id, class_name),
                )
            else:  # the parents' chat is gone: those waiting for it are e-mailed instead
                school_id = conn.execute("SELECT school_id FROM forwarding_tasks WHERE id = ?", (task_id,)).fetchone()[
                    0
                ]
                _fall_back_to_email(
                    conn, announcement_id, school_id, stamp, waiting_class=class_name, note=Note.CHAT_DEAD
                )
            return True

        return await self._tx(tx)

    async def add_deliveries(
        self, announcement_id: int, deliveries: Sequence[PlannedDelivery], now: datetime, *, addendum: str = ""
    ) -> int:
        rows = deliveries_json(deliveries)

        def tx(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            _insert_deliveries(conn, announcement_id, rows, ts(now), addendum=addendum, skip_existing=True)
            return conn.total_changes - before

        return await self._tx(tx)

    async def escalate(self, task_ids: Sequence[int], now: datetime, alert: str) -> list[int]:
        stamp = ts(now)

        def tx(conn: sqlite3.Connection) -> list[int]:
            done = []
            school = ""
            for task_id in task_ids:
                row = conn.execute(
                    """UPDATE forwarding_tasks SET status = 'escalated', done_at = ?
                       WHERE id = ? AND status = 'open' RETURNING school_id""",
                    (stamp, task_id),
                ).fetchone()
                if row is not None:
                    done.append(task_id)
                    school = school or row[0]  # the alert belongs to the first escalated task's school
            if done and alert:
                _alert(conn, school, "forwarding_late", f"tasks:{done[0]}", alert, stamp)
            return done

        return await self._tx(tx)

    async def bring_forward(self, channel: str, account: str, now: datetime) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute(
                """UPDATE deliveries SET not_before = ?
                   WHERE channel = ? AND account = ? AND status = 'temporary_failure' AND not_before > ?""",
                (ts(now), channel, account, ts(now)),
            ).rowcount

        return await self._tx(tx)

    async def probe(self, channel: str, account: str, when: datetime, *, below: int) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    _PROBE, {"when": ts(when), "channel": channel, "account": account, "below": below}
                ).rowcount
                == 1
            )

        return await self._tx(tx)

    async def backlog(
        self, now: datetime, until: datetime, accounts: Sequence[tuple[str, str]] | None = None
    ) -> dict[tuple[str, str], list[tuple[datetime, int]]]:
        def read(conn: sqlite3.Connection) -> dict[tuple[str, str], list[tuple[datetime, int]]]:
            # both halves walk the index of open deliveries by (channel, account, not_before) in its order
            query = f"""
                SELECT channel, account, NULL, COUNT(*) FROM deliveries
                WHERE status IN {_OPEN} AND not_before <= ? {{only}} GROUP BY channel, account
                UNION ALL
                SELECT channel, account, not_before, COUNT(*) FROM deliveries
                WHERE status IN {_OPEN} AND not_before > ? AND not_before <= ? {{only}}
                GROUP BY channel, account, not_before"""
            stamps = (ts(now), ts(now), ts(until))
            if accounts is None:
                rows = conn.execute(query.format(only=""), stamps).fetchall()
            else:
                only = query.format(only="AND channel = ? AND account = ?")
                rows = [
                    r for a in dict.fromkeys(accounts) for r in conn.execute(only, (*stamps[:1], *a, *stamps[1:], *a))
                ]
            queues: dict[tuple[str, str], list[tuple[datetime, int]]] = {}
            for r in rows:
                queues.setdefault((r[0], r[1]), []).append((now if r[2] is None else parse_ts(r[2]), int(r[3])))
            return {key: sorted(parts) for key, parts in queues.items()}

        return await self._read(read)

    async def next_due(self, *, channels: Sequence[str] = (), skip_accounts: Sequence[str] = ()) -> datetime | None:
        only = _only(channels, skip_accounts)

        def read(conn: sqlite3.Connection) -> datetime | None:
            row = conn.execute(
                f"""SELECT MIN(CASE WHEN status = 'sending' THEN lease_until ELSE not_before END)
                    FROM deliveries WHERE status IN {_OPEN} {only}""",
                (*channels, *skip_accounts),
            ).fetchone()
            return _opt_ts(row[0])

        return await self._read(read)

    # ------------------------------------------------------------------ reading

    async def progress(self, announcement_id: int | None = None) -> dict[Status, int]:
        def read(conn: sqlite3.Connection) -> dict[Status, int]:
            if announcement_id is None:
                cur = conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
            else:
                cur = conn.execute(
                    "SELECT status, COUNT(*) FROM deliveries WHERE announcement_id = ? GROUP BY status",
                    (announcement_id,),
                )
            return {Status(r[0]): int(r[1]) for r in cur}

        return await self._read(read)

    async def deliveries(self, announcement_id: int) -> list[DeliveryRow]:
        def read(conn: sqlite3.Connection) -> list[DeliveryRow]:
            cur = conn.execute(
                """SELECT id, channel, target, class_name, chat_kind, recipient_name, note, status, attempts,
                          error_code, last_error, provider_id, not_before, finished_at
                   FROM deliveries WHERE announcement_id = ? ORDER BY id""",
                (announcement_id,),
            )
            return [_delivery_row(r) for r in cur]

        return await self._read(read)

    async def coverage(self, announcement_id: int) -> list[CoverageRow]:
        def read(conn: sqlite3.Connection) -> list[CoverageRow]:
            cur = conn.execute(
                """SELECT c.person, c.class_name, c.route, c.note, c.email,
                          COALESCE(g.name, ''), COALESCE(g.phone, ''), COALESCE(gc.students, ''),
                          COALESCE(g.opted_out, 0), c.delivery_id, d.status, COALESCE(d.last_error, '')
                   FROM coverage c
                   JOIN announcements a ON a.id = c.announcement_id
                   LEFT JOIN guardians g ON g.school_id = a.school_id AND g.key = c.person
                   LEFT JOIN guardian_classes gc
                          ON gc.school_id = a.school_id AND gc.key = c.person AND gc.class_name = c.class_name
                   LEFT JOIN deliveries d ON d.id = c.delivery_id
                   WHERE c.announcement_id = ?
                   ORDER BY c.class_name, g.name, c.person""",
                (announcement_id,),
            )
            return [_coverage_row(r) for r in cur]

        return await self._read(read)

    async def gaps(self, announcement_id: int) -> list[GapRow]:
        def read(conn: sqlite3.Connection) -> list[GapRow]:
            cur = conn.execute(
                "SELECT class_name, chat_kind, note FROM gaps WHERE announcement_id = ? ORDER BY class_name, chat_kind",
                (announcement_id,),
            )
            return [GapRow(r[0], r[1], r[2]) for r in cur]

        return await self._read(read)

    async def attempts(self, delivery_id: int) -> list[AttemptRow]:
        def read(conn: sqlite3.Connection) -> list[AttemptRow]:
            cur = conn.execute(
                """SELECT delivery_id, attempt, started_at, finished_at, outcome, error_code, error
                   FROM attempts WHERE delivery_id = ? ORDER BY id""",
                (delivery_id,),
            )
            return [AttemptRow(r[0], r[1], parse_ts(r[2]), parse_ts(r[3]), r[4], r[5], r[6]) for r in cur]

        return await self._read(read)

    async def alerts(self, school_id: str | None = None) -> list[Alert]:
        def read(conn: sqlite3.Connection) -> list[Alert]:
            sql = "SELECT id, school_id, created_at, kind, subject, message FROM alerts WHERE resolved_at IS NULL"
            args: tuple[Any, ...] = ()
            if school_id is not None:
                sql += " AND school_id = ?"
                args = (school_id,)
            cur = conn.execute(sql + " ORDER BY id", args)
            return [Alert(r[0], r[1], parse_ts(r[2]), r[3], r[4], r[5]) for r in cur]

        return await self._read(read)

    async def raise_alert(self, school_id: str, kind: str, subject: str, message: str, now: datetime) -> None:
        await self._tx(lambda conn: _alert(conn, school_id, kind, subject, message, ts(now)))

    async def resolve_alerts(self, kind: str, subject: str, now: datetime) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE alerts SET resolved_at = ? WHERE kind = ? AND subject = ? AND resolved_at IS NULL",
                (ts(now), kind, subject),
            )
            return cur.rowcount

        return await self._tx(tx)

    # ------------------------------------------------------------------ staff accounts, sessions, API tokens

    async def set_password(self, school_id: str, staff_id: str, password_hash: str, now: datetime) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                """INSERT INTO staff_accounts (school_id, staff_id, password_hash, updated_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT (school_id, staff_id) DO UPDATE SET
                     password_hash = excluded.password_hash, updated_at = excluded.updated_at""",
                (school_id, staff_id, password_hash, ts(now)),
            )
            conn.execute("DELETE FROM sessions WHERE school_id = ? AND staff_id = ?", (school_id, staff_id))

        await self._tx(tx)

    async def password_hash(self, school_id: str, staff_id: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT password_hash FROM staff_accounts WHERE school_id = ? AND staff_id = ?", (school_id, staff_id)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._read(read)

    async def create_session(
        self, id_hash: str, school_id: str, staff_id: str, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (ts(now),))
            conn.execute(
                """INSERT INTO sessions (id_hash, school_id, staff_id, csrf_token, created_at, expires_at)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (id_hash, school_id, staff_id, csrf_token, ts(now), ts(expires_at)),
            )

        await self._tx(tx)

    async def admit_login(
        self, keys: Sequence[str], hold: Callable[[str, int], timedelta], now: datetime, forget: datetime
    ) -> datetime | None:
        def tx(conn: sqlite3.Connection) -> datetime | None:
            conn.execute("DELETE FROM login_attempts WHERE last_at < ?", (ts(forget),))
            marks = ",".join("?" * len(keys))
            found = {
                r[0]: (r[1], parse_ts(r[2]))
                for r in conn.execute(
                    f"SELECT key, failures, held_until FROM login_attempts WHERE key IN ({marks})", tuple(keys)
                )
            }
            held = [until for _, until in found.values() if until > now]
            if held:
                return max(held)
            conn.executemany(
                """INSERT INTO login_attempts (key, failures, held_until, last_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT (key) DO UPDATE SET
                       failures = excluded.failures, held_until = excluded.held_until, last_at = excluded.last_at""",
                [
                    (key, count, ts(now + hold(key, count)), ts(now))
                    for key in keys
                    for count in [found.get(key, (0, now))[0] + 1]
                ],
            )
            return None

        return await self._tx(tx)

    async def login_succeeded(self, forget: Sequence[str], undo: Sequence[str], now: datetime) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM login_attempts WHERE key = ?", [(k,) for k in forget])
            conn.executemany(
                "UPDATE login_attempts SET failures = max(failures - 1, 0) WHERE key = ?", [(k,) for k in undo]
            )

        await self._tx(tx)

    async def session(self, id_hash: str, now: datetime) -> SessionRow | None:
        def read(conn: sqlite3.Connection) -> SessionRow | None:
            row = conn.execute(
                """SELECT school_id, staff_id, csrf_token, created_at, expires_at FROM sessions
                   WHERE id_hash = ? AND expires_at > ?""",
                (id_hash, ts(now)),
            ).fetchone()
            return None if row is None else SessionRow(row[0], row[1], row[2], parse_ts(row[3]), parse_ts(row[4]))

        return await self._read(read)

    async def delete_session(self, id_hash: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))

        await self._tx(tx)

    async def create_api_token(self, token_hash: str, school_id: str, staff_id: str, label: str, now: datetime) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                """INSERT INTO api_tokens (token_hash, school_id, staff_id, label, created_at)
                   VALUES (?, ?, ?, ?, ?)""",
                (token_hash, school_id, staff_id, label, ts(now)),
            )
            return int(cur.lastrowid or 0)

        return await self._tx(tx)

    async def api_token(self, token_hash: str) -> TokenRow | None:
        def read(conn: sqlite3.Connection) -> TokenRow | None:
            row = conn.execute(
                """SELECT id, school_id, staff_id, label, created_at FROM api_tokens
                   WHERE token_hash = ? AND revoked_at IS NULL""",
                (token_hash,),
            ).fetchone()
            return None if row is None else TokenRow(row[0], row[1], row[2], row[3], parse_ts(row[4]))

        return await self._read(read)

    async def revoke_api_token(self, token_id: int, now: datetime) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (ts(now), token_id)
            )
            return cur.rowcount > 0

        return await self._tx(tx)

    async def api_tokens(self, school_id: str) -> list[TokenRow]:
        def read(conn: sqlite3.Connection) -> list[TokenRow]:
            cur = conn.execute(
                """SELECT id, school_id, staff_id, label, created_at, revoked_at FROM api_tokens
                   WHERE school_id = ? ORDER BY id""",
                (school_id,),
            )
            return [TokenRow(r[0], r[1], r[2], r[3], parse_ts(r[4]), _opt_ts(r[5])) for r in cur]

        return await self._read(read)

    # ------------------------------------------------------------------ class windows set at run time

    async def class_windows(self, school_id: str | None = None) -> list[ClassWindowRow]:
        def read(conn: sqlite3.Connection) -> list[ClassWindowRow]:
            sql = "SELECT school_id, class_name, opens, closes, set_by, set_at FROM class_windows"
            args: tuple[str, ...] = ()
            if school_id is not None:
                sql += " WHERE school_id = ?"
                args = (school_id,)
            cur = conn.execute(sql + " ORDER BY school_id, class_name", args)
            return [ClassWindowRow(r[0], r[1], window_of(r[2], r[3]), r[4], parse_ts(r[5])) for r in cur]

        return await self._read(read)

    async def set_class_window(
        self, school_id: str, class_name: str, window: MessagingWindow, actor: str, now: datetime, *, audit: str
    ) -> None:
        opens, closes = hhmm(window.start), hhmm(window.end)

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                """INSERT INTO class_windows (school_id, class_name, opens, closes, set_by, set_at)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (school_id, class_name) DO UPDATE SET
                     opens = excluded.opens, closes = excluded.closes, set_by = excluded.set_by,
                     set_at = excluded.set_at""",
                (school_id, class_name, opens, closes, actor, ts(now)),
            )
            conn.execute(
                """INSERT INTO audit (school_id, at, actor, action, announcement_id, details)
                   VALUES (?, ?, ?, 'class_window', NULL, ?)""",
                (school_id, ts(now), actor, audit),
            )

        await self._tx(tx)

    async def reset_class_window(
        self, school_id: str, class_name: str, actor: str, now: datetime, *, audit: str
    ) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM class_windows WHERE school_id = ? AND class_name = ?", (school_id, class_name)
            )
            if cur.rowcount == 0:
                return False
            conn.execute(
                """INSERT INTO audit (school_id, at, actor, action, announcement_id, details)
                   VALUES (?, ?, ?, 'class_window', NULL, ?)""",
                (school_id, ts(now), actor, audit),
            )
            return True

        return await self._tx(tx)

    # ------------------------------------------------------------------ parents' links, cancelling

    async def letter(self, delivery_id: int) -> LetterRow | None:
        def read(conn: sqlite3.Connection) -> LetterRow | None:
            row = conn.execute(
                """SELECT d.id, d.announcement_id, a.school_id, d.target, a.title, k.at,
                          EXISTS (SELECT 1 FROM guardians g WHERE g.school_id = a.school_id AND g.email = d.target
                                  AND g.left_at IS NULL AND g.opted_out = 1)
                   FROM deliveries d JOIN announcements a ON a.id = d.announcement_id
                   LEFT JOIN acknowledgements k ON k.delivery_id = d.id
                   WHERE d.id = ? AND d.channel = 'email' AND a.purged_at IS NULL""",
                (delivery_id,),
            ).fetchone()
            if row is None:
                return None
            return LetterRow(row[0], row[1], row[2], row[3], row[4], _opt_ts(row[5]), bool(row[6]))

        return await self._read(read)

    async def acknowledge(self, delivery_id: int, now: datetime) -> datetime | None:
        def tx(conn: sqlite3.Connection) -> datetime | None:
            conn.execute(
                """INSERT INTO acknowledgements (delivery_id, announcement_id, at)
                   SELECT id, announcement_id, ? FROM deliveries WHERE id = ? AND channel = 'email'
                   ON CONFLICT (delivery_id) DO NOTHING""",
                (ts(now), delivery_id),
            )
            row = conn.execute("SELECT at FROM acknowledgements WHERE delivery_id = ?", (delivery_id,)).fetchone()
            return None if row is None else parse_ts(row[0])

        return await self._tx(tx)

    async def acknowledgements(self, announcement_id: int) -> dict[int, datetime]:
        def read(conn: sqlite3.Connection) -> dict[int, datetime]:
            cur = conn.execute(
                "SELECT delivery_id, at FROM acknowledgements WHERE announcement_id = ?", (announcement_id,)
            )
            return {int(r[0]): parse_ts(r[1]) for r in cur}

        return await self._read(read)

    async def opt_out(self, school_id: str, email: str, now: datetime) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                """UPDATE guardians SET opted_out = 1, opted_out_at = ?, updated_at = ?
                   WHERE school_id = ? AND email = ? AND email != '' AND opted_out = 0 AND left_at IS NULL""",
                (ts(now), ts(now), school_id, email),
            )
            return cur.rowcount

        return await self._tx(tx)

    async def cancel_announcement(self, announcement_id: int, actor: str, now: datetime) -> int:
        stamp = ts(now)

        def tx(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT school_id, cancelled_at FROM announcements WHERE id = ?", (announcement_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"объявление № {announcement_id} не найдено")
            cur = conn.execute(
                """UPDATE deliveries SET status = 'cancelled', lease_token = NULL, lease_until = NULL,
                     updated_at = ?, finished_at = ?
                   WHERE announcement_id = ? AND (status IN ('pending', 'temporary_failure', 'unknown')
                         OR (status = 'sending' AND lease_until <= ?))""",
                (stamp, stamp, announcement_id, stamp),
            )
            cancelled = cur.rowcount
            conn.execute(
                """UPDATE forwarding_tasks SET status = 'cancelled', done_at = ?, done_by = ?
                   WHERE announcement_id = ? AND status IN ('open', 'escalated')""",
                (stamp, actor, announcement_id),
            )
            if row[1] is None:
                conn.execute(
                    "UPDATE announcements SET cancelled_at = ?, cancelled_by = ? WHERE id = ?",
                    (stamp, actor, announcement_id),
                )
                conn.execute(
                    """INSERT INTO audit (school_id, at, actor, action, announcement_id, details)
                       VALUES (?, ?, ?, 'cancel', ?, ?)""",
                    (row[0], stamp, actor, announcement_id, f"отмена рассылки: не отправлено {cancelled}"),
                )
            return cancelled

        return await self._tx(tx)

    async def add_audit(
        self, school_id: str, actor: str, action: str, details: str, now: datetime, announcement_id: int | None = None
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                """INSERT INTO audit (school_id, at, actor, action, announcement_id, details)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (school_id, ts(now), actor, action, announcement_id, details),
            )

        await self._tx(tx)

    # ------------------------------------------------------------------ personal-data retention

    async def purge_personal_data(self, cutoff: datetime, now: datetime, *, dry_run: bool = False) -> list[Purged]:
        before, stamp = ts(cutoff), ts(now)

        def tx(conn: sqlite3.Connection) -> list[Purged]:
            # BEGIN IMMEDIATE: no other writer until the commit, so the announcements found stay as found.
            due = conn.execute(_PURGE_DUE, (before,)).fetchall()
            ids = json.dumps([r[0] for r in due])
            counts: dict[str, list[int]] = {}
            for _, school_id in due:
                counts.setdefault(school_id, [0, 0, 0, 0])[0] += 1
            for school_id, n in conn.execute(_PURGE_COUNT_LETTERS, (ids,)):
                counts[school_id][1] = n
            for school_id, n in conn.execute(_PURGE_COUNT_PEOPLE, (ids,)):
                counts[school_id][2] = n
            if dry_run:
                leavers = conn.execute(
                    "SELECT school_id FROM guardians WHERE left_at IS NOT NULL AND left_at < ?", (before,)
                ).fetchall()
            else:
                conn.execute(_PURGE_DELIVERIES, (PURGED_PREFIX, ids))
                conn.execute(_PURGE_ATTEMPTS, (ids,))
                conn.execute(_PURGE_COVERAGE, (PURGED_PREFIX, ids))
                conn.execute(
                    "UPDATE announcements SET purged_at = ? WHERE id IN (SELECT value FROM json_each(?))", (stamp, ids)
                )
                leavers = conn.execute(
                    "DELETE FROM guardians WHERE left_at IS NOT NULL AND left_at < ? RETURNING school_id", (before,)
                ).fetchall()
            for (school_id,) in leavers:
                counts.setdefault(school_id, [0, 0, 0, 0])[3] += 1
            purged = [Purged(school_id, *counts[school_id]) for school_id in sorted(counts)]
            if not dry_run:
                conn.executemany(
                    """INSERT INTO audit (school_id, at, actor, action, announcement_id, details)
                       VALUES (?, ?, ?, 'retention', NULL, ?)""",
                    [(p.school_id, stamp, RETENTION_ACTOR, p.audit(cutoff)) for p in purged],
                )
            return purged

        return await self._tx(tx)


# Announcements whose personal data is due for removal: older than the cut-off, not purged yet, no open work
# (every delivery final, no forwarding task waiting for its class teacher).
_PURGE_DUE = f"""
SELECT a.id, a.school_id FROM announcements a
WHERE a.purged_at IS NULL AND a.created_at < ?
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.announcement_id = a.id AND d.status IN {_OPEN})
  AND NOT EXISTS (SELECT 1 FROM forwarding_tasks t WHERE t.announcement_id = a.id AND t.status = 'open')
ORDER BY a.id"""

# The announcement ids are one JSON array parameter (json_each), however many there are.
_PURGE_COUNT_LETTERS = """
SELECT a.school_id, COUNT(*) FROM deliveries d JOIN announcements a ON a.id = d.announcement_id
WHERE d.announcement_id IN (SELECT value FROM json_each(?)) AND d.channel = 'email' GROUP BY a.school_id"""

_PURGE_COUNT_PEOPLE = """
SELECT a.school_id, COUNT(*) FROM coverage c JOIN announcements a ON a.id = c.announcement_id
WHERE c.announcement_id IN (SELECT value FROM json_each(?)) GROUP BY a.school_id"""

# Only final deliveries, whatever the caller found: a delivery still to be sent keeps its address.
_PURGE_DELIVERIES = f"""
UPDATE deliveries SET recipient_name = '',
    target = CASE WHEN channel = 'email' THEN ?1 || id ELSE target END,
    last_error = CASE WHEN channel = 'email' THEN '' ELSE last_error END
WHERE announcement_id IN (SELECT value FROM json_each(?2)) AND status NOT IN {_OPEN}"""

# An SMTP reply may quote the address; a chat's error (the chat is gone, the bot was removed) names no one.
_PURGE_ATTEMPTS = """
UPDATE attempts SET error = ''
WHERE error <> '' AND delivery_id IN (
    SELECT id FROM deliveries WHERE announcement_id IN (SELECT value FROM json_each(?)) AND channel = 'email')"""

# A report line's person is a guardian key (a hash of the address) or a staff id: "удалено-<n>" instead, n
# numbering the announcement's lines (the primary key stays unique; no key begins with that prefix).
_PURGE_COVERAGE = """
UPDATE coverage SET person = ?1 || s.n, email = ''
FROM (SELECT announcement_id AS a, person AS p, class_name AS k,
             row_number() OVER (PARTITION BY announcement_id ORDER BY class_name, person) AS n
      FROM coverage WHERE announcement_id IN (SELECT value FROM json_each(?2))) AS s
WHERE coverage.announcement_id = s.a AND coverage.person = s.p AND coverage.class_name = s.k"""


_CLAIM_COLUMNS = """id, announcement_id, channel, account, target, class_name, chat_kind, recipient_name, attempts,
    status, held, bundle, not_before, addendum, note"""
_TASK_COLUMNS = "id, announcement_id, school_id, class_name, teacher, groups, deadline, status, note, done_at, done_by"


def _task_row(r: sqlite3.Row) -> TaskRow:
    return TaskRow(
        id=r[0],
        announcement_id=r[1],
        school_id=r[2],
        class_name=r[3],
        teacher=r[4],
        groups=tuple(g for g in r[5].split(",") if g),
        deadline=parse_ts(r[6]),
        status=r[7],
        note=r[8],
        done_at=_opt_ts(r[9]),
        done_by=r[10],
    )


def _items(count: int, start: int = 0) -> str:
    """`count` items of a JSON array row of json_each from `start` on, as columns (json_extract: SQLite 3.9 and
    later)."""
    return ", ".join(f"json_extract(value, '$[{i}]')" for i in range(start, start + count))


def _json_bool(column: str) -> str:
    """An integer column as a JSON true or false inside json_array (one JSON text read back as Python bools)."""
    return f"CASE WHEN {column} THEN json('true') ELSE json('false') END"


def _insert_deliveries(
    conn: sqlite3.Connection,
    announcement_id: int,
    rows: str,
    stamp: str,
    addendum: str = "",
    *,
    first_id: int | None = None,
    skip_existing: bool = False,
) -> None:
    """Insert the deliveries of `rows` (`deliveries_json`) in one statement: with ids from `first_id` on, in
    order, if given (else SQLite's next ones), and skipping those the announcement has already if asked."""
    conflict = "ON CONFLICT (announcement_id, channel, target) DO NOTHING" if skip_existing else ""
    conn.execute(
        f"""INSERT INTO deliveries (id, announcement_id, channel, account, target, class_name, chat_kind,
                                    recipient_name, note, not_before, held, addendum, created_at, updated_at)
            SELECT ?5 + key, ?1, {_items(9)}, ?2, ?3, ?3
            FROM json_each(?4) WHERE true {conflict}""",
        (announcement_id, addendum, stamp, rows, first_id),
    )


_CHAT_COLUMNS = (
    "channel, address, school_id, class_name, kind, title, status, status_reason, source, updated_at, checked_at"
)


def _chat_row(r: sqlite3.Row) -> ChatRow:
    return ChatRow(
        channel=r[0],
        address=r[1],
        school_id=r[2],
        class_name=r[3],
        kind=r[4],
        title=r[5],
        status=r[6],
        status_reason=r[7],
        source=r[8],
        updated_at=parse_ts(r[9]),
        checked_at=_opt_ts(r[10]),
    )


_WAITING = "channel = :channel AND account = :account AND status = 'temporary_failure'"
_PROBE = f"""
UPDATE deliveries SET not_before = :when WHERE id = (
    SELECT id FROM deliveries WHERE {_WAITING} AND not_before > :when AND attempts < :below
    ORDER BY attempts, not_before LIMIT 1)
AND NOT EXISTS (SELECT 1 FROM deliveries WHERE {_WAITING} AND not_before <= :when)"""

_ANN_COLUMNS = (
    "id, school_id, author, kind, title, text, audience_label, created_at, send_at, cancelled_at, request_digest"
)


def _announcement(r: sqlite3.Row) -> AnnouncementRecord:
    return AnnouncementRecord(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], parse_ts(r[7]), _opt_ts(r[8]), _opt_ts(r[9]), r[10]
    )


def _delivery_row(r: sqlite3.Row) -> DeliveryRow:
    return DeliveryRow(
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
        not_before=parse_ts(r[12]),
        finished_at=_opt_ts(r[13]),
    )


def _coverage_row(r: sqlite3.Row) -> CoverageRow:
    return CoverageRow(
        person=r[0],
        class_name=r[1],
        route=r[2],
        note=r[3],
        email=r[4],
        name=r[5],
        phone=r[6],
        students=r[7],
        opted_out=bool(r[8]),
        delivery_id=r[9],
        delivery_status=None if r[10] is None else Status(r[10]),
        delivery_error=r[11],
    )


def _class_of(school: School, channel: str, address: str) -> str:
    for cls in school.classes.values():
        for chat in cls.chats.values():
            if (chat.channel, chat.address) == (channel, address):
                return cls.name
    return ""


def _mark_dead(conn: sqlite3.Connection, school_id: str, channel: str, address: str, reason: str, stamp: str) -> None:
    conn.execute(
        """INSERT INTO chats (channel, address, school_id, status, status_reason, source, updated_at)
           VALUES (?, ?, ?, 'dead', ?, 'dispatch', ?)
           ON CONFLICT (channel, address) DO UPDATE SET status = 'dead', status_reason = excluded.status_reason,
             updated_at = excluded.updated_at""",
        (channel, address, school_id, reason, stamp),
    )
    row = conn.execute(
        "SELECT class_name, kind FROM chats WHERE channel = ? AND address = ?", (channel, address)
    ).fetchone()
    what = f"{row[0]} ({row[1]})" if row and row[0] else address
    _alert(
        conn,
        school_id,
        "dead_chat",
        f"{channel}:{address}",
        f"чат {channel.upper()} {what} недоступен: {reason}. Родители класса получают письма; "
        "верните бота в чат и назначьте администратором",
        stamp,
    )


def _alert(conn: sqlite3.Connection, school_id: str, kind: str, subject: str, message: str, stamp: str) -> None:
    conn.execute(
        """INSERT INTO alerts (school_id, created_at, kind, subject, message) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT DO NOTHING""",
        (school_id, stamp, kind, subject, message),
    )


def _fall_back_to_email(
    conn: sqlite3.Connection,
    announcement_id: int,
    school_id: str,
    stamp: str,
    *,
    delivery_id: int | None = None,
    waiting_class: str | None = None,
    note: Note = Note.CHAT_FAILED,
) -> None:
    """Everyone a chat could not reach gets an e-mail instead (one per mailbox), or is unreachable.

    The people are those a failed chat delivery was to reach (`delivery_id`), or those of a class waiting for a
    forward to a parents' chat that is gone (`waiting_class`).
    """
    args: tuple[int | str, ...]
    if delivery_id is not None:
        who, args = "c.delivery_id = ?", (delivery_id,)
    else:
        who, args = "c.class_name = ? AND c.note = 'forwarding'", (waiting_class or "",)
    people = conn.execute(
        f"""SELECT c.person, c.class_name, c.email, COALESCE(g.opted_out, 0), COALESCE(g.name, '')
            FROM coverage c LEFT JOIN guardians g ON g.school_id = ? AND g.key = c.person
            WHERE c.announcement_id = ? AND {who}""",
        (school_id, announcement_id, *args),
    ).fetchall()
    for person, class_name, email, opted_out, name in people:
        if not email or opted_out:
            conn.execute(
                """UPDATE coverage SET route = 'none', delivery_id = NULL, note = ?
                   WHERE announcement_id = ? AND person = ? AND class_name = ?""",
                (note.value, announcement_id, person, class_name),
            )
            continue
        conn.execute(
            """INSERT INTO deliveries (announcement_id, channel, account, target, class_name, recipient_name, note,
                                       not_before, created_at, updated_at)
               VALUES (?, 'email', '', ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (announcement_id, channel, target) DO NOTHING""",
            (announcement_id, email, class_name, name, note.value, stamp, stamp, stamp),
        )
        email_id = conn.execute(
            "SELECT id FROM deliveries WHERE announcement_id = ? AND channel = 'email' AND target = ?",
            (announcement_id, email),
        ).fetchone()[0]
        conn.execute(
            """UPDATE coverage SET route = 'email', delivery_id = ?, note = ?
               WHERE announcement_id = ? AND person = ? AND class_name = ?""",
            (email_id, note.value, announcement_id, person, class_name),
        )
