"""VkChannel against the VK emulator over real HTTP: sending, splitting, the error table, dedup under faults,
execute batching, rate limiting, and secrets kept out of errors and logs."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import aiohttp
import pytest

from adapters.base import (
    AdapterError,
    CredentialError,
    DeadTarget,
    Message,
    Outcome,
    PermanentError,
    RateLimited,
    Sent,
    TransientError,
    UnknownOutcome,
)
from adapters.emulators.vk import CHAT_PEER_OFFSET, VkEmulator
from adapters.ratelimit import RateLimiters
from adapters.vk import VkChannel, random_id

TOKEN = "vk1.a.SCHOOL-57-secret-token-value"
TOKEN_B = "vk1.a.GYMNASIUM-2-secret-token"
GROUP = 5701
CHATS = 30


def peer(chat: int) -> int:
    return CHAT_PEER_OFFSET + chat


def message(chat: int, key: str | None = None, text: str = "Завтра занятия с 10:00.", **kw: str) -> Message:
    return Message(
        key=key or f"ann-1/chat-{chat}",
        account=kw.pop("account", "school57"),
        target=str(peer(chat)),
        school="Школа № 57",
        kind="schedule_change",
        kind_label="Изменение расписания",
        title="Перенос уроков",
        text=text,
        reference="№ 12",
        **kw,
    )


@pytest.fixture
async def emu() -> AsyncIterator[VkEmulator]:
    async with VkEmulator(rate_limit=1000, hang_seconds=1.0) as emulator:
        emulator.add_community(TOKEN, GROUP)
        emulator.add_community(TOKEN_B, 6601)
        for chat in range(1, CHATS + 1):
            emulator.add_chat(chat, f"{chat} класс, родители", group_id=GROUP)
        emulator.add_chat(90, "Гимназия, учителя", group_id=6601)
        yield emulator


Factory = Callable[..., VkChannel]


@pytest.fixture
async def make_channel(emu: VkEmulator) -> AsyncIterator[Factory]:
    channels: list[VkChannel] = []

    def make(**kw: object) -> VkChannel:
        options: dict[str, object] = {
            "base_url": emu.base_url,
            "rate": 500.0,
            "timeout": 2.0,
            "backoff": 0.01,
            "rate_penalty": 0.05,
        }
        options.update(kw)
        channel = VkChannel({"school57": TOKEN, "gymnasium2": TOKEN_B}, **options)  # type: ignore[arg-type]
        channels.append(channel)
        return channel

    yield make
    for channel in channels:
        await channel.aclose()


@pytest.fixture
def channel(make_channel: Factory) -> VkChannel:
    return make_channel()


def texts(emu: VkEmulator, chat: int) -> list[str]:
    return [m.text for m in emu.messages(peer(chat))]


# --- sending ---------------------------------------------------------------------------------------------


async def test_send_posts_the_plain_text_with_a_deterministic_random_id(emu: VkEmulator, channel: VkChannel) -> None:
    msg = message(1)
    sent = await channel.send(msg)
    stored = emu.messages(peer(1))
    assert len(stored) == 1
    assert stored[0].text == msg.plain_text()
    assert stored[0].random_id == random_id(msg.key, 0)
    assert sent == Sent(str(stored[0].message_id), parts=1)
    assert emu.requests(TOKEN) == 1


def test_random_id_is_stable_nonzero_and_63_bit() -> None:
    ids = {random_id(f"ann-{a}/chat-{c}", part) for a in range(50) for c in range(20) for part in range(3)}
    assert len(ids) == 50 * 20 * 3
    assert all(0 < i < 2**63 for i in ids)
    assert random_id("ann-1/chat-1", 0) == random_id("ann-1/chat-1", 0)
    assert random_id("ann-1/chat-1", 0) != random_id("ann-1/chat-1", 1)


async def test_a_long_text_goes_in_parts_in_order(emu: VkEmulator, channel: VkChannel) -> None:
    paragraphs = [f"Абзац {i}. " + "Текст объявления для родителей. " * 40 for i in range(10)]
    msg = message(2, text="\n\n".join(paragraphs))
    assert len(msg.plain_text()) > 2 * 4096
    sent = await channel.send(msg)
    stored = emu.messages(peer(2))
    assert sent.parts == len(stored) == 4
    assert sent.provider_id == ",".join(str(m.message_id) for m in stored)
    assert all(len(m.text) <= 4096 for m in stored)
    assert [m.random_id for m in stored] == [random_id(msg.key, i) for i in range(4)]
    assert " ".join(m.text for m in stored).split() == msg.plain_text().split()
    # the whole message again: every part is a duplicate, nothing new is posted
    assert await channel.send(msg) == sent
    assert len(emu.messages(peer(2))) == 4


async def test_emoji_heavy_parts_keep_to_the_limit_in_utf16_units(emu: VkEmulator, channel: VkChannel) -> None:
    # VK counts a text's length as its web client does, in UTF-16 code units: an emoji is two. This text is under
    # 4,096 characters but over 4,096 units, and the emulator (like VK) refuses such a part with 914.
    msg = message(3, text="\n".join(["🏆🎉🥇🏅🎊🏆🎉🥇🏅🎊 ура!"] * 230))
    assert len(msg.plain_text()) < 4096 < utf16_length(msg.plain_text())
    sent = await channel.send(msg)
    stored = emu.messages(peer(3))
    assert sent.parts == len(stored) == 2
    assert all(utf16_length(m.text) <= 4096 for m in stored)
    assert " ".join(m.text for m in stored).split() == msg.plain_text().split()


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def test_emulator_limit_below_ours_gives_914_as_permanent(make_channel: Factory) -> None:
    async with VkEmulator(message_limit=100) as emulator:
        emulator.add_community(TOKEN, GROUP)
        emulator.add_chat(1, "1 класс")
        channel = make_channel(base_url=emulator.base_url)
        with pytest.raises(PermanentError) as caught:
            await channel.send(message(1, text="x" * 200))
        assert type(caught.value) is PermanentError
        assert caught.value.code == "vk:914"
        short = make_channel(base_url=emulator.base_url, text_limit=100)
        sent = await short.send(message(1, text="слово " * 40))
        assert sent.parts >= 3
        assert len(emulator.messages(peer(1))) == sent.parts


async def test_unknown_account_and_bad_target_fail_without_a_request(emu: VkEmulator, channel: VkChannel) -> None:
    with pytest.raises(CredentialError):
        await channel.send(message(1, account="nobody"))
    bad = Message(key="k", account="school57", target="чат 5А", school="", kind="", title="t", text="x")
    with pytest.raises(PermanentError) as caught:
        await channel.send(bad)
    assert caught.value.code == "vk:target"
    outcomes = await channel.send_many([message(1, account="nobody"), bad, message(3)])
    assert isinstance(outcomes[0], CredentialError)
    assert isinstance(outcomes[1], PermanentError)
    assert isinstance(outcomes[2], Sent)
    assert emu.requests(TOKEN) == 1


# --- the error table -------------------------------------------------------------------------------------

ERROR_TABLE: list[tuple[int, type[AdapterError]]] = [
    (1, TransientError),
    (10, TransientError),
    (6, RateLimited),
    (9, TransientError),
    (29, TransientError),
    (5, CredentialError),
    (7, CredentialError),
    (14, CredentialError),
    (15, CredentialError),
    (917, DeadTarget),
    (945, DeadTarget),
    (1012, DeadTarget),
    (927, DeadTarget),
    (925, DeadTarget),
    (914, PermanentError),
    (100, PermanentError),
    (8, PermanentError),
    (13, PermanentError),
    (18, PermanentError),
    (901, PermanentError),
    (932, PermanentError),
]


def check_error(error: object, code: int, expected: type[AdapterError]) -> None:
    assert type(error) is expected, (code, error)
    assert isinstance(error, AdapterError)
    assert error.code == f"vk:{code}"
    assert str(error)
    if isinstance(error, TransientError):
        assert error.retry_after is not None
        if code == 9:
            assert error.retry_after >= 60
        elif code == 29:
            assert error.retry_after >= 3600
        elif code == 6:
            assert 0 < error.retry_after <= 5


@pytest.mark.parametrize(("code", "expected"), ERROR_TABLE)
async def test_error_table_single_send(
    emu: VkEmulator, channel: VkChannel, code: int, expected: type[AdapterError]
) -> None:
    emu.fail_next(code, times=3)  # 1 and 10 are retried: three attempts
    with pytest.raises(AdapterError) as caught:
        await channel.send(message(1))
    check_error(caught.value, code, expected)
    assert texts(emu, 1) == []


@pytest.mark.parametrize(("code", "expected"), ERROR_TABLE)
async def test_error_table_inside_execute_fails_only_its_message(
    emu: VkEmulator, channel: VkChannel, code: int, expected: type[AdapterError]
) -> None:
    emu.fail_next(code, times=3, method="messages.send", peer_id=peer(1))  # also the retries of 1/10
    outcomes = await channel.send_many([message(c) for c in (1, 2, 3)])
    check_error(outcomes[0], code, expected)
    assert all(isinstance(o, Sent) for o in outcomes[1:])
    assert texts(emu, 1) == []
    assert len(texts(emu, 2)) == len(texts(emu, 3)) == 1


@pytest.mark.parametrize(("state", "code"), [("read_only", 1012), ("disabled", 945), ("kicked", 917)])
async def test_real_chat_states_are_dead_targets(emu: VkEmulator, channel: VkChannel, state: str, code: int) -> None:
    emu.set_chat_state(4, state)
    with pytest.raises(DeadTarget) as caught:
        await channel.send(message(4))
    assert caught.value.code == f"vk:{code}"
    assert str(peer(4)) in str(caught.value)
    with pytest.raises(DeadTarget):
        await channel.send(message(90))  # the other community's chat: not ours (917)


async def test_revoked_token_is_a_credential_error(emu: VkEmulator, channel: VkChannel) -> None:
    emu.revoke_token(TOKEN)
    with pytest.raises(CredentialError) as caught:
        await channel.send(message(1))
    assert caught.value.code == "vk:5"
    assert "school57" in str(caught.value)
    assert all(isinstance(o, CredentialError) for o in await channel.send_many([message(1), message(2)]))


async def test_transient_errors_are_retried_here_first(emu: VkEmulator, channel: VkChannel) -> None:
    emu.fail_next(10, times=2)
    assert isinstance(await channel.send(message(1)), Sent)
    assert emu.requests(TOKEN) == 3
    emu.http_error_next(502, times=2)
    assert isinstance(await channel.send(message(2)), Sent)
    emu.fail_next(1, times=2, method="messages.send")
    outcomes = await channel.send_many([message(3), message(4)])
    assert all(isinstance(o, Sent) for o in outcomes)
    assert len(texts(emu, 3)) == len(texts(emu, 4)) == 1


async def test_persistent_5xx_is_transient(emu: VkEmulator, channel: VkChannel) -> None:
    emu.http_error_next(503, times=3)
    with pytest.raises(TransientError) as caught:
        await channel.send(message(1))
    assert type(caught.value) is TransientError
    assert caught.value.code == "vk:http:503"
    assert texts(emu, 1) == []


@pytest.mark.parametrize(("status", "expected"), [(429, RateLimited), (404, PermanentError)])
async def test_other_http_statuses(
    emu: VkEmulator, channel: VkChannel, status: int, expected: type[AdapterError]
) -> None:
    emu.http_error_next(status)
    with pytest.raises(AdapterError) as caught:
        await channel.send(message(1))
    assert type(caught.value) is expected
    assert caught.value.code == f"vk:http:{status}"
    assert texts(emu, 1) == []


async def test_no_connection_is_transient_not_unknown(make_channel: Factory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = make_channel(base_url=f"http://127.0.0.1:{port}", attempts=2)
    with pytest.raises(TransientError) as caught:
        await channel.send(message(1))
    assert type(caught.value) is TransientError
    assert caught.value.code == "vk:connect"


@pytest.mark.parametrize("fault", ["hang", "drop"])
async def test_lost_answer_is_unknown_outcome_and_resending_posts_once(
    emu: VkEmulator, make_channel: Factory, fault: str
) -> None:
    channel = make_channel(timeout=0.3)
    if fault == "hang":
        emu.hang_next(after_processing=True)
    else:
        emu.drop_next()
    with pytest.raises(UnknownOutcome):
        await channel.send(message(1))
    assert len(texts(emu, 1)) == 1  # it did arrive
    assert await channel.find_sent(message(1)) is None  # VK dedups: just send again
    sent = await channel.send(message(1))
    assert texts(emu, 1) == [message(1).plain_text()]
    assert sent.provider_id == str(emu.messages(peer(1))[0].message_id)


# --- dedup under chaos -----------------------------------------------------------------------------------


async def deliver_all(
    channel: VkChannel, messages: Sequence[Message], *, batched: bool, rounds: int = 60
) -> tuple[dict[str, Outcome], int]:
    """The dispatcher's loop: resend whatever ended transient (unknown outcome included) until all settle."""
    pending = {m.key: m for m in messages}
    final: dict[str, Outcome] = {}
    unknown = 0
    for _ in range(rounds):
        if not pending:
            break
        batch = list(pending.values())
        if batched:
            outcomes = await channel.send_many(batch)
        else:
            outcomes = list(
                await asyncio.gather(*(channel.send(m) for m in batch), return_exceptions=True)  # type: ignore[arg-type]
            )
        for msg, outcome in zip(batch, outcomes, strict=True):
            assert isinstance(outcome, Sent | AdapterError), outcome
            if isinstance(outcome, UnknownOutcome):
                unknown += 1
                assert await channel.find_sent(msg) is None
            if isinstance(outcome, TransientError):
                continue
            final[msg.key] = outcome
            del pending[msg.key]
        await asyncio.sleep(0.01)
    assert not pending, f"{len(pending)} never settled"
    return final, unknown


