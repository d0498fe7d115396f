"""One school's long queue must not hold up another school's chats: the dispatcher sends for several bot tokens at
once (gateway/dispatcher.py `_drain`), each claim skipping the accounts already being sent for."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.emulators.max import MaxEmulator
from gateway.app import Gateway
from gateway.config import load_config
from gateway.domain import Status
from tests.fleet import SchoolSpec, announcement, write_config

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
