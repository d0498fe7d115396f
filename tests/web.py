"""A running web app for the web, API and browser tests: tests/world.py's school (plus a plain teacher), the
emulators, the dispatcher running, and `make_app` served over real HTTP on a free port of 127.0.0.1.

Staff passwords are set through the real argon2 code; sessions are made by logging in over HTTP (`login`), or,
where a test needs many, straight in the store (`session`), exactly as a login makes them.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, async_playwright
from yarl import URL

from gateway.clock import Clock
from gateway.web import auth
from gateway.web.app import make_app
from gateway.web.app import runner as app_runner
from tests.data import SCHOOL_YAML
from tests.world import World, running_world

SECRET = "test-link-secret-0123456789"
WEB_SCHOOL_YAML = (
    SCHOOL_YAML.replace(
        "  - {id: it, name: Админов Иван, role: admin}\n",
        "  - {id: it, name: Админов Иван, role: admin}\n  - {id: t1, name: Учителева Нина, role: teacher}\n",
    )
    + "lint: {blocking: [banned_link]}\n"
)  # the school refuses links to banned messengers (by default they warn)
# one staff member per role
BY_ROLE = {"director": "dir", "deputy": "dep", "class_teacher": "kt5a", "teacher": "t1", "admin": "it"}
PASSWORDS = {staff_id: f"пароль-{staff_id}-2026" for staff_id in ("dir", "dep", "kt5a", "kt7b", "t1", "it")}

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_LOGIN_CSRF = re.compile(r'name="login_csrf" value="([^"]+)"')


@dataclass
class Session:
    """An HTTP client of one signed-in staff member (cookie jar + the session's CSRF token)."""

    http: aiohttp.ClientSession
    csrf: str
    base: str

    async def post(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        headers = {auth.CSRF_HEADER: self.csrf, **kw.pop("headers", {})}
        return await self.http.post(self.base + path, headers=headers, allow_redirects=False, **kw)

    async def get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.http.get(self.base + path, allow_redirects=False, **kw)

    async def send(self, method: str, path: str, **kw: Any) -> aiohttp.ClientResponse:
        """Any method (PUT, DELETE, …), with the session's CSRF token as a state-changing request needs."""
        headers = {auth.CSRF_HEADER: self.csrf, **kw.pop("headers", {})}
        return await self.http.request(method, self.base + path, headers=headers, allow_redirects=False, **kw)


@dataclass
class WebWorld:
    world: World
    base: str
    app: web.Application
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def gateway(self) -> Any:
        return self.world.gateway

    def client(self, *, cookies: bool = True) -> aiohttp.ClientSession:
        jar: aiohttp.abc.AbstractCookieJar = aiohttp.CookieJar(unsafe=True) if cookies else aiohttp.DummyCookieJar()
        http = aiohttp.ClientSession(cookie_jar=jar)
        self.sessions.append(http)
        return http

    async def login(self, staff_id: str, password: str | None = None) -> Session:
        """Log in through the login form, as a browser does."""
        http = self.client()
        async with http.get(self.base + "/login") as page:
            token = _LOGIN_CSRF.search(await page.text())
        assert token is not None
        form = {"login": staff_id, "password": password or PASSWORDS[staff_id], "login_csrf": token.group(1)}
        async with http.post(self.base + "/login", data=form, allow_redirects=False) as answer:
            assert answer.status == 303, await answer.text()
        async with http.get(self.base + "/login?next=/api/me", allow_redirects=True) as page:
            pass
        csrf = await self._csrf(http)
        return Session(http, csrf, self.base)

    async def session(self, staff_id: str) -> Session:
        """A session made in the store as a login makes it (fast: no password hashing)."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.gateway.clock.now()
        await self.gateway.store.create_session(
            auth.digest(session_id), "s1", staff_id, csrf, now, now + auth.SESSION_LIFETIME
        )
        http = self.client()
        http.cookie_jar.update_cookies({auth.SESSION_COOKIE: session_id}, URL(self.base))
        return Session(http, csrf, self.base)

    async def _csrf(self, http: aiohttp.ClientSession) -> str:
        async with http.get(self.base + "/alerts") as page:  # any page of a signed-in person has the logout form
            html = await page.text()
        if (found := _CSRF.search(html)) is None:
            async with http.get(self.base + "/tasks") as page:
                html = await page.text()
            found = _CSRF.search(html)
        assert found is not None, html[:500]
        return found.group(1)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def running_web(
    tmp_path: Path,
    clock: Clock,
    *,
    passwords: bool = True,
    database: str | None = None,
    trusted_proxies: tuple[str, ...] = (),
    public_url: str = "",
) -> AsyncIterator[WebWorld]:
    """The app on a free port; `public_url` (default: that port's plain-http address) as a proxy in front would
    have it, `trusted_proxies` as zvonok.yaml would name them."""
    async with running_world(tmp_path, clock, school_yaml=WEB_SCHOOL_YAML, database=database) as world:
        gateway = world.gateway
        sock = free_socket()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        s = gateway.config.settings
        gateway.config = replace(
            gateway.config,
            settings=replace(s, public_url=public_url or base, secret=SECRET, trusted_proxies=trusted_proxies),
        )
        if passwords:
            for staff_id, password in PASSWORDS.items():
                await auth.set_password(gateway, "s1", staff_id, password)
        app = make_app(gateway)
        runner = app_runner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        stop = asyncio.Event()
        dispatcher = asyncio.create_task(gateway.dispatcher.run(stop))
        web_world = WebWorld(world, base, app)
        try:
            yield web_world
        finally:
            stop.set()
            await dispatcher
            for http in web_world.sessions:
                await http.close()
            await runner.cleanup()


CHROMIUM = Path("/usr/bin/chromium")  # Debian's, never a browser a test tool downloads
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not await asyncio.to_thread(CHROMIUM.exists):
        pytest.fail(f"{CHROMIUM} is missing: `./run tests` installs Debian's chromium (apt-get install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        await b.close()