@pytest.mark.parametrize("batched", [False, True], ids=["send", "send_many"])
async def test_every_chat_sees_each_message_exactly_once_under_lost_answers(
    emu: VkEmulator, make_channel: Factory, batched: bool
) -> None:
    channel = make_channel(timeout=0.4, text_limit=300, attempts=2)
    rng = random.Random(57)
    messages = []
    for chat in range(1, CHATS + 1):
        for n in range(2):
            words = rng.randint(5, 45)  # up to three parts at 300 characters
            body = " ".join(f"слово{chat}-{n}-{i}" for i in range(words))
            messages.append(message(chat, key=f"ann-{n}/chat-{chat}", text=body))
    emu.chaos(drop=0.2, hang=0.05, http_error=0.1, seed=11)

    final, unknown = await deliver_all(channel, messages, batched=batched)

    assert unknown > 0  # the faults really hit after processing
    assert all(isinstance(o, Sent) for o in final.values())
    for chat in range(1, CHATS + 1):
        got = emu.messages(peer(chat))
        expected_ids = [
            random_id(m.key, i) for m in messages if m.target == str(peer(chat)) for i in range(len(channel_parts(m)))
        ]
        assert sorted(m.random_id for m in got) == sorted(expected_ids), f"chat {chat}"
        for m in messages:
            if m.target != str(peer(chat)):
                continue
            parts = [s for s in got if s.random_id in {random_id(m.key, i) for i in range(5)}]
            assert [s.random_id for s in parts] == [random_id(m.key, i) for i in range(len(parts))]
            assert " ".join(s.text for s in parts).split() == m.plain_text().split()
            sent = final[m.key]
            assert isinstance(sent, Sent)
            assert sent.provider_id == ",".join(str(s.message_id) for s in parts)


