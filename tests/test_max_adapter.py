"""MaxChannel against the MAX emulator over real HTTP: rendering, splitting, error mapping, rate limits,
reconciliation after lost answers (no duplicates), health checks, webhook registration, TLS and secrets."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import subprocess
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.base import (
    AdapterError,
    CredentialError,
    DeadTarget,
    Message,
    PermanentError,
    RateLimited,
    Sent,
    TransientError,
    UnknownOutcome,
)
from adapters.emulators.max import MaxEmulator, StoredMessage
from adapters.max import MaxChannel, part_marker, trust_context
from adapters.ratelimit import RateLimiters

TOKEN = "max-token-7f3e9a1c55d04b2e"
CHAT = -72000000000123


def message(
    key: str = "ann-1:max:-72000000000123",
    *,
    target: int = CHAT,
    title: str = "Сокращённые уроки",
    text: str = "Завтра уроки по 30 минут.",
    account: str = "school",
) -> Message:
    return Message(
        key=key,
        account=account,
        target=str(target),
        school="Школа № 7",
        kind="schedule_change",
        kind_label="Изменение расписания",
        title=title,
        text=text,
        reference="Объявление 12",
    )


def long_text(paragraphs: int = 16) -> str:
    sentence = "Звонки &amp; перемены 🔔 по <i>новому</i> расписанию."  # user text that looks like HTML
    return "\n\n".join(f"Пункт {n}: " + " ".join([sentence] * 20) for n in range(paragraphs))


def body_of(stored: StoredMessage) -> str:
    """The rendered text of a part without its footer line."""
    assert stored.text is not None
    return stored.text.rsplit("\n\n", 1)[0]


def counters(stored: list[StoredMessage]) -> list[tuple[int, int]]:
    """The "part/total" of each message's footer ((1, 1) when it has none)."""
    out = []
    for item in stored:
        assert item.text is not None
        footer = item.text.rsplit("\n", 1)[-1].split(" · ")
        assert re.fullmatch(r"#[0-9a-f]{8}", footer[-1]), item.text
        counter = re.fullmatch(r"(\d+)/(\d+)", footer[-2])
        out.append((int(counter.group(1)), int(counter.group(2))) if counter else (1, 1))
    return out


@pytest.fixture
async def emu() -> AsyncIterator[MaxEmulator]:
    async with MaxEmulator(rate_limit=1000) as emulator:  # rate limits have their own tests below
        emulator.add_bot(TOKEN, "Школа № 7")
        emulator.add_chat(CHAT, "5А — родители")
        yield emulator


def make_channel(emu: MaxEmulator, **overrides: Any) -> MaxChannel:
    options: dict[str, Any] = {
        "base_url": emu.base_url,
        "timeout": 1.0,
        "rate_limit_pause": 0.1,
        "reconcile_after": 0.01,
        "rate": 500,
        "burst": 50,
    }
    options.update(overrides)
    accounts = options.pop("accounts", {"school": TOKEN})
    return MaxChannel(accounts, **options)


@pytest.fixture
async def channel(emu: MaxEmulator) -> AsyncIterator[MaxChannel]:
    ch = make_channel(emu)
    yield ch
    await ch.aclose()


async def deliver(channel: MaxChannel, msg: Message, *, unknown: bool = False, attempts: int = 60) -> Sent:
    """What the dispatcher does: retry transient errors after their pause; after an unknown outcome, look for
    the earlier send before sending again."""
    for _ in range(attempts):
        try:
            if unknown:
                found = await channel.find_sent(msg)
                if found is not None:
                    return found
            return await channel.send(msg)
        except UnknownOutcome as exc:
            unknown = True
            await asyncio.sleep(exc.retry_after or 0.01)
        except TransientError as exc:
            await asyncio.sleep(exc.retry_after or 0.01)
    raise AssertionError("not delivered")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------------------------------- rendering


