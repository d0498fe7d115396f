"""Chaos: SIGKILL the gateway at random moments during a large fan-out, restart it each time, then check what
every emulated chat and the SMTP server received.

Workload: a generated region (tests/region.py; default 20 schools, each with its own MAX bot and 30 classes
with a parents' and a students' chat: 1,200 MAX chats, and about 4,500 families not in the chats, who get a
letter) plus two VK schools (tests/fleet.py; 100 classes each: 400 VK chats, 200 letters). One "wave" is a
whole-school force majeure in every school (so the messaging window never holds it back, whatever the hour):
about 6,300 deliveries. Waves are posted from this process through the store, as `zvonok announce` would,
whenever fewer than LOW_WATER deliveries are still open and kills are still to come, so the gateway always has
work in flight when it dies.

The gateway runs as real `zvonok worker` processes (tests/fleet.py `start_worker`): on SQLite exactly one at a
time (SQLite is a one-process store), on PostgreSQL three. The MAX and VK emulators run in a process of their
own (tests/fleet.py `providers()`, their real per-token limits: 30 and 20 requests/s), the SMTP emulator on
this process's main loop. A seeded RNG picks the moments: every 0.5-3 s (on SQLite counted from the moment the
restarted worker says it runs; on PostgreSQL one of the running workers, chosen at random) a worker gets SIGKILL
and is restarted at once, as systemd's `Restart=always` would. Leases are 10 s (`dispatch.lease_seconds`), so
a dead worker's deliveries come back 10 s after it took them. Once the wanted number of kills is reached the
workers are left alone until every delivery is final, then stopped with SIGTERM.

If nothing becomes final for two minutes while deliveries are open, the run stops and reports a stall. Then
the count, against what each school must receive per wave (tests/region.py `SchoolPlan`, tests/fleet.py
`SchoolSpec`): every chat exactly one message per wave (a message the provider already had is found by reading
the chat before any resend on MAX, and deduplicated by `random_id` on VK), every mailbox one letter per wave
(a distinct Message-ID). Lost (anything missing) or a duplicate in any chat fails the run. A second copy of a
letter (the same Message-ID twice) is counted: the design admits it when the process dies after the SMTP
server accepted the message and before the outcome was committed, so every such letter is among the e-mail
claims that died with their process (reported as the bound of this run; by construction at most one batch,
`dispatch.batch_size` = 200 e-mails, per kill).

Usage: `python -m reliability.chaos [--backend sqlite|postgresql|both] [--kills 25] [--seed 2026] [--schools 20]`;
results in reliability/results/chaos_<backend>.json. Exit 1 when anything was lost or duplicated in a chat.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.emulators.max import MaxEmulator
from adapters.emulators.smtp import SmtpEmulator
from adapters.emulators.vk import VkEmulator
from gateway.app import Gateway
from gateway.config import load_config
from gateway.domain import EMAIL, FINAL_STATUSES, AnnouncementRequest, Status
from gateway.roster import read_roster
from gateway.store.base import DeliveryRow
from reliability.common import STALL_SECONDS, Stall, machine, pg_schema, scan_logs, write_result
from tests.fleet import SchoolSpec, Worker, announcement, populate, providers, start_worker, write_config
from tests.region import Region, RegionSpec, closure, write_region

KILL_EVERY = (0.5, 3.0)  # seconds between kills, drawn uniformly
LEASE_SECONDS = 10.0
BATCH_SIZE = 200  # the production default of dispatch.batch_size, written out: it bounds a kill's e-mail loss
LOW_WATER = 1500  # post another wave when fewer deliveries than this are open and kills are still to come
WORKERS = {"sqlite": 1, "postgresql": 3}
VK_SCHOOLS = [
    SchoolSpec("v901", 901, "vk", "vk-token-chaos-901", classes=100, letters=100),
    SchoolSpec("v902", 902, "vk", "vk-token-chaos-902", classes=100, letters=100),
]


@dataclass
class Kill:
    at: float  # seconds since the first wave
    worker: int
    open: int  # deliveries not final at that moment


@dataclass
class Fleet:
    """The worker processes of one backend: started, killed and restarted; each incarnation numbered."""

    root: Path
    folder: Path
    verbose: bool = True
    alive: list[Worker] = field(default_factory=list)
    dead: list[Worker] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)  # exit codes of the workers killed
    started: int = 0

    async def start(self) -> Worker:
        worker = await start_worker(self.started, self.root, self.folder, {}, verbose=self.verbose)
        self.started += 1
        self.alive.append(worker)
        return worker

    async def kill(self, worker: Worker) -> None:
        if worker.process.returncode is None:
            worker.kill()
        self.codes.append(await worker.stop())
        self.alive.remove(worker)
        self.dead.append(worker)

    async def stop_all(self) -> list[int]:
        """SIGTERM to each; one that cannot finish what it holds within a minute is killed (its code: -9)."""
        codes = []
        for w in self.alive:
            try:
                codes.append(await w.stop(within=60))
            except TimeoutError:
                w.kill()
                codes.append(await w.stop())
        self.dead.extend(self.alive)
        self.alive = []
        return codes

    async def reap(self) -> None:
        """SIGKILL whatever still runs (after a failure of the run itself)."""
        for w in list(self.alive):
            await self.kill(w)

    def logs(self) -> list[Path]:
        return [w.err for w in self.dead + self.alive]


async def run(backend: str, kills_wanted: int, seed: int, schools: int) -> dict[str, Any]:
    rng = random.Random(seed)
    async with AsyncExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"zvonok-chaos-{backend}-")))
        database = await stack.enter_async_context(pg_schema()) if backend == "postgresql" else "sqlite:///chaos.db"
        smtp = await stack.enter_async_context(SmtpEmulator())
        max_api, vk_api = await stack.enter_async_context(providers())
        settings = {
            "database": database,
            "email": {"host": smtp.host, "port": smtp.port, "from": "noreply@chaos.test"},
            "max": {"base_url": max_api.base_url},
            "vk": {"base_url": vk_api.base_url},
            # SQLite has no NOTIFY: a worker finds a new wave at its next poll
            "dispatch": {"lease_seconds": LEASE_SECONDS, "batch_size": BATCH_SIZE, "poll_seconds": 0.2},
        }
        root = folder / "config"
        region = write_region(root, RegionSpec(schools=schools), settings)
        write_config(root, VK_SCHOOLS, settings)
        region.populate(max_api)
        populate(VK_SCHOOLS, max_api, vk_api)
        config = load_config(root)
        gateway = await Gateway.open(config)  # posts the waves and reads the store; never sends
        stack.push_async_callback(gateway.close)
        for school_id in config.schools:
            await gateway.import_roster(school_id, read_roster(config.rosters[school_id], config.schools[school_id]))

        fleet = Fleet(root, folder)
        stack.push_async_callback(fleet.reap)  # should anything below fail
        for _ in range(WORKERS[backend]):
            await fleet.start()
        await asyncio.gather(*(w.started() for w in fleet.alive))
        print(f"[{backend}] {len(fleet.alive)} worker(s) up; {schools} MAX schools + {len(VK_SCHOOLS)} VK", flush=True)

        ids: list[int] = []
        kills: list[Kill] = []
        crashed = 0  # workers that died without being killed
        stall = Stall()
        stalled = False
        began = time.monotonic()
        next_kill = began + rng.uniform(*KILL_EVERY)
        last_kill_at = began
        while True:
            now = time.monotonic()
            progress = await gateway.store.progress()
            open_now = sum(n for s, n in progress.items() if s not in FINAL_STATUSES)
            if len(kills) < kills_wanted and open_now < LOW_WATER:
                ids += await post_wave(gateway, region, len(ids) // len(config.schools) + 1)
                continue
            if len(kills) >= kills_wanted and open_now == 0:
                break
            if stall.stalled(sum(n for s, n in progress.items() if s in FINAL_STATUSES)):
                stalled = True
                print(f"[{backend}] STALLED: nothing became final for {STALL_SECONDS:.0f} s: {progress}", flush=True)
                break
            for worker in [w for w in fleet.alive if w.process.returncode is not None]:
                crashed += 1
                print(f"[{backend}] worker {worker.number} exited by itself ({worker.process.returncode})", flush=True)
                await fleet.kill(worker)
                await fleet.start()
            up = [w for w in fleet.alive if w.up]
            if len(kills) < kills_wanted and now >= next_kill and up:
                victim = rng.choice(up)
                await fleet.kill(victim)
                kills.append(Kill(round(now - began, 2), victim.number, open_now))
                last_kill_at = time.monotonic()
                print(
                    f"[{backend}] kill {len(kills)}/{kills_wanted} at {now - began:6.1f} s: worker "
                    f"{victim.number}, {open_now} open",
                    flush=True,
                )
                restarted = await fleet.start()
                if backend == "sqlite":  # the next moment counts from when the one process runs again
                    await restarted.started()
                next_kill = time.monotonic() + rng.uniform(*KILL_EVERY)
            await asyncio.sleep(0.05)
        finished = time.monotonic()
        codes = await fleet.stop_all()
        rows = [row for i in ids for row in await gateway.store.deliveries(i)]
        lost_claims, outcomes = await claims_lost(gateway, rows)
        waves = len(ids) // len(config.schools)
        secrets = [s.token for s in region.schools] + [s.token for s in VK_SCHOOLS]
        received = tally(region, max_api, vk_api, smtp, waves)
        statuses = Counter(r.status.value for r in rows)
        result: dict[str, Any] = {
            "backend": backend,
            "seed": seed,
            "worker_processes": WORKERS[backend],
            "kills": len(kills),
            "kill_interval_s": list(KILL_EVERY),
            "workers_started": fleet.started,
            "crashed_by_themselves": crashed,
            "stalled": stalled,
            "lease_seconds": LEASE_SECONDS,
            "batch_size": BATCH_SIZE,
            "workload": {
                "max_schools": schools,
                "vk_schools": len(VK_SCHOOLS),
                "max_chats": region.chats,
                "vk_chats": sum(2 * s.classes for s in VK_SCHOOLS),
                "mailboxes": region.letters + sum(s.letters for s in VK_SCHOOLS),
                "deliveries_per_wave": region.deliveries + sum(s.deliveries for s in VK_SCHOOLS),
            },
            "waves": waves,
            "deliveries": len(rows),
            "seconds": {
                "total": round(finished - began, 1),
                "final_after_last_kill": round(finished - last_kill_at, 1),
            },
            "store": {
                "statuses": dict(statuses),
                "all_delivered": statuses == Counter({Status.DELIVERED.value: len(rows)}),
                "claims_lost_to_kills": lost_claims,
                "attempt_outcomes_after_a_lost_claim": outcomes,
            },
            "received": received,
            "email_duplicate_bound": lost_claims.get(EMAIL, 0),
            "rate_limited": {
                "max_429": sum(max_api.rate_limited_count(s.token) for s in region.schools),
                "vk_error_6": sum(vk_api.rate_limit_errors(s.token) for s in VK_SCHOOLS),
            },
            "final_exit_codes": codes,
            "killed_exit_codes": sorted(set(fleet.codes)),
            "logs": scan_logs(fleet.logs(), secrets),
            "kill_log": [vars(k) for k in kills],
        }
    result["ok"] = ok(result)
    return result


async def post_wave(gateway: Gateway, region: Region, wave: int) -> list[int]:
    """One whole-school force majeure per school, committed as `zvonok announce` would: their ids."""
    key = f"chaos-wave-{wave}"
    requests: list[AnnouncementRequest] = [closure(s.id, key=key) for s in region.schools]
    requests += [announcement(s, key=key) for s in VK_SCHOOLS]
    return [(await gateway.post(r)).id for r in requests]


async def claims_lost(gateway: Gateway, rows: list[DeliveryRow]) -> tuple[dict[str, int], dict[str, int]]:
    """Per channel, the claims that died with their process: a claim counts an attempt in the delivery, and only
    a finished attempt is recorded (the `attempts` table). And what the attempts after such a loss recorded
    (`reconciled`: MAX found the message already in the chat and did not send it again)."""
    lost: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for row in rows:
        if row.attempts <= 1:
            continue
        recorded = await gateway.store.attempts(row.id)
        missing = row.attempts - len(recorded)
        if missing > 0:
            lost[row.channel] += missing
            outcomes.update(f"{row.channel}:{a.outcome}" for a in recorded)
    return dict(lost), dict(outcomes)


def tally(region: Region, max_api: MaxEmulator, vk_api: VkEmulator, smtp: SmtpEmulator, waves: int) -> dict[str, Any]:
    """What the providers received against what they must: `waves` messages in every chat (each a different
    delivery, so a different text), `waves` distinct letters in every mailbox."""
    chats: dict[str, list[list[str]]] = {
        "max": [[m.text or "" for m in max_api.messages(c)] for s in region.schools for c in s.chats],
        "vk": [[m.text for m in vk_api.messages(p)] for s in VK_SCHOOLS for p in s.chats()],
    }
    found: dict[str, Any] = {}
    for channel, texts in chats.items():
        found[channel] = {
            "chats": len(texts),
            "messages": sum(len(t) for t in texts),
            "missing": sum(max(0, waves - len(set(t))) for t in texts),
            "duplicates": sum(len(t) - len(set(t)) for t in texts),
            "chats_with_a_duplicate": sum(1 for t in texts if len(t) > len(set(t))),
            "unexpected": sum(max(0, len(set(t)) - waves) for t in texts),
        }
    expected = {m for s in region.schools for m in s.letters} | {m for s in VK_SCHOOLS for m in s.mailboxes()}
    copies: dict[str, Counter[str]] = {}
    for mail in smtp.messages:
        for rcpt in mail.recipients:
            copies.setdefault(rcpt, Counter())[str(mail.message.get("Message-ID", ""))] += 1
    found["email"] = {
        "mailboxes": len(expected),
        "letters": len(smtp.messages),
        "missing": sum(max(0, waves - len(copies.get(m, ()))) for m in expected),
        "duplicates": sum(n - 1 for ids in copies.values() for n in ids.values()),
        "mailboxes_with_a_duplicate": sum(1 for ids in copies.values() if any(n > 1 for n in ids.values())),
        "unexpected": sum(len(ids) for m, ids in copies.items() if m not in expected)
        + sum(max(0, len(ids) - waves) for m, ids in copies.items() if m in expected),
    }
    return found


def ok(result: dict[str, Any]) -> bool:
    """Nothing lost, no duplicate in any chat, every delivery delivered, and the kills wanted happened."""
    r = result["received"]
    return (
        result["store"]["all_delivered"]
        and all(r[c]["missing"] == 0 and r[c]["unexpected"] == 0 for c in ("max", "vk", "email"))
        and r["max"]["duplicates"] == 0
        and r["vk"]["duplicates"] == 0
        and result["crashed_by_themselves"] == 0
        and not result["stalled"]
        and all(code == 0 for code in result["final_exit_codes"])
    )


def summary(r: dict[str, Any]) -> str:
    got = r["received"]
    return (
        f"[{r['backend']}] {r['kills']} kills, {r['waves']} waves, {r['deliveries']} deliveries in "
        f"{r['seconds']['total']} s; lost: chats {got['max']['missing'] + got['vk']['missing']}, letters "
        f"{got['email']['missing']}; duplicates: MAX {got['max']['duplicates']}, VK {got['vk']['duplicates']}, "
        f"e-mail {got['email']['duplicates']} (bound {r['email_duplicate_bound']}); "
        f"{'OK' if r['ok'] else 'FAILED'}"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--kills", type=int, default=25, help="SIGKILLs per backend (at least 20 for the issue)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--schools", type=int, default=20, help="MAX schools of the generated region")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    failed = False
    for backend in backends:
        result = await run(backend, args.kills, args.seed, args.schools)
        result["machine"] = await machine()
        result["command"] = " ".join(["python -m reliability.chaos", *sys.argv[1:]])
        path = write_result(f"chaos_{backend}", result)
        print(summary(result), f"-> {path.name}", flush=True)
        failed |= not result["ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