def channel_parts(msg: Message) -> list[str]:
    from adapters.text import split_text

    return split_text(msg.plain_text(), 300)


# --- execute batching ------------------------------------------------------------------------------------


async def test_execute_batch_with_one_read_only_chat(emu: VkEmulator, channel: VkChannel) -> None:
    emu.set_chat_state(13, "read_only")
    messages = [message(chat) for chat in range(1, 26)]
    outcomes = await channel.send_many(messages)
    assert emu.requests(TOKEN) == 1  # one execute for 25 messages
    assert emu.sends(TOKEN) == 25
    failed = [i for i, o in enumerate(outcomes) if not isinstance(o, Sent)]
    assert failed == [12]
    assert isinstance(outcomes[12], DeadTarget)
    assert outcomes[12].code == "vk:1012"
    for chat in range(1, 26):
        assert len(texts(emu, chat)) == (0 if chat == 13 else 1)

    emu.set_chat_state(13, "active")  # the school admin fixed the chat
    retry = await channel.send_many([messages[12]])
    assert isinstance(retry[0], Sent)
    assert emu.requests(TOKEN) == 2
    assert emu.sends(TOKEN) == 26  # the retry was the only new send
    assert all(len(texts(emu, chat)) == 1 for chat in range(1, 26))


async def test_execute_retry_resends_only_the_failed_inner_calls(emu: VkEmulator, channel: VkChannel) -> None:
    messages = [message(chat) for chat in range(1, 26)]
    emu.fail_next(10, method="messages.send", peer_id=peer(7))  # inner transient errors inside the execute
    emu.fail_next(1, method="messages.send", peer_id=peer(19))
    outcomes = await channel.send_many(messages)
    assert all(isinstance(o, Sent) for o in outcomes)
    assert all(len(texts(emu, chat)) == 1 for chat in range(1, 26))

    requests = [c for c in emu.calls(TOKEN) if not c.inner]
    assert [c.method for c in requests] == ["execute", "execute"]  # the batch, then one retry of the failed
    inner = {n: [c.random_id for c in emu.calls(TOKEN) if c.inner and c.request == n] for n in (1, 2)}
    assert inner[1] == [random_id(m.key, 0) for m in messages]
    assert inner[2] == [random_id(messages[6].key, 0), random_id(messages[18].key, 0)]  # only chats 7 and 19
    assert len(emu.calls(TOKEN, method="messages.send")) == 27  # 25 + the 2 retried, nothing else again
    for chat in (7, 19):
        assert [m.random_id for m in emu.messages(peer(chat))] == [random_id(messages[chat - 1].key, 0)]


