"""One school's long queue must not hold up another school's chats: the dispatcher sends for several bot tokens at
once (gateway/dispatcher.py `_claimers`), each claim skipping the accounts already being sent for. And one
channel's slow sends must not hold up another channel: every lane runs on its own (`Dispatcher.run`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.emulators.max import MaxEmulator
from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.config import load_config
from gateway.domain import EMAIL, Status
from tests.fleet import SchoolSpec, announcement, write_config
from tests.world import World, running_world

LARGE = SchoolSpec("big", 1, "max", "max-token-big", classes=30, letters=0)  # 60 chats: ~2 s at 28 per second
SMALL = SchoolSpec("small", 2, "max", "max-token-small", classes=1, letters=0)  # 2 chats


async def large_school_messages_before_the_small_ones(tmp_path: Path, accounts_in_parallel: int) -> int:
    """Post to the large school, then to the small one, send everything; how many of the large school's chats had
    their message when the small school's last chat got its own."""
    async with MaxEmulator() as max_api:
        for spec in (LARGE, SMALL):
            max_api.add_bot(spec.token)
            for chat_id in spec.chats():
                max_api.add_chat(chat_id, f"Чат {chat_id}", token=spec.token)
        settings = {
            "database": f"sqlite:///{tmp_path / 'z.db'}",
            "max": {"base_url": max_api.base_url},
            # 10 deliveries a batch: the large school's first 6 batches come before the small one's, in order.
            "dispatch": {"batch_size": 10, "accounts_in_parallel": accounts_in_parallel},
        }
        gateway = await Gateway.open(load_config(write_config(tmp_path / "config", [LARGE, SMALL], settings)))
        try:
            large = await gateway.post(announcement(LARGE))
            small = await gateway.post(announcement(SMALL))
            sending = asyncio.create_task(gateway.dispatcher.run_once())
            while not all(max_api.messages(c) for c in SMALL.chats()):
                assert not sending.done(), "the small school's chats got nothing"
                await asyncio.sleep(0.005)
            before = sum(len(max_api.messages(c)) for c in LARGE.chats())
            assert await sending == 62
            assert await gateway.store.progress(large.id) == {Status.DELIVERED: 60}
            assert await gateway.store.progress(small.id) == {Status.DELIVERED: 2}
        finally:
            await gateway.close()
        assert all(len(max_api.messages(c)) == 1 for spec in (LARGE, SMALL) for c in spec.chats())
        return before


async def test_a_small_school_is_not_queued_behind_a_large_one(tmp_path: Path) -> None:
    # The default: the small school's bot is sent for while the large school's queue is still being worked through.
    assert await large_school_messages_before_the_small_ones(tmp_path, accounts_in_parallel=4) < 20


async def test_with_one_account_at_a_time_the_queue_goes_in_order(tmp_path: Path) -> None:
    # The behaviour without parallel claims (and the proof that the test above can fail): the small school waits.
    assert await large_school_messages_before_the_small_ones(tmp_path, accounts_in_parallel=1) == 60


async def letters_arrived(world: World, count: int, *, seconds: float) -> None:
    for _ in range(int(seconds / 0.01)):  # the SMTP emulator has no hook for this: look every 10 ms
        if len(world.smtp.messages) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(world.smtp.messages)} letters of {count} after {seconds} s")


async def test_letters_posted_while_a_max_send_hangs_go_out_at_once(tmp_path: Path, clock: ManualClock) -> None:
    """The MAX lane is stuck in a slow send (the provider takes 8 s to answer); an announcement posted meanwhile
    has its letters sent at once, not after the MAX lane is done (as when one round waited for every lane)."""
    async with running_world(tmp_path, clock) as world:
        world.max.delay_next(1, 8.0, chat_id=-501)  # 5А parents' chat
        stop = asyncio.Event()
        running = asyncio.create_task(world.gateway.dispatcher.run(stop))
        try:
            first = await world.post()
            letters = sum(d.channel == EMAIL for d in await world.gateway.store.deliveries(first))
            assert letters > 0
            await letters_arrived(world, letters, seconds=5)
            second = await world.post(title="Ещё одно объявление")
            await letters_arrived(world, 2 * letters, seconds=5)
            # the second announcement's letters are all out and recorded (the last chunk's commit follows its
            # letters' arrival by a moment), and the first one's MAX message is still on its way
            for _ in range(500):
                statuses = {d.status for d in await world.gateway.store.deliveries(second) if d.channel == EMAIL}
                if statuses == {Status.DELIVERED}:
                    break
                await asyncio.sleep(0.01)
            assert statuses == {Status.DELIVERED}
            assert {d.status for d in await world.gateway.store.deliveries(first) if d.target == "-501"} == {
                Status.SENDING
            }
        finally:
            stop.set()
            await running
        assert await world.gateway.store.progress(first) == {Status.DELIVERED: letters + 2}
