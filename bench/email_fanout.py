"""Benchmark: e-mail fan-out to 1,000 and 10,000 guardians — the gateway vs Apprise vs a raw aiosmtplib blast.

All three send one letter per guardian to the same local SMTP server (the SMTP emulator, aiosmtpd, run in its
own process so that it does not share the client's event loop):

- **zvonok**: the whole gateway — a deputy posts to a school whose guardians are in no chat, the planner makes
  one e-mail delivery each, the SQLite outbox commits them, the dispatcher sends them through `EmailChannel`
  (a pool of 4 SMTP connections, a rendered MIME letter per guardian, a stable Message-ID), and records every
  outcome. Time from `post()` to every delivery final.
- **apprise** (`pip install apprise`), in its fastest configuration for this job: the recipients split over
  as many `mailto://` URLs as our pool has connections, notified at once (each URL is one SMTP connection
  with one message per recipient, which is what Apprise does with several `to=`), and — measured too — one
  URL with all recipients.
  Apprise's SMTP timeout is raised from its 4 s to the gateway's 30 s (`cto=30`): on a loaded host its 4 s
  failed whole connections of 2,500 letters.
- **raw**: the floor — a pool of 4 aiosmtplib connections sending the very letters the gateway sent (byte for
  byte, as the server received them: the server's work per letter is the same), with no rendering, no store
  and no bookkeeping.

Reported: seconds, letters/s, the ratios (Apprise time / zvonok time, target ≥ 20; raw time / zvonok time,
target ≥ 0.7), peak RSS of the gateway's process, and that the server received exactly one letter per
recipient each time. Results: bench/results/email_fanout.json. Usage: `python bench/email_fanout.py [--sizes
1000 10000] [--reps 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import resource
import statistics
import tempfile
import textwrap
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
from smtp_server import Letter, SmtpServerProcess

from gateway.app import Gateway
from gateway.clock import ShiftedClock
from gateway.config import load_config
from gateway.domain import FINAL_STATUSES, AnnouncementRequest, Audience, Group, Kind
from gateway.roster import parse_roster

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "email_fanout.json"
POOL = 4
SUBJECT = "Изменение расписания: уроки сокращены"
BODY = "Уважаемые родители! В пятницу уроки сокращены до 30 минут. Продлёнка работает как обычно."


def recipients(n: int) -> list[str]:
    return [f"parent{i:05d}@mail.example" for i in range(n)]


# ---------------------------------------------------------------------------------------------------- zvonok


def write_school(root: Path, n: int, port: int) -> None:
    (root / "schools").mkdir(parents=True)
    (root / "zvonok.yaml").write_text(
        f"email: {{host: 127.0.0.1, port: {port}, from: noreply@school.example, pool_size: {POOL}}}\n"
        "dispatch: {batch_size: 500}\n",
        encoding="utf-8",
    )
    (root / "schools" / "bench.yaml").write_text(
        textwrap.dedent(
            """\
            id: bench
            name: Школа для замера
            timezone: Europe/Moscow
            calendar: {vacations: []}
            staff: [{id: dep, name: Завуч, role: deputy}]
            classes: [{name: 5А}]
            """
        ),
        encoding="utf-8",
    )
    rows = ["Класс;Ученик;Представитель;E-mail;В чате"]
    rows += [f"5А;Ученик {i};Родитель {i};{address};нет" for i, address in enumerate(recipients(n))]
    (root / "roster.csv").write_text("\n".join(rows), encoding="utf-8")


async def zvonok(n: int, server: SmtpServerProcess) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_school(root, n, server.port)
        config = load_config(root)
        config = replace(config, settings=replace(config.settings, database=f"sqlite:///{root / 'z.db'}"))
        tuesday_10 = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # inside the window; e-mail is not held anyway
        gateway = await Gateway.open(config, clock=ShiftedClock(tuesday_10 - datetime.now(UTC)))
        try:
            school = config.schools["bench"]
            roster = parse_roster((root / "roster.csv").read_bytes(), school)
            await gateway.import_roster("bench", roster)
            request = AnnouncementRequest(
                "bench", "dep", Kind.SCHEDULE_CHANGE, "уроки сокращены", BODY, Audience(frozenset({Group.PARENTS}))
            )
            started = time.perf_counter()
            posted = await gateway.post(request)
            while True:
                await gateway.dispatcher.run_once()
                counts = await gateway.store.progress(posted.id)
                if all(status in FINAL_STATUSES for status in counts):
                    break
                await asyncio.sleep(0.01)
            return time.perf_counter() - started
        finally:
            await gateway.close()


# ---------------------------------------------------------------------------------------------------- apprise


def apprise_send(n: int, server: SmtpServerProcess, urls: int) -> float:
    import apprise

    targets = recipients(n)
    groups = [targets[i::urls] for i in range(urls)]
    started = time.perf_counter()
    threads = []
    failures = []

    def send(group: list[str]) -> None:
        notifier = apprise.Apprise()
        url = f"mailto://127.0.0.1:{server.port}?mode=insecure&cto=30&from=noreply@school.example&to={','.join(group)}"
        notifier.add(url)
        if not notifier.notify(title=SUBJECT, body=BODY):
            failures.append(len(group))

    log = logging.getLogger("apprise")
    said = _Said()  # why a send failed is logged by Apprise at DEBUG ("Socket Exception: ...")
    level = log.level
    log.addHandler(said)
    log.setLevel(logging.DEBUG)
    try:
        for group in groups:
            thread = threading.Thread(target=send, args=(group,))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
    finally:
        log.removeHandler(said)
        log.setLevel(level)
    if failures:
        raise RuntimeError(f"Apprise reported failures for {sum(failures)} recipients: {'; '.join(said.problems)}")
    return time.perf_counter() - started


class _Said(logging.Handler):
    """Apprise's warnings and its exceptions' texts, for the error when it reports a failure."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING or "Exception" in text:
            self.problems.append(text)