async def test_send_many_uses_one_execute_per_25_messages(emu: VkEmulator, channel: VkChannel) -> None:
    messages = [message(chat, key=f"a{n}/c{chat}") for n in range(2) for chat in range(1, CHATS + 1)]
    outcomes = await channel.send_many(messages)
    assert all(isinstance(o, Sent) for o in outcomes)
    # 60 messages to 30 chats: two waves of 30 (one per chat in flight), 2 executes each
    assert emu.requests(TOKEN) == 4
    for chat in range(1, CHATS + 1):
        assert texts(emu, chat) == [message(chat).plain_text()] * 2
        ids = [m.random_id for m in emu.messages(peer(chat))]
        assert ids == [random_id(f"a0/c{chat}", 0), random_id(f"a1/c{chat}", 0)]


async def test_send_many_keeps_part_order_within_a_chat(emu: VkEmulator, make_channel: Factory) -> None:
    channel = make_channel(text_limit=60)
    long_text = " ".join(f"часть{i}" for i in range(40))
    messages = [message(chat, text=long_text) for chat in range(1, 11)]
    messages.append(message(1, key="second/chat-1", text="Второе объявление"))
    emu.fail_next(10, method="messages.send")  # one inner transient error, retried in the next wave
    emu.fail_next(1, method="messages.send")
    outcomes = await channel.send_many(messages)
    assert all(isinstance(o, Sent) for o in outcomes)
    for chat in range(1, 11):
        got = emu.messages(peer(chat))
        own = {random_id(f"ann-1/chat-{chat}", i) for i in range(20)}
        first = [m for m in got if m.random_id in own]
        assert [m.random_id for m in first] == [random_id(f"ann-1/chat-{chat}", i) for i in range(len(first))]
        assert " ".join(m.text for m in first).split() == messages[chat - 1].plain_text().split()
    # the second announcement to chat 1 follows the whole first one, its parts in order too
    in_chat_1 = emu.messages(peer(1))
    second = in_chat_1[-(len(in_chat_1) - len([m for m in in_chat_1 if m.random_id in own_1()])) :]
    assert [m.random_id for m in second] == [random_id("second/chat-1", i) for i in range(len(second))]
    assert " ".join(m.text for m in second).split() == messages[-1].plain_text().split()
    # dedup would hide a resend from the chats: the wire shows that only the two failed calls went again
    sent_ids = Counter(c.random_id for c in emu.calls(TOKEN, method="messages.send"))
    assert sorted(sent_ids.values(), reverse=True)[:3] == [2, 2, 1]
    stored = {m.random_id for chat in range(1, 11) for m in emu.messages(peer(chat))}
    assert set(sent_ids) == stored and sum(sent_ids.values()) == len(stored) + 2


