"""`python -m reliability.faults`: an operator's bad day, one fault at a time, during a school's fan-out.

Each scenario runs real `zvonok worker` processes (tests/fleet.py) on a fresh store, the MAX emulator in a process
of its own and an SMTP server, and posts one force majeure to a school of 150 classes on MAX (300 chats) with 600
parents out of the chats (600 letters). While it goes out, one fault:

- sigstop: PostgreSQL, two workers, leases of 5 s; worker 0 is stopped (SIGSTOP) for 15 s, then continues;
- skew: PostgreSQL, two workers, worker 1's clock two hours ahead (libfaketime), a tenth of MAX's answers lost;
- pg_restart: PostgreSQL, two workers; the server is restarted (`pg_ctlcluster … restart`) mid-fan-out;
- full_disk: SQLite on a 24 MiB file system of its own (tmpfs), one worker; the disk is filled for 10 s;
- relay_outage: PostgreSQL, two workers; the SMTP relay refuses every connection and letter for 90 s;
- max_chatter: PostgreSQL, two workers, a fifth of MAX's answers lost; then 150 parents' messages land in every
  chat that has ours, before the re-checks look for it.

Counted against the roster when everything is final (or after 240 s): lost (a chat or a mailbox that got
nothing), duplicated (a chat's second copy, a parent's second letter), stuck (deliveries not final), and the
workers' tracebacks. Results in reliability/results/faults.json; RELIABILITY.md's section 4 renders them.
Usage: `python -m reliability.faults [--only sigstop skew …]` (as root: the full-disk scenario mounts a tmpfs,
the restart scenario restarts the local PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from adapters.emulators.smtp import SmtpEmulator
from gateway.app import Gateway
from gateway.config import load_config
from gateway.domain import FINAL_STATUSES
from gateway.roster import read_roster
from reliability.common import load_result, machine, pg_schema, write_result
from tests.fleet import (
    SchoolSpec,
    Worker,
    announcement,
    fill_disk,
    populate,
    providers,
    received,
    start_worker,
    write_config,
)

SCHOOL = SchoolSpec("m1", 1, "max", "max-token-school-1", classes=150, letters=600)
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
POOL = 4  # SMTP connections per worker
DEADLINE = 240.0
OUTAGE = 90  # seconds the relay is down


@dataclass
class Fleet:
    """One scenario's running parts, for its fault to act on."""

    gateway: Gateway
    smtp: SmtpEmulator
    max_api: Any
    workers: list[Worker]
    announcement_id: int
    disk: Path | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def chats_reached(self) -> int:
        return sum(1 for chat in SCHOOL.chats() if self.max_api.messages(chat))

    def letters(self) -> int:
        return len(self.smtp.messages)


async def until(check: Callable[[], bool], within: float = 120.0) -> None:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise TimeoutError("the fault's moment never came")
        await asyncio.sleep(0.05)


async def sigstop(fleet: Fleet) -> None:
    await until(lambda: fleet.chats_reached() >= 40)
    worker = fleet.workers[0].process
    worker.send_signal(signal.SIGSTOP)
    await asyncio.sleep(15)
    worker.send_signal(signal.SIGCONT)


async def skew(fleet: Fleet) -> None:
    """Nothing to do while it runs: worker 1 started two hours ahead. (Its «clock» alert names the machine, which
    worker 0, on the same machine with the right time, closes again: here the log line tells it instead.)"""


async def pg_restart(fleet: Fleet) -> None:
    await until(lambda: fleet.chats_reached() >= 60)
    started = time.monotonic()
    await asyncio.to_thread(_restart_postgres)
    fleet.notes["restart_seconds"] = round(time.monotonic() - started, 1)


async def full_disk(fleet: Fleet) -> None:
    assert fleet.disk is not None
    await until(lambda: fleet.letters() >= 100)
    filler = await asyncio.to_thread(fill_disk, fleet.disk)
    fleet.notes["full_at_letters"] = fleet.letters()
    await asyncio.sleep(10)
    filler.unlink()


