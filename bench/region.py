"""Benchmark: a region's closure and one school's force majeure, through a real `zvonok worker` on SQLite, against
the providers' rate-limit floor and a raw client's floor on the same emulators and SMTP server.

Workload (tests/region.py): a generated region, by default 300 schools x 30 classes, a MAX parents' and students'
chat per class (18,000 chats, a bot token per school), 25 students per class with 1-2 guardians each, 15-30 % of
guardians per school not in the chats (one letter per mailbox), some with no e-mail. Scenario (b), the region's
closure: at 06:30 every school posts a whole-school force majeure (parents and students; a force majeure is not
held back by the window, so the hour of the run does not matter) - 300 announcements, one after another, from
this process, into the store the worker sends from. Scenario (a): one school of the same shape alone.

Measured: from the first post to the moment the store shows every delivery final (the posting itself, which
plans and commits each announcement, is inside the time; the store is read every 50 ms at first, then every
200th of the time so far, at most 0.5 s, so the end is seen within 0.5 % of the time), the worker's peak RSS
(VmHWM), and afterwards what the MAX emulator and the SMTP server received: every chat exactly one message,
every mailbox one letter.

Floors, measured in the same run on the same emulators and SMTP server:
- rate-limit floor: the school with the most chats / 30 requests per second (MAX's limit per token; all tokens
  in parallel);
- raw-client floor: a plain client in a process of its own sends the same requests with no gateway logic: per
  token one request after another at 30 per second (aiohttp, one session), and the very letters the gateway
  sent (byte for byte, as the server received them) through a pool of as many aiosmtplib connections as the
  gateway's `email.pool_size`, all at once; its time is the floor.

The MAX emulator runs in a process of its own (tests/fleet.py `providers`), and so does the SMTP server
(aiosmtpd, bench/smtp_server.py: in this process it would share the interpreter with the posting and the
progress polls during the gateway's run but not during the raw client's); the worker and the raw client run in
theirs. Results: bench/results/region.json.
Usage: `python bench/region.py [--reps 3] [--schools 300]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import aiosmtplib  # noqa: E402

from gateway.app import Gateway  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.domain import FINAL_STATUSES, Status  # noqa: E402
from gateway.roster import read_roster  # noqa: E402
from tests.fleet import providers, start_worker  # noqa: E402
from tests.region import Region, RegionSpec, closure, write_region  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from smtp_server import Letter, SmtpServerProcess, message_id  # noqa: E402

MAX_RPS = 30.0
RESULTS = ROOT / "bench" / "results" / "region.json"
TEXT = closure("x").text


def raw_blast(
    max_url: str,
    requests: list[tuple[str, int]],
    smtp: tuple[str, int],
    letters: list[Letter],
    pool: int,
) -> float:
    """In a process of its own: the same chat posts and letters with no gateway logic; returns its seconds."""

    async def chats() -> None:
        by_token: dict[str, list[int]] = {}
        for token, chat_id in requests:
            by_token.setdefault(token, []).append(chat_id)
        async with aiohttp.ClientSession() as session:

            async def one_token(token: str, chat_ids: list[int]) -> None:
                start = time.monotonic()
                for i, chat_id in enumerate(chat_ids):
                    await asyncio.sleep(max(0.0, start + i / MAX_RPS - time.monotonic()))
                    while True:
                        async with session.post(
                            f"{max_url}/messages",
                            params={"chat_id": str(chat_id)},
                            json={"text": TEXT, "format": "html"},
                            headers={"Authorization": token},
                        ) as response:
                            await response.read()
                            if response.status != 429:
                                break
                        await asyncio.sleep(1 / MAX_RPS)

            await asyncio.gather(*(one_token(t, ids) for t, ids in by_token.items()))

    async def mail() -> None:
        queue = list(letters)

        async def connection() -> None:
            client = aiosmtplib.SMTP(hostname=smtp[0], port=smtp[1], start_tls=False)
            await client.connect()
            while queue:
                sender, recipients, data = queue.pop()
                await client.sendmail(sender, recipients, data)
            await client.quit()

        await asyncio.gather(*(connection() for _ in range(pool)))

    async def both() -> float:
        started = time.perf_counter()
        await asyncio.gather(chats(), mail())
        return time.perf_counter() - started

    return asyncio.run(both())


async def raw_floor(
    max_url: str,
    region: Region,
    schools: list[str],
    smtp: SmtpServerProcess,
    pool: int,
    letters: list[Letter],
) -> float:
    """The same chat posts, and the very letters the gateway sent (byte for byte: the server's work per letter
    is the same), from a raw client in a process of its own."""
    picked = [s for s in region.schools if s.id in schools]
    requests = [(s.token, c) for s in picked for c in s.chats]
    with multiprocessing.get_context("spawn").Pool(1) as workers:
        result = workers.apply_async(raw_blast, (max_url, requests, (smtp.host, smtp.port), letters, pool))
        return float(await asyncio.to_thread(result.get, 1800))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def one_run(spec: RegionSpec, only: list[str] | None) -> dict[str, Any]:
    """One scenario on a fresh store: `only` the named schools post (scenario a), or all of them (b)."""
    with tempfile.TemporaryDirectory(prefix="zvonok-bench-region-") as tmp, SmtpServerProcess() as smtp:
        folder = Path(tmp)
        async with providers() as (max_api, _):
            settings = {
                "database": f"sqlite:///{folder / 'zvonok.db'}",
                "email": {"host": smtp.host, "port": smtp.port, "from": "noreply@bench.test"},
                "max": {"base_url": max_api.base_url},
                "dispatch": {"poll_seconds": 0.1},
            }
            region = write_region(folder / "config", spec, settings)
            posting = [s for s in region.schools if only is None or s.id in only]
            for school in posting:
                max_api.add_bot(school.token, f"Бот школы № {school.number}")
                for chat_id in school.chats:
                    max_api.add_chat(chat_id, f"Чат {chat_id}", token=school.token)
            config = load_config(region.root)
            gateway = await Gateway.open(config)
            try:
                for school in posting:
                    roster = read_roster(config.rosters[school.id], config.schools[school.id])
                    await gateway.import_roster(school.id, roster)
            finally:
                await gateway.close()
            total = sum(len(s.chats) + len(s.letters) for s in posting)
            worker = await start_worker(0, region.root, folder, {})
            gateway = await Gateway.open(config)
            try:
                await worker.started()
                started = time.perf_counter()
                for school in posting:
                    await gateway.post(closure(school.id))
                posted = time.perf_counter() - started
                while True:
                    counts = await gateway.store.progress()
                    if sum(counts.values()) >= total and set(counts) <= FINAL_STATUSES:
                        break
                    if time.perf_counter() - started > 1800:
                        raise RuntimeError(f"not final after 1800 s: {counts}")
                    # every 50 ms at first, then a 200th of the time so far (at most 0.5 s): a count over every
                    # delivery 20 times a second would take a good part of a core from the worker and the servers
                    await asyncio.sleep(min(0.5, max(0.05, (time.perf_counter() - started) / 200)))
                elapsed = time.perf_counter() - started
                rss = peak_rss_mb(worker.process.pid)
            finally:
                code = await worker.stop()
                await gateway.close()
            per_chat = [len(max_api.messages(c)) for s in posting for c in s.chats]
            sent = smtp.letters()
            letters: dict[str, set[str]] = {}
            for letter in sent:
                for r in letter[1]:
                    letters.setdefault(r, set()).add(message_id(letter))
            expected = {m for s in posting for m in s.letters}
            smtp.clear()
            floor = await raw_floor(
                max_api.base_url,
                region,
                [s.id for s in posting],
                smtp,
                config.settings.email.pool_size,
                sent,
            )
            raw_letters = smtp.received()[0]
    busiest = max(len(s.chats) for s in posting)
    return {
        "schools": len(posting),
        "deliveries": total,
        "chats": len(per_chat),
        "letters": len(expected),
        "seconds": round(elapsed, 3),
        "posting_seconds": round(posted, 3),
        "deliveries_per_s": round(total / elapsed, 1),
        "peak_rss_mb": round(rss, 1),
        "delivered": counts.get(Status.DELIVERED, 0),
        "every_chat_once": per_chat.count(1) == len(per_chat),
        "every_mailbox_once": set(letters) == expected and all(len(v) == 1 for v in letters.values()),
        "rate_floor_seconds": round(busiest / MAX_RPS, 3),
        "raw_floor_seconds": round(floor, 3),
        "raw_letters": raw_letters,
        "worker_exit_code": code,
    }


def summarise(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = statistics.median(r["seconds"] for r in runs)
    rate_floor = statistics.median(r["rate_floor_seconds"] for r in runs)
    raw_floor_s = statistics.median(r["raw_floor_seconds"] for r in runs)
    return {
        "scenario": name,
        "median_seconds": round(seconds, 3),
        "median_deliveries_per_s": round(runs[0]["deliveries"] / seconds, 1),
        "rate_floor_seconds": rate_floor,
        "raw_floor_seconds": round(raw_floor_s, 3),
        # ratios within each run (floor and gateway measured together), then their median
        "ratio_to_rate_floor": round(statistics.median(r["seconds"] / r["rate_floor_seconds"] for r in runs), 3),
        "ratio_to_raw_floor": round(statistics.median(r["seconds"] / r["raw_floor_seconds"] for r in runs), 3),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "all_delivered_once": all(
            r["delivered"] == r["deliveries"] and r["every_chat_once"] and r["every_mailbox_once"] for r in runs
        ),
        "runs": runs,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--schools", type=int, default=300)
    args = parser.parse_args()
    spec = RegionSpec(schools=args.schools)
    scenarios = []
    for name, only in (("a: one school's force majeure", ["r001"]), ("b: region closure at 06:30", None)):
        runs = []
        for rep in range(args.reps):
            run = await one_run(spec, only)
            print(
                f"{name} run {rep + 1}: {run['seconds']:.2f} s ({run['deliveries']} deliveries, "
                f"{run['deliveries_per_s']}/s, peak RSS {run['peak_rss_mb']} MB); rate floor "
                f"{run['rate_floor_seconds']} s, raw floor {run['raw_floor_seconds']} s; once: "
                f"{run['every_chat_once'] and run['every_mailbox_once']}",
                flush=True,
            )
            runs.append(run)
        scenarios.append(summarise(name, runs))
    result = {
        "benchmark": "bench/region.py",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "region": {"schools": spec.schools, "classes": spec.classes, "students": spec.students},
        "reps": args.reps,
        "targets": {"a_ratio_to_rate_floor": 1.2, "b_ratio_to_raw_floor": 1.5, "b_deliveries_per_s": 3000,
                    "b_peak_rss_mb": 300},
        "scenarios": scenarios,
    }  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"results: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