def own_1() -> set[int]:
    return {random_id("ann-1/chat-1", i) for i in range(20)}


async def test_send_many_splits_by_account(emu: VkEmulator, channel: VkChannel) -> None:
    messages = [message(1), message(2), message(90, account="gymnasium2")]
    outcomes = await channel.send_many(messages)
    assert all(isinstance(o, Sent) for o in outcomes)
    assert emu.requests(TOKEN) == 1
    assert emu.requests(TOKEN_B) == 1
    assert len(texts(emu, 90)) == 1


async def test_whole_execute_failure_fails_its_batch_only(emu: VkEmulator, channel: VkChannel) -> None:
    emu.fail_next(9, method="execute")
    outcomes = await channel.send_many([message(chat) for chat in range(1, 31)])
    failed = [o for o in outcomes if not isinstance(o, Sent)]
    assert len(failed) == 25
    assert all(type(o) is TransientError and o.code == "vk:9" for o in failed)
    assert sum(len(texts(emu, chat)) for chat in range(1, 31)) == 5


# --- rate limiting ---------------------------------------------------------------------------------------


async def test_error_6_holds_the_token_bucket(emu: VkEmulator, make_channel: Factory) -> None:
    channel = make_channel(rate_penalty=0.4)
    emu.fail_next(6)
    with pytest.raises(RateLimited):
        await channel.send(message(1))
    started = time.monotonic()
    await channel.send(message(1))
    assert time.monotonic() - started >= 0.35


