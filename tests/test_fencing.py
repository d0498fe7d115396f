"""A worker paused past its lease (SIGSTOP, as a VM pause or a swap storm does it) sends nothing of what another
worker has taken over meanwhile: every delivery's lease is checked immediately before its request leaves.

Two `zvonok worker` processes on one PostgreSQL store, leases of 2 s. One school on MAX with 60 classes (120
chats, a request each, at MAX's pace of ~26 a second shared by the two) and 80 parents who get letters. When the
MAX emulator has taken 15 messages, worker 0 is stopped for 8 s: the other takes its batch over once its leases
run out, checks the chats for what worker 0 had sent (MAX has no idempotency key) and sends the rest. Then worker
0 continues, still holding the rest of a batch it was sending. Without the fence it posted all of it again (94 to
155 duplicates in the fault review); with it, it sends nothing of it and logs one warning.

A letter the paused worker had on the wire when it stopped may arrive twice (the relay took it, the outcome was
not recorded), at most one per connection of its pool, with the same Message-ID; chats never.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import replace
from pathlib import Path

from adapters.emulators.smtp import SmtpEmulator
from gateway.app import Gateway
from gateway.config import load_config
from gateway.domain import Status
from gateway.roster import read_roster
from tests.conftest import PgSchemas
from tests.fleet import SchoolSpec, Worker, announcement, populate, providers, received, start_worker, write_config

SCHOOL = SchoolSpec("m1", 1, "max", "max-token-school-1", classes=60, letters=80)
LEASE_SECONDS = 2
POOL = 4  # SMTP connections per worker


async def test_a_worker_paused_past_its_lease_sends_nothing_taken_over(tmp_path: Path, pg_schemas: PgSchemas) -> None:
    _, pg_url = await pg_schemas.new()
    started = time.monotonic()
    async with SmtpEmulator() as smtp, providers() as (max_api, vk_api):
        populate([SCHOOL], max_api, vk_api)
        settings = {
            "database": "sqlite:///never-used.db",
            "email": {"host": smtp.host, "port": smtp.port, "from": "noreply@fleet.test", "pool_size": POOL},
            "max": {"base_url": max_api.base_url},
            "vk": {"base_url": vk_api.base_url},
            "dispatch": {"batch_size": 40, "lease_seconds": LEASE_SECONDS, "poll_seconds": 1},
        }
        root = write_config(tmp_path / "config", [SCHOOL], settings)
        config = load_config(root)
        config = replace(config, settings=replace(config.settings, database=pg_url))
        gateway = await Gateway.open(config)
        workers: list[Worker] = []
        try:
            await gateway.import_roster(SCHOOL.id, read_roster(config.rosters[SCHOOL.id], config.schools[SCHOOL.id]))
            workers = [await start_worker(n, root, tmp_path, {"ZVONOK_DB": pg_url}) for n in range(2)]
            await asyncio.gather(*(w.started() for w in workers))
            announcement_id = (await gateway.post(announcement(SCHOOL))).id
            while max_api.request_count(SCHOOL.token) < 15:
                assert time.monotonic() - started < 60, "nothing was sent"
                await asyncio.sleep(0.02)
            workers[0].process.send_signal(signal.SIGSTOP)
            await asyncio.sleep(4 * LEASE_SECONDS)
            workers[0].process.send_signal(signal.SIGCONT)
            while True:
                progress = await gateway.store.progress(announcement_id)
                if set(progress) == {Status.DELIVERED} and sum(progress.values()) == SCHOOL.deliveries:
                    break
                assert time.monotonic() - started < 120, f"not done: {progress}"
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # what the resumed worker would still send, it has sent by now
            rows = await gateway.store.deliveries(announcement_id)
        finally:
            codes = [await w.stop() for w in workers]
            await gateway.close()
        counts = received([SCHOOL], max_api, vk_api, smtp)

    assert codes == [0, 0], [w.stderr()[-2000:] for w in workers]
    taken_over = {r.target for r in rows if r.attempts > 1}
    assert taken_over, "the pause hit no lease in flight"
    # None lost, none duplicated in a chat: one message per chat.
    assert sorted(counts.per_chat) == sorted(SCHOOL.chats())
    assert set(counts.per_chat.values()) == {1}, {c: n for c, n in counts.per_chat.items() if n != 1}
    # Every parent has their letter (one Message-ID); a second copy only of a letter that was on the wire.
    assert sorted(counts.distinct) == sorted(SCHOOL.mailboxes()) and set(counts.distinct.values()) == {1}
    twice = {m for m, n in counts.copies.items() if n > 1}
    assert twice <= taken_over and len(twice) <= POOL, twice
    assert "another sender has them" in workers[0].stderr() or "not sent" in workers[0].stderr()
