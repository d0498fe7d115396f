"""A third-party VK client (vkbottle, which speaks to api.vk.ru in production) works against our emulator.

vkbottle's `API` posts to `API_URL + method` with `access_token` and `v` in the query and the method params as
a form body; pointing it at the emulator is a subclass with another `API_URL`, nothing patched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from vkbottle import API, VKAPIError
from vkbottle.http import AiohttpClient

from adapters.emulators.vk import VkEmulator

TOKEN = "vk1.a.thirdparty-test-token"
GROUP = 4401
PEER_OPEN = 2_000_000_001
PEER_READ_ONLY = 2_000_000_002


@pytest.fixture
async def emu() -> AsyncIterator[VkEmulator]:
    async with VkEmulator() as emulator:
        emulator.add_community(TOKEN, GROUP)
        emulator.add_chat(1, "5А родители")
        emulator.add_chat(2, "Сферум 5А (архив)", "read_only")
        yield emulator


def api_for(emu: VkEmulator, token: str) -> tuple[API, AiohttpClient]:
    class EmulatorAPI(API):
        API_URL = f"{emu.base_url}/method/"

    http = AiohttpClient()
    return EmulatorAPI(token, http_client=http), http


@pytest.fixture
async def api(emu: VkEmulator) -> AsyncIterator[API]:
    client, http = api_for(emu, TOKEN)
    yield client
    await http.close()


async def test_vkbottle_sends_to_a_chat(emu: VkEmulator, api: API) -> None:
    message_id = await api.messages.send(peer_id=PEER_OPEN, random_id=918273645, message="Завтра линейка в 9:00")
    stored = emu.messages(PEER_OPEN)
    assert [m.text for m in stored] == ["Завтра линейка в 9:00"]
    assert message_id == stored[0].message_id
    # vkbottle's own answer() form: peer_ids, parsed into its response items
    items: Any = await api.messages.send(peer_ids=[PEER_OPEN], random_id=918273646, message="Форма peer_ids")
    assert isinstance(items, list)
    assert items[0].peer_id == PEER_OPEN
    assert items[0].message_id == emu.messages(PEER_OPEN)[-1].message_id
    assert items[0].error is None


async def test_vkbottle_sees_read_only_chat_as_error_1012(emu: VkEmulator, api: API) -> None:
    with pytest.raises(VKAPIError[1012]) as caught:
        await api.messages.send(peer_id=PEER_READ_ONLY, random_id=5, message="x")
    assert caught.value.code == 1012
    assert caught.value.error_msg == "Writing is disabled for this chat"
    assert caught.value.request_params["method"] == "messages.send"
    assert "access_token" not in caught.value.request_params
    assert emu.messages(PEER_READ_ONLY) == []


async def test_vkbottle_sees_a_bad_token_as_error_5(emu: VkEmulator) -> None:
    client, http = api_for(emu, "vk1.a.revoked-token")
    try:
        with pytest.raises(VKAPIError[5]) as caught:
            await client.messages.send(peer_id=PEER_OPEN, random_id=7, message="x")
    finally:
        await http.close()
    assert caught.value.code == 5
    assert caught.value.error_msg.startswith("User authorization failed")
    assert emu.messages(PEER_OPEN) == []


async def test_vkbottle_parses_get_conversations(emu: VkEmulator, api: API) -> None:
    await api.messages.send(peer_id=PEER_OPEN, random_id=1, message="Последнее сообщение")
    result = await api.messages.get_conversations(count=200)
    assert result.count == 2
    by_peer = {item.conversation.peer.id: item for item in result.items}
    assert set(by_peer) == {PEER_OPEN, PEER_READ_ONLY}
    open_chat = by_peer[PEER_OPEN]
    assert open_chat.conversation.chat_settings is not None
    assert open_chat.conversation.chat_settings.title == "5А родители"
    assert open_chat.last_message is not None
    assert open_chat.last_message.text == "Последнее сообщение"
    can_write = by_peer[PEER_READ_ONLY].conversation.can_write
    assert can_write is not None
    assert can_write.allowed is False


async def test_vkbottle_execute_reports_the_failed_inner_call(emu: VkEmulator, api: API) -> None:
    code = (
        "return [API.messages.send({peer_id: 2000000001, random_id: 11, message: 'Первое'}),"
        " API.messages.send({peer_id: 2000000002, random_id: 12, message: 'Второе'})];"
    )
    body = await api.request("execute", {"code": code})
    assert isinstance(body["response"][0], int)
    assert body["response"][1] is False
    assert body["execute_errors"][0]["error_code"] == 1012
    assert [m.text for m in emu.messages(PEER_OPEN)] == ["Первое"]