async def test_error_6_storm_slows_the_sender_without_failures() -> None:
    async with VkEmulator(rate_limit=10) as emulator:
        emulator.add_community(TOKEN, GROUP)
        for chat in range(1, 31):
            emulator.add_chat(chat, f"{chat}")
        # the sender believes in 40 rps; the server allows 10
        channel = VkChannel({"school57": TOKEN}, base_url=emulator.base_url, rate=40, rate_penalty=0.2)
        try:
            rate_limited = 0

            async def dispatch(msg: Message) -> Sent:
                nonlocal rate_limited
                while True:
                    try:
                        return await channel.send(msg)
                    except RateLimited as error:
                        rate_limited += 1
                        await asyncio.sleep(error.retry_after or 0.1)

            started = time.monotonic()
            results = await asyncio.gather(*(dispatch(message(chat)) for chat in range(1, 31)))
            elapsed = time.monotonic() - started
        finally:
            await channel.aclose()
        assert all(isinstance(r, Sent) for r in results)
        assert rate_limited > 0
        assert emulator.rate_limit_errors(TOKEN) == rate_limited
        assert elapsed >= 2.0  # 30 messages at 10 rps
        assert all(len(emulator.messages(peer(chat))) == 1 for chat in range(1, 31))


async def test_shared_limiters_share_one_bucket_per_token(emu: VkEmulator, make_channel: Factory) -> None:
    limiters = RateLimiters()
    first = make_channel(limiters=limiters, rate=10.0, rate_penalty=0.2)
    second = make_channel(limiters=limiters, rate=10.0, rate_penalty=0.2)
    started = time.monotonic()
    await asyncio.gather(*(ch.send(message(c)) for c, ch in zip(range(1, 9), [first, second] * 4, strict=True)))
    assert time.monotonic() - started >= 0.6  # 8 requests through one 10 rps bucket


