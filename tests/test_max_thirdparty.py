"""Cross-check of the MAX emulator with a third-party client: maxapi (PyPI, love-apples/maxapi).

maxapi is written against the real platform-api2.max.ru; its documented `Bot.set_api_url` points it at the
emulator. If the emulator's wire format drifted from the real API (auth header, paths, JSON shapes, error
bodies), maxapi's pydantic models or its error handling would notice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from maxapi import Bot
from maxapi.client.default import DefaultConnectionProperties
from maxapi.enums.chat_status import ChatStatus
from maxapi.enums.format import Format
from maxapi.exceptions.max import InvalidToken, MaxApiError
from maxapi.types.updates.bot_added import BotAdded
from maxapi.types.updates.bot_removed import BotRemoved

from adapters.base import Message
from adapters.emulators.max import MaxEmulator
from adapters.max import MaxChannel

TOKEN = "thirdparty-token-5e1d"
CHAT = -72000000000777


@pytest.fixture
async def emu() -> AsyncIterator[MaxEmulator]:
    async with MaxEmulator() as emulator:
        emulator.add_bot(TOKEN, "Лицей № 2")
        emulator.add_chat(CHAT, "10А — родители")
        yield emulator


def client(emu: MaxEmulator, token: str = TOKEN) -> Bot:
    # fast retries: maxapi retries 502/503/504 with an exponential backoff (1 s, 2 s, 4 s by default)
    bot = Bot(token, default_connection=DefaultConnectionProperties(max_retries=2, retry_backoff_factor=0.01))
    bot.set_api_url(emu.base_url)
    return bot


@pytest.fixture
async def bot(emu: MaxEmulator) -> AsyncIterator[Bot]:
    bot = client(emu)
    yield bot
    await bot.close_session()


async def test_send_message_as_against_the_real_api(emu: MaxEmulator, bot: Bot) -> None:
    result = await bot.send_message(chat_id=CHAT, text="Завтра <b>сокращённые</b> уроки", format=Format.HTML)
    assert result is not None
    [stored] = emu.messages(CHAT)
    assert result.message.body is not None
    assert result.message.body.mid == stored.mid
    assert result.message.body.text == stored.text == "Завтра сокращённые уроки"
    assert result.message.recipient.chat_id == CHAT
    assert result.message.sender is not None
    assert result.message.sender.is_bot is True
    assert stored.raw_text == "Завтра <b>сокращённые</b> уроки"
    assert stored.format == "html"


async def test_wrong_token_is_invalid_token(emu: MaxEmulator) -> None:
    bad = client(emu, "revoked-token")
    try:
        with pytest.raises(InvalidToken):
            await bad.send_message(chat_id=CHAT, text="Проверка")
    finally:
        await bad.close_session()
    assert emu.messages(CHAT) == []


async def test_api_errors_reach_the_library_as_documented(emu: MaxEmulator, bot: Bot) -> None:
    with pytest.raises(MaxApiError) as unknown:
        await bot.send_message(chat_id=-1, text="x")
    assert unknown.value.code == 404
    assert isinstance(unknown.value.raw, dict)
    assert unknown.value.raw["code"] == "chat.not.found"
    emu.fail_next(1, 429, code="too.many.requests")
    with pytest.raises(MaxApiError) as limited:
        await bot.send_message(chat_id=CHAT, text="x")
    assert limited.value.code == 429
    assert isinstance(limited.value.raw, dict)
    assert limited.value.raw["code"] == "too.many.requests"
    assert emu.messages(CHAT) == []


async def test_library_retries_a_502_and_the_chat_gets_one_message(emu: MaxEmulator, bot: Bot) -> None:
    emu.fail_next(1, 502)  # the proxy's HTML error page: maxapi retries it like the real one
    await bot.send_message(chat_id=CHAT, text="Родительское собрание в 18:00")
    assert [m.text for m in emu.messages(CHAT)] == ["Родительское собрание в 18:00"]


async def test_reads_parse_into_the_library_models(emu: MaxEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.is_bot, me.first_name) == (True, "Лицей № 2")
    chat = await bot.get_chat_by_id(CHAT)
    assert (chat.chat_id, chat.title, chat.status) == (CHAT, "10А — родители", ChatStatus.ACTIVE)
    membership = await bot.get_me_from_chat(CHAT)
    assert membership.is_admin is True
    # what our adapter posted is what the library reads back
    ours = MaxChannel({"school": TOKEN}, base_url=emu.base_url)
    await ours.send(
        Message(
            key="k-1",
            account="school",
            target=str(CHAT),
            school="Лицей № 2",
            kind="event",
            kind_label="Мероприятие",
            title="Субботник",
            text="В субботу в 10:00 & с перчатками.",
        )
    )
    await ours.aclose()
    messages = await bot.get_messages(chat_id=CHAT, count=5)
    [read] = messages.messages
    assert read.body is not None
    assert read.body.text is not None
    assert read.body.text.startswith("Мероприятие: Субботник\n\nВ субботу в 10:00 & с перчатками.\n\nЛицей № 2 · #")


async def test_webhook_subscription_and_pushed_updates_parse(emu: MaxEmulator, bot: Bot) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        if request.headers.get("X-Max-Bot-Api-Secret") != "lyceum-secret":
            return web.Response(status=403)
        received.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/max", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/max"
    try:
        with pytest.warns(UserWarning, match="HTTPS"):  # maxapi, like MAX, wants https in production
            subscribed = await bot.subscribe_webhook(url, secret="lyceum-secret")
        assert subscribed.success is True
        subscriptions = await bot.get_subscriptions()
        assert [s.url for s in subscriptions.subscriptions] == [url]
        emu.add_chat(-900, "11Б — родители")
        assert await emu.emit_bot_added(-900) == [200]
        await emu.remove_bot_from_chat(-900, notify=True)
    finally:
        await runner.cleanup()
    added, removed = received
    assert BotAdded.model_validate(added).chat_id == -900
    assert BotRemoved.model_validate(removed).chat_id == -900
