"""The staff site behind a reverse proxy, as docs/deployment.md sets it up: Debian's nginx terminating TLS with a
self-signed certificate on a free loopback port, proxying to the app, and Debian's Chromium using every form
through https. Then what the proxy setting means without nginx: forwarded headers believed from the trusted
addresses only, slow requests timed out, the login form's size capped, the schools not listed to strangers.

`./run tests` installs nginx (and Chromium) when missing; without them these tests fail, saying so."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, expect

from gateway.clock import ManualClock
from gateway.web import auth
from gateway.web.app import REQUEST_TIMEOUT, make_app, runner
from tests.data import ROSTER_CSV
from tests.test_web_browser import DESKTOP
from tests.web import PASSWORDS, WebWorld, free_socket, running_web

NGINX = Path("/usr/sbin/nginx")
OPENSSL = Path("/usr/bin/openssl")
ANNOUNCEMENT = {"title": "Уроки сокращены", "text": "Завтра уроки по 30 минут.", "groups": ["parents"]}

# The proxy section of docs/deployment.md, on a test port and with test paths; the headers are the same.
NGINX_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
{user}
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;

    upstream zvonok {{
        server 127.0.0.1:{app_port};
    }}

    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate     {root}/cert.pem;
        ssl_certificate_key {root}/key.pem;

        client_max_body_size 10m;

        location / {{
            proxy_pass http://zvonok;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_config(root: Path, port: int, app_port: int) -> Path:
    """A fresh self-signed certificate and the configuration that serves it on 127.0.0.1:`port`."""
    if not NGINX.exists():
        pytest.fail(f"{NGINX} is missing: `./run tests` installs Debian's nginx (apt-get install nginx)")
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", root / "key.pem", "-out", root / "cert.pem"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    user = "user root;" if os.geteuid() == 0 else ""  # the workers read this test's files
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, app_port=app_port, user=user), encoding="utf-8")
    return conf


@asynccontextmanager
async def nginx(root: Path, port: int, app_port: int) -> AsyncIterator[None]:
    """Debian's nginx on 127.0.0.1:`port`, in front of the app on `app_port`."""
    conf = await asyncio.to_thread(nginx_config, root, port, app_port)
    process = await asyncio.create_subprocess_exec(
        NGINX, "-c", conf, "-p", root, "-g", "daemon off;", stderr=asyncio.subprocess.PIPE
    )
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if process.returncode is not None:
                    raise AssertionError("nginx did not start") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        yield
    finally:
        process.terminate()
        await process.wait()


@asynccontextmanager
async def behind_nginx(tmp_path: Path, clock: ManualClock) -> AsyncIterator[WebWorld]:
    port = free_port()
    public = f"https://localhost:{port}"
    async with running_web(tmp_path, clock, trusted_proxies=("127.0.0.1/32",), public_url=public) as w:
        app_port = int(w.base.rsplit(":", 1)[1])
        async with nginx(tmp_path / "nginx", port, app_port):
            yield replace(w, base=public)


async def https_page(browser: Browser, w: WebWorld) -> Page:
    context = await browser.new_context(viewport=DESKTOP, locale="ru-RU", base_url=w.base, ignore_https_errors=True)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    return page