# --- secrets ---------------------------------------------------------------------------------------------


async def test_tokens_never_reach_errors_or_logs(
    emu: VkEmulator, make_channel: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    channel = make_channel(timeout=0.3)
    errors: list[AdapterError] = []

    async def expect_error(send: Awaitable[Sent]) -> None:
        try:
            await send
        except AdapterError as error:
            errors.append(error)
        else:
            pytest.fail("expected an error")

    for code in (5, 6, 9, 14, 29, 100, 917):
        emu.fail_next(code)
        await expect_error(channel.send(message(1)))
    emu.hang_next()
    await expect_error(channel.send(message(1)))
    emu.drop_next()
    await expect_error(channel.send(message(1)))
    emu.http_error_next(500, times=3)
    await expect_error(channel.send(message(1)))
    emu.set_chat_state(2, "read_only")
    emu.fail_next(14, method="messages.send")
    outcomes = await channel.send_many([message(c) for c in (1, 2, 3)])
    errors.extend(o for o in outcomes if isinstance(o, AdapterError))
    emu.revoke_token(TOKEN)
    errors.extend(o for o in await channel.send_many([message(4), message(5)]) if isinstance(o, AdapterError))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await expect_error(make_channel(base_url=f"http://127.0.0.1:{port}", attempts=1).send(message(1)))

    assert len(errors) == 15
    assert caplog.records  # the failures were logged
    for error in errors:
        for text in (str(error), repr(error), error.code, *map(str, error.args)):
            assert TOKEN not in text
            assert "SCHOOL-57" not in text
    assert TOKEN not in caplog.text
    assert "SCHOOL-57" not in caplog.text


async def test_a_caller_session_is_used_and_left_open(emu: VkEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        channel = VkChannel({"school57": TOKEN}, base_url=emu.base_url, session=session)
        await channel.send(message(1))
        await channel.aclose()
        assert not session.closed
    own = VkChannel({"school57": TOKEN}, base_url=emu.base_url)
    await own.send(message(2))
    await own.aclose()
    assert len(texts(emu, 1)) == len(texts(emu, 2)) == 1


async def test_concurrent_sends_to_one_chat_do_not_interleave_parts(emu: VkEmulator, make_channel: Factory) -> None:
    channel = make_channel(text_limit=60)
    body = " ".join(f"часть{i}" for i in range(30))
    messages = [message(7, key=f"ann-{n}/chat-7", text=body) for n in range(3)]
    sent = await asyncio.gather(*(channel.send(m) for m in messages))
    got = [m.random_id for m in emu.messages(peer(7))]
    assert len(got) == sum(s.parts for s in sent)
    blocks: list[str] = []
    for rid in got:
        owner = next(m.key for m in messages if rid in {random_id(m.key, i) for i in range(20)})
        if not blocks or blocks[-1] != owner:
            blocks.append(owner)
    assert sorted(blocks) == sorted(m.key for m in messages)  # each message is one unbroken run
