"""Three `zvonok worker` processes on one PostgreSQL store: 5,000 deliveries, one worker SIGKILLed mid-run.

Five generated schools (tests/fleet.py): one on MAX and four on VK, each with 300 classes (a parents' and a
students' chat each: 600 chats per school, one bot token per school) and 400 parents who are not in the chats
and get a letter. One force-majeure announcement per school: 5 x 600 chat deliveries + 5 x 400 letters =
5,000 deliveries. The emulators enforce the providers' real limits per token (MAX 30 requests/s, VK 20), and
the gateway runs at its default rates (26 and 18): three processes each pacing alone would go three times too
fast, so the test shows that the shared limit holds (not one "too many requests" for any token). MAX, one
request per chat, bounds the run: 600 / 26 per second = 23 s at best.

The workers are started first and poll only every 30 s, so they can start at once only because the
announcements' commits wake them (LISTEN/NOTIFY). When a third of the MAX messages are in, worker 0 is
killed (SIGKILL: no cleanup); what it had leased comes back when its 10 s leases run out, and the others
finish it, reconciling before any resend: every chat has exactly one message. A live worker may take
longer than a lease to send its batch (three share one MAX token) and keeps its leases by heartbeat: only
the dead worker's deliveries are taken over. The emulators run in a process of their own (tests/fleet.py
`providers`), so that the moments they count requests at are not held up by the test's own work.

E-mail has no way to ask the server what arrived, so a letter the killed worker had handed to the SMTP
server but not yet recorded is sent again (the one duplicate the design admits, README "No duplicate posts"),
with the same Message-ID. The test allows exactly that: every parent has one distinct letter (Message-ID),
and a second copy only of a letter whose delivery was taken over from the killed worker.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.emulators.smtp import SmtpEmulator
from gateway.app import Gateway
from gateway.config import load_config
from gateway.domain import Status
from gateway.roster import read_roster
from tests.conftest import PgSchemas
from tests.fleet import (
    SchoolSpec,
    Worker,
    announcement,
    populate,
    providers,
    received,
    start_worker,
    write_config,
)

SCHOOLS = [
    SchoolSpec("m1", 1, "max", "max-token-school-1", classes=300, letters=400),
    *(SchoolSpec(f"v{n}", n, "vk", f"vk-token-school-{n}", classes=300, letters=400) for n in range(2, 6)),
]
TOTAL = sum(s.deliveries for s in SCHOOLS)
WORKERS = 3
LEASE_SECONDS = 10


@pytest.mark.slow
async def test_three_workers_deliver_5000_once_within_the_limits_though_one_is_killed(
    tmp_path: Path, pg_schemas: PgSchemas
) -> None:
    assert TOTAL == 5000
    _, pg_url = await pg_schemas.new()
    started = time.monotonic()
    async with SmtpEmulator() as smtp, providers() as (max_api, vk_api):
        populate(SCHOOLS, max_api, vk_api)
        settings = {
            # The file names SQLite; ZVONOK_DB (the environment wins) puts every process on PostgreSQL.
            "database": "sqlite:///never-used.db",
            "email": {"host": smtp.host, "port": smtp.port, "from": "noreply@fleet.test"},
            "max": {"base_url": max_api.base_url},
            "vk": {"base_url": vk_api.base_url},
            "dispatch": {"batch_size": 40, "lease_seconds": LEASE_SECONDS, "poll_seconds": 30},
        }
        root = write_config(tmp_path / "config", SCHOOLS, settings)
        config = load_config(root)
        config = replace(config, settings=replace(config.settings, database=pg_url))
        gateway = await Gateway.open(config)
        workers: list[Worker] = []
        try:
            for spec in SCHOOLS:
                await gateway.import_roster(spec.id, read_roster(config.rosters[spec.id], config.schools[spec.id]))
            workers = [await start_worker(n, root, tmp_path, {"ZVONOK_DB": pg_url}) for n in range(WORKERS)]
            await asyncio.gather(*(w.started() for w in workers))

            posted = time.monotonic()
            ids = [(await gateway.post(announcement(spec))).id for spec in SCHOOLS]
            max_chats = [c for s in SCHOOLS if s.channel == "max" for c in s.chats()]
            max_token = next(s.token for s in SCHOOLS if s.channel == "max")
            first_message = killed_at = None
            while True:
                sent = max_api.request_count(max_token)
                if first_message is None and (sent or smtp.messages):
                    first_message = time.monotonic() - posted
                if killed_at is None and sent >= len(max_chats) // 3:
                    workers[0].kill()
                    killed_at = time.monotonic() - posted
                progress = await gateway.store.progress()
                if killed_at is not None and sum(progress.values()) == TOTAL and set(progress) == {Status.DELIVERED}:
                    break
                assert time.monotonic() - started < 85, f"not done: {progress}"
                await asyncio.sleep(0.2)
            done_after = time.monotonic() - posted
            rows = [row for i in ids for row in await gateway.store.deliveries(i)]
        finally:
            codes = [await w.stop() for w in workers]
            await gateway.close()
        counts = received(SCHOOLS, max_api, vk_api, smtp)

    # Woken by the commits (they poll every 30 s), not found by a poll.
    assert first_message is not None and first_message < 15  # the fallback poll would take up to 30 s
    # Worker 0 died by SIGKILL; the others stopped cleanly on SIGTERM.
    assert codes == [-9] + [0] * (WORKERS - 1), [w.stderr()[-2000:] for w in workers]
    for w in workers[1:]:
        assert "Traceback" not in w.stderr(), w.stderr()[-2000:]
    assert not (root / "never-used.db").exists()  # ZVONOK_DB chose the database, for every process

    # None lost: every delivery final and delivered, every chat and every parent reached.
    assert len(rows) == TOTAL and {r.status for r in rows} == {Status.DELIVERED}
    assert sorted(counts.per_chat) == sorted(c for s in SCHOOLS for c in s.chats())
    mailboxes = sorted(m for s in SCHOOLS for m in s.mailboxes())
    assert sorted(counts.distinct) == mailboxes
    # None duplicated: one message per chat; one letter (one Message-ID) per parent.
    assert set(counts.per_chat.values()) == {1}, {c: n for c, n in counts.per_chat.items() if n != 1}
    assert set(counts.distinct.values()) == {1}
    # The killed worker's leases were taken over by the others (so the kill did hit work in flight) ...
    taken_over = {r.target for r in rows if r.attempts > 1}
    assert taken_over, "the killed worker held no lease"
    # ... and a second copy of a letter exists only where its delivery was taken over from the killed worker.
    copied_twice = {m for m, n in counts.copies.items() if n > 1}
    assert copied_twice <= taken_over
    # Within every token's limit, across the three processes (MAX: no 429; VK: no error 6).
    assert counts.rate_limited == {s.token: 0 for s in SCHOOLS}, counts.rate_limited
    print(
        f"\n{TOTAL} deliveries by {WORKERS} workers: first message {first_message:.1f} s after posting, worker 0 "
        f"killed at {killed_at:.1f} s, all delivered at {done_after:.1f} s; taken over {len(taken_over)}, "
        f"letters sent twice {len(copied_twice)}; requests per token {counts.requests}"
    )