async def test_sends_escaped_html_with_bold_title_and_footer(emu: MaxEmulator, channel: MaxChannel) -> None:
    msg = message(title="Уроки <до> 13:00", text="Родители & ученики: <b>не жирный</b>, 5 < 6 > 4.")
    sent = await channel.send(msg)
    [stored] = emu.messages(CHAT)
    assert sent == Sent(stored.mid, parts=1)
    assert (stored.format, stored.notify, stored.disable_link_preview) == ("html", True, True)
    assert stored.raw_text is not None
    assert "&lt;b&gt;не жирный&lt;/b&gt;" in stored.raw_text
    assert "&amp;" in stored.raw_text
    # what the chat shows is exactly the plain text, plus the reconciliation marker at the end of the footer
    assert stored.text is not None
    assert re.fullmatch(re.escape(msg.plain_text()) + r" · #[0-9a-f]{8}", stored.text)
    head = "Изменение расписания: Уроки <до> 13:00"
    assert stored.markup is not None
    assert stored.markup[0] == {"type": "strong", "from": 0, "length": len(head)}
    assert [m["type"] for m in stored.markup] == ["strong", "emphasized"]  # no markup from the user's "<b>"


async def test_long_text_is_split_into_ordered_parts_that_fit(emu: MaxEmulator, channel: MaxChannel) -> None:
    text = long_text()
    assert len(text) > 3 * 4000
    sent = await channel.send(message(text=text))
    stored = emu.messages(CHAT)
    assert sent.parts == len(stored) > 3
    assert sent.provider_id == ",".join(m.mid for m in stored)
    assert all(m.raw_text is not None and len(m.raw_text.encode("utf-16-le")) // 2 <= 4000 for m in stored)
    assert counters(stored) == [(i, len(stored)) for i in range(1, len(stored) + 1)]
    assert "\n\n".join(body_of(m) for m in stored) == f"Изменение расписания: Сокращённые уроки\n\n{text}"
    assert len(body_of(stored[0])) > 2000  # the title travels with the text, not alone


async def test_astral_characters_count_double(emu: MaxEmulator, channel: MaxChannel) -> None:
    text = "🔔" * 5000  # 5000 characters, 10000 UTF-16 units, no space to cut at
    sent = await channel.send(message(text=text, title=""))
    stored = emu.messages(CHAT)
    assert sent.parts == len(stored) >= 3
    joined = "".join(body_of(m) for m in stored)
    assert joined.removeprefix("Изменение расписания:\n\n") == text


# ---------------------------------------------------------------------------------------------- errors

Setup = Callable[[MaxEmulator], Awaitable[dict[str, Any]]]


async def fault(emu: MaxEmulator, status: int, code: str | None = None, text: str | None = None) -> dict[str, Any]:
    emu.fail_next(1, status, code=code, message=text)
    return {}


async def wrong_token(emu: MaxEmulator) -> dict[str, Any]:
    return {"accounts": {"school": "not-a-registered-token"}}


async def unknown_account(emu: MaxEmulator) -> dict[str, Any]:
    return {"accounts": {}}


async def unknown_chat(emu: MaxEmulator) -> dict[str, Any]:
    return {"target": -1}


async def bot_removed(emu: MaxEmulator) -> dict[str, Any]:
    await emu.remove_bot_from_chat(CHAT)
    return {}


async def bot_not_admin(emu: MaxEmulator) -> dict[str, Any]:
    emu.add_chat(-2, "Бот не админ", admin=False)
    return {"target": -2}


async def chat_closed(emu: MaxEmulator) -> dict[str, Any]:
    emu.close_chat(CHAT)
    return {}


async def hang(emu: MaxEmulator) -> dict[str, Any]:
    emu.hang_next(1)
    return {"timeout": 0.3}


async def drop(emu: MaxEmulator) -> dict[str, Any]:
    emu.drop_next(1)
    return {}


async def refused(emu: MaxEmulator) -> dict[str, Any]:
    return {"base_url": f"http://127.0.0.1:{closed_port()}"}


async def bad_target(emu: MaxEmulator) -> dict[str, Any]:
    return {"target": "школа"}


ERRORS: list[tuple[str, Setup, type[AdapterError], str, bool]] = [
    # (case, setup, exact class, code, may the message be in the chat)
    ("429", lambda e: fault(e, 429, "too.many.requests"), RateLimited, "max:too.many.requests", False),
    ("500", lambda e: fault(e, 500), UnknownOutcome, "max:internal.error", False),
    ("502", lambda e: fault(e, 502), UnknownOutcome, "max:http-502", False),
    ("503", lambda e: fault(e, 503), TransientError, "max:service.unavailable", False),
    ("504", lambda e: fault(e, 504), UnknownOutcome, "max:http-504", False),
    ("attachment.not.ready", lambda e: fault(e, 400, "attachment.not.ready"), TransientError, "", False),
    ("refused", refused, TransientError, "max:connect", False),
    ("timeout", hang, UnknownOutcome, "max:no-response", True),
    ("dropped", drop, UnknownOutcome, "max:no-response", True),
    ("chat.not.found", unknown_chat, DeadTarget, "max:chat.not.found", False),
    ("chat.denied: removed", bot_removed, DeadTarget, "max:chat.denied", False),
    ("chat.denied: not admin", bot_not_admin, DeadTarget, "max:chat.denied", False),
    ("chat.denied: closed", chat_closed, DeadTarget, "max:chat.denied", False),
    ("verify.token", wrong_token, CredentialError, "max:verify.token", False),
    ("no token", unknown_account, CredentialError, "max:no-token", False),
    ("deprecated.token", lambda e: fault(e, 403, "deprecated.token"), CredentialError, "", False),
    ("access.denied", lambda e: fault(e, 403, "access.denied"), DeadTarget, "max:access.denied", False),
    ("proto.payload", lambda e: fault(e, 400, "proto.payload", "text: bad"), PermanentError, "", False),
    ("not.found", lambda e: fault(e, 404, "not.found"), PermanentError, "", False),
    ("bad target", bad_target, PermanentError, "max:bad-target", False),
]


@pytest.mark.parametrize(("setup", "kind", "code", "maybe_sent"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
async def test_error_mapping(
    emu: MaxEmulator, setup: Setup, kind: type[AdapterError], code: str, maybe_sent: bool
) -> None:
    options = await setup(emu)
    target = options.pop("target", CHAT)
    channel = make_channel(emu, attempts=1, **options)
    try:
        with pytest.raises(AdapterError) as caught:
            await channel.send(message(target=target))
    finally:
        await channel.aclose()
    assert type(caught.value) is kind
    assert caught.value.code == (code or f"max:{caught.value.code.removeprefix('max:')}")
    if code == "":
        assert caught.value.code.startswith("max:")
    assert re.search("[а-яА-Я]", str(caught.value))  # a Russian explanation for the report
    if isinstance(target, int) and target == CHAT:
        assert len(emu.messages(CHAT)) == (1 if maybe_sent else 0)


async def test_a_single_429_is_absorbed_inside_the_call(emu: MaxEmulator, channel: MaxChannel) -> None:
    emu.fail_next(1, 429, code="too.many.requests")
    started = time.monotonic()
    await channel.send(message())
    assert time.monotonic() - started >= 0.08  # the token's bucket paused for rate_limit_pause
    assert len(emu.messages(CHAT)) == 1


async def test_a_refused_connection_is_retried_inside_the_call(emu: MaxEmulator) -> None:
    # the first attempts hit a port nobody listens on; no message can have left, so retrying is safe
    port = closed_port()
    channel = make_channel(emu, base_url=f"http://127.0.0.1:{port}", attempts=3)
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        await channel.send(message())
    await channel.aclose()
    assert type(caught.value) is TransientError
    assert time.monotonic() - started >= 0.25  # waited 0.1 + 0.2 between three attempts


async def test_reads_retry_5xx_inside_the_call(emu: MaxEmulator, channel: MaxChannel) -> None:
    emu.fail_next(2, 503, method="GET", path="/messages")
    assert await channel.find_sent(message()) is None


async def test_find_sent_that_cannot_read_keeps_the_outcome_unknown(emu: MaxEmulator, channel: MaxChannel) -> None:
    emu.fail_next(3, 503, method="GET", path="/messages")
    with pytest.raises(UnknownOutcome):
        await channel.find_sent(message())


# ---------------------------------------------------------------------------------------------- rate limits


async def test_429_storm_slows_the_sender_without_losing_or_doubling() -> None:
    async with MaxEmulator(rate_limit=5) as emu:
        emu.add_bot(TOKEN)
        chats = [-300, -301, -302]
        for chat in chats:
            emu.add_chat(chat, f"Чат {chat}")
        # the adapter is configured far above the provider's limit, to provoke 429s
        channel = make_channel(emu, rate=100, burst=20, rate_limit_pause=0.3)
        msgs = [message(f"storm-{n}", target=chats[n % 3], text=f"Сообщение {n}") for n in range(14)]
        started = time.monotonic()
        results = await asyncio.gather(*(deliver(channel, m) for m in msgs))
        elapsed = time.monotonic() - started
        await channel.aclose()
        assert all(isinstance(r, Sent) for r in results)
        assert emu.rate_limited_count(TOKEN) > 0
        assert elapsed >= 14 / 5 - 1  # 14 sends at 5 per second take over two seconds
        for chat in chats:
            texts = [m.text or "" for m in emu.messages(chat)]
            expected = {f"Сообщение {n}" for n in range(14) if chats[n % 3] == chat}
            assert len(texts) == len(expected)
            assert {t.split("\n\n")[1] for t in texts} == expected


async def test_default_rate_stays_under_the_provider_limit() -> None:
    async with MaxEmulator() as emu:  # the real limit: 30 per second
        emu.add_bot(TOKEN)
        emu.add_chat(CHAT, "5А")
        channel = MaxChannel({"school": TOKEN}, base_url=emu.base_url)  # the defaults
        results = await channel.send_many([message(f"burst-{n}", text=str(n)) for n in range(45)])
        await channel.aclose()
        assert all(isinstance(r, Sent) for r in results)
        assert emu.rate_limited_count(TOKEN) == 0
        assert len(emu.messages(CHAT)) == 45


async def test_channels_share_the_bucket_of_a_token(emu: MaxEmulator) -> None:
    limiters = RateLimiters()
    first = make_channel(emu, limiters=limiters, rate=20, burst=1)
    second = make_channel(emu, limiters=limiters, rate=20, burst=1)
    started = time.monotonic()
    await asyncio.gather(
        first.send_many([message(f"a-{n}") for n in range(10)]),
        second.send_many([message(f"b-{n}") for n in range(10)]),
    )
    elapsed = time.monotonic() - started
    await first.aclose()
    await second.aclose()
    assert elapsed >= 0.9  # 20 requests through one 20-per-second bucket; two buckets would take half
    assert len(emu.messages(CHAT)) == 20


# ---------------------------------------------------------------------------------------------- no duplicates


async def test_no_duplicates_under_random_dropped_responses() -> None:
    async with MaxEmulator(rate_limit=1000) as emu:
        emu.add_bot(TOKEN)
        chats = [-1000 - n for n in range(30)]
        for chat in chats:
            emu.add_chat(chat, f"Класс {chat}")
            emu.add_user_message(chat, "Добрый вечер!")  # other traffic in the chat
        emu.drop_randomly(0.3, seed=20260901)
        channel = make_channel(emu)
        text_b = long_text(8)

        async def one_chat(chat: int) -> list[Sent]:
            short = message(f"ann-1:{chat}", target=chat, text="Завтра линейка в 8:30.")
            longer = message(f"ann-2:{chat}", target=chat, title="Расписание звонков", text=text_b)
            return [await deliver(channel, short), await deliver(channel, longer)]

        results = await asyncio.gather(*(one_chat(chat) for chat in chats))
        await channel.aclose()
        assert emu.dropped_count > 10
        for chat, (short_sent, long_sent) in zip(chats, results, strict=True):
            stored = [m for m in emu.messages(chat) if m.sender_is_bot]
            texts = [m.text for m in stored]
            assert len(texts) == len(set(texts)) == 1 + long_sent.parts, chat
            assert short_sent.provider_id == stored[0].mid
            assert long_sent.provider_id == ",".join(m.mid for m in stored[1:])
            assert body_of(stored[0]) == "Изменение расписания: Сокращённые уроки\n\nЗавтра линейка в 8:30."
            assert (
                "\n\n".join(body_of(m) for m in stored[1:]) == f"Изменение расписания: Расписание звонков\n\n{text_b}"
            )
            assert counters(stored[1:]) == [(i, long_sent.parts) for i in range(1, long_sent.parts + 1)]


async def test_lost_answer_to_a_middle_part_sends_only_the_rest(emu: MaxEmulator, channel: MaxChannel) -> None:
    msg = message(text=long_text())
    emu.drop_next(1, after=1)  # part 1 answered; part 2 stored, its answer lost
    with pytest.raises(UnknownOutcome) as caught:
        await channel.send(msg)
    assert "1 из" in str(caught.value)
    assert len(emu.messages(CHAT)) == 2
    sent = await channel.find_sent(msg)
    stored = emu.messages(CHAT)
    assert sent is not None
    assert sent.parts == len(stored) > 3
    assert sent.provider_id == ",".join(m.mid for m in stored)
    assert counters(stored) == [(i, len(stored)) for i in range(1, len(stored) + 1)]


async def test_failure_after_an_accepted_part_is_an_unknown_outcome(emu: MaxEmulator, channel: MaxChannel) -> None:
    msg = message(text=long_text())
    emu.fail_next(1, 503, after=1)  # a plain transient error, but part 1 is already in the chat
    with pytest.raises(UnknownOutcome):
        await channel.send(msg)
    assert len(emu.messages(CHAT)) == 1
    assert await deliver(channel, msg, unknown=True) is not None  # a plain resend would double part 1
    stored = emu.messages(CHAT)
    assert counters(stored) == [(i, len(stored)) for i in range(1, len(stored) + 1)]


async def test_lost_answer_to_the_last_part_sends_nothing_more(emu: MaxEmulator, channel: MaxChannel) -> None:
    msg = message(text=long_text())
    parts = (await channel.send(msg)).parts
    emu.drop_next(1, after=parts - 1)
    with pytest.raises(UnknownOutcome):
        await channel.send(message(key="other", text=long_text()))
    stored = emu.messages(CHAT)[parts:]
    sent = await channel.find_sent(message(key="other", text=long_text()))
    assert sent == Sent(",".join(m.mid for m in stored), parts=parts)
    assert len(emu.messages(CHAT)) == 2 * parts


async def test_timeout_with_the_message_stored_is_found(emu: MaxEmulator) -> None:
    channel = make_channel(emu, timeout=0.3)
    emu.hang_next(1, store=True)
    msg = message()
    with pytest.raises(UnknownOutcome):
        await channel.send(msg)
    found = await channel.find_sent(msg)
    await channel.aclose()
    assert found == Sent(emu.messages(CHAT)[0].mid, parts=1)
    assert len(emu.messages(CHAT)) == 1


async def test_timeout_before_storing_is_sent_again_once(emu: MaxEmulator) -> None:
    channel = make_channel(emu, timeout=0.3)
    emu.hang_next(1, store=False)
    msg = message()
    assert await deliver(channel, msg) == Sent(emu.messages(CHAT)[0].mid, parts=1)
    await channel.aclose()
    assert len(emu.messages(CHAT)) == 1


@pytest.mark.parametrize("chatter", [150, 1200])
async def test_reconciliation_finds_the_marker_however_much_the_parents_wrote_since(chatter: int) -> None:
    ticks = iter(range(10**9))
    async with MaxEmulator(clock=lambda: 1_790_000_000 + next(ticks) / 100) as emu:  # 10 ms between events
        emu.add_bot(TOKEN, "Бот")
        emu.add_chat(CHAT, "5А родители", token=TOKEN)
        channel = make_channel(emu, timeout=0.3)
        since = datetime.fromtimestamp(1_790_000_000, UTC)
        msg = replace(message(), since=since)
        emu.hang_next(1, store=True)  # stored, the answer never comes
        with pytest.raises(UnknownOutcome):
            await channel.send(msg)
        for n in range(chatter):  # the parents answer before the re-check
            emu.add_user_message(CHAT, f"Спасибо! ({n})")
        found = await channel.find_sent(msg)
        another = await channel.find_sent(replace(msg, key="never-sent"))
        await channel.aclose()
    [ours] = [m for m in emu.messages(CHAT) if m.text and m.text.endswith(part_marker(msg.key, 0, 1))]
    assert found == Sent(ours.mid, parts=1)
    assert another is None  # read back to the first attempt, and nothing of it there
    assert len(emu.messages(CHAT)) == chatter + 1  # nothing sent twice


async def test_find_sent_ignores_people_quoting_the_footer(emu: MaxEmulator, channel: MaxChannel) -> None:
    msg = message()
    await channel.send(msg)
    [ours] = emu.messages(CHAT)
    assert ours.text is not None
    emu.add_chat(-77, "Другой чат")
    emu.add_user_message(-77, ours.text)  # a parent pastes our whole text into another chat
    assert await channel.find_sent(message(target=-77)) is None
    assert await channel.find_sent(message(key="another-delivery")) is None
    assert await channel.find_sent(msg) == Sent(ours.mid, parts=1)


# ---------------------------------------------------------------------------------------------- dead chats


async def test_bot_removed_mid_run_kills_only_that_chat(emu: MaxEmulator, channel: MaxChannel) -> None:
    chats = [-500 - n for n in range(10)]
    for chat in chats:
        emu.add_chat(chat, f"Класс {chat}")
    first = await channel.send_many([message(f"r1:{c}", target=c) for c in chats])
    assert all(isinstance(r, Sent) for r in first)

    emu.delay_next(10, 0.3)  # the second round is in flight when the bot is removed from one chat
    second_round = asyncio.create_task(channel.send_many([message(f"r2:{c}", target=c) for c in chats]))
    await asyncio.sleep(0.1)
    await emu.remove_bot_from_chat(chats[3])
    second = await second_round

    assert isinstance(second[3], DeadTarget)
    assert second[3].code == "max:chat.denied"
    assert all(isinstance(r, Sent) for n, r in enumerate(second) if n != 3)
    assert [len(emu.messages(c)) for c in chats] == [2, 2, 2, 1, 2, 2, 2, 2, 2, 2]
    health = await channel.check_chat("school", chats[3])
    assert (health.ok, health.status) == (False, "removed")
    assert (await channel.check_chat("school", chats[4])).ok is True


# ---------------------------------------------------------------------------------------------- health


async def test_check_chat(emu: MaxEmulator, channel: MaxChannel) -> None:
    emu.add_chat(-601, "Бот не админ", admin=False)
    emu.add_chat(-602, "Канал без права", chat_type="channel", permissions=["read_all_messages"])
    emu.add_chat(-603, "Удалили бота")
    await emu.remove_bot_from_chat(-603)
    emu.add_chat(-604, "Закрытый чат")
    emu.close_chat(-604)
    expected = {
        CHAT: (True, True, True, "active", "может публиковать"),
        -601: (False, False, False, "active", "не является администратором"),
        -602: (False, True, False, "active", "без права публиковать"),
        -603: (False, False, False, "removed", "удалили из чата «Удалили бота»"),
        -604: (False, True, False, "closed", "закрыт"),
        -605: (False, False, False, "not_found", "не найден"),
    }
    for chat, (ok, admin, write, status, words) in expected.items():
        health = await channel.check_chat("school", chat)
        assert (health.ok, health.is_admin, health.can_write, health.status) == (ok, admin, write, status), chat
        assert words in health.explanation, health.explanation
    bad = make_channel(emu, accounts={"school": "revoked"})
    with pytest.raises(CredentialError):
        await bad.check_chat("school", CHAT)
    await bad.aclose()


# ---------------------------------------------------------------------------------------------- webhook


async def test_register_webhook(emu: MaxEmulator, channel: MaxChannel) -> None:
    got: list[tuple[str, str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(((await request.json())["update_type"], request.headers.get("X-Max-Bot-Api-Secret")))
        return web.Response()

    app = web.Application()
    app.router.add_post("/max", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/max"
    try:
        with pytest.raises(ValueError, match="secret"):
            await channel.register_webhook("school", url, "bad secret")
        await channel.register_webhook("school", url, "zvonok-Webhook_secret1")
        emu.add_chat(-700, "7В — родители")
        await emu.emit_bot_added(-700)
        await emu.remove_bot_from_chat(-700, notify=True)
    finally:
        await runner.cleanup()
    assert got == [("bot_added", "zvonok-Webhook_secret1"), ("bot_removed", "zvonok-Webhook_secret1")]


# ---------------------------------------------------------------------------------------------- TLS


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [  # noqa: S607 - openssl from PATH
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_uses_the_configured_trust(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key)
    async with MaxEmulator(ssl_context=server_ssl) as emu:
        emu.add_bot(TOKEN)
        emu.add_chat(CHAT, "5А")
        assert emu.base_url.startswith("https://")
        trusted = make_channel(emu, ca_bundle=cert)
        assert isinstance(await trusted.send(message()), Sent)
        await trusted.aclose()
        default = make_channel(emu)  # system store + Russian Trusted Root CA: our test CA is not in it
        with pytest.raises(CredentialError) as caught:
            await default.send(message())
        await default.aclose()
        assert caught.value.code == "max:tls"
        assert "Минцифры" in str(caught.value)
        assert len(emu.messages(CHAT)) == 1


def test_default_trust_includes_the_russian_trusted_root_ca() -> None:
    names = {str(cert["subject"]) for cert in trust_context().get_ca_certs()}
    for name in ("Russian Trusted Root CA", "Russian Trusted Sub CA"):
        assert any(f"('commonName', '{name}')" in subject for subject in names), name


# ---------------------------------------------------------------------------------------------- secrets


async def test_token_never_in_errors_or_logs(emu: MaxEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "max-token-WRONG-0d9e8f7a"
    errors: list[BaseException] = []

    async def expect_error(channel: MaxChannel, call: Awaitable[object]) -> None:
        try:
            await call
        except AdapterError as exc:
            errors.append(exc)
        else:
            raise AssertionError("no error")

    good = make_channel(emu, attempts=2, timeout=0.3)
    bad = make_channel(emu, accounts={"school": wrong})
    refused = make_channel(emu, base_url=f"http://127.0.0.1:{closed_port()}", attempts=2)
    emu.add_chat(-9, "Бот не админ", admin=False)
    try:
        await expect_error(bad, bad.send(message()))
        await expect_error(bad, bad.check_chat("school", CHAT))
        await expect_error(bad, bad.find_sent(message()))
        await expect_error(refused, refused.send(message()))
        emu.drop_next(1)
        await expect_error(good, good.send(message()))
        emu.hang_next(1)
        await expect_error(good, good.send(message()))
        emu.fail_next(1, 500)
        await expect_error(good, good.send(message()))
        emu.fail_next(2, 429, code="too.many.requests")
        await expect_error(good, good.send(message()))
        emu.fail_next(1, 400, code="proto.payload", message=f"token {TOKEN} is not allowed here")
        await expect_error(good, good.send(message()))
        await expect_error(good, good.send(message(target=-9)))
        emu.fail_next(2, 503, method="GET", path="/messages")
        await expect_error(good, good.find_sent(message()))
    finally:
        for ch in (good, bad, refused):
            await ch.aclose()
    assert len(errors) == 11
    for exc in errors:
        rendered = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc.__cause__) + str(exc.__context__)
        assert TOKEN not in rendered
        assert wrong not in rendered
    assert "***" in str(errors[8])  # the server's echo of the token was masked
    assert caplog.records  # the adapter did log (so this check could fail)
    assert TOKEN not in caplog.text
    assert wrong not in caplog.text