async def relay_outage(fleet: Fleet) -> None:
    await until(lambda: fleet.letters() >= 100)
    fleet.smtp.refuse(421, count=None, seconds=OUTAGE, stage="connect")  # new connections are refused ...
    fleet.smtp.refuse(421, count=None, seconds=OUTAGE, stage="mail")  # ... and so is the next letter on an open one
    before = fleet.letters()
    alerted = False
    ends = time.monotonic() + OUTAGE
    while time.monotonic() < ends:
        alerted = alerted or any(a.kind == "outage" for a in await fleet.gateway.store.alerts(SCHOOL.id))
        await asyncio.sleep(1)
    fleet.notes["letters_during_outage"] = fleet.letters() - before
    fleet.notes["alert_during_outage"] = alerted
    back = time.monotonic()
    await until(lambda: fleet.letters() >= SCHOOL.letters, within=DEADLINE)
    fleet.notes["last_letter_after_return_s"] = round(time.monotonic() - back, 1)
    fleet.notes["alert_open_after"] = any(a.kind == "outage" for a in await fleet.gateway.store.alerts(SCHOOL.id))


async def max_chatter(fleet: Fleet) -> None:
    await until(lambda: fleet.chats_reached() >= 100)
    chatty = [chat for chat in SCHOOL.chats() if fleet.max_api.messages(chat)]
    for chat in chatty:
        for n in range(150):
            fleet.max_api.add_user_message(chat, f"Спасибо, приняли ({n})")
    fleet.notes["chats_with_150_replies"] = len(chatty)


def _restart_postgres() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    command = ["/usr/bin/pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]
    subprocess.run(command, check=True, capture_output=True)  # noqa: S603 - a fixed command


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir()
    subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)  # noqa: S603


def _first_traceback(workers: list[Worker]) -> str:
    """The end of the first traceback a worker printed (there should be none), to read in the results."""
    for worker in workers:
        text = worker.stderr()
        if "Traceback" in text:
            return text[text.index("Traceback") :][:3000]
    return ""


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Callable[[Fleet], Awaitable[None]]
    backend: str = "postgresql"
    workers: int = 2
    dispatch: dict[str, Any] = field(default_factory=dict)
    drop: float = 0.0  # the share of MAX answers lost (the message stored)
    skewed: bool = False  # worker 1's clock two hours ahead


SCENARIOS = [
    Scenario("sigstop", sigstop, dispatch={"lease_seconds": 5}),
    Scenario("skew", skew, drop=0.1, skewed=True),
    Scenario("pg_restart", pg_restart),
    Scenario("full_disk", full_disk, backend="sqlite", workers=1),
    Scenario("relay_outage", relay_outage),
    Scenario("max_chatter", max_chatter, drop=0.2),
]


