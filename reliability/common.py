"""What the reliability runs share: a throwaway PostgreSQL schema, a free port, the machine they ran on, the
hygiene of the gateway's logs, latency percentiles, and writing a result file."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "reliability" / "results"
PG_URL = os.environ.get("ZVONOK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

# An address as the generated rosters write them; the gateway's logs may show one only masked ("r***@mail.test").
ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@mail\.test")


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """A fresh schema of our own on the local PostgreSQL (database `test`), dropped afterwards: its URL."""
    name = f"zv_rel_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True, connect_timeout=10) as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    query = urlencode({"options": f"-csearch_path={name}", "application_name": name}, quote_via=quote)
    try:
        yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}{query}"
    finally:
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
            await conn.execute("SET lock_timeout = '10s'")
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


async def rate_schedule_ahead(url: str) -> float | None:
    """How far (seconds) the furthest of the shared rate schedules (`rate_buckets.next_free`, one per bot token)
    stands ahead of the server's clock: a fraction of a second while all is well."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT max(extract(epoch FROM next_free - clock_timestamp()))::float8 FROM rate_buckets"
        )
        row = await cur.fetchone()
    return None if row is None or row[0] is None else round(float(row[0]), 1)


async def postgres_version() -> str:
    try:
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            row = await (await conn.execute("SHOW server_version")).fetchone()
    except psycopg.OperationalError:
        return "unreachable"
    return str(row[0]).split()[0] if row else "unknown"


STALL_SECONDS = 120.0  # no delivery became final for this long while some are open: the run has stalled


@dataclass
class Stall:
    """Whether deliveries keep becoming final: a run waits while they do, and gives up once none has for
    STALL_SECONDS (rather than for a fixed time, which a slow machine could exceed while all is well)."""

    final: int = -1
    since: float = field(default_factory=time.monotonic)

    def stalled(self, final: int) -> bool:
        if final != self.final:
            self.final, self.since = final, time.monotonic()
        return time.monotonic() - self.since > STALL_SECONDS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            return round(int(meminfo.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None


async def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "postgresql": await postgres_version(),
        "platform": platform.platform(),
    }


def scan_logs(paths: Iterable[Path], secrets: Sequence[str]) -> dict[str, Any]:
    """What the gateway's processes wrote to stderr (their log): tracebacks, ERROR lines, and any unmasked
    e-mail address or bot token — personal data and secrets must never be there. Counts only, never content."""
    found = {"files": 0, "lines": 0, "tracebacks": 0, "error_lines": 0, "unmasked_addresses": 0, "secrets": 0}
    found["void_reservations"] = 0  # "rate limit: a reservation took … ms; its … permits are void" (INFO)
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        found["files"] += 1
        found["lines"] += text.count("\n")
        found["tracebacks"] += text.count("Traceback")
        found["error_lines"] += sum(1 for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line)
        found["unmasked_addresses"] += len(ADDRESS.findall(text))
        found["secrets"] += sum(text.count(secret) for secret in secrets if secret)
        found["void_reservations"] += text.count("permits are void")
    return found


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p95, p99 and max of latencies in seconds, as milliseconds (nearest-rank percentiles)."""
    ordered = sorted(values)

    def rank(p: float) -> float | None:
        if not ordered:
            return None
        return round(1000 * ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1)

    return {
        "count": len(ordered),
        "p50_ms": rank(50),
        "p95_ms": rank(95),
        "p99_ms": rank(99),
        "max_ms": round(1000 * ordered[-1], 1) if ordered else None,
    }


def load_result(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    stamped = {"when": datetime.now(UTC).astimezone().isoformat(timespec="seconds"), **result}
    path.write_text(json.dumps(stamped, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path
