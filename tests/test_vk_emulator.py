"""The VK emulator speaks the wire protocol of reference/protocols.md §1, checked over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.emulators.vk import ChatState, VkEmulator

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "vk1.a.emulator-test-token-5a"
OTHER = "vk1.a.other-community-token"
GROUP = 2201
PEER_1 = 2_000_000_001
PEER_RO = 2_000_000_002
PEER_OFF = 2_000_000_003
PEER_KICKED = 2_000_000_004
PEER_OTHER = 2_000_000_009


class Clock:
    """A hand-moved monotonic clock for the rate-limit window."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def emu(clock: Clock) -> AsyncIterator[VkEmulator]:
    async with VkEmulator(rate_limit=1000, hang_seconds=2.0, clock=clock) as emulator:
        emulator.add_community(TOKEN, GROUP)
        emulator.add_community(OTHER, 3301)
        emulator.add_chat(1, "5А родители")
        emulator.add_chat(2, "5Б родители", "read_only")
        emulator.add_chat(3, "6А родители", ChatState.DISABLED)
        emulator.add_chat(4, "7А родители", ChatState.KICKED)
        emulator.add_chat(9, "Учителя другой школы", group_id=3301)
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, emu: VkEmulator, method: str, token: str | None = TOKEN, **params: Any
) -> dict[str, Any]:
    """POST a urlencoded form, as vk_api and vkbottle do; assert VK's HTTP 200."""
    form = {"v": "5.199", **{k: str(v) for k, v in params.items()}}
    if token is not None:
        form["access_token"] = token
    async with http.post(f"{emu.base_url}/method/{method}", data=form) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        body: dict[str, Any] = await response.json()
        return body


def error_of(body: dict[str, Any]) -> tuple[int, str]:
    assert "response" not in body
    return body["error"]["error_code"], body["error"]["error_msg"]


# --- messages.send ---------------------------------------------------------------------------------------


