"""The MAX emulator speaks the Bot API of reference/protocols.md §2 (checklist §2.14), over real HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.emulators.max import MaxEmulator

TOKEN = "emu-token-1"
OTHER = "emu-token-2"
CHAT = -72000000000123


@pytest.fixture
async def emu() -> AsyncIterator[MaxEmulator]:
    async with MaxEmulator() as emulator:
        emulator.add_bot(TOKEN, "Школа № 7")
        emulator.add_chat(CHAT, "5А — родители")
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    emu: MaxEmulator,
    method: str,
    path: str,
    *,
    token: str | None = TOKEN,
    params: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    headers = {"Authorization": token} if token is not None else {}
    async with http.request(method, emu.base_url + path, params=params, json=body, headers=headers) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


async def send(
    http: aiohttp.ClientSession, emu: MaxEmulator, text: str = "Завтра сокращённые уроки", **kw: Any
) -> tuple[int, Any]:
    params = kw.pop("params", {"chat_id": str(CHAT)})
    body = kw.pop("body", {"text": text})
    return await call(http, emu, "POST", "/messages", params=params, body=body, **kw)


# ---------------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("token", "query", "status", "code"),
    [
        (None, {}, 401, "verify.token"),
        ("unknown", {}, 401, "verify.token"),
        (f"Bearer {TOKEN}", {}, 401, "verify.token"),  # the raw token only, no "Bearer"
        (TOKEN, {"access_token": TOKEN}, 403, "deprecated.token"),
        (None, {"access_token": TOKEN}, 403, "deprecated.token"),
    ],
)
async def test_auth_is_the_raw_authorization_header(
    emu: MaxEmulator,
    http: aiohttp.ClientSession,
    token: str | None,
    query: dict[str, str],
    status: int,
    code: str,
) -> None:
    got, body = await call(http, emu, "GET", "/me", token=token, params=query)
    assert (got, body["code"]) == (status, code)
    if code == "verify.token":
        assert body["message"] == "Invalid access_token"
    assert emu.messages(CHAT) == []


async def test_me_is_bot_info(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    status, me = await call(http, emu, "GET", "/me")
    assert status == 200
    assert me["is_bot"] is True
    assert me["first_name"] == "Школа № 7"
    assert isinstance(me["user_id"], int)
    assert me["username"]


# ---------------------------------------------------------------------------------------------- send


async def test_send_answers_the_message_object(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    before = time.time() * 1000
    status, body = await send(http, emu, params={"chat_id": str(CHAT), "disable_link_preview": "true"})
    assert status == 200
    message = body["message"]
    assert set(message) >= {"sender", "recipient", "timestamp", "body", "link", "stat", "url"}
    assert message["recipient"] == {"chat_id": CHAT, "chat_type": "chat", "user_id": None}
    assert message["sender"]["is_bot"] is True
    assert before - 1000 <= message["timestamp"] <= time.time() * 1000 + 1000  # epoch milliseconds
    assert re.fullmatch(r"mid\.[0-9a-f]{32}", message["body"]["mid"])
    assert message["body"]["text"] == "Завтра сокращённые уроки"
    stored = emu.messages(CHAT)
    assert [(m.mid, m.text, m.disable_link_preview, m.notify) for m in stored] == [
        (message["body"]["mid"], "Завтра сокращённые уроки", True, True)
    ]


async def test_there_is_no_dedup(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    first = await send(http, emu)
    second = await send(http, emu)
    assert first[0] == second[0] == 200
    assert first[1]["message"]["body"]["mid"] != second[1]["message"]["body"]["mid"]
    assert second[1]["message"]["body"]["seq"] == first[1]["message"]["body"]["seq"] + 1
    assert [m.text for m in emu.messages(CHAT)] == ["Завтра сокращённые уроки"] * 2


@pytest.mark.parametrize(
    "params",
    [{}, {"chat_id": str(CHAT), "user_id": "5"}, {"chat_id": "abc"}],
    ids=["neither", "both", "not-a-number"],
)
async def test_exactly_one_numeric_target(
    emu: MaxEmulator, http: aiohttp.ClientSession, params: dict[str, str]
) -> None:
    status, body = await send(http, emu, params=params)
    assert (status, body["code"]) == (400, "proto.payload")
    assert emu.messages(CHAT) == []


async def test_text_limit_is_4000_utf16_units(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    assert (await send(http, emu, "я" * 4000))[0] == 200
    assert (await send(http, emu, "🔔" * 2000))[0] == 200  # 4000 UTF-16 units
    for text in ("я" * 4001, "🔔" * 2000 + "!"):
        status, body = await send(http, emu, text)
        assert status == 400
        assert body["message"] == "text: size must be between 0 and 4000"
    assert len(emu.messages(CHAT)) == 2


async def test_format_html_is_rendered_and_others_are_refused(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    html = '<b>Важно</b>: 5 &lt; 6 &amp; <a href="https://school.ru">сайт</a> <blink>x</blink>'
    status, body = await send(http, emu, body={"text": html, "format": "html"})
    assert status == 200
    assert body["message"]["body"]["text"] == "Важно: 5 < 6 & сайт x"
    assert body["message"]["body"]["markup"] == [
        {"type": "strong", "from": 0, "length": 5},
        {"type": "link", "url": "https://school.ru", "from": 15, "length": 4},
    ]
    status, body = await send(http, emu, body={"text": "**Важно** и _тихо_", "format": "markdown"})
    assert (status, body["message"]["body"]["text"]) == (200, "Важно и тихо")
    status, body = await send(http, emu, body={"text": "x", "format": "bbcode"})
    assert (status, body["code"]) == (400, "proto.payload")
    assert [m.format for m in emu.messages(CHAT)] == ["html", "markdown"]


async def test_chat_access_errors(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    emu.add_chat(-2, "Не админ", admin=False)
    emu.add_chat(-3, "Без бота", member=False)
    emu.add_chat(-4, "Канал без права писать", chat_type="channel", permissions=["read_all_messages"])
    emu.add_chat(-5, "Канал", chat_type="channel")
    cases = {-1: (404, "chat.not.found"), -2: (403, "chat.denied"), -3: (403, "chat.denied")}
    cases[-4] = (403, "chat.denied")
    for chat_id, expected in cases.items():
        status, body = await send(http, emu, params={"chat_id": str(chat_id)})
        assert (status, body["code"]) == expected, chat_id
    status, body = await send(http, emu, params={"chat_id": "-5"})
    assert status == 200
    assert body["message"]["recipient"]["chat_type"] == "channel"
    assert body["message"]["url"]


async def test_user_dialog_needs_the_user_to_have_started_the_bot(
    emu: MaxEmulator, http: aiohttp.ClientSession
) -> None:
    status, body = await send(http, emu, params={"user_id": "777"})
    assert (status, body["code"]) == (403, "chat.denied")
    emu.add_user(777, "Ирина")
    status, body = await send(http, emu, params={"user_id": "777"})
    assert status == 200
    assert body["message"]["recipient"] == {"chat_id": 777, "chat_type": "dialog", "user_id": 777}


# ---------------------------------------------------------------------------------------------- rate limit


async def test_rate_limit_per_token_sliding_window() -> None:
    async with (
        MaxEmulator(rate_limit=5, rate_window=0.5) as emu,
        aiohttp.ClientSession() as http,
    ):
        emu.add_bot(TOKEN)
        emu.add_bot(OTHER)
        emu.add_chat(CHAT, "5А")
        results = [await send(http, emu) for _ in range(8)]
        assert [status for status, _ in results] == [200] * 5 + [429] * 3
        assert results[-1][1]["code"] == "too.many.requests"
        assert emu.rate_limited_count(TOKEN) == 3
        assert emu.request_count(TOKEN) == 8
        assert (await send(http, emu, token=OTHER))[0] == 200  # another token has its own window
        assert emu.rate_limited_count(OTHER) == 0
        await asyncio.sleep(0.55)
        assert (await send(http, emu))[0] == 200
        assert len(emu.messages(CHAT)) == 7


# ---------------------------------------------------------------------------------------------- chats


async def test_get_chats_is_unsupported(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, emu, "GET", "/chats")
    assert (status, body["code"]) == (404, "not.found")
    emu.get_chats_status = 405
    assert (await call(http, emu, "GET", "/chats"))[0] == 405


async def test_chat_and_membership(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    status, chat = await call(http, emu, "GET", f"/chats/{CHAT}")
    assert status == 200
    assert (chat["chat_id"], chat["type"], chat["status"], chat["title"]) == (CHAT, "chat", "active", "5А — родители")
    status, me = await call(http, emu, "GET", f"/chats/{CHAT}/members/me")
    assert status == 200
    assert me["is_admin"] is True
    assert "write" in me["permissions"]
    assert me["is_bot"] is True

    await emu.remove_bot_from_chat(CHAT)
    status, chat = await call(http, emu, "GET", f"/chats/{CHAT}")
    assert (status, chat["status"]) == (200, "removed")
    status, body = await call(http, emu, "GET", f"/chats/{CHAT}/members/me")
    assert (status, body["code"]) == (403, "chat.denied")
    status, body = await call(http, emu, "GET", "/chats/-999/members/me")
    assert (status, body["code"]) == (404, "chat.not.found")
    assert (await send(http, emu))[1]["code"] == "chat.denied"


async def test_recent_messages_newest_first(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    for n in range(5):
        await send(http, emu, f"сообщение {n}")
    emu.add_user_message(CHAT, "спасибо!")
    status, body = await call(http, emu, "GET", "/messages", params={"chat_id": str(CHAT), "count": "3"})
    assert status == 200
    assert [m["body"]["text"] for m in body["messages"]] == ["спасибо!", "сообщение 4", "сообщение 3"]
    assert body["messages"][0]["sender"]["is_bot"] is False
    mid = body["messages"][1]["body"]["mid"]
    status, body = await call(http, emu, "GET", "/messages", params={"message_ids": mid})
    assert [m["body"]["text"] for m in body["messages"]] == ["сообщение 4"]
    status, body = await call(http, emu, "GET", "/messages", params={"chat_id": str(CHAT), "count": "101"})
    assert status == 400
    emu.add_chat(-8, "Чужой", member=False)
    status, body = await call(http, emu, "GET", "/messages", params={"chat_id": "-8"})
    assert (status, body["code"]) == (403, "chat.denied")


async def test_unknown_route_answers_json(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, emu, "GET", "/nowhere")
    assert (status, body["code"]) == (404, "not.found")
    status, body = await call(http, emu, "PUT", "/subscriptions")
    assert (status, body["code"]) == (405, "method.not.allowed")


# ---------------------------------------------------------------------------------------------- updates


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, Any], str | None]]]]:
    got: list[tuple[dict[str, Any], str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((await request.json(), request.headers.get("X-Max-Bot-Api-Secret")))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/hook", got
    await runner.cleanup()


async def test_subscriptions_and_webhook_push(
    emu: MaxEmulator,
    http: aiohttp.ClientSession,
    receiver: tuple[str, list[tuple[dict[str, Any], str | None]]],
) -> None:
    url, got = receiver
    bad = {"url": url, "secret": "no spaces!"}
    assert (await call(http, emu, "POST", "/subscriptions", body=bad))[0] == 400
    sub = {"url": url, "update_types": ["bot_added", "bot_removed"], "secret": "s3cret-Value_1"}
    assert await call(http, emu, "POST", "/subscriptions", body=sub) == (200, {"success": True})
    status, body = await call(http, emu, "GET", "/subscriptions")
    assert [(s["url"], s["update_types"]) for s in body["subscriptions"]] == [(url, ["bot_added", "bot_removed"])]

    emu.add_chat(-20, "9Б — родители")
    assert await emu.emit_bot_added(-20) == [200]
    await emu.remove_bot_from_chat(-20, notify=True)
    assert [(u["update_type"], u["chat_id"], secret) for u, secret in got] == [
        ("bot_added", -20, "s3cret-Value_1"),
        ("bot_removed", -20, "s3cret-Value_1"),
    ]
    assert got[0][0]["is_channel"] is False
    assert got[0][0]["user"]["user_id"]
    assert isinstance(got[0][0]["timestamp"], int)

    # long polling does not work while a webhook is active
    assert (await call(http, emu, "GET", "/updates"))[0] == 405
    assert await call(http, emu, "DELETE", "/subscriptions", params={"url": url}) == (200, {"success": True})
    status, body = await call(http, emu, "GET", "/updates", params={"marker": "0", "timeout": "0"})
    assert status == 200
    assert [u["update_type"] for u in body["updates"]] == ["bot_added", "bot_removed"]
    assert body["marker"] == 2


async def test_long_polling_waits_for_an_update(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    poll = asyncio.create_task(call(http, emu, "GET", "/updates", params={"marker": "0", "timeout": "5"}))
    await asyncio.sleep(0.1)
    assert not poll.done()
    emu.add_chat(-30, "11А")
    await emu.emit_bot_added(-30)
    status, body = await asyncio.wait_for(poll, 2)
    assert status == 200
    assert [(u["update_type"], u["chat_id"]) for u in body["updates"]] == [("bot_added", -30)]


# ---------------------------------------------------------------------------------------------- faults


async def test_error_faults(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    emu.add_chat(-40, "Другой чат")
    emu.fail_next(1, 500)
    emu.fail_next(1, 502)
    emu.fail_next(1, 503)
    emu.fail_next(1, 400, code="attachment.not.ready")
    emu.fail_next(1, 500, chat_id=-40)
    status, body = await send(http, emu)
    assert (status, body["code"]) == (500, "internal.error")
    status, body = await send(http, emu)
    assert status == 502
    assert "Bad Gateway" in body
    status, body = await send(http, emu)
    assert (status, body["code"]) == (503, "service.unavailable")
    status, body = await send(http, emu)
    assert (status, body["code"]) == (400, "attachment.not.ready")
    assert (await send(http, emu))[0] == 200  # the chat -40 fault is still waiting
    assert (await send(http, emu, params={"chat_id": "-40"}))[0] == 500
    assert [m.chat_id for m in emu.messages(CHAT)] == [CHAT]
    assert emu.messages(-40) == []


async def test_fault_after_lets_requests_through(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    emu.fail_next(1, 503, after=2)
    assert [(await send(http, emu))[0] for _ in range(4)] == [200, 200, 503, 200]


async def test_reads_can_fail_too(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    emu.fail_next(1, 503, method="GET", path=None)
    assert (await call(http, emu, "GET", "/me"))[0] == 503
    assert (await call(http, emu, "GET", "/me"))[0] == 200


async def test_slow_response(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    emu.delay_next(1, 0.3)
    started = time.monotonic()
    assert (await send(http, emu))[0] == 200
    assert time.monotonic() - started >= 0.28


async def test_hang_outlasts_the_client_and_keeps_the_message(emu: MaxEmulator) -> None:
    emu.hang_next(1)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as http:
        with pytest.raises(asyncio.TimeoutError):
            await send(http, emu)
    assert len(emu.messages(CHAT)) == 1


async def test_dropped_response_keeps_the_message(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    emu.drop_next(1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(http, emu, "первая попытка")
    assert (await send(http, emu, "вторая попытка"))[0] == 200
    assert [m.text for m in emu.messages(CHAT)] == ["первая попытка", "вторая попытка"]
    assert emu.dropped_count == 1


async def test_random_drops(emu: MaxEmulator, http: aiohttp.ClientSession) -> None:
    emu.drop_randomly(0.5, seed=7)
    outcomes = []
    for n in range(20):
        try:
            outcomes.append((await send(http, emu, str(n)))[0])
        except aiohttp.ServerDisconnectedError:
            outcomes.append(0)
    assert 0 < outcomes.count(0) < 20
    assert emu.dropped_count == outcomes.count(0)
    assert len(emu.messages(CHAT)) == 20  # every request was stored, answered or not


# ---------------------------------------------------------------------------------------------- standalone


async def test_runs_standalone() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.emulators.max",
        "--port",
        str(port),
        "--bot",
        "standalone-token:Гимназия",
        "--chat=-55:8В",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line.decode().strip() == f"MAX emulator on http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": "standalone-token"}
            async with http.get(f"http://127.0.0.1:{port}/chats/-55", headers=headers) as resp:
                assert (resp.status, (await resp.json())["title"]) == (200, "8В")
    finally:
        process.terminate()
        await process.wait()
