"""The HTTP API and the pages over real HTTP: the role matrix (every route × every role, and anonymous), CSRF,
sessions and tokens, XSS escaped wherever a title or text is shown, idempotent creates, oversize and malformed
bodies, the OpenAPI document against the app's routes and the responses, the parents' signed links."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
import pytest
from aiohttp import web

from gateway.clock import ManualClock
from gateway.domain import Status
from gateway.web import auth, links
from gateway.web.app import make_app
from gateway.web.openapi import SCHEMAS, document
from tests.data import ROSTER_CSV
from tests.web import BY_ROLE, PASSWORDS, SECRET, Session, WebWorld, running_web
from tests.world import WEBHOOK_SECRET


@pytest.fixture
async def web_world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[WebWorld]:
    async with running_web(tmp_path, clock) as w:
        yield w


ANNOUNCEMENT = {"title": "Уроки сокращены", "text": "Завтра уроки по 30 минут.", "groups": ["parents"]}


async def wait_complete(w: WebWorld, s: Session, announcement_id: int) -> dict[str, Any]:
    for _ in range(100):
        async with await s.get(f"/api/announcements/{announcement_id}/progress") as r:
            progress: dict[str, Any] = await r.json()
        if progress["complete"]:
            return progress
        await asyncio.sleep(0.05)
    raise AssertionError(f"announcement {announcement_id} not delivered: {progress}")


# ---------------------------------------------------------------------- the role matrix

ANON = "anonymous"
ROLES = [ANON, "director", "deputy", "class_teacher", "teacher", "admin"]
ALL_STAFF = {"director", "deputy", "class_teacher", "teacher", "admin"}
AUTHORS = {"director", "deputy", "class_teacher"}
ADMINISTRATION = {"director", "deputy"}
IT = {"admin"}
WINDOWS = ADMINISTRATION | {"class_teacher"} | IT
PUBLIC = set(ROLES)

# Written out here, apart from the app's own table: what each role may do (DESIGN.md's users table).
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/api/openapi.json"): PUBLIC,
    ("GET", "/api/me"): ALL_STAFF,
    ("GET", "/api/announcements"): AUTHORS,
    ("POST", "/api/announcements"): AUTHORS,
    ("POST", "/api/announcements/preview"): AUTHORS,
    ("GET", "/api/announcements/{id}"): AUTHORS,
    ("GET", "/api/announcements/{id}/progress"): AUTHORS,
    ("GET", "/api/announcements/{id}/report"): AUTHORS,
    ("GET", "/api/announcements/{id}/report.csv"): AUTHORS,
    ("POST", "/api/announcements/{id}/cancel"): ADMINISTRATION,
    ("GET", "/api/tasks"): AUTHORS,
    ("POST", "/api/tasks/{id}/forward"): AUTHORS,
    ("GET", "/api/chats"): IT,
    ("POST", "/api/chats/check"): IT,
    ("POST", "/api/roster/preview"): IT,
    ("POST", "/api/roster"): IT,
    ("GET", "/api/audit"): ADMINISTRATION,
    ("GET", "/api/alerts"): ADMINISTRATION | IT,
    ("GET", "/api/classes"): WINDOWS,
    ("PUT", "/api/classes/{name}/window"): WINDOWS,
    ("DELETE", "/api/classes/{name}/window"): WINDOWS,
    ("GET", "/api/tokens"): ALL_STAFF,
    ("DELETE", "/api/tokens/{id}"): ALL_STAFF,
    ("GET", "/"): ALL_STAFF,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): ALL_STAFF,
    ("GET", "/compose"): AUTHORS,
    ("POST", "/compose"): AUTHORS,
    ("GET", "/announcements"): AUTHORS,
    ("GET", "/announcements/{id}"): AUTHORS,
    ("POST", "/announcements/{id}/cancel"): ADMINISTRATION,
    ("GET", "/tasks"): AUTHORS,
    ("POST", "/tasks/{id}/forward"): AUTHORS,
    ("GET", "/chats"): IT,
    ("POST", "/chats/check"): IT,
    ("GET", "/roster"): IT,
    ("POST", "/roster/preview"): IT,
    ("POST", "/roster/apply"): IT,
    ("GET", "/audit"): ADMINISTRATION,
    ("GET", "/alerts"): ADMINISTRATION | IT,
    ("GET", "/settings"): ALL_STAFF,
    ("POST", "/settings/classes/{name}/window"): WINDOWS,
    ("POST", "/settings/tokens/{id}/revoke"): ALL_STAFF,
    ("GET", "/p/ack/{token}"): PUBLIC,
    ("POST", "/p/ack/{token}"): PUBLIC,
    ("GET", "/p/unsubscribe/{token}"): PUBLIC,
    ("POST", "/p/unsubscribe/{token}"): PUBLIC,
    ("POST", "/webhooks/max/{school_id}"): PUBLIC,
    ("GET", "/static"): PUBLIC,
    ("HEAD", "/static"): PUBLIC,
}


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}


def concrete(path: str, announcement_id: int, task_id: int, token: str) -> str:
    return (
        path.replace("{id}", str(task_id if path.startswith(("/api/tasks", "/tasks")) else announcement_id))
        .replace("{token}", token)
        .replace("{school_id}", "s1")
        .replace("{name}", "5А")  # the class teacher's own class: another class's is refused by the handler
        .replace("/static", "/static/style.css")
    )


async def test_every_route_times_every_role(web_world: WebWorld) -> None:
    w = web_world
    assert app_routes(w.app) == set(EXPECTED), "a route was added or removed: put it in EXPECTED with its roles"
    dep = await w.session("dep")
    async with await dep.post("/api/announcements", json={**ANNOUNCEMENT, "via_class_teachers": True}) as r:
        assert r.status == 201
        announcement_id = (await r.json())["id"]
    task_id = (await w.gateway.store.tasks(teacher="kt5a"))[0].id
    letter = next(d for d in await w.gateway.store.deliveries(announcement_id) if d.channel == "email")
    token = links.sign(SECRET, links.ACK, letter.id, w.gateway.clock.now() + timedelta(days=1))
    refused: list[str] = []
    for (method, path), allowed in sorted(EXPECTED.items()):
        for role in ROLES:
            who = None if role == ANON else await w.session(BY_ROLE[role])
            http = who.http if who else w.client()
            headers = {"X-Max-Bot-Api-Secret": WEBHOOK_SECRET}
            if who:
                headers[auth.CSRF_HEADER] = who.csrf
            url = w.base + concrete(path, announcement_id, task_id, token if "ack" in path else "1.1.x")
            async with http.request(method, url, headers=headers, allow_redirects=False) as r:
                status, location = r.status, r.headers.get("Location", "")
            to_login = status == 303 and location.startswith("/login?next=")
            denied = status in (401, 403) or to_login
            if (role in allowed) == denied:
                refused.append(f"{method} {path} as {role}: {status} {location}")
            if denied and role == ANON:
                assert status == 401 if path.startswith("/api/") else to_login, f"{method} {path}: {status}"
            elif denied:
                assert status == 403, f"{method} {path} as {role}: {status}"
    assert refused == []


# ---------------------------------------------------------------------- sessions, CSRF, tokens


async def test_login_sets_a_safe_cookie_and_logout_ends_the_session(web_world: WebWorld) -> None:
    w = web_world
    http = w.client()
    async with http.get(w.base + "/login") as page:
        html = await page.text()
        assert page.cookies[auth.LOGIN_COOKIE]["httponly"]
    token = re.search(r'name="login_csrf" value="([^"]+)"', html)
    assert token is not None
    form = {"login": "dep", "password": PASSWORDS["dep"], "login_csrf": token.group(1), "next": "//evil.example/x"}
    async with http.post(w.base + "/login", data=form, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/"  # never off-site after login
        cookie = r.cookies[auth.SESSION_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
        assert not cookie["secure"]  # plain http on 127.0.0.1 only; https public URLs get Secure cookies
        session_id = cookie.value
    stored = await w.gateway.store.session(auth.digest(session_id), w.gateway.clock.now())
    assert stored is not None and stored.staff_id == "dep"
    assert await w.gateway.store.session(session_id, w.gateway.clock.now()) is None  # only the hash is kept
    async with http.get(w.base + "/api/me") as r:
        assert (await r.json())["staff"]["id"] == "dep"
    async with http.post(w.base + "/logout", data={"csrf": stored.csrf_token}, allow_redirects=False) as r:
        assert r.status == 303
    assert await w.gateway.store.session(auth.digest(session_id), w.gateway.clock.now()) is None
    replay = w.client(cookies=False)
    async with replay.get(w.base + "/api/me", headers={"Cookie": f"{auth.SESSION_COOKIE}={session_id}"}) as r:
        assert r.status == 401


async def test_wrong_password_stale_form_and_throttle(web_world: WebWorld) -> None:
    w = web_world
    http = w.client()

    async def attempt(password: str, login_csrf: str | None = None) -> tuple[int, str]:
        async with http.get(w.base + "/login") as page:
            token = re.search(r'name="login_csrf" value="([^"]+)"', await page.text())
        assert token is not None
        form = {"login": "kt5a", "password": password, "login_csrf": login_csrf or token.group(1)}
        async with http.post(w.base + "/login", data=form, allow_redirects=False) as r:
            return r.status, await r.text()

    assert (await attempt(PASSWORDS["kt5a"], login_csrf="forged"))[0] == 400
    for _ in range(5):
        status, html = await attempt("не тот пароль")
        assert status == 400 and "Неверный логин или пароль" in html
    status, html = await attempt(PASSWORDS["kt5a"])  # even the right one, until the wait has passed
    assert status == 429 and "Слишком много неудачных попыток" in html and "Повторите через 1 с" in html
    w.gateway.clock.advance(timedelta(seconds=1))
    status, html = await attempt("снова не тот")  # the sixth: the wait doubles
    assert status == 400
    status, html = await attempt(PASSWORDS["kt5a"])
    assert status == 429 and "Повторите через 2 с" in html
    w.gateway.clock.advance(timedelta(seconds=2))
    assert (await attempt(PASSWORDS["kt5a"]))[0] == 303  # a wait, never a lock
    async with w.client().post(w.base + "/login", data={"login": "nobody", "password": "x" * 12}) as r:
        assert r.status == 400  # an unknown login is refused like a wrong password


async def test_csrf_is_required_for_every_change_made_with_the_session(web_world: WebWorld) -> None:
    w = web_world
    dep = await w.session("dep")
    without = {"headers": {auth.CSRF_HEADER: ""}}
    async with await dep.post("/api/announcements", json=ANNOUNCEMENT, **without) as r:
        assert r.status == 403 and "CSRF" in (await r.json())["error"]
    async with await dep.post("/api/announcements", json=ANNOUNCEMENT, headers={auth.CSRF_HEADER: "forged"}) as r:
        assert r.status == 403
    async with await dep.post("/compose", data={"action": "send", "title": "т", "text": "т"}, **without) as r:
        assert r.status == 403
    other_site = {"headers": {"Origin": "https://evil.example"}}
    async with await dep.post("/api/announcements", json=ANNOUNCEMENT, **other_site) as r:
        assert r.status == 403 and "чужого сайта" in (await r.json())["error"]
    assert await w.gateway.store.announcements() == []
    # the form field works as the header does; a token request needs no CSRF token at all
    form = {"csrf": dep.csrf, "action": "send", "key": "f1", "title": "Т", "text": "Текст", "groups": "parents"}
    async with await dep.post("/compose", data=form, headers={auth.CSRF_HEADER: ""}) as r:
        assert r.status == 303 and r.headers["Location"].startswith("/announcements/")
    _, token = await auth.create_token(w.gateway, "s1", "dep", "журнал")
    api = w.client(cookies=False)
    async with api.post(
        w.base + "/api/announcements", json=ANNOUNCEMENT, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 201
    async with api.get(w.base + "/api/me", headers={"Authorization": "Bearer zv_not-a-token"}) as r:
        assert r.status == 401 and (await r.json())["code"] == "unauthorized"
    [row] = [t for t in [await w.gateway.store.api_token(auth.digest(token))] if t]
    await w.gateway.store.revoke_api_token(row.id, w.gateway.clock.now())
    async with api.get(w.base + "/api/me", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 401


async def test_staff_cli_sets_a_password_and_makes_a_token(tmp_path: Path) -> None:
    from tests.data import write_config

    settings = f"database: sqlite:///{tmp_path / 'z.db'}\n"
    cfg = str(write_config(tmp_path / "config", settings=settings))

    def zvonok(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args, "--config", cfg],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    short = zvonok("staff", "password", "dep", stdin="короткий\n")
    assert short.returncode == 2 and "не короче 10 символов" in short.stderr
    done = zvonok("staff", "password", "dep", stdin="очень-длинный-пароль\n")
    assert done.returncode == 0, done.stderr
    assert "Пароль сотрудника «Завучева Ольга» (dep) задан" in done.stdout
    assert zvonok("staff", "password", "nobody", stdin="очень-длинный-пароль\n").returncode == 4
    made = zvonok("staff", "token", "it", "--label", "журнал")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("zv_") and len(token) > 40
    from gateway.store.sqlite import SqliteStore

    store = await SqliteStore.open(tmp_path / "z.db")
    try:
        stored = await store.password_hash("s1", "dep")
        assert stored is not None and stored.startswith("$argon2id$") and "очень" not in stored
        assert await auth.verify_password(stored, "очень-длинный-пароль")
        assert not await auth.verify_password(stored, "очень-длинный-пароль!")
        row = await store.api_token(auth.digest(token))
        assert row is not None and (row.staff_id, row.label) == ("it", "журнал")
    finally:
        await store.close()


# ---------------------------------------------------------------------- announcements


async def test_create_is_idempotent_per_author_and_key(web_world: WebWorld) -> None:
    w = web_world
    dep, director = await w.session("dep"), await w.session("dir")
    key = {"headers": {"Idempotency-Key": "утро-понедельника"}}
    async with await dep.post("/api/announcements", json=ANNOUNCEMENT, **key) as r:
        assert r.status == 201
        first = await r.json()
    async with await dep.post("/api/announcements", json=ANNOUNCEMENT, **key) as r:
        assert r.status == 200  # a retry of the same request: the same announcement
        again = await r.json()
    assert (again["id"], again["created"], again["announcement"]["title"]) == (first["id"], False, "Уроки сокращены")
    for other in ({**ANNOUNCEMENT, "title": "другой"}, {**ANNOUNCEMENT, "groups": ["students"]}):
        async with await dep.post("/api/announcements", json=other, **key) as r:
            assert r.status == 409  # the key reused for another request (Stripe's rule): refused, not answered
            body = await r.json()  # with the old announcement and a preview of the new body
        assert body["code"] == "conflict" and "уже использован для объявления № 1" in body["error"], body
        assert "preview" not in body
    async with await director.post("/api/announcements", json=ANNOUNCEMENT, **key) as r:
        assert r.status == 201 and (await r.json())["id"] != first["id"]  # the key is the author's own
    assert len(await w.gateway.store.announcements()) == 2
    done = await wait_complete(w, dep, first["id"])
    assert done["delivered"] == done["total"] == len(await w.gateway.store.deliveries(first["id"]))


async def test_preview_changes_nothing_and_tells_counts_lint_and_estimate(web_world: WebWorld) -> None:
    w = web_world
    dep = await w.session("dep")
    body = {**ANNOUNCEMENT, "text": "ВНИМАНИЕ ВСЕМ РОДИТЕЛЯМ! ЗАВТРА УРОКИ ОТМЕНЯЮТСЯ ИЗ-ЗА МОРОЗА"}
    async with await dep.post("/api/announcements/preview", json=body) as r:
        assert r.status == 200
        preview = await r.json()
    assert preview["recipients"] == {"chats": {"max": 1, "vk": 1}, "emails": 2, "unreachable": 1, "guardians": 5}
    assert [f["rule"] for f in preview["findings"]] == ["caps"] and not preview["blocked"]
    assert preview["estimate"]["last"] is not None and preview["audience"] == "вся школа; родители"
    assert await w.gateway.store.announcements() == []
    linked = {**ANNOUNCEMENT, "text": "Вступайте в чат t.me/school1"}
    async with await dep.post("/api/announcements/preview", json=linked) as r:
        assert (await r.json())["blocked"]
    async with await dep.post("/api/announcements", json=linked) as r:
        assert r.status == 422 and (await r.json())["code"] == "refused"


async def test_bad_bodies_get_clear_russian_errors(web_world: WebWorld) -> None:
    w = web_world
    dep = await w.session("dep")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "не JSON"),
        ({"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, 400, "не JSON"),
        ({"data": "title=x", "headers": {"Content-Type": "text/plain"}}, 415, "application/json"),
        ({"json": []}, 400, "ожидается объект"),
        ({"json": {"title": "т"}}, 400, "обязательное поле не заполнено"),
        ({"json": {**ANNOUNCEMENT, "groups": ["parents", "cats"]}}, 400, "недопустимое значение «cats»"),
        ({"json": {**ANNOUNCEMENT, "title": "x" * 201}}, 400, "не длиннее 200 символов"),
        ({"json": {**ANNOUNCEMENT, "parallels": [12]}}, 400, "от 1 до 11"),
        ({"json": {**ANNOUNCEMENT, "send_at": "завтра"}}, 400, "ISO 8601"),
        ({"json": {**ANNOUNCEMENT, "send_at": "2026-11-24T08:00:00"}}, 400, "ISO 8601"),
        ({"json": {**ANNOUNCEMENT, "admin": True}}, 400, "неизвестное поле"),
        ({"json": {**ANNOUNCEMENT, "classes": ["9Я"]}}, 400, "класса 9Я нет"),
        ({"json": {**ANNOUNCEMENT, "groups": []}}, 400, "хотя бы одно"),
        ({"json": {**ANNOUNCEMENT, "text": "x" * 70_000}}, 413, "больше 64 КиБ"),
        ({"data": b"x" * (9 * 1024 * 1024), "headers": {"Content-Type": "application/json"}}, 413, "больше"),
    ]
    for kw, status, message in cases:
        async with await dep.post("/api/announcements", **kw) as r:
            body = await r.json()
            assert r.status == status, (kw.get("json", "…"), body)
            assert r.content_type == "application/json"
            text = json.dumps(body, ensure_ascii=False)
            assert message in text, (message, text)
            assert "Traceback" not in text and 'File "' not in text
    async with await dep.get("/api/announcements?limit=0") as r:
        assert r.status == 400
    it = await w.session("it")  # an upload past the app's limit (8 MiB), cut off while it is read
    async with await it.post("/api/roster", data=b"x" * (9 * 1024 * 1024), headers={"Content-Type": "text/csv"}) as r:
        assert r.status == 413 and (await r.json())["error"] == "слишком большой запрос"
    for path in ("/api/announcements/99999", "/api/announcements/abc", "/api/announcements/" + "9" * 40):
        async with await dep.get(path) as r:
            assert r.status == 404 and (await r.json())["code"] == "not_found"
    async with await dep.get("/announcements/99999") as r:
        assert r.status == 404 and "text/html" in r.content_type and "не найдено" in await r.text()
    async with await dep.get("/api/nothing-here") as r:
        assert r.status == 404 and (await r.json())["code"] == "not_found"
    assert await w.gateway.store.announcements() == []


XSS_TITLE = '<script>alert("t")</script><img src=x onerror=alert(1)>'
XSS_TEXT = 'Собрание </blockquote><script>alert(2)</script> & "кавычки" <b>жирно</b>'
XSS_NOTE = "<svg onload=alert(3)>"


async def test_titles_and_texts_are_escaped_wherever_they_are_shown(web_world: WebWorld) -> None:
    w = web_world
    dep, kt = await w.session("dep"), await w.session("kt5a")
    body = {"title": XSS_TITLE, "text": XSS_TEXT, "groups": ["parents"], "classes": ["5А"], "via_class_teachers": True}
    async with await dep.post("/api/announcements", json=body) as r:
        assert r.status == 201
        announcement_id = (await r.json())["id"]
    [task] = await w.gateway.store.tasks(announcement_id=announcement_id)
    async with await kt.post(f"/api/tasks/{task.id}/forward", json={"note": XSS_NOTE}) as r:
        assert r.status == 200
    await wait_complete(w, dep, announcement_id)
    form = {"csrf": dep.csrf, "action": "preview", "title": XSS_TITLE, "text": XSS_TEXT, "groups": "parents"}
    pages = [
        (dep, "GET", "/announcements", None),
        (dep, "GET", f"/announcements/{announcement_id}", None),
        (kt, "GET", "/tasks", None),
        (kt, "GET", f"/announcements/{announcement_id}", None),
        (dep, "POST", "/compose", form),
    ]
    for who, method, path, data in pages:
        async with await (who.get(path) if method == "GET" else who.post(path, data=data)) as r:
            html = await r.text()
        assert r.status == 200, (path, html[:300])
        assert "<script>alert" not in html and "<img src=x" not in html and "<svg onload" not in html, path
        assert "&lt;script&gt;alert(" in html, path  # shown, as text
    async with await kt.get("/tasks") as r:
        assert "&lt;svg onload=alert(3)&gt;" in await r.text()
    async with await dep.get(f"/api/announcements/{announcement_id}/report.csv") as r:
        assert r.content_type == "text/csv"
    async with await dep.get(f"/api/announcements/{announcement_id}") as r:
        assert (await r.json())["title"] == XSS_TITLE  # the API returns it as it is: JSON, not HTML
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    # and the chats got it as plain text, the class teacher's note too
    [message] = w.world.max.messages(-501)
    assert message.text is not None and XSS_TITLE in message.text and XSS_NOTE in message.text


async def test_class_teacher_sees_and_does_only_their_own_class(web_world: WebWorld) -> None:
    w = web_world
    dep, kt5a, kt7b = await w.session("dep"), await w.session("kt5a"), await w.session("kt7b")
    async with await dep.post("/api/announcements", json={**ANNOUNCEMENT, "via_class_teachers": True}) as r:
        whole = (await r.json())["id"]
    async with await dep.post("/api/announcements", json={**ANNOUNCEMENT, "classes": ["7Б"]}) as r:
        only_7b = (await r.json())["id"]
    async with await kt5a.get("/api/announcements") as r:
        assert [a["id"] for a in (await r.json())["announcements"]] == [whole]
    async with await kt5a.get(f"/api/announcements/{only_7b}/report") as r:
        assert r.status == 404
    async with await kt5a.get(f"/api/announcements/{whole}/report") as r:
        assert [c["name"] for c in (await r.json())["classes"]] == ["5А"]
    async with await dep.get(f"/api/announcements/{whole}/report") as r:
        assert {c["name"] for c in (await r.json())["classes"]} == {"5А", "5Б", "7Б"}
    async with await kt5a.get("/api/tasks") as r:
        mine = (await r.json())["tasks"]
    assert [t["class_name"] for t in mine] == ["5А"]
    other = next(t for t in await w.gateway.store.tasks(announcement_id=whole) if t.class_name == "5Б")
    for stranger in (kt5a, kt7b):  # 5Б has no class teacher: the administration forwards for it
        async with await stranger.post(f"/api/tasks/{other.id}/forward", json={}) as r:
            assert r.status == 404
    async with await dep.post(f"/api/tasks/{other.id}/forward") as r:  # no body: no note
        assert r.status == 200 and (await r.json())["status"] == "forwarded"
    async with await dep.post(f"/api/tasks/{other.id}/forward") as r:
        assert r.status == 422 and "уже переслано" in (await r.json())["error"]
    async with await kt5a.get("/compose") as r:  # the form offers only what she may do
        html = await r.text()
    assert 'value="5А"' in html and 'value="7Б"' not in html and 'value="5Б"' not in html
    assert "force_majeure" not in html and 'value="teachers"' not in html
    async with await dep.get("/compose") as r:
        html = await r.text()
    assert 'value="force_majeure"' in html and 'value="7Б"' in html and 'value="teachers"' in html
    own = {**ANNOUNCEMENT, "classes": ["5А"], "groups": ["parents", "students"]}
    async with await kt5a.post("/api/announcements", json=own) as r:
        assert r.status == 201
    for refused in ({**ANNOUNCEMENT, "classes": ["7Б"]}, {**ANNOUNCEMENT}, {**own, "kind": "force_majeure"}):
        async with await kt5a.post("/api/announcements", json=refused) as r:
            assert r.status == 422, refused


async def test_cancel_stops_pending_deliveries_and_is_audited(web_world: WebWorld) -> None:
    w = web_world
    dep = await w.session("dep")
    later = (w.gateway.clock.now() + timedelta(days=1)).isoformat()
    async with await dep.post("/api/announcements", json={**ANNOUNCEMENT, "send_at": later}) as r:
        announcement_id = (await r.json())["id"]
    async with await dep.post(f"/api/announcements/{announcement_id}/cancel") as r:
        assert r.status == 200
        result = await r.json()
    assert result["cancelled"] == result["announcement"]["progress"]["cancelled"] > 0
    assert result["announcement"]["cancelled_at"] is not None and result["announcement"]["progress"]["complete"]
    async with await dep.get("/api/audit") as r:
        [entry] = (await r.json())["entries"]
    assert (entry["action"], entry["actor_name"], entry["announcement_id"]) == (
        "cancel",
        "Завучева Ольга",
        announcement_id,
    )
    async with await dep.get(f"/api/announcements/{announcement_id}/report") as r:
        people = [p for c in (await r.json())["classes"] for p in c["people"]]
    assert {p["reason"] for p in people if p["bucket"] == "unreachable"} >= {"отправка отменена"}


async def test_roster_preview_then_import(web_world: WebWorld) -> None:
    w = web_world
    it = await w.session("it")
    new_csv = ROSTER_CSV.replace("5Б;Кузнецов Дима;Кузнецова Ольга;olga@mail.test;;да\n", "") + (
        "7Б;Новиков Саша;Новикова Дарья;daria@mail.test;;нет\n"
    )
    csv_headers = {"headers": {"Content-Type": "text/csv"}}
    async with await it.post("/api/roster/preview", data=new_csv.encode(), **csv_headers) as r:
        assert r.status == 200
        diff = await r.json()
    assert [p["name"] for p in diff["added"]] == ["Новикова Дарья"]
    assert [(p["name"], p["detail"]) for p in diff["left"]] == [("Кузнецова Ольга", "удалите из чата родителей 5Б")]
    assert len(await w.gateway.store.guardians("s1")) == 5  # a preview changes nothing
    async with await it.post("/api/roster/preview", data=b"\xff\x00garbage", **csv_headers) as r:
        assert r.status == 400 and (await r.json())["problems"]
    async with await it.post("/api/roster", data=new_csv.encode(), headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 415
    async with await it.post("/api/roster", data=new_csv.encode(), **csv_headers) as r:
        assert r.status == 200
        assert {k: v for k, v in (await r.json()).items() if k != "preview"} == {
            "added": 1,
            "updated": 0,
            "left": 1,
            "unchanged": 4,
        }
    assert "Кузнецова Ольга" not in {g.name for g in await w.gateway.store.guardians("s1")}
    [entry] = await w.gateway.store.audit_log("s1")
    assert (entry.actor, entry.action) == ("it", "roster_import")


# ---------------------------------------------------------------------- parents' links


async def test_letters_carry_signed_links_that_acknowledge_and_unsubscribe(web_world: WebWorld) -> None:
    w = web_world
    dep = await w.session("dep")
    async with await dep.post("/api/announcements", json=ANNOUNCEMENT) as r:
        announcement_id = (await r.json())["id"]
    await wait_complete(w, dep, announcement_id)
    letter = next(m for m in w.world.smtp.messages if m.recipients == ("anna@mail.test",))
    raw = letter.text + str(letter.message)
    ack_url = re.search(re.escape(w.base) + r"/p/ack/[0-9]+\.[0-9]+\.[A-Za-z0-9_-]+", raw)
    unsub_url = re.search(re.escape(w.base) + r"/p/unsubscribe/[0-9]+\.[0-9]+\.[A-Za-z0-9_-]+", raw)
    assert ack_url and unsub_url, raw[:2000]
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    parent = w.client()
    async with parent.get(ack_url.group(0)) as r:  # opening the link (a mail scanner does) records nothing
        html = await r.text()
        assert r.status == 200 and "Ознакомлен(а)" in html and r.headers["Referrer-Policy"] == "no-referrer"
    assert await w.gateway.store.acknowledgements(announcement_id) == {}
    async with parent.post(ack_url.group(0)) as r:
        assert r.status == 200 and "Спасибо" in await r.text()
    async with parent.post(ack_url.group(0)) as r:
        assert r.status == 200
    forged = ack_url.group(0)[:-3] + ("AAA" if not ack_url.group(0).endswith("AAA") else "BBB")
    async with parent.post(forged) as r:
        assert r.status == 400 and "недействительна" in await r.text()
    async with parent.post(ack_url.group(0).replace("/p/ack/", "/p/unsubscribe/")) as r:
        assert r.status == 400  # an ack link does not unsubscribe
    async with parent.post(unsub_url.group(0), data={"List-Unsubscribe": "One-Click"}) as r:
        assert r.status == 200 and "Вы отписаны" in await r.text()
    async with await dep.get(f"/api/announcements/{announcement_id}/report") as r:
        five_a = next(c for c in (await r.json())["classes"] if c["name"] == "5А")
    anna = next(p for p in five_a["people"] if p["name"] == "Петрова Анна")
    assert anna["acknowledged"] and anna["opted_out"] and (five_a["acknowledged"], five_a["opted_out"]) == (1, 1)
    async with await dep.get(f"/announcements/{announcement_id}") as r:
        html = await r.text()
    assert "ознакомились" in html and "отписан(а)" in html
    # expired: a month past the ack link's lifetime
    w.gateway.clock.advance(links.LIFETIME[links.ACK] + timedelta(days=30))
    async with parent.get(ack_url.group(0)) as r:
        assert r.status == 400 and "срок действия ссылки истёк" in await r.text()


def test_link_tokens_are_bound_to_purpose_delivery_and_expiry() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 23, 5, tzinfo=UTC)
    token = links.sign(SECRET, links.ACK, 17, now + timedelta(days=1))
    assert links.verify(SECRET, links.ACK, token, now) == 17
    delivery, expires, signature = token.split(".")
    for bad in (
        f"18.{expires}.{signature}",
        f"{delivery}.{int(expires) + 1}.{signature}",
        token + "x",
        "17..",
        "",
        "a.b.c",
    ):
        with pytest.raises(links.LinkError):
            links.verify(SECRET, links.ACK, bad, now)
    with pytest.raises(links.LinkError):
        links.verify(SECRET, links.UNSUBSCRIBE, token, now)
    with pytest.raises(links.LinkError):
        links.verify("another-secret-0123456789", links.ACK, token, now)
    with pytest.raises(links.LinkError, match="истёк"):
        links.verify(SECRET, links.ACK, token, now + timedelta(days=2))


# ---------------------------------------------------------------------- the OpenAPI document


def _json_schema(schema: Any) -> Any:
    """OpenAPI 3.0 (nullable) to JSON Schema, for jsonschema."""
    if isinstance(schema, dict):
        out = {k: _json_schema(v) for k, v in schema.items() if k != "nullable"}
        if schema.get("nullable"):
            return {"anyOf": [out, {"type": "null"}]}
        if "$ref" in out:
            out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
        return out
    if isinstance(schema, list):
        return [_json_schema(s) for s in schema]
    return schema


def check_response(doc: dict[str, Any], method: str, path: str, status: int, body: Any) -> None:
    operation = doc["paths"][path][method.lower()]
    assert str(status) in operation["responses"], f"{method} {path}: {status} is not documented"
    content = operation["responses"][str(status)].get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is not None:
        validator = jsonschema.Draft202012Validator(
            {**_json_schema(schema), "$defs": _json_schema(SCHEMAS)}, format_checker=jsonschema.FormatChecker()
        )
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
        assert errors == [], f"{method} {path} {status}"


async def test_document_covers_exactly_the_routes_of_the_app(web_world: WebWorld) -> None:
    doc = document()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    routes = {(m, "/static/{path}" if p == "/static" else p) for m, p in app_routes(web_world.app) if m != "HEAD"}
    assert documented == routes
    jsonschema.Draft202012Validator.check_schema({"$defs": _json_schema(SCHEMAS)})
    for name, schema in SCHEMAS.items():  # every $ref resolves
        for found in re.findall(r"#/components/schemas/(\w+)", json.dumps(schema)):
            assert found in SCHEMAS, (name, found)


async def test_responses_match_the_document(web_world: WebWorld) -> None:
    w = web_world
    doc = document()
    dep, it, kt = await w.session("dep"), await w.session("it"), await w.session("kt5a")
    calls: list[tuple[Session, str, str, str, dict[str, Any]]] = []

    async def call(who: Session, method: str, path: str, template: str, **kw: Any) -> Any:
        async with await (who.get(path, **kw) if method == "GET" else who.post(path, **kw)) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            check_response(doc, method, template, r.status, body)
            calls.append((who, method, path, template, kw))
            return body

    async def post(body: dict[str, Any]) -> Any:
        key = {"Idempotency-Key": "a"}
        return await call(dep, "POST", "/api/announcements", "/api/announcements", json=body, headers=key)

    created = await post({**ANNOUNCEMENT, "via_class_teachers": True})
    again = await post({**ANNOUNCEMENT, "via_class_teachers": True})
    assert again["id"] == created["id"]
    assert (await post(ANNOUNCEMENT))["code"] == "conflict"  # the key again, with another body
    i = created["id"]
    await call(dep, "POST", "/api/announcements/preview", "/api/announcements/preview", json=ANNOUNCEMENT)
    await call(dep, "POST", "/api/announcements", "/api/announcements", json={"title": ""})
    await call(dep, "POST", "/api/announcements", "/api/announcements", json={**ANNOUNCEMENT, "kind": "force_majeure"})
    await call(kt, "POST", "/api/announcements", "/api/announcements", json=ANNOUNCEMENT)
    for template in ("/api/announcements/{id}", "/api/announcements/{id}/progress", "/api/announcements/{id}/report"):
        await call(dep, "GET", template.replace("{id}", str(i)), template)
        await call(dep, "GET", template.replace("{id}", "777"), template)
    await call(dep, "GET", "/api/announcements", "/api/announcements")
    await call(dep, "GET", "/api/me", "/api/me")
    tasks = await call(kt, "GET", "/api/tasks", "/api/tasks")
    await call(
        kt, "POST", f"/api/tasks/{tasks['tasks'][0]['id']}/forward", "/api/tasks/{id}/forward", json={"note": "Н"}
    )
    await call(kt, "POST", "/api/tasks/999/forward", "/api/tasks/{id}/forward", json={})
    await call(dep, "POST", f"/api/announcements/{i}/cancel", "/api/announcements/{id}/cancel")
    await call(dep, "GET", "/api/audit", "/api/audit")
    await call(dep, "GET", "/api/alerts", "/api/alerts")
    await call(it, "GET", "/api/chats", "/api/chats")
    await call(it, "POST", "/api/chats/check", "/api/chats/check")
    csv_kw = {"data": ROSTER_CSV.encode(), "headers": {"Content-Type": "text/csv"}}
    await call(it, "POST", "/api/roster/preview", "/api/roster/preview", **csv_kw)
    await call(it, "POST", "/api/roster", "/api/roster", **csv_kw)
    await call(it, "GET", "/api/audit", "/api/audit")  # 403 is documented too
    anonymous = Session(w.client(), "", w.base)
    await call(anonymous, "GET", "/api/me", "/api/me")
    spec = await call(anonymous, "GET", "/api/openapi.json", "/api/openapi.json")
    assert spec == json.loads(json.dumps(doc))
    assert len(calls) >= 27


async def test_a_failure_inside_is_a_russian_500_without_internals(web_world: WebWorld, tmp_path: Path) -> None:
    w = web_world
    dep = await w.session("dep")
    async with await dep.post("/api/announcements", json=ANNOUNCEMENT) as r:
        announcement_id = (await r.json())["id"]
    with sqlite3.connect(tmp_path / "z.db") as conn:  # the database breaks under the running app
        conn.execute("DROP TABLE acknowledgements")
    async with await dep.get(f"/api/announcements/{announcement_id}/report") as r:
        body = await r.json()
    assert r.status == 500 and body["code"] == "internal"
    assert re.fullmatch(r"внутренняя ошибка \(номер [0-9a-f]{8}\); сообщите администратору", body["error"])
    async with await dep.get(f"/announcements/{announcement_id}") as r:
        html = await r.text()
    assert r.status == 500 and "внутренняя ошибка (номер" in html
    for text in (json.dumps(body), html):
        assert "Traceback" not in text and "acknowledgements" not in text and "sqlite" not in text.lower()


async def test_an_https_public_url_makes_the_session_cookie_secure(web_world: WebWorld) -> None:
    from tests.web import free_socket

    w = web_world
    app = make_app(w.gateway, public_url="https://zvonok.school1.example")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    await web.SockSite(runner, sock).start()
    try:
        http = w.client(cookies=False)  # a Secure cookie is not sent over plain http: it is sent here by hand
        async with http.get(base + "/login") as page:
            token = re.search(r'name="login_csrf" value="([^"]+)"', await page.text())
            login_cookie = page.cookies[auth.LOGIN_COOKIE]
            assert login_cookie["secure"]
        assert token is not None
        form = {"login": "dir", "password": PASSWORDS["dir"], "login_csrf": token.group(1)}
        cookie = {"Cookie": f"{auth.LOGIN_COOKIE}={login_cookie.value}"}
        async with http.post(base + "/login", data=form, headers=cookie, allow_redirects=False) as r:
            cookie = r.cookies[auth.SESSION_COOKIE]
            assert r.status == 303 and cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax"
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------------- class windows, API tokens, settings


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of November 2026 in the test school's zone (UTC+5), as UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=5)


async def eventually(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


NARROW = {"start": "09:00", "end": "18:00"}


async def test_a_class_teacher_narrows_her_class_window_and_only_her_class_waits(web_world: WebWorld) -> None:
    w = web_world
    clock: ManualClock = w.gateway.clock
    clock.set(local(24, 7))  # Tuesday, before school
    kt5a, dep = await w.session("kt5a"), await w.session("dep")
    async with await kt5a.send("PUT", "/api/classes/5А/window", json=NARROW) as r:
        assert r.status == 200, await r.text()
        changed = await r.json()
    assert (changed["name"], changed["window"], changed["source"]) == ("5А", NARROW, "class")
    assert (changed["override"]["set_by_name"], changed["override"]["applied"]) == ("Классова Вера", True)
    clock.set(local(24, 8, 30))
    body = {**ANNOUNCEMENT, "parallels": [5], "groups": ["parents", "students"]}
    async with await dep.post("/api/announcements", json=body) as r:
        assert r.status == 201
        created = await r.json()
    assert datetime.fromisoformat(created["preview"]["held_until"]) == local(24, 9)
    rows = await w.gateway.store.deliveries(created["id"])
    assert {d.target: d.not_before for d in rows if d.channel == "max"} == {"-501": local(24, 9), "-502": local(24, 9)}
    w.gateway.dispatcher.wake()
    await eventually(lambda: len(w.world.vk.messages(2000000001)) == 1, "5Б's chat has it at 08:30")
    await eventually(lambda: w.world.letters() == {"anna@mail.test": 1}, "the letter went at once")
    assert w.world.max.messages(-501) == [] and w.world.max.messages(-502) == []
    assert {d.status for d in await w.gateway.store.deliveries(created["id"]) if d.channel == "max"} == {Status.PENDING}
    clock.set(local(24, 9))
    w.gateway.dispatcher.wake()
    await eventually(lambda: len(w.world.max.messages(-501)) == len(w.world.max.messages(-502)) == 1, "5А at 09:00")
    async with await dep.get("/api/audit") as r:
        entries = (await r.json())["entries"]
    assert [(e["action"], e["actor"], e["actor_name"], e["details"]) for e in entries] == [
        ("class_window", "kt5a", "Классова Вера", "окно рассылки чатов класса 5А: 09:00–18:00 (было 08:00–19:00)")
    ]
    async with await kt5a.send("DELETE", "/api/classes/5А/window") as r:
        assert r.status == 200
        reset = await r.json()
    assert reset["removed"] and (reset["class"]["window"], reset["class"]["source"]) == (
        {"start": "08:00", "end": "19:00"},
        "school",
    )
    assert reset["class"]["override"] is None
    async with await kt5a.send("DELETE", "/api/classes/5А/window") as r:
        assert r.status == 200 and (await r.json())["removed"] is False
    assert await w.gateway.store.class_windows() == []
    async with await dep.get("/api/audit") as r:
        details = [e["details"] for e in (await r.json())["entries"]]
    assert details[0] == "окно рассылки чатов класса 5А сброшено: 08:00–19:00 по файлу школы (было 09:00–18:00)"
    assert len(details) == 2  # the second reset changed nothing and wrote nothing


async def test_class_windows_are_each_class_teachers_own_and_errors_are_russian(web_world: WebWorld) -> None:
    w = web_world
    kt5a, dep, it, t1 = [await w.session(s) for s in ("kt5a", "dep", "it", "t1")]
    async with await kt5a.get("/api/classes") as r:
        mine = await r.json()
    assert [c["name"] for c in mine["classes"]] == ["5А"]
    assert mine["school_window"] == {"start": "08:00", "end": "19:00"}
    async with await dep.get("/api/classes") as r:
        every = {c["name"]: (c["window"]["start"], c["source"], c["may_change"]) for c in (await r.json())["classes"]}
    assert every == {"5А": ("08:00", "school", True), "5Б": ("08:00", "school", True), "7Б": ("09:00", "config", True)}
    async with await t1.get("/api/classes") as r:
        assert r.status == 403
    for method in ("PUT", "DELETE"):  # another class's window: refused, in Russian
        async with await kt5a.send(method, "/api/classes/7Б/window", json=NARROW) as r:
            body = await r.json()
            assert r.status == 403 and body["code"] == "forbidden", body
            assert body["error"].startswith("окно рассылки класса 7Б меняет его классный руководитель")
    cases: list[tuple[Any, str, str]] = [
        ({"start": "07:00", "end": "18:00"}, "start", "окно класса 07:00–18:00 должно лежать внутри окна рассылки"),
        ({"start": "09:00", "end": "19:30"}, "end", "должно лежать внутри окна рассылки школы 08:00–19:00"),
        ({"start": "18:00", "end": "09:00"}, "start", "начало окна 18:00 должно быть раньше конца 09:00"),
        ({"start": "9 утра", "end": "18:00"}, "start", "не время в формате ЧЧ:ММ"),
        ({"start": "09:00:30", "end": "18:00"}, "start", "не время в формате ЧЧ:ММ"),
        ({"start": "09:00"}, "end", "обязательное поле не заполнено"),
        ({"start": 9, "end": 18}, "start", "ожидается строка"),
        ({**NARROW, "class": "7Б"}, "class", "неизвестное поле"),
    ]
    for body, field, message in cases:
        async with await kt5a.send("PUT", "/api/classes/5А/window", json=body) as r:
            answer = await r.json()
        assert r.status == 400 and answer["code"] == "invalid", (body, answer)
        assert any(p["field"] == field and message in p["message"] for p in answer["problems"]), (body, answer)
    async with await dep.send("PUT", "/api/classes/9Я/window", json=NARROW) as r:
        assert r.status == 404 and "класса «9Я» нет" in (await r.json())["error"]
    async with await t1.send("PUT", "/api/classes/5А/window", json=NARROW) as r:
        assert r.status == 403
    assert await w.gateway.store.class_windows() == []  # nothing of it was kept
    async with await dep.send("PUT", "/api/classes/7б/window", json={"start": "10:00", "end": "17:00"}) as r:
        assert r.status == 200 and (await r.json())["name"] == "7Б"  # the administration: any class
    async with await it.send("PUT", "/api/classes/5Б/window", json=NARROW) as r:
        assert r.status == 200  # the IT admin too
    windows = {c.class_name: (str(c.window), c.set_by) for c in await w.gateway.store.class_windows("s1")}
    assert windows == {"5Б": ("09:00–18:00", "it"), "7Б": ("10:00–17:00", "dep")}
    async with await w.client().get(w.base + "/api/classes") as r:
        assert r.status == 401


async def test_tokens_are_listed_without_secrets_and_a_revoked_one_is_refused_at_once(web_world: WebWorld) -> None:
    w = web_world
    _, dep_token = await auth.create_token(w.gateway, "s1", "dep", "журнал")
    _, kt_token = await auth.create_token(w.gateway, "s1", "kt5a", "расписание")
    _, it_token = await auth.create_token(w.gateway, "s1", "it", "мониторинг")
    ids = {t.staff_id: t.id for t in await w.gateway.store.api_tokens("s1")}
    dep, it = await w.session("dep"), await w.session("it")
    bearer = w.client(cookies=False)

    def by(token: str) -> dict[str, dict[str, str]]:
        return {"headers": {"Authorization": f"Bearer {token}"}}

    async with await dep.get("/api/tokens") as r:
        raw = await r.text()
        listed = json.loads(raw)["tokens"]
    assert [(t["id"], t["label"], t["staff_name"], t["active"], t["mine"]) for t in listed] == [
        (ids["dep"], "журнал", "Завучева Ольга", True, True)
    ]
    async with await it.get("/api/tokens") as r:
        raw += await r.text()
        every = (json.loads(await r.text()))["tokens"]
    assert [t["staff_id"] for t in every] == ["dep", "kt5a", "it"]
    for secret in (dep_token, kt_token, it_token, auth.digest(dep_token), auth.digest(kt_token)):
        assert secret not in raw  # never the token, nor what the store keeps of it
    assert "zv_" not in raw
    async with bearer.get(w.base + "/api/me", **by(kt_token)) as r:
        assert r.status == 200
    for stranger, token_id in ((dep, ids["kt5a"]), (dep, ids["it"])):  # another's token: nothing tells it exists
        async with await stranger.send("DELETE", f"/api/tokens/{token_id}") as r:
            assert r.status == 404
    async with bearer.delete(w.base + f"/api/tokens/{ids['it']}", **by(kt_token)) as r:
        assert r.status == 404
    async with await it.send("DELETE", f"/api/tokens/{ids['kt5a']}") as r:  # the admin: any of the school's
        assert r.status == 200
        revoked = await r.json()
    assert revoked["revoked"] and revoked["token"]["revoked_at"] is not None and not revoked["token"]["active"]
    async with bearer.get(w.base + "/api/me", **by(kt_token)) as r:  # at once
        assert r.status == 401
    async with await it.send("DELETE", f"/api/tokens/{ids['kt5a']}") as r:
        assert r.status == 200 and (await r.json())["revoked"] is False  # once
    async with bearer.delete(w.base + f"/api/tokens/{ids['dep']}", **by(dep_token)) as r:  # one's own, by itself
        assert r.status == 200
    async with bearer.get(w.base + "/api/tokens", **by(dep_token)) as r:
        assert r.status == 401
    async with await dep.get("/api/tokens") as r:  # still listed to its owner, as revoked
        assert [t["active"] for t in (await r.json())["tokens"]] == [False]
    async with await dep.get("/api/audit") as r:
        audit = [(e["action"], e["actor"], e["details"]) for e in (await r.json())["entries"]]
    assert audit == [
        ("token_revoke", "dep", f"отозван токен API № {ids['dep']} «журнал» сотрудника Завучева Ольга"),
        ("token_revoke", "it", f"отозван токен API № {ids['kt5a']} «расписание» сотрудника Классова Вера"),
    ]
    async with bearer.get(w.base + "/api/me", **by(it_token)) as r:
        assert r.status == 200  # the others still work


async def test_class_window_and_token_answers_match_the_document(web_world: WebWorld) -> None:
    w = web_world
    doc = document()
    await auth.create_token(w.gateway, "s1", "kt5a", "расписание")
    [token] = await w.gateway.store.api_tokens("s1")
    kt5a, dep, it = await w.session("kt5a"), await w.session("dep"), await w.session("it")
    window = "/api/classes/{name}/window"
    calls: list[tuple[Session, str, str, str, dict[str, Any], int]] = [
        (kt5a, "GET", "/api/classes", "/api/classes", {}, 200),
        (kt5a, "PUT", "/api/classes/5А/window", window, {"json": NARROW}, 200),
        (kt5a, "PUT", "/api/classes/5А/window", window, {"json": {"start": "07:00", "end": "18:00"}}, 400),
        (kt5a, "PUT", "/api/classes/5А/window", window, {"data": "x", "headers": {"Content-Type": "text/plain"}}, 415),
        (kt5a, "PUT", "/api/classes/7Б/window", window, {"json": NARROW}, 403),
        (dep, "PUT", "/api/classes/9Я/window", window, {"json": NARROW}, 404),
        (dep, "GET", "/api/classes", "/api/classes", {}, 200),
        (kt5a, "DELETE", "/api/classes/5А/window", window, {}, 200),
        (kt5a, "GET", "/api/tokens", "/api/tokens", {}, 200),
        (dep, "DELETE", f"/api/tokens/{token.id}", "/api/tokens/{id}", {}, 404),
        (it, "DELETE", f"/api/tokens/{token.id}", "/api/tokens/{id}", {}, 200),
        (it, "GET", "/api/tokens", "/api/tokens", {}, 200),
    ]
    for who, method, path, template, kw, expected in calls:
        async with await who.send(method, path, **kw) as r:
            body = await r.json()
            assert r.status == expected, (method, path, body)
            check_response(doc, method, template, r.status, body)


async def test_settings_page_shows_and_changes_what_each_role_may(web_world: WebWorld) -> None:
    w = web_world
    _, dep_token = await auth.create_token(w.gateway, "s1", "dep", '<script>alert("t")</script>')
    _, kt_token = await auth.create_token(w.gateway, "s1", "kt5a", "расписание")
    pages: dict[str, str] = {}
    for staff_id in ("dir", "dep", "kt5a", "kt7b", "t1", "it"):
        who = await w.session(staff_id)
        async with await who.get("/settings") as r:
            assert r.status == 200
            pages[staff_id] = await r.text()
    for staff_id, html in pages.items():
        assert 'href="/settings" aria-current="page">Настройки' in html, staff_id  # in everyone's menu
        assert "Asia/Yekaterinburg" in html and "<code>schools/s1.yaml</code>" in html and "пятидневная" in html
        assert "сразу, не дожидаясь окна рассылки" in html and "передать автору объявления" in html
        assert "ссылка на запрещённый мессенджер — запрещает отправку" in html
        assert dep_token not in html and kt_token not in html and "zv_" not in html, staff_id
        assert "<script>alert" not in html, staff_id

    def window_forms(html: str) -> list[str]:
        return [unquote(c) for c in re.findall(r'action="/settings/classes/([^"/]+)/window"', html)]

    def revoke_forms(html: str) -> list[str]:
        return re.findall(r'action="/settings/tokens/(\d+)/revoke"', html)

    assert window_forms(pages["kt5a"]) == ["5А"] and window_forms(pages["kt7b"]) == ["7Б"]
    assert window_forms(pages["dir"]) == window_forms(pages["dep"]) == window_forms(pages["it"]) == ["5А", "5Б", "7Б"]
    assert window_forms(pages["t1"]) == [] and "Окна рассылки в чатах классов" not in pages["t1"]
    assert revoke_forms(pages["dep"]) == ["1"] and revoke_forms(pages["kt5a"]) == ["2"]
    assert revoke_forms(pages["it"]) == ["1", "2"] and revoke_forms(pages["t1"]) == revoke_forms(pages["dir"]) == []
    assert "&lt;script&gt;alert(" in pages["dep"] and "&lt;script&gt;alert(" in pages["it"]  # the label, as text

    kt5a = await w.session("kt5a")
    form = {"csrf": kt5a.csrf, "action": "set", **NARROW}
    async with await kt5a.post("/settings/classes/7Б/window", data=form) as r:
        assert r.status == 403 and "окно рассылки класса 7Б меняет" in await r.text()
    async with await kt5a.post("/settings/classes/5А/window", data={**form, "start": "07:00"}) as r:
        html = await r.text()
        assert r.status == 400 and "должно лежать внутри окна рассылки школы 08:00–19:00" in html
    no_csrf = {k: v for k, v in form.items() if k != "csrf"}
    async with await kt5a.post("/settings/classes/5А/window", data=no_csrf, headers={auth.CSRF_HEADER: ""}) as r:
        assert r.status == 403 and "CSRF" in await r.text()
    t1 = await w.session("t1")
    async with await t1.post("/settings/classes/5А/window", data={**form, "csrf": t1.csrf}) as r:
        assert r.status == 403
    assert await w.gateway.store.class_windows() == []
    async with await kt5a.post("/settings/classes/5А/window", data=form) as r:
        assert r.status == 303 and r.headers["Location"] == "/settings?done=window"
    async with await kt5a.get("/settings?done=window") as r:
        html = await r.text()
    assert "Окно рассылки класса сохранено." in html and '<strong class="window">09:00–18:00</strong>' in html
    assert "задано на сайте: Классова Вера" in html
    assert [str(c.window) for c in await w.gateway.store.class_windows("s1")] == ["09:00–18:00"]
    async with await kt5a.post("/settings/classes/5А/window", data={"csrf": kt5a.csrf, "action": "reset"}) as r:
        assert r.status == 303 and r.headers["Location"] == "/settings?done=window-reset"
    assert await w.gateway.store.class_windows() == []

    async with await kt5a.post("/settings/tokens/1/revoke", data={"csrf": kt5a.csrf}) as r:
        assert r.status == 404  # the deputy's token: not hers
    async with await kt5a.post("/settings/tokens/2/revoke", data={"csrf": kt5a.csrf}) as r:
        assert r.status == 303 and r.headers["Location"] == "/settings?done=revoked"
    assert await w.gateway.store.api_token(auth.digest(kt_token)) is None
    assert await w.gateway.store.api_token(auth.digest(dep_token)) is not None
    async with await kt5a.get("/settings?done=revoked") as r:
        html = await r.text()
    assert "Токен API отозван" in html and revoke_forms(html) == [] and "отозван 23.11.2026 10:00" in html
