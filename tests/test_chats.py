"""Chats going away and coming back: bot removed mid-announcement, read-only VK chats, refused VK and MAX tokens,
the webhook registry, health checks (on demand and before a fan-out). Everything over real HTTP to the emulators
and a real SMTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from adapters.max import MaxChannel
from gateway.app import CHAT_CHECK_SECONDS
from gateway.clock import ManualClock
from gateway.domain import EMAIL, AnnouncementRequest, Audience, Group, Kind, Status
from gateway.planner import Note, Route
from gateway.reports import render_text
from gateway.webhooks import add_routes
from tests.world import MAX_TOKEN, VK_TOKEN, WEBHOOK_SECRET, World, running_world


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    async with running_world(tmp_path, clock) as w:
        yield w


async def test_everything_reaches_its_chat_once(world: World) -> None:
    announcement_id = await world.post({Group.PARENTS, Group.STUDENTS})
    await world.deliver()
    assert [len(world.max.messages(c)) for c in (-501, -502)] == [1, 1]
    assert len(world.vk.messages(2000000001)) == 1
    assert world.letters() == {"anna@mail.test": 1, "irina@mail.test": 1}  # not in any chat of the audience
    assert (await world.gateway.report(announcement_id)).complete


async def test_bot_removed_mid_announcement_moves_the_class_to_email(world: World) -> None:
    announcement_id = await world.post(classes=frozenset({"5А"}))
    await world.max.remove_bot_from_chat(-501, MAX_TOKEN)  # after planning, before sending
    await world.deliver()
    assert world.max.messages(-501) == []
    # Мария was in the 5А chat: now she is e-mailed; Анна was e-mailed anyway, once.
    assert world.letters() == {"maria@mail.test": 1, "anna@mail.test": 1}
    rows = {d.target: d for d in await world.gateway.store.deliveries(announcement_id)}
    assert rows["-501"].status is Status.PERMANENT_FAILURE
    assert rows["-501"].error_code in ("max:chat.not.found", "max:chat.denied")
    report = await world.gateway.report(announcement_id)
    text_5a = next(c for c in report.classes if c.name == "5А")
    assert text_5a.chats[0].status is Status.PERMANENT_FAILURE
    maria = next(p for p in text_5a.people if p.name == "Иванова Мария")
    assert (maria.bucket, maria.reason) == ("emailed", "сообщение в чат не доставлено")
    assert ("max", "-501") in await world.gateway.store.dead_chats("s1")
    alerts = await world.gateway.store.alerts("s1")
    assert len(alerts) == 1 and "5А" in alerts[0].message
    # The next announcement plans around the dead chat from the start.
    second = await world.post(classes=frozenset({"5А"}))
    plan_targets = {d.target for d in await world.gateway.store.deliveries(second)}
    assert "-501" not in plan_targets and "maria@mail.test" in plan_targets


async def test_read_only_vk_chat_falls_back_to_email_and_the_report_says_why(world: World) -> None:
    world.vk.set_chat_state(1, "read_only")  # what became of the Sferum chats in VK
    announcement_id = await world.post(classes=frozenset({"5Б"}))
    await world.deliver()
    assert world.letters() == {"maria@mail.test": 1, "olga@mail.test": 1}
    row = next(d for d in await world.gateway.store.deliveries(announcement_id) if d.channel == "vk")
    assert (row.status, row.error_code) == (Status.PERMANENT_FAILURE, "vk:1012")
    report = await world.gateway.report(announcement_id)
    cls = next(c for c in report.classes if c.name == "5Б")
    (chat,) = cls.chats
    assert (chat.channel, chat.status) == ("vk", Status.PERMANENT_FAILURE)
    # the report says why, in the adapter's Russian words for VK error 1012
    assert chat.error == "В чате 2000000001 писать запрещено (чат только для чтения)"
    assert "чат только для чтения" in render_text(report)
    # both parents were e-mailed: Ольга (in the chat) as the fallback, Мария (not in it) anyway
    people = {p.name: (p.bucket, p.reason) for p in cls.people}
    assert people == {
        "Кузнецова Ольга": ("emailed", "сообщение в чат не доставлено"),
        "Иванова Мария": ("emailed", "нет в чате родителей"),
    }
    letter = next(m for m in world.smtp.messages if "olga@mail.test" in m.recipients)
    assert "Завтра уроки по 30 минут." in letter.text
    assert ("vk", "2000000001") in await world.gateway.store.dead_chats("s1")


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (5, "не принимает ключ доступа сообщества"),
        (7, "нет права отправлять сообщения"),
        (14, "требует капчу"),
    ],
    ids=["error-5", "error-7", "error-14-captcha"],
)
async def test_refused_vk_credentials_alert_the_admin_and_email_the_chat_parents(
    world: World, code: int, says: str
) -> None:
    world.vk.fail_next(code, method="messages.send")  # as VK answers a revoked token, a missing right, a captcha
    announcement_id = await world.post(classes=frozenset({"5Б"}))
    await world.deliver()
    assert world.vk.messages(2000000001) == []
    assert world.letters() == {"maria@mail.test": 1, "olga@mail.test": 1}  # Ольга is in the chat: the fallback
    row = next(d for d in await world.gateway.store.deliveries(announcement_id) if d.channel == "vk")
    assert (row.status, row.error_code) == (Status.PERMANENT_FAILURE, f"vk:{code}")
    (alert,) = await world.gateway.store.alerts("s1")
    assert (alert.kind, alert.subject) == ("credential", "vk:s1")
    assert alert.message.startswith("VK: учётные данные отклонены") and says in alert.message
    assert VK_TOKEN not in alert.message
    report = await world.gateway.report(announcement_id)
    olga = next(p for c in report.classes for p in c.people if p.name == "Кузнецова Ольга")
    assert (olga.bucket, olga.reason) == ("emailed", "сообщение в чат не доставлено")
    assert await world.gateway.store.dead_chats("s1") == set()  # the token is at fault, not the chat


async def test_a_refused_max_token_alerts_the_admin_and_emails_the_chat_parents(
    world: World, clock: ManualClock
) -> None:
    # MAX answers a revoked token 401 verify.token; this one even echoes the token back, which must go nowhere
    world.max.fail_next(status=401, code="verify.token", message=f"Invalid access_token {MAX_TOKEN}", chat_id=-501)
    announcement_id = await world.post(classes=frozenset({"5А"}))
    await world.deliver()
    assert world.max.messages(-501) == []
    assert world.letters() == {"maria@mail.test": 1, "anna@mail.test": 1}  # Мария is in the chat: the fallback
    row = next(d for d in await world.gateway.store.deliveries(announcement_id) if d.channel == "max")
    assert (row.status, row.error_code, row.attempts) == (Status.PERMANENT_FAILURE, "max:verify.token", 1)
    assert MAX_TOKEN not in row.last_error
    (alert,) = await world.gateway.store.alerts("s1")
    assert (alert.kind, alert.subject) == ("credential", "max:s1")
    assert alert.message.startswith("MAX: учётные данные отклонены") and "недействителен или отозван" in alert.message
    assert MAX_TOKEN not in alert.message
    report = await world.gateway.report(announcement_id)
    assert report.complete
    maria = next(p for c in report.classes for p in c.people if p.name == "Иванова Мария")
    assert (maria.bucket, maria.reason) == ("emailed", "сообщение в чат не доставлено")
    assert await world.gateway.store.dead_chats("s1") == set()  # the token is at fault, not the chat
    # failed for good: nothing retries it later, not even after the retry back-off has long passed
    sent = world.max.request_count(MAX_TOKEN)
    clock.advance(3600)
    await world.deliver()
    assert world.max.request_count(MAX_TOKEN) == sent and world.max.messages(-501) == []
    assert len(world.smtp.messages) == 2


async def test_a_chat_where_the_bot_has_no_rights_is_flagged_and_its_parents_emailed(world: World) -> None:
    # 403 access.denied on a send to one chat: that chat's permission, not the whole bot's token
    world.max.fail_next(status=403, code="access.denied", message="Access denied", chat_id=-501)
    announcement_id = await world.post(classes=frozenset({"5А"}))
    await world.deliver()
    assert world.max.messages(-501) == []
    assert world.letters() == {"maria@mail.test": 1, "anna@mail.test": 1}  # Мария is in the chat: e-mailed
    row = next(d for d in await world.gateway.store.deliveries(announcement_id) if d.channel == "max")
    assert (row.status, row.error_code) == (Status.PERMANENT_FAILURE, "max:access.denied")
    assert ("max", "-501") in await world.gateway.store.dead_chats("s1")
    [chat] = [c for c in await world.gateway.store.chats("s1") if c.address == "-501"]
    assert "у бота нет прав" in chat.status_reason
    (alert,) = await world.gateway.store.alerts("s1")
    assert alert.kind == "dead_chat" and "5А" in alert.message and "у бота нет прав" in alert.message
    # the next announcement skips the chat until a check finds the bot can post there again
    second = await world.post(classes=frozenset({"5А"}))
    assert "-501" not in {d.target for d in await world.gateway.store.deliveries(second)}
    await world.gateway.check_chats("s1")
    assert ("max", "-501") not in await world.gateway.store.dead_chats("s1")


async def test_webhook_registers_and_retires_chats(world: World) -> None:
    app = web.Application()
    add_routes(app, world.gateway)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/webhooks/max/s1"))
        channel = world.gateway.channels["max"]
        assert isinstance(channel, MaxChannel)
        await channel.register_webhook("s1", url, WEBHOOK_SECRET)

        # The class teacher of 7Б creates a parents' chat and adds the school's bot to it.
        world.max.add_chat(-701, "7Б родители", token=MAX_TOKEN, member=False)
        world.max.set_membership(-701, MAX_TOKEN, member=True, admin=True)
        assert await world.max.emit_bot_added(-701, MAX_TOKEN) == [200]
        rows = {r.address: r for r in await world.gateway.store.chats("s1")}
        assert rows["-701"].source == "webhook" and rows["-701"].kind == ""
        # Not mapped yet: 7Б parents are still e-mailed.
        assert "-701" not in {d.target for d in (await world.gateway.preview(_request())).plan.deliveries}
        await world.gateway.store.map_chat("s1", "max", "-701", "7Б", "parents", world.gateway.clock.now())
        planned = (await world.gateway.preview(_request())).plan
        assert "-701" in {d.target for d in planned.deliveries}
        assert "irina@mail.test" not in {d.target for d in planned.deliveries}  # she is in the 7Б chat

        # The bot is removed: the chat is dead and the admin alerted.
        await world.max.remove_bot_from_chat(-701, MAX_TOKEN, notify=True)
        assert ("max", "-701") in await world.gateway.store.dead_chats("s1")
        assert any("-701" in a.subject for a in await world.gateway.store.alerts("s1"))
        assert "irina@mail.test" in {d.target for d in (await world.gateway.preview(_request())).plan.deliveries}


async def test_webhook_with_a_wrong_secret_changes_nothing(world: World) -> None:
    app = web.Application()
    add_routes(app, world.gateway)
    async with TestServer(app, host="127.0.0.1") as server, ClientSession() as http:
        body = {"update_type": "bot_removed", "chat_id": -501, "timestamp": 1}
        for secret in ("wrong-secret", ""):
            async with http.post(
                server.make_url("/webhooks/max/s1"), json=body, headers={"X-Max-Bot-Api-Secret": secret}
            ) as resp:
                assert resp.status == 401
        async with http.post(server.make_url("/webhooks/max/nope"), json=body) as resp:
            assert resp.status == 401
        async with http.post(
            server.make_url("/webhooks/max/s1"), data=b"{not json", headers={"X-Max-Bot-Api-Secret": WEBHOOK_SECRET}
        ) as resp:
            assert resp.status == 400
    assert await world.gateway.store.dead_chats("s1") == set()


async def test_health_check_finds_a_demoted_bot_and_sees_it_fixed(world: World, clock: ManualClock) -> None:
    world.max.set_membership(-502, MAX_TOKEN, member=True, admin=False)
    results = {r.binding.address: r for r in await world.gateway.check_chats("s1")}
    assert results["-501"].health is not None and results["-501"].health.ok
    bad = results["-502"].health
    assert bad is not None and not bad.ok and "администратор" in bad.explanation
    assert results["2000000001"].health is None  # VK cannot be checked without sending
    assert await world.gateway.store.dead_chats("s1") == {("max", "-502")}
    assert len(await world.gateway.store.alerts("s1")) == 1

    world.max.set_membership(-502, MAX_TOKEN, member=True, admin=True)
    clock.advance(60)
    await world.gateway.check_chats("s1")
    assert await world.gateway.store.dead_chats("s1") == set()
    assert await world.gateway.store.alerts("s1") == []


async def test_preview_checks_stale_chats_only(world: World, clock: ManualClock) -> None:
    await world.gateway.preview(_request(groups={Group.STUDENTS}, classes={"5А"}), check_chats=True)
    first = world.max.request_count(MAX_TOKEN)
    assert first > 0
    await world.gateway.preview(_request(groups={Group.STUDENTS}, classes={"5А"}), check_chats=True)
    assert world.max.request_count(MAX_TOKEN) == first  # checked less than health_max_age_hours ago
    clock.advance(25 * 3600)
    await world.gateway.preview(_request(groups={Group.STUDENTS}, classes={"5А"}), check_chats=True)
    assert world.max.request_count(MAX_TOKEN) > first


async def test_posting_checks_stale_chats_first_and_plans_a_broken_chats_parents_as_email(
    world: World, clock: ManualClock
) -> None:
    await world.gateway.check_chats("s1")  # every chat healthy at the last check
    clock.advance(timedelta(hours=world.gateway.config.settings.max.health_max_age_hours, minutes=1))
    world.max.set_membership(-501, MAX_TOKEN, member=True, admin=False)  # demoted since: may no longer post
    request = _request(classes={"5А"})

    before = world.max.request_count(MAX_TOKEN)
    unchecked = await world.gateway.post(request)  # check_chats=False: no health check at all
    assert world.max.request_count(MAX_TOKEN) == before
    assert "-501" in {d.target for d in unchecked.plan.deliveries}
    assert await world.gateway.store.dead_chats("s1") == set()

    posted = await world.gateway.post(request, check_chats=True)
    assert world.max.request_count(MAX_TOKEN) > before
    assert await world.gateway.store.dead_chats("s1") == {("max", "-501")}
    planned = posted.plan
    assert "-501" not in {d.target for d in planned.deliveries}
    maria = next(c for c in planned.coverage if c.email == "maria@mail.test")
    assert (maria.route, maria.note) == (Route.EMAIL, Note.CHAT_DEAD)
    assert maria.delivery is not None and planned.deliveries[maria.delivery].target == "maria@mail.test"
    assert [(g.class_name, g.note) for g in planned.gaps] == [("5А", Note.CHAT_DEAD)]
    stored = await world.gateway.store.deliveries(posted.id)
    assert {(d.channel, d.target) for d in stored} == {(EMAIL, "maria@mail.test"), (EMAIL, "anna@mail.test")}
    (alert,) = await world.gateway.store.alerts("s1")
    assert alert.kind == "dead_chat" and "администратор" in alert.message

    await world.deliver()
    assert world.max.messages(-501) == []  # nothing reached the chat: the bot may not post there
    report = await world.gateway.report(posted.id)
    people = {p.name: (p.bucket, p.reason) for c in report.classes for p in c.people}
    assert people["Иванова Мария"] == ("emailed", "чат недоступен (бот удалён или чат закрыт)")


async def test_a_provider_that_does_not_answer_the_check_does_not_hold_up_the_post(world: World) -> None:
    for chat_id in (-501, -502):  # members/me never answers (the adapter's own timeout is 15 s)
        world.max.hang_next(3, store=False, method="GET", path=f"/chats/{chat_id}/members/me")
    started = time.monotonic()
    posted = await asyncio.wait_for(
        world.gateway.post(_request(classes={"5А"}), check_chats=True), CHAT_CHECK_SECONDS + 5
    )
    took = time.monotonic() - started
    assert CHAT_CHECK_SECONDS - 0.5 <= took <= CHAT_CHECK_SECONDS + 2, took  # waited for the checks, then no more
    stored = await world.gateway.store.deliveries(posted.id)
    assert {(d.channel, d.target) for d in stored} == {("max", "-501"), (EMAIL, "anna@mail.test")}
    assert await world.gateway.store.dead_chats("s1") == set()  # an unanswered check condemns no chat
    world.max.clear_faults()
    await world.deliver()
    assert len(world.max.messages(-501)) == 1
    assert world.letters() == {"anna@mail.test": 1}


def _request(groups: set[Group] | None = None, classes: set[str] | None = None) -> AnnouncementRequest:
    return AnnouncementRequest(
        "s1",
        "dep",
        Kind.EVENT,
        "Собрание",
        "В среду в 18:00.",
        Audience(frozenset(groups or {Group.PARENTS}), classes=frozenset(classes or {"7Б"})),
    )
