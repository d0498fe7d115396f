"""Benchmark: committing one big plan (`Store.create_announcement`) on SQLite and on PostgreSQL.

The plan is synthetic, built here directly (not by the planner): a city-wide announcement to 2,000 classes,
100 guardian lines each, so 200,000 coverage rows; per class a parents' and a students' MAX chat (4,000 chat
deliveries), 74 guardians in the parents' chat, 25 reached by e-mail (one mailbox each: 50,000 e-mail
deliveries) and 1 with no channel. 54,000 deliveries in all.

Each run opens a fresh store (a new SQLite file with the default synchronous=FULL; a new PostgreSQL schema)
and times only `create_announcement`, which commits the announcement, deliveries, coverage and gaps in one
transaction. Medians of 3 runs go to bench/results/store_plan.json.

Usage: `python bench/store_plan.py [--runs 3] [--postgres URL]` (default URL: $ZVONOK_BENCH_POSTGRES, else
postgresql://postgres@127.0.0.1:5432/test; the schema it makes is dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from gateway.domain import AnnouncementRequest, Audience, ChatKind, Group, Kind, Status
from gateway.planner import Coverage, Gap, Note, Plan, PlannedDelivery, Route
from gateway.store.base import Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

RESULTS = Path(__file__).resolve().parent / "results" / "store_plan.json"
CLASSES = 2_000
IN_CHAT, BY_EMAIL, UNREACHABLE = 74, 25, 1  # guardian lines per class: 100
NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)

REQUEST = AnnouncementRequest(
    school_id="city",
    author="dep",
    kind=Kind.FORCE_MAJEURE,
    title="Актированный день",
    text="Завтра в связи с морозом занятия в 1–9 классах отменяются.",
    audience=Audience(frozenset({Group.PARENTS, Group.STUDENTS})),
)


def build_plan() -> Plan:
    p = Plan()
    for k in range(CLASSES):
        class_name = f"{5 + k % 7}-{k}"
        parents = len(p.deliveries)
        p.deliveries.append(
            PlannedDelivery("max", "city", f"-{100_000 + 2 * k}", class_name, ChatKind.PARENTS, Note.IN_CHAT, NOW)
        )
        p.deliveries.append(
            PlannedDelivery("max", "city", f"-{100_001 + 2 * k}", class_name, ChatKind.STUDENTS, Note.IN_CHAT, NOW)
        )
        for g in range(IN_CHAT):
            p.coverage.append(
                Coverage(f"g{k}-{g}", class_name, Route.CHAT, parents, f"g{k}-{g}@mail.test", Note.IN_CHAT)
            )
        for g in range(IN_CHAT, IN_CHAT + BY_EMAIL):
            email = f"g{k}-{g}@mail.test"
            p.coverage.append(
                Coverage(f"g{k}-{g}", class_name, Route.EMAIL, len(p.deliveries), email, Note.NOT_IN_CHAT)
            )
            p.deliveries.append(
                PlannedDelivery(
                    "email", "", email, class_name, None, Note.NOT_IN_CHAT, NOW, recipient_name=f"Родитель {g}"
                )
            )
        for g in range(IN_CHAT + BY_EMAIL, IN_CHAT + BY_EMAIL + UNREACHABLE):
            p.coverage.append(Coverage(f"g{k}-{g}", class_name, Route.NONE, None, "", Note.NOT_IN_CHAT))
        if k % 100 == 0:
            p.gaps.append(Gap(class_name, ChatKind.TEACHERS, Note.NO_CHAT))
    return p


async def timed(open_store: Callable[[], Awaitable[Store]], p: Plan) -> float:
    store = await open_store()
    try:
        started = time.perf_counter()
        _, created = await store.create_announcement(REQUEST, p, NOW)
        seconds = time.perf_counter() - started
        assert created
        assert (await store.progress()) == {Status.PENDING: len(p.deliveries)}
        return seconds
    finally:
        await store.close()


async def bench_sqlite(p: Plan, runs: int) -> list[float]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            path = Path(tmp) / f"run{i}.db"
            out.append(await timed(functools.partial(SqliteStore.open, path), p))
    return out


async def bench_postgres(p: Plan, runs: int, base_url: str) -> tuple[list[float], str]:
    out = []
    async with await psycopg.AsyncConnection.connect(base_url, autocommit=True) as admin:
        cur = await admin.execute("SHOW server_version")
        row = await cur.fetchone()
        version = str(row[0]) if row else "?"
        for _ in range(runs):
            schema = f"zv_bench_{uuid.uuid4().hex[:10]}"
            await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            sep = "&" if "?" in base_url else "?"
            url = f"{base_url}{sep}options={quote(f'-csearch_path={schema}')}"
            try:
                out.append(await timed(functools.partial(PostgresStore.open, url), p))
            finally:
                await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return out, version


def summary(runs: list[float]) -> dict[str, Any]:
    return {"runs_seconds": [round(s, 3) for s in runs], "median_seconds": round(statistics.median(runs), 3)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("ZVONOK_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()

    p = build_plan()
    emails = p.count("email")
    print(f"plan: {len(p.deliveries)} deliveries ({emails} e-mail), {len(p.coverage)} coverage, {len(p.gaps)} gaps")
    lite = await bench_sqlite(p, args.runs)
    print(f"sqlite:     {summary(lite)}")
    pg, pg_version = await bench_postgres(p, args.runs, args.postgres)
    print(f"postgresql: {summary(pg)}")

    result = {
        "benchmark": "store_plan",
        "what": "Store.create_announcement of one synthetic plan, one transaction, fresh store per run",
        "plan": {
            "deliveries": len(p.deliveries),
            "email_deliveries": emails,
            "chat_deliveries": len(p.deliveries) - emails,
            "coverage_rows": len(p.coverage),
            "gaps": len(p.gaps),
        },
        "sqlite": {"version": sqlite3.sqlite_version, "synchronous": "FULL", **summary(lite)},
        "postgresql": {"server_version": pg_version, "driver": f"psycopg {psycopg.__version__}", **summary(pg)},
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    asyncio.run(main())
