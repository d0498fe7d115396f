"""Benchmark (c): the time and memory to plan and commit a region-wide closure for 200,000 guardians.

A generated region (tests/region.py) of enough schools that their rosters hold at least 200,000 guardians (30
classes of 25 students each, 1-2 guardians per student, 15-30 % of them not in the class chats). Every school
posts the closure (`Gateway.post`: the school's rules, the planner, then one transaction committing the
announcement, its deliveries, coverage and gaps). The region's schools post at the same moment at 06:30, each
its own request: measured with `--concurrency` posts in flight at a time (default 4, as a served gateway takes
several schools' requests at once), and one at a time as well. Measured: the seconds from the first post to the
last commit, and the process's peak resident memory while posting (Linux's VmHWM, reset just before the first
post, so the rosters' import does not count), both as it stands and as the increase over the process before
posting.

Each run is a fresh process on a fresh store (a new SQLite file with synchronous=FULL; a new PostgreSQL
schema); the rosters are imported first, not timed. Target: 5 s at most. Medians of `--runs` (default 3).
Results: bench/results/plan_region.json. Usage: `python bench/plan_region.py [--runs 3] [--guardians 200000]
[--concurrency 4] [--postgres URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from gateway.app import Gateway, freeze_startup_objects  # noqa: E402
from gateway.clock import ShiftedClock  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.roster import read_roster  # noqa: E402
from tests.region import RegionSpec, closure, write_region  # noqa: E402

RESULTS = HERE / "results" / "plan_region.json"
TARGET_SECONDS = 5.0


def status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def reset_peak_rss() -> None:
    """VmHWM := VmRSS: the peak from here on is what follows."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")


async def child(config_root: Path, database: str, concurrency: int) -> dict[str, Any]:
    """One run, in this process: import every roster, then post the closure in every school, `concurrency` posts
    in flight at a time."""
    config = load_config(config_root)
    config = replace(config, settings=replace(config.settings, database=database))
    monday_0630 = datetime(2026, 11, 23, 3, 30, tzinfo=UTC)  # 06:30 in Moscow; force majeure is never held anyway
    gateway = await Gateway.open(config, clock=ShiftedClock(monday_0630 - datetime.now(UTC)))
    freeze_startup_objects()  # as `zvonok serve`, which takes the schools' posts, does once it is set up
    try:
        guardians = 0
        for school_id, school in config.schools.items():
            roster = read_roster(config.rosters[school_id], school)
            guardians += len(roster.guardians(school_id))
            await gateway.import_roster(school_id, roster)
        reset_peak_rss()
        before = status_kib("VmRSS")
        started = time.perf_counter()
        slots = asyncio.Semaphore(concurrency)

        async def post(school_id: str) -> int:
            async with slots:
                return len((await gateway.post(closure(school_id))).plan.deliveries)

        deliveries = sum(await asyncio.gather(*(post(school_id) for school_id in config.schools)))
        seconds = time.perf_counter() - started
        peak = status_kib("VmHWM")
    finally:
        await gateway.close()
    return {
        "schools": len(config.schools),
        "guardians": guardians,
        "deliveries": deliveries,
        "seconds": round(seconds, 3),
        "rss_before_mb": round(before / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "peak_increase_mb": round((peak - before) / 1024, 1),
    }


def one_run(config_root: Path, database: str, concurrency: int) -> dict[str, Any]:
    out = subprocess.run(  # noqa: S603 - this script
        [sys.executable, __file__, "--child", str(config_root), database, str(concurrency)],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE.parent,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "runs": runs,
        "median_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
        "median_peak_increase_mb": round(statistics.median(r["peak_increase_mb"] for r in runs), 1),
        "median_peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guardians", type=int, default=200_000)
    parser.add_argument(
        "--postgres", default=os.environ.get("ZVONOK_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "DATABASE", "CONCURRENCY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(Path(args.child[0]), args.child[1], int(args.child[2])))))
        return
    modes = sorted({args.concurrency, 1}, reverse=True)

    with tempfile.TemporaryDirectory(prefix="zvonok-bench-plan-") as tmp:
        folder = Path(tmp)
        schools = 1
        while True:  # the smallest region with at least the guardians asked for (the generator is seeded)
            probe = write_region(folder / "probe", RegionSpec(schools=schools), {})
            per_school = probe.guardians / schools
            if probe.guardians >= args.guardians:
                break
            schools = max(schools + 1, int(args.guardians / per_school) + 1)
        region = write_region(folder / "config", RegionSpec(schools=schools), {})
        print(f"region: {schools} schools, {region.guardians:,} guardians, {region.deliveries:,} deliveries")
        results: dict[str, Any] = {}
        for concurrency in modes:
            lite: list[dict[str, Any]] = []
            for i in range(args.runs):
                lite.append(one_run(region.root, f"sqlite:///{folder / f'run{concurrency}-{i}.db'}", concurrency))
                print("sqlite", concurrency, lite[-1], flush=True)
            results.setdefault("sqlite", {})[str(concurrency)] = summary(lite)
            pg: list[dict[str, Any]] = []
            with psycopg.connect(args.postgres, autocommit=True) as admin:
                for _ in range(args.runs):
                    schema = f"zv_bench_{uuid.uuid4().hex[:10]}"
                    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
                    sep = "&" if "?" in args.postgres else "?"
                    url = f"{args.postgres}{sep}options={quote(f'-csearch_path={schema}')}"
                    try:
                        pg.append(one_run(region.root, url, concurrency))
                    finally:
                        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
                    print("postgresql", concurrency, pg[-1], flush=True)
            results.setdefault("postgresql", {})[str(concurrency)] = summary(pg)

    report = {
        "benchmark": "plan_region",
        "schools": schools,
        "guardians": region.guardians,
        "target_seconds": TARGET_SECONDS,
        "concurrency": args.concurrency,
        **results,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