def apprise_per_letter(n: int, server: SmtpServerProcess) -> float:
    """The way a script looping over the guardians would use Apprise: one notify() per letter (Apprise opens an
    SMTP connection for each)."""
    import apprise

    started = time.perf_counter()
    for address in recipients(n):
        notifier = apprise.Apprise()
        notifier.add(f"mailto://127.0.0.1:{server.port}?mode=insecure&cto=30&from=noreply@school.example&to={address}")
        if not notifier.notify(title=SUBJECT, body=BODY):
            raise RuntimeError(f"Apprise reported a failure for {address}")
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------------- raw


async def raw(letters: list[Letter], server: SmtpServerProcess) -> float:
    """The same letters, byte for byte, over a pool of plain aiosmtplib connections: no rendering, no store."""
    queue: asyncio.Queue[Letter] = asyncio.Queue()
    for letter in letters:
        queue.put_nowait(letter)
    started = time.perf_counter()

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False, use_tls=False)
        await smtp.connect()
        try:
            while not queue.empty():
                sender, to, data = queue.get_nowait()
                await smtp.sendmail(sender, to, data)
        finally:
            await smtp.quit()

    await asyncio.gather(*(worker() for _ in range(POOL)))
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------------- main


def checked(server: SmtpServerProcess, n: int, what: str) -> None:
    messages, distinct, most = server.received()
    if (messages, distinct, most) != (n, n, 1):
        raise RuntimeError(f"{what}: server got {messages} letters to {distinct} recipients (most {most}), not {n}")
    server.clear()


