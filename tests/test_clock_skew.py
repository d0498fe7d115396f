"""One clock for shared state on PostgreSQL: a process whose machine clock is two hours ahead takes the database
server's time, so the times it writes for the others (a re-check after an unanswered send) do not hold their work
back, and the IT admin is told about the clock."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.app import Gateway
from gateway.clock import ShiftedClock, SystemClock
from gateway.domain import Group, Kind, Status
from tests.world import running_world


async def test_a_worker_two_hours_ahead_does_not_delay_the_others(tmp_path: Path, pg_url: str) -> None:
    async with running_world(tmp_path, SystemClock(), database=pg_url) as world:
        ahead = await Gateway.open(world.gateway.config, clock=ShiftedClock(timedelta(hours=2)))
        try:
            assert abs(ahead.clock.now() - datetime.now(UTC)) < timedelta(seconds=1)  # the database's time
            [alert] = [a for a in await ahead.store.alerts("s1") if a.kind == "clock"]
            assert "расходятся с часами базы данных на 2.0 ч" in alert.message
            quick = replace(ahead.dispatcher.settings, unknown_recheck_seconds=1.0, poll_seconds=0.2)
            ahead.dispatcher.settings = world.gateway.dispatcher.settings = quick
            world.max.drop_next(1, chat_id=-501)  # stored, but the answer is lost: the outcome is unknown
            announcement_id = await world.post(
                {Group.PARENTS}, author="dir", kind=Kind.FORCE_MAJEURE, classes=frozenset({"5А"}), title="Карантин"
            )
            await ahead.dispatcher.run_once()  # the worker that is ahead sends, and writes when to look again
            [chat] = [d for d in await world.gateway.store.deliveries(announcement_id) if d.target == "-501"]
            assert chat.status is Status.UNKNOWN
        finally:
            await ahead.close()
        stop = asyncio.Event()
        running = asyncio.create_task(world.gateway.dispatcher.run(stop))  # the others finish it
        try:
            for _ in range(100):
                [chat] = [d for d in await world.gateway.store.deliveries(announcement_id) if d.target == "-501"]
                if chat.status is Status.DELIVERED:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=10)
        assert chat.status is Status.DELIVERED  # within seconds, not two hours
        assert len(world.max.messages(-501)) == 1  # found by its marker, not sent again
