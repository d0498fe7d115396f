"""Benchmark: deliveries per second with 1, 2 and 3 `zvonok worker` processes on PostgreSQL, beside one on SQLite.

The question is what the gateway itself can do, so the providers must not bound it: the MAX and VK emulators
run "instant" (their per-token limits raised to a billion requests per second) and the gateway's rates are
raised to match (`max.rate` and `vk.rate` 10,000 per second, so the shared buckets still book permits through
the store, as in production, but never make anyone wait). The SMTP emulator accepts everything at once.

Workload (tests/fleet.py): four generated schools, two on MAX and two on VK, 300 classes each (a parents' and
a students' chat per class) and 400 parents per school who get a letter: one force-majeure announcement per
school, 4 x 600 chat deliveries + 4 x 400 letters = 4,000 deliveries. MAX posts one request per chat, VK up to
25 per `execute`, e-mail one SMTP transaction per letter over pooled connections.

Each run: a fresh store (a new PostgreSQL schema, or a new SQLite file), the rosters imported, N worker
processes started and idle (production dispatch settings, except `poll_seconds: 0.1`, since a SQLite worker
has no NOTIFY to wake it and would otherwise find the work up to 5 s late), then the four announcements posted
from this process; the time runs from the first post to the moment the store shows every delivery final.
Then the workers are stopped (SIGTERM). deliveries/s = 4,000 / that time; the median of `--reps` runs.

The emulators run beside the workers (MAX and VK in a process of their own, SMTP in this one), so this
process, the workers and PostgreSQL share the machine's cores: on a machine with few cores the figures show
where the CPU runs out, not how far more processes could go on more cores. `cpu_count` is in the results.

Results go to bench/results/workers.json. Usage: `python bench/workers.py [--reps 3] [--workers 1,2,3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.fleet: the generated schools and the worker processes

from adapters.emulators.smtp import SmtpEmulator  # noqa: E402
from gateway.app import Gateway  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.domain import FINAL_STATUSES, Status  # noqa: E402
from gateway.roster import read_roster  # noqa: E402
from tests.fleet import SchoolSpec, announcement, populate, providers, start_worker, write_config  # noqa: E402

SCHOOLS = [
    SchoolSpec("m1", 1, "max", "bench-max-1", classes=300, letters=400),
    SchoolSpec("m2", 2, "max", "bench-max-2", classes=300, letters=400),
    SchoolSpec("v3", 3, "vk", "bench-vk-3", classes=300, letters=400),
    SchoolSpec("v4", 4, "vk", "bench-vk-4", classes=300, letters=400),
]
TOTAL = sum(s.deliveries for s in SCHOOLS)
INSTANT = 1_000_000_000  # the emulators' per-token limits: nothing is ever refused
RATE = 10_000.0  # the gateway's max.rate and vk.rate: the buckets never make anyone wait
PG_URL = os.environ.get("ZVONOK_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = ROOT / "bench" / "results" / "workers.json"


async def new_schema() -> tuple[str, str]:
    name = f"zv_bench_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    separator = "&" if "?" in PG_URL else "?"
    return name, f"{PG_URL}{separator}options=-csearch_path%3D{name}"


async def drop_schema(name: str) -> None:
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


async def one_run(backend: str, workers: int) -> dict[str, Any]:
    schema = ""
    with tempfile.TemporaryDirectory(prefix="zvonok-bench-workers-") as tmp:
        folder = Path(tmp)
        if backend == "postgresql":
            schema, database = await new_schema()
        else:
            database = f"sqlite:///{folder / 'zvonok.db'}"
        try:
            async with SmtpEmulator() as smtp, providers(max_rate=INSTANT, vk_rate=INSTANT) as (max_api, vk_api):
                populate(SCHOOLS, max_api, vk_api)
                settings = {
                    "database": database,
                    "email": {"host": smtp.host, "port": smtp.port, "from": "noreply@bench.test"},
                    "max": {"base_url": max_api.base_url, "rate": RATE},
                    "vk": {"base_url": vk_api.base_url, "rate": RATE},
                    "dispatch": {"poll_seconds": 0.1},
                }
                root = write_config(folder / "config", SCHOOLS, settings)
                config = load_config(root)
                config = replace(config, settings=replace(config.settings, database=database))
                gateway = await Gateway.open(config)
                procs = []
                try:
                    for spec in SCHOOLS:
                        roster = read_roster(config.rosters[spec.id], config.schools[spec.id])
                        await gateway.import_roster(spec.id, roster)
                    procs = [await start_worker(n, root, folder, {}) for n in range(workers)]
                    await asyncio.gather(*(w.started() for w in procs))
                    started = time.perf_counter()
                    for spec in SCHOOLS:
                        await gateway.post(announcement(spec, key=f"bench-{spec.id}"))
                    posted = time.perf_counter() - started
                    while True:
                        counts = await gateway.store.progress()
                        if sum(counts.values()) == TOTAL and set(counts) <= FINAL_STATUSES:
                            break
                        if time.perf_counter() - started > 600:
                            raise RuntimeError(f"not final after 600 s: {counts}")
                        await asyncio.sleep(0.05)
                    elapsed = time.perf_counter() - started
                finally:
                    codes = [await w.stop() for w in procs]
                    await gateway.close()
                delivered = counts.get(Status.DELIVERED, 0)
                chats = sum(len(max_api.messages(c)) for s in SCHOOLS if s.channel == "max" for c in s.chats())
                chats += sum(len(vk_api.messages(c)) for s in SCHOOLS if s.channel == "vk" for c in s.chats())
                letters = len(smtp.messages)
        finally:
            if schema:
                await drop_schema(schema)
    return {
        "seconds": round(elapsed, 3),
        "posting_seconds": round(posted, 3),
        "deliveries_per_s": round(TOTAL / elapsed, 1),
        "delivered": delivered,
        "chat_messages": chats,
        "letters": letters,
        "worker_exit_codes": codes,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", default="1,2,3", help="worker counts on PostgreSQL")
    args = parser.parse_args()
    plan = [("sqlite", 1)] + [("postgresql", int(n)) for n in args.workers.split(",")]
    rows = []
    for backend, workers in plan:
        runs = []
        for rep in range(args.reps):
            run = await one_run(backend, workers)
            ok = run["delivered"] == TOTAL and run["chat_messages"] + run["letters"] == TOTAL
            print(
                f"{backend:10} x{workers} run {rep + 1}: {run['seconds']:6.2f} s, "
                f"{run['deliveries_per_s']:7.1f} deliveries/s{'' if ok else '  (NOT ALL DELIVERED ONCE)'}",
                flush=True,
            )
            runs.append(run)
        median = statistics.median(r["seconds"] for r in runs)
        rows.append(
            {
                "backend": backend,
                "workers": workers,
                "median_seconds": round(median, 3),
                "median_deliveries_per_s": round(TOTAL / median, 1),
                "all_delivered_once": all(
                    r["delivered"] == TOTAL and r["chat_messages"] + r["letters"] == TOTAL for r in runs
                ),
                "runs": runs,
            }
        )
    result = {
        "benchmark": "bench/workers.py",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "workload": {
            "deliveries": TOTAL,
            "max_chats": sum(2 * s.classes for s in SCHOOLS if s.channel == "max"),
            "vk_chats": sum(2 * s.classes for s in SCHOOLS if s.channel == "vk"),
            "letters": sum(s.letters for s in SCHOOLS),
            "tokens": len(SCHOOLS),
        },
        "settings": {
            "emulator_limits_per_token": INSTANT,
            "gateway_rates": {"max": RATE, "vk": RATE},
            "dispatch": "production defaults (batch_size 200, lease 120 s), poll_seconds 0.1",
        },
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"\n{TOTAL} deliveries, median of {args.reps} (4 tokens, instant providers; {os.cpu_count()} CPUs):")
    for row in rows:
        print(
            f"  {row['backend']:10} {row['workers']} worker(s): {row['median_seconds']:6.2f} s  "
            f"{row['median_deliveries_per_s']:7.1f} deliveries/s"
        )
    print(f"results: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