def main(sizes: list[int], reps: int) -> dict[str, Any]:
    server = SmtpServerProcess()
    out: dict[str, Any] = {"benchmark": "email_fanout", "pool_connections": POOL, "sizes": {}}
    try:
        for n in sizes:
            times: dict[str, list[float]] = {
                "zvonok": [],
                "apprise": [],
                "apprise_one_url": [],
                "apprise_per_letter": [],
                "raw": [],
            }
            sizes: dict[str, list[int]] = {"zvonok": [], "apprise": []}
            for _ in range(reps):
                times["zvonok"].append(asyncio.run(zvonok(n, server)))
                letters = server.letters()
                sizes["zvonok"] += [len(data) for _, _, data in letters]
                checked(server, n, "zvonok")
                times["raw"].append(asyncio.run(raw(letters, server)))
                checked(server, n, "raw")
                times["apprise"].append(apprise_send(n, server, POOL))
                sizes["apprise"] += [len(data) for _, _, data in server.letters()]
                checked(server, n, "apprise")
            if n <= 1000:  # one connection for everything: slow, measured once on the small size
                times["apprise_one_url"].append(apprise_send(n, server, 1))
                checked(server, n, "apprise, one URL")
                times["apprise_per_letter"].append(apprise_per_letter(n, server))
                checked(server, n, "apprise, one notify per letter")
            median = {k: round(statistics.median(v), 3) for k, v in times.items() if v}
            out["sizes"][str(n)] = {
                "runs_seconds": {k: [round(x, 3) for x in v] for k, v in times.items() if v},
                "median_seconds": median,
                "letters_per_second": {k: round(n / v, 1) for k, v in median.items()},
                "apprise_over_zvonok": round(median["apprise"] / median["zvonok"], 2),
                "zvonok_share_of_raw_rate": round(median["raw"] / median["zvonok"], 3),
                "median_letter_bytes": {k: int(statistics.median(v)) for k, v in sizes.items()},
            }
            print(f"{n} letters: " + ", ".join(f"{k} {v} s" for k, v in median.items()), flush=True)
    finally:
        server.close()
    out["targets"] = {"apprise_over_zvonok_at_least": 20, "zvonok_share_of_raw_rate_at_least": 0.7}
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    out["summary"] = summary(out)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")
    return out


def summary(out: dict[str, Any]) -> list[str]:
    lines = [
        "E-mail fan-out to the same local SMTP server (aiosmtpd in its own process), 4 connections each; the raw "
        "client sends the gateway's own letters again, byte for byte.",
        "",
        "| letters | zvonok (s) | Apprise, 4 URLs at once (s) | raw aiosmtplib (s) | Apprise ÷ zvonok "
        "| zvonok ÷ raw rate |",
        "|---|---|---|---|---|---|",
    ]
    for n, r in out["sizes"].items():
        m = r["median_seconds"]
        lines.append(
            f"| {int(n):,} | {m['zvonok']} | {m['apprise']} | {m['raw']} | {r['apprise_over_zvonok']} "
            f"| {r['zvonok_share_of_raw_rate']} |"
        )
    t = out["targets"]
    lines += [
        "",
        f"Targets: Apprise ÷ zvonok ≥ {t['apprise_over_zvonok_at_least']}; zvonok ≥ "
        f"{t['zvonok_share_of_raw_rate_at_least']} × the raw rate.",
    ]
    big = out["sizes"][max(out["sizes"], key=int)]
    b = big["median_letter_bytes"]
    lines += [
        "",
        "What bounds them: the SMTP server. aiosmtpd is pure Python and parses every letter it accepts, so the "
        f"raw client, sending the gateway's own letters with nothing else to do, reaches "
        f"{big['letters_per_second']['raw']} letters/s and the gateway {big['letters_per_second']['zvonok']}; the "
        f"gateway's own work (rendering, the outbox, recording every outcome) is the rest. Apprise in its fastest "
        f"configuration is just as bound by the server, and its letters are smaller ({b['apprise']:,} bytes "
        f"against the gateway's {b['zvonok']:,}, which carry text and HTML, List-Unsubscribe, List-Id and the "
        "school's Reply-To), which the server parses faster. Through one server no client can be 20 "
        "times faster than another that keeps its connections busy; the gap opens only against Apprise used "
        "without connection reuse, below.",
    ]
    for n, r in out["sizes"].items():
        m = r["median_seconds"]
        if "apprise_per_letter" in m:
            lines += [
                "",
                f"Other ways of using Apprise, on {int(n):,} letters (one run each): all recipients on one URL "
                f"(one connection) {m['apprise_one_url']} s, {round(m['apprise_one_url'] / m['zvonok'], 2)}× "
                f"zvonok's time; one `notify()` per letter, as a script looping over the guardians would do (a "
                f"connection per letter) {m['apprise_per_letter']} s, "
                f"{round(m['apprise_per_letter'] / m['zvonok'], 2)}× zvonok's time.",
            ]
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    result = main(args.sizes, args.reps)
    print("\n".join(result["summary"]))