async def log_in(page: Page, staff_id: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Логин").fill(staff_id)
    await page.get_by_label("Пароль").fill(PASSWORDS[staff_id])
    await page.get_by_role("button", name="Войти").click()
    await page.wait_for_load_state()
    assert "/login" not in page.url, await page.content()


async def log_out(page: Page) -> None:
    await page.get_by_role("button", name="Выйти").click()
    await page.wait_for_url(re.compile(r"/login$"))
    cookies = {c["name"] for c in await page.context.cookies()}
    assert auth.SESSION_COOKIE not in cookies


async def test_every_form_works_through_nginx_over_https(browser: Browser, tmp_path: Path, clock: ManualClock) -> None:
    async with behind_nginx(tmp_path, clock) as w:
        await auth.create_token(w.gateway, "s1", "kt5a", "журнал")
        await auth.create_token(w.gateway, "s1", "dep", "расписание")
        # the deputy: compose, preview and post through the class teachers; then post for tomorrow and cancel it
        page = await https_page(browser, w)
        await log_in(page, "dep")
        [session] = [c for c in await page.context.cookies() if c["name"] == auth.SESSION_COOKIE]
        assert session["secure"] and session["httpOnly"]
        await page.goto("/compose")
        await page.get_by_label("Заголовок").fill("Экскурсия в музей")
        await page.get_by_label("Текст").fill("В четверг экскурсия, сбор в 9:00 у школы.")
        await page.get_by_label("родителям").check()
        await page.get_by_label("параллели:").check()
        await page.get_by_label("все 5-е").check()
        await page.get_by_label("через классных руководителей").check()
        await page.get_by_role("button", name="Предпросмотр").click()
        await expect(page.locator("#preview")).to_contain_text("Аудитория: все 5-е")
        await page.get_by_role("button", name="Отправить").click()
        await page.wait_for_url(re.compile(r"/announcements/\d+\?done=created"))
        await page.goto("/compose")
        await page.get_by_label("Заголовок").fill("Собрание")
        await page.get_by_label("Текст").fill("Собрание в пятницу в 18:00.")
        await page.get_by_label("вся школа").check()
        tomorrow = (clock.now() + timedelta(days=1)).astimezone(w.gateway.config.schools["s1"].zone)
        await page.get_by_label("Отправить в").fill(tomorrow.strftime("%Y-%m-%dT07:30"))
        await page.get_by_role("button", name="Предпросмотр").click()
        await page.get_by_role("button", name="Отправить").click()
        await page.wait_for_url(re.compile(r"/announcements/2\?done=created"))
        await page.get_by_role("button", name="Отменить неотправленное").click()
        await expect(page.locator("p.ok")).to_contain_text("Неотправленное отменено.")
        assert (await w.gateway.store.announcement(2)).cancelled_at is not None  # type: ignore[union-attr]
        await page.goto("/settings")
        await page.get_by_role("button", name=re.compile(r"Отозвать № 2")).click()
        await expect(page.locator("p.ok")).to_contain_text("Токен API отозван")
        await log_out(page)
        # the class teacher: forward her task, narrow her class's window, revoke her token, log out
        page = await https_page(browser, w)
        await log_in(page, "kt5a")
        task = page.locator("section.task").first
        await task.get_by_label("Комментарий").fill("Возьмите сменную обувь.")
        await task.get_by_role("button", name="Переслать в чаты 5А").click()
        await expect(page.locator("p.ok")).to_contain_text("Объявление переслано в чаты класса.")
        await page.goto("/settings")
        section = page.locator("#class-5А")
        await section.get_by_label("Начало").fill("09:00")
        await section.get_by_label("Конец").fill("18:00")
        await section.get_by_role("button", name="Сохранить окно 5А").click()
        await expect(page.locator("p.ok")).to_contain_text("Окно рассылки класса сохранено.")
        await page.get_by_role("button", name=re.compile(r"Отозвать № 1")).click()
        await expect(page.locator("p.ok")).to_contain_text("Токен API отозван")
        await log_out(page)
        # the IT admin: preview and import a roster, log out
        page = await https_page(browser, w)
        await log_in(page, "it")
        roster = tmp_path / "roster.csv"
        roster.write_text(ROSTER_CSV + "7Б;Новиков Саша;Новикова Дарья;daria@mail.test;;нет\n", encoding="utf-8")
        await page.goto("/roster")
        await page.get_by_label("Выгрузка из электронного журнала").set_input_files(roster)
        await page.get_by_role("button", name="Показать, что изменится").click()
        await expect(page.locator("#roster-preview")).to_contain_text("Новые (1)")
        await page.get_by_role("button", name="Загрузить этот список").click()
        await expect(page.locator("#roster-result")).to_contain_text("новых 1")
        await log_out(page)
        tasks = await w.gateway.store.tasks(school_id="s1")
        assert {t.class_name: t.status for t in tasks}["5А"] == "forwarded"
        [window] = await w.gateway.store.class_windows("s1")
        assert str(window.window) == "09:00–18:00"
        assert all(t.revoked_at is not None for t in await w.gateway.store.api_tokens("s1"))
        assert "Новикова Дарья" in {g.name for g in await w.gateway.store.guardians("s1")}


# ---------------------------------------------------------------------- the setting itself, without nginx


@asynccontextmanager
async def app_with(
    w: WebWorld, settings: dict[str, Any] | None = None, *, seconds: float = REQUEST_TIMEOUT
) -> AsyncIterator[str]:
    """The same gateway's app on another port, made with other settings, its requests and idle connections
    timed out after `seconds`."""
    gateway = w.gateway
    saved = gateway.config
    gateway.config = replace(saved, settings=replace(saved.settings, **(settings or {})))
    try:
        app = make_app(gateway, request_timeout=seconds)
    finally:
        gateway.config = saved
    run = runner(app, idle_timeout=seconds)
    await run.setup()
    sock = free_socket()
    await web.SockSite(run, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await run.cleanup()


@pytest.fixture
async def web_world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[WebWorld]:
    async with running_web(tmp_path, clock) as w:
        yield w


async def post_as_browser_behind_proxy(w: WebWorld, base: str, headers: dict[str, str]) -> int:
    dep = await w.session("dep")
    async with dep.http.post(
        base + "/api/announcements",
        json=ANNOUNCEMENT,
        headers={auth.CSRF_HEADER: dep.csrf, "Origin": "https://zvonok.school.test", **headers},
    ) as r:
        return r.status


PROXIED = {"Host": "zvonok.school.test", "X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}


async def test_forwarded_headers_are_believed_from_trusted_proxies_only(web_world: WebWorld) -> None:
    w = web_world
    trusted = {"trusted_proxies": ("127.0.0.1/32",)}
    async with app_with(w, trusted) as base:
        assert await post_as_browser_behind_proxy(w, base, PROXIED) == 201  # the browser's https origin
        assert await post_as_browser_behind_proxy(w, base, {"Host": "zvonok.school.test"}) == 403  # no headers
        malformed = {**PROXIED, "X-Forwarded-For": "198.51.100.7, 203.0.113.1"}  # a second hop nobody trusts
        async with w.client().get(base + "/login", headers=malformed) as r:
            assert r.status == 400 and "X-Forwarded" in await r.text()
    for settings in ({}, {"trusted_proxies": ("10.9.9.9/32",)}):  # no proxy, or another one: headers ignored
        async with app_with(w, settings) as base:
            assert await post_as_browser_behind_proxy(w, base, PROXIED) == 403
    assert len(await w.gateway.store.announcements()) == 1


async def test_cookies_behind_an_https_proxy_are_secure(web_world: WebWorld) -> None:
    w = web_world
    async with app_with(w, {"trusted_proxies": ("127.0.0.1/32",)}) as base:
        http = w.client(cookies=False)
        async with http.get(base + "/login", headers=PROXIED) as page:
            assert page.cookies[auth.LOGIN_COOKIE]["secure"]
        async with http.get(base + "/login") as page:  # straight to the app over http (a local check)
            assert not page.cookies[auth.LOGIN_COOKIE]["secure"]


async def test_a_body_that_never_finishes_times_out(web_world: WebWorld) -> None:
    w = web_world
    async with app_with(w, seconds=1.0) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\n\r\nlogin=dir"
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"HTTP/1.1 408"), status
        writer.close()
        # headers that never end: the connection is closed after the idle timeout
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /login HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()


async def test_the_login_form_is_small_and_names_no_school(web_world: WebWorld) -> None:
    w = web_world
    http = w.client()
    async with http.post(w.base + "/login", data={"login": "dir", "password": "x" * 5000}) as r:
        assert r.status == 413 and "форма входа слишком велика" in await r.text()
    second = w.gateway.config.schools["s1"]
    schools = {"s1": second, "s2": replace(second, id="s2", name="Гимназия № 2")}
    gateway = w.gateway
    saved = gateway.config
    gateway.config = replace(saved, schools=schools)
    try:
        async with aiohttp.ClientSession() as anonymous, anonymous.get(w.base + "/login") as page:
            html = await page.text()
        assert "Гимназия № 2" not in html and 'name="school"' in html  # a code to type, not a list
        gateway.config = replace(saved, schools=schools, settings=replace(saved.settings, login_lists_schools=True))
        async with aiohttp.ClientSession() as anonymous, anonymous.get(w.base + "/login") as page:
            assert "Гимназия № 2" in await page.text()
    finally:
        gateway.config = saved