async def test_send_stores_the_message_and_answers_its_id(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    first = await call(http, emu, "messages.send", peer_id=PEER_1, random_id=11, message="Завтра линейка")
    second = await call(http, emu, "messages.send", chat_id=1, random_id=12, message="В 9:00")
    assert isinstance(first["response"], int)
    assert second["response"] == first["response"] + 1
    stored = emu.messages(PEER_1)
    assert [m.text for m in stored] == ["Завтра линейка", "В 9:00"]
    assert [m.conversation_message_id for m in stored] == [1, 2]
    assert stored[0].from_id == -GROUP
    assert stored[0].random_id == 11


async def test_missing_random_id_is_error_100_with_the_exact_text(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    body = await call(http, emu, "messages.send", peer_id=PEER_1, message="x")
    assert error_of(body) == (
        100,
        "One of the parameters specified was missing or invalid: random_id is a required parameter",
    )
    assert emu.messages(PEER_1) == []


async def test_missing_peer_is_error_100_with_the_exact_text(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    body = await call(http, emu, "messages.send", random_id=5, message="x")
    assert error_of(body) == (
        100,
        "One of the parameters specified was missing or invalid: "
        "you should specify peer_id, user_id, domain, chat_id or user_ids param",
    )


async def test_errors_are_http_200_and_echo_params_without_the_token(
    emu: VkEmulator, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{emu.base_url}/method/messages.send",
        data={"access_token": TOKEN, "v": "5.199", "peer_id": str(PEER_RO), "random_id": "7", "message": "x"},
    ) as response:
        assert response.status == 200
        raw = await response.text()
    assert TOKEN not in raw
    error = json.loads(raw)["error"]
    assert error["error_code"] == 1012
    assert error["error_msg"] == "Writing is disabled for this chat"
    params = error["request_params"]
    assert params[:3] == [
        {"key": "method", "value": "messages.send"},
        {"key": "oauth", "value": "1"},
        {"key": "v", "value": "5.199"},
    ]
    assert {"key": "peer_id", "value": str(PEER_RO)} in params
    assert all(p["key"] != "access_token" for p in params)


async def test_invalid_or_missing_token_is_error_5(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    bad = await call(http, emu, "messages.send", token="vk1.a.revoked", peer_id=PEER_1, random_id=1, message="x")
    assert error_of(bad) == (5, "User authorization failed: invalid access_token (4).")
    missing = await call(http, emu, "messages.send", token=None, peer_id=PEER_1, random_id=1, message="x")
    assert error_of(missing)[0] == 5
    emu.revoke_token(TOKEN)
    revoked = await call(http, emu, "messages.send", peer_id=PEER_1, random_id=1, message="x")
    assert error_of(revoked)[0] == 5
    assert emu.messages(PEER_1) == []


async def test_version_is_required(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    form = {"access_token": TOKEN, "peer_id": str(PEER_1), "random_id": "1", "message": "x"}
    async with http.post(f"{emu.base_url}/method/messages.send", data=form) as response:
        body = await response.json()
    assert error_of(body)[0] == 8
    assert emu.messages(PEER_1) == []


async def test_query_form_bearer_get_and_multipart_are_all_accepted(
    emu: VkEmulator, http: aiohttp.ClientSession
) -> None:
    url = f"{emu.base_url}/method/messages.send"
    # token and version in the query, the rest in the form (vkbottle's way)
    async with http.post(
        url, params={"access_token": TOKEN, "v": "5.199"}, data={"peer_id": PEER_1, "random_id": 1, "message": "a"}
    ) as r:
        assert isinstance((await r.json())["response"], int)
    # GET with everything in the query
    query = {"access_token": TOKEN, "v": "5.199", "peer_id": str(PEER_1), "random_id": "2", "message": "b"}
    async with http.get(url, params=query) as r:
        assert isinstance((await r.json())["response"], int)
    # Authorization: Bearer and a multipart body
    form = aiohttp.FormData()
    for key, value in {"v": "5.199", "peer_id": str(PEER_1), "random_id": "3", "message": "в"}.items():
        form.add_field(key, value)
    async with http.post(url, data=form, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 200
        assert isinstance((await r.json())["response"], int)
    assert [m.text for m in emu.messages(PEER_1)] == ["a", "b", "в"]


async def test_a_json_body_counts_as_no_params(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    url = f"{emu.base_url}/method/messages.send"
    payload = {"peer_id": PEER_1, "random_id": 1, "message": "x"}
    async with http.post(url, params={"access_token": TOKEN, "v": "5.199"}, json=payload) as r:
        body = await r.json()
    assert error_of(body)[1].endswith("random_id is a required parameter")
    async with http.post(url, json={"access_token": TOKEN, "v": "5.199", **payload}) as r:
        assert error_of(await r.json())[0] == 8
    assert emu.messages(PEER_1) == []


async def test_same_random_id_is_posted_once_and_answers_the_original_id(
    emu: VkEmulator, http: aiohttp.ClientSession
) -> None:
    first = await call(http, emu, "messages.send", peer_id=PEER_1, random_id=77, message="Первое")
    again = await call(http, emu, "messages.send", peer_id=PEER_1, random_id=77, message="Первое")
    other_text = await call(http, emu, "messages.send", peer_id=PEER_1, random_id=77, message="Второе")
    assert first["response"] == again["response"] == other_text["response"]
    assert [m.text for m in emu.messages(PEER_1)] == ["Первое"]
    # the sender is the community: another community's random_id space is its own
    await call(http, emu, "messages.send", token=OTHER, peer_id=PEER_OTHER, random_id=77, message="Чужое")
    assert [m.text for m in emu.messages(PEER_OTHER)] == ["Чужое"]


async def test_random_id_zero_disables_dedup(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    for _ in range(2):
        await call(http, emu, "messages.send", peer_id=PEER_1, random_id=0, message="Повтор")
    assert [m.text for m in emu.messages(PEER_1)] == ["Повтор", "Повтор"]


async def test_a_failed_send_does_not_burn_its_random_id(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    refused = await call(http, emu, "messages.send", peer_id=PEER_RO, random_id=5, message="x")
    assert error_of(refused)[0] == 1012
    emu.set_chat_state(2, "active")
    accepted = await call(http, emu, "messages.send", peer_id=PEER_RO, random_id=5, message="x")
    assert isinstance(accepted["response"], int)
    assert [m.text for m in emu.messages(PEER_RO)] == ["x"]


async def test_peer_ids_answers_per_peer_items(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    peers = f"{PEER_1},{PEER_RO},{PEER_OFF},{PEER_KICKED},2000000555"
    body = await call(http, emu, "messages.send", peer_ids=peers, random_id=9, message="Всем")
    items = body["response"]
    assert [item["peer_id"] for item in items] == [int(p) for p in peers.split(",")]
    ok = items[0]
    assert set(ok) == {"peer_id", "message_id", "conversation_message_id"}
    assert ok["message_id"] == emu.messages(PEER_1)[0].message_id
    assert [item["error"]["code"] for item in items[1:]] == [1012, 945, 917, 917]
    assert items[1]["error"]["description"] == "Writing is disabled for this chat"
    assert all("message_id" not in item for item in items[1:])


async def test_peer_ids_resend_answers_each_peer_its_own_result(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    peers = f"{PEER_1},{PEER_RO},{PEER_OFF}"
    first = (await call(http, emu, "messages.send", peer_ids=peers, random_id=31, message="Всем"))["response"]
    assert [item.get("error", {}).get("code") for item in first] == [None, 1012, 945]

    emu.set_chat_state(2, "active")  # the read-only chat is writable again; 6А stays disabled
    again = (await call(http, emu, "messages.send", peer_ids=peers, random_id=31, message="Всем"))["response"]
    assert [item["peer_id"] for item in again] == [PEER_1, PEER_RO, PEER_OFF]
    assert again[0] == first[0]  # delivered the first time: the original item, nothing new
    (ro,) = emu.messages(PEER_RO)  # not reached the first time: the random_id was not burned there
    assert (ro.text, ro.random_id) == ("Всем", 31)
    assert again[1] == {"peer_id": PEER_RO, "message_id": ro.message_id, "conversation_message_id": 1}
    assert again[2] == {"peer_id": PEER_OFF, "error": {"code": 945, "description": "Chat was disabled"}}
    assert len(emu.messages(PEER_1)) == 1
    assert emu.messages(PEER_OFF) == []

    # a third time, and the single form: every peer's own original, still nothing new
    third = (await call(http, emu, "messages.send", peer_ids=peers, random_id=31, message="Всем"))["response"]
    assert third[:2] == again[:2]
    single = await call(http, emu, "messages.send", peer_id=PEER_RO, random_id=31, message="Всем")
    assert single["response"] == ro.message_id
    assert len(emu.messages(PEER_1)) == len(emu.messages(PEER_RO)) == 1

    # a peer the first send did not address: a duplicate of that send, so nothing is posted there
    emu.add_chat(5, "8В родители")
    extra = await call(http, emu, "messages.send", peer_ids=f"{PEER_1},{2_000_000_005}", random_id=31, message="x")
    assert [item["peer_id"] for item in extra["response"]] == [PEER_1, 2_000_000_005]
    assert emu.messages(2_000_000_005) == []


async def test_more_than_100_peer_ids_is_error_100(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    peers = ",".join(str(2_000_000_000 + i) for i in range(1, 102))
    body = await call(http, emu, "messages.send", peer_ids=peers, random_id=9, message="x")
    assert error_of(body)[0] == 100
    assert emu.messages(PEER_1) == []


async def test_text_over_the_limit_is_914(http: aiohttp.ClientSession) -> None:
    async with VkEmulator(message_limit=10) as emulator:
        emulator.add_community(TOKEN, GROUP)
        emulator.add_chat(1, "5А")
        exact = await call(http, emulator, "messages.send", peer_id=PEER_1, random_id=1, message="x" * 10)
        too_long = await call(http, emulator, "messages.send", peer_id=PEER_1, random_id=2, message="x" * 11)
        assert isinstance(exact["response"], int)
        assert error_of(too_long) == (914, "Message is too long")
        assert len(emulator.messages(PEER_1)) == 1


@pytest.mark.parametrize(
    ("peer", "code", "msg"),
    [
        (PEER_RO, 1012, "Writing is disabled for this chat"),
        (PEER_OFF, 945, "Chat was disabled"),
        (PEER_KICKED, 917, "You don't have access to this chat"),
        (2_000_000_555, 917, "You don't have access to this chat"),
        (PEER_OTHER, 917, "You don't have access to this chat"),  # another community's chat
        (12345, 901, "Can't send messages for users without permission"),
    ],
)
async def test_chat_states_answer_their_errors(
    emu: VkEmulator, http: aiohttp.ClientSession, peer: int, code: int, msg: str
) -> None:
    body = await call(http, emu, "messages.send", peer_id=peer, random_id=3, message="x")
    assert error_of(body) == (code, msg)
    assert emu.messages(peer) == []


async def test_unknown_method_is_error_3(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    assert error_of(await call(http, emu, "wall.post", message="x")) == (3, "Unknown method passed")


# --- rate limit ------------------------------------------------------------------------------------------


async def test_rate_limit_is_a_sliding_second_per_token(clock: Clock, http: aiohttp.ClientSession) -> None:
    async with VkEmulator(rate_limit=3, clock=clock) as emulator:
        emulator.add_community(TOKEN, GROUP)
        emulator.add_community(OTHER, 3301)
        emulator.add_chat(1, "5А")
        codes = []
        for i in range(5):
            clock.now += 0.1
            body = await call(http, emulator, "messages.send", peer_id=PEER_1, random_id=i + 1, message=str(i))
            codes.append(body["error"]["error_code"] if "error" in body else "ok")
        assert codes == ["ok", "ok", "ok", 6, 6]
        assert emulator.rate_limit_errors(TOKEN) == 2
        assert emulator.requests(TOKEN) == 3
        # another token has its own window
        other = await call(http, emulator, "messages.getConversations", token=OTHER)
        assert "response" in other
        # the window slides: the first request (t=1000.1) leaves it after t=1001.1
        clock.now = 1001.1
        assert "response" in await call(http, emulator, "messages.send", peer_id=PEER_1, random_id=9, message="9")
        assert "error" in await call(http, emulator, "messages.send", peer_id=PEER_1, random_id=10, message="x")
        assert emulator.rate_limit_errors(TOKEN) == 3
        assert [m.text for m in emulator.messages(PEER_1)] == ["0", "1", "2", "9"]
        assert error_of(await call(http, emulator, "messages.send", peer_id=PEER_1))[1] == (
            "Too many requests per second"
        )


# --- execute ---------------------------------------------------------------------------------------------


def script(*calls: dict[str, Any]) -> str:
    return "return [" + ",".join(f"API.messages.send({json.dumps(c, ensure_ascii=False)})" for c in calls) + "];"


async def test_execute_runs_each_call_and_reports_failures(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    code = script(
        {"peer_id": PEER_1, "random_id": 1, "message": "один"},
        {"peer_id": PEER_RO, "random_id": 2, "message": "два"},
        {"peer_id": PEER_1, "message": "без random_id"},
        {"peer_id": PEER_1, "random_id": "4", "message": "четыре"},
    )
    body = await call(http, emu, "execute", code=code)
    first, ro, missing, fourth = body["response"]
    assert isinstance(first, int)
    assert isinstance(fourth, int)
    assert ro is False
    assert missing is False
    assert body["execute_errors"] == [
        {"method": "messages.send", "error_code": 1012, "error_msg": "Writing is disabled for this chat"},
        {
            "method": "messages.send",
            "error_code": 100,
            "error_msg": "One of the parameters specified was missing or invalid: random_id is a required parameter",
        },
    ]
    assert [m.text for m in emu.messages(PEER_1)] == ["один", "четыре"]
    assert emu.requests(TOKEN) == 1
    assert emu.sends(TOKEN) == 4


async def test_execute_counts_once_against_the_rate_limit(clock: Clock, http: aiohttp.ClientSession) -> None:
    async with VkEmulator(rate_limit=1, clock=clock) as emulator:
        emulator.add_community(TOKEN, GROUP)
        for chat in range(1, 26):
            emulator.add_chat(chat, f"{chat} класс")
        calls = [{"peer_id": 2_000_000_000 + c, "random_id": c, "message": "Сбор в 8:30"} for c in range(1, 26)]
        body = await call(http, emulator, "execute", code=script(*calls))
        assert all(isinstance(x, int) for x in body["response"])
        assert "execute_errors" not in body
        assert emulator.requests(TOKEN) == 1
        assert error_of(await call(http, emulator, "execute", code=script(*calls[:1])))[0] == 6
        assert sum(len(emulator.messages(2_000_000_000 + c)) for c in range(1, 26)) == 25


async def test_execute_with_more_than_25_calls_is_error_13_and_runs_nothing(
    emu: VkEmulator, http: aiohttp.ClientSession
) -> None:
    calls = [{"peer_id": PEER_1, "random_id": i + 1, "message": str(i)} for i in range(26)]
    body = await call(http, emu, "execute", code=script(*calls))
    assert error_of(body)[0] == 13
    assert emu.messages(PEER_1) == []


async def test_execute_dedups_like_messages_send(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    direct = await call(http, emu, "messages.send", peer_id=PEER_1, random_id=500, message="x")
    body = await call(http, emu, "execute", code=script({"peer_id": PEER_1, "random_id": 500, "message": "x"}))
    assert body["response"] == [direct["response"]]
    assert len(emu.messages(PEER_1)) == 1


async def test_execute_parses_the_vkscript_subset(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    code = """
        // a comment
        var first = API.messages.send({peer_id: 2000000001, random_id: 1, message: 'одинарные \\'кавычки\\''});
        /* block
           comment */
        var second = API.messages.send({"peer_id": 2000000001, "random_id": 2,
                                        "message": "строка\\nс \\"escape\\" и \\u0436 и \\ud83d\\udd14"});
        return {"ids": [first, second], "ok": true, "none": null, "n": -1.5};
    """
    body = await call(http, emu, "execute", code=code)
    ids = body["response"]["ids"]
    assert body["response"]["ok"] is True
    assert body["response"]["none"] is None
    assert body["response"]["n"] == -1.5
    assert all(isinstance(i, int) for i in ids)
    assert [m.text for m in emu.messages(PEER_1)] == ["одинарные 'кавычки'", 'строка\nс "escape" и ж и 🔔']


@pytest.mark.parametrize(
    "code",
    [
        "return API.messages.send({peer_id: 1}",
        "return 1 + 2;",
        "API.messages.send({});",
        "return 'unterminated;",
        "return [1, 2;",
        "return x; return y;",
    ],
)
async def test_execute_rejects_code_outside_the_subset(emu: VkEmulator, http: aiohttp.ClientSession, code: str) -> None:
    assert error_of(await call(http, emu, "execute", code=code))[0] == 12


async def test_execute_without_code_is_error_100(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    assert error_of(await call(http, emu, "execute"))[0] == 100


# --- getConversations ------------------------------------------------------------------------------------


async def test_get_conversations_lists_the_community_chats(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    await call(http, emu, "messages.send", peer_id=PEER_1, random_id=1, message="последнее")
    body = await call(http, emu, "messages.getConversations", count=200)
    result = body["response"]
    assert result["count"] == 4  # chat 9 belongs to the other community
    by_peer = {item["conversation"]["peer"]["id"]: item for item in result["items"]}
    assert set(by_peer) == {PEER_1, PEER_RO, PEER_OFF, PEER_KICKED}
    assert result["items"][0]["conversation"]["peer"]["id"] == PEER_1  # most recent first
    first = by_peer[PEER_1]
    assert first["conversation"]["peer"] == {"id": PEER_1, "type": "chat", "local_id": 1}
    assert first["conversation"]["chat_settings"]["title"] == "5А родители"
    assert first["conversation"]["can_write"] == {"allowed": True}
    assert first["last_message"]["text"] == "последнее"
    assert by_peer[PEER_RO]["conversation"]["can_write"] == {"allowed": False, "reason": 1012}
    assert by_peer[PEER_KICKED]["conversation"]["chat_settings"]["state"] == "kicked"
    page = await call(http, emu, "messages.getConversations", offset=1, count=2)
    assert [i["conversation"]["peer"]["id"] for i in page["response"]["items"]] == [
        i["conversation"]["peer"]["id"] for i in result["items"][1:3]
    ]


# --- fault injection -------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1, 6, 9, 10, 14, 29])
async def test_fail_next_answers_the_error_then_recovers(
    emu: VkEmulator, http: aiohttp.ClientSession, code: int
) -> None:
    emu.fail_next(code, times=2)
    for _ in range(2):
        body = await call(http, emu, "messages.send", peer_id=PEER_1, random_id=1, message="x")
        assert error_of(body)[0] == code
    if code == 14:
        assert body["error"]["captcha_sid"]
        assert body["error"]["captcha_img"].startswith("https://")
    assert emu.messages(PEER_1) == []
    assert "response" in await call(http, emu, "messages.send", peer_id=PEER_1, random_id=1, message="x")
    assert len(emu.messages(PEER_1)) == 1
    assert emu.rate_limit_errors(TOKEN) == (2 if code == 6 else 0)


async def test_fail_next_for_a_method_hits_calls_inside_execute(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    emu.fail_next(9, method="messages.send")
    body = await call(
        http,
        emu,
        "execute",
        code=script(
            {"peer_id": PEER_1, "random_id": 1, "message": "a"}, {"peer_id": PEER_1, "random_id": 2, "message": "b"}
        ),
    )
    assert body["response"][0] is False
    assert isinstance(body["response"][1], int)
    assert body["execute_errors"] == [{"method": "messages.send", "error_code": 9, "error_msg": "Flood control"}]
    assert [m.text for m in emu.messages(PEER_1)] == ["b"]


async def test_http_error_next_answers_a_bare_5xx(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    emu.http_error_next(503)
    form = {"access_token": TOKEN, "v": "5.199", "peer_id": str(PEER_1), "random_id": "1", "message": "x"}
    async with http.post(f"{emu.base_url}/method/messages.send", data=form) as response:
        assert response.status == 503
    assert emu.messages(PEER_1) == []
    assert "response" in await call(http, emu, "messages.send", peer_id=PEER_1, random_id=1, message="x")


async def test_drop_next_stores_the_message_and_closes_unanswered(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    emu.drop_next()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, emu, "messages.send", peer_id=PEER_1, random_id=42, message="Потерянный ответ")
    assert [m.text for m in emu.messages(PEER_1)] == ["Потерянный ответ"]
    again = await call(http, emu, "messages.send", peer_id=PEER_1, random_id=42, message="Потерянный ответ")
    assert again["response"] == emu.messages(PEER_1)[0].message_id
    assert len(emu.messages(PEER_1)) == 1


@pytest.mark.parametrize("after_processing", [False, True])
async def test_hang_next_never_answers(emu: VkEmulator, after_processing: bool) -> None:
    emu.hang_next(after_processing=after_processing)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as short:
        with pytest.raises(TimeoutError):
            await call(short, emu, "messages.send", peer_id=PEER_1, random_id=1, message="x")
    assert len(emu.messages(PEER_1)) == (1 if after_processing else 0)


async def test_close_releases_hanging_requests() -> None:
    emulator = VkEmulator(hang_seconds=60)
    await emulator.start()
    emulator.add_community(TOKEN, GROUP)
    emulator.hang_next()
    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(call(session, emulator, "messages.getConversations"))
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await emulator.close()
        assert loop.time() - started < 5
        with pytest.raises(aiohttp.ClientError):
            await pending


async def test_chaos_drops_with_the_given_probability(emu: VkEmulator, http: aiohttp.ClientSession) -> None:
    emu.chaos(drop=0.5, seed=7)
    dropped = 0
    for i in range(40):
        try:
            await call(http, emu, "messages.send", peer_id=PEER_1, random_id=i + 1, message=str(i))
        except aiohttp.ServerDisconnectedError:
            dropped += 1
    assert 8 <= dropped <= 32
    assert len(emu.messages(PEER_1)) == 40  # dropped answers, not dropped messages
    emu.clear_faults()
    assert "response" in await call(http, emu, "messages.getConversations")


# --- standalone ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_module_runs_standalone(http: aiohttp.ClientSession) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.emulators.vk",
        "--port",
        str(port),
        "--community",
        f"{TOKEN}:{GROUP}",
        "--chat",
        "1:5А родители",
        "--chat",
        "2:5Б:read_only",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/method/messages.send"
        form = {"access_token": TOKEN, "v": "5.199", "peer_id": str(PEER_1), "random_id": "1", "message": "x"}
        body: dict[str, Any] = {}
        for _ in range(100):
            try:
                async with http.post(url, data=form) as response:
                    body = await response.json()
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        assert isinstance(body.get("response"), int)
        async with http.post(url, data={**form, "peer_id": str(PEER_RO), "random_id": "2"}) as response:
            assert (await response.json())["error"]["error_code"] == 1012
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