async def run(scenario: Scenario) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"zvonok-{scenario.name}-")))
        disk = None
        if scenario.backend == "postgresql":
            database = await stack.enter_async_context(pg_schema())
        else:
            disk = folder / "disk"
            await asyncio.to_thread(_mount_tmpfs, disk, "24m")
            stack.callback(subprocess.run, ["/usr/bin/umount", "-l", str(disk)], check=False)
            database = f"sqlite:///{disk / 'zvonok.db'}"
        smtp = await stack.enter_async_context(SmtpEmulator())
        max_api, vk_api = await stack.enter_async_context(providers())
        populate([SCHOOL], max_api, vk_api)
        if scenario.drop:
            max_api.drop_randomly(scenario.drop, seed=7)
        dispatch = {"poll_seconds": 2, "unknown_recheck_seconds": 5, **scenario.dispatch}
        settings = {
            "database": "sqlite:///never-used.db",
            "email": {"host": smtp.host, "port": smtp.port, "from": "noreply@fleet.test", "pool_size": POOL},
            "max": {"base_url": max_api.base_url},
            "vk": {"base_url": vk_api.base_url},
            "dispatch": dispatch,
        }
        root = write_config(folder / "config", [SCHOOL], settings)
        config = load_config(root)
        gateway = await Gateway.open(replace(config, settings=replace(config.settings, database=database)))
        stack.push_async_callback(gateway.close)
        await gateway.import_roster(SCHOOL.id, read_roster(config.rosters[SCHOOL.id], config.schools[SCHOOL.id]))
        workers = []
        for n in range(scenario.workers):
            env = {"ZVONOK_DB": database}
            if scenario.skewed and n == 1:
                env |= {"LD_PRELOAD": str(FAKETIME), "FAKETIME": "+2h", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
            workers.append(await start_worker(n, root, folder, env))
        await asyncio.gather(*(w.started() for w in workers))
        started = time.monotonic()
        announcement_id = (await gateway.post(announcement(SCHOOL))).id
        fleet = Fleet(gateway, smtp, max_api, workers, announcement_id, disk)
        await scenario.fault(fleet)
        stuck = SCHOOL.deliveries
        while time.monotonic() - started < DEADLINE:
            try:
                progress = await gateway.store.progress(announcement_id)
            except Exception:  # the fault may still be on (a restarting server): look again
                await asyncio.sleep(1)
                continue
            stuck = sum(n for status, n in progress.items() if status not in FINAL_STATUSES)
            if not stuck:
                break
            await asyncio.sleep(0.5)
        seconds = round(time.monotonic() - started, 1)
        rows = await gateway.store.deliveries(announcement_id)
        await asyncio.sleep(3)  # what a resumed or slow worker would still send, it has sent by now
        codes = [await w.stop() for w in workers]
        tracebacks = sum(w.stderr().count("Traceback") for w in workers)
        store_warnings = sum(w.stderr().count("the store failed") for w in workers)
        clock_warnings = sum(w.stderr().count("clock is") for w in workers)
        traceback_sample = _first_traceback(workers)
        counts = received([SCHOOL], max_api, vk_api, smtp)
        chat_messages = {chat: max_api.messages(chat) for chat in SCHOOL.chats()}  # the parents' replies too
    letters = counts.copies
    posts = {chat: sum(1 for m in messages if m.sender_is_bot) for chat, messages in chat_messages.items()}
    return {
        "scenario": scenario.name,
        "backend": scenario.backend,
        "workers": scenario.workers,
        "deliveries": SCHOOL.deliveries,
        "seconds": seconds,
        "lost": sum(1 for n in posts.values() if not n) + sum(1 for m in SCHOOL.mailboxes() if not letters.get(m)),
        "chat_duplicates": sum(n - 1 for n in posts.values() if n > 1),
        "letter_duplicates": sum(n - 1 for n in letters.values() if n > 1),
        "stuck": stuck,
        "exit_codes": codes,
        "tracebacks": tracebacks,
        "store_warnings": store_warnings,
        "clock_warnings": clock_warnings,
        "traceback_sample": traceback_sample,
        "rate_limited": counts.rate_limited[SCHOOL.token],
        "chats_tried_again": sum(1 for r in rows if r.channel != "email" and r.attempts > 1),
        "letters_tried_again": sum(1 for r in rows if r.channel == "email" and r.attempts > 1),
        **fleet.notes,
    }


async def main(only: list[str]) -> int:
    results = []
    for scenario in SCENARIOS:
        if only and scenario.name not in only:
            continue
        result = await run(scenario)
        results.append(result)
        print(
            f"[{scenario.name}] {result['seconds']} s: lost {result['lost']}, chat duplicates "
            f"{result['chat_duplicates']}, letter duplicates {result['letter_duplicates']}, stuck {result['stuck']}",
            flush=True,
        )
    ran = {r["scenario"] for r in results}
    kept = [r for r in (load_result("faults") or {}).get("scenarios", []) if r["scenario"] not in ran]
    order = [s.name for s in SCENARIOS]
    merged = sorted(kept + results, key=lambda r: order.index(r["scenario"]))
    write_result("faults", {"machine": await machine(), "scenarios": merged})
    return 0 if all(r["lost"] == r["chat_duplicates"] == r["stuck"] == 0 for r in results) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=[s.name for s in SCENARIOS], help="run only these scenarios")
    arguments = parser.parse_args()
    if not FAKETIME.exists() or not shutil.which("pg_ctlcluster"):
        print("needs Debian's faketime and the local PostgreSQL cluster (./run reliability installs faketime)")
        sys.exit(2)
    sys.exit(asyncio.run(main(arguments.only or [])))
