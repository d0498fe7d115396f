"""Login throttling (OWASP ASVS 2.2.1) on both backends: counted in the store, atomic, per account and address
with waits that double, a known browser never kept out, unknown logins as slow as known ones.

The app trusts 127.0.0.1 as its proxy here, so each test client claims its own address with X-Forwarded-For, as
the browsers behind a real proxy would have theirs."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.web import auth
from tests.web import PASSWORDS, WebWorld, running_web

_LOGIN_CSRF = re.compile(r'name="login_csrf" value="([^"]+)"')


@pytest.fixture
async def web_world(tmp_path: Path, clock: ManualClock, database: str) -> AsyncIterator[WebWorld]:
    async with running_web(tmp_path, clock, database=database, trusted_proxies=("127.0.0.1/32",)) as w:
        yield w


class Browser:
    """One browser at one address: its cookie jar (the login form's token, the device cookie) and its address."""

    def __init__(self, w: WebWorld, address: str) -> None:
        self.w = w
        self.http = w.client()
        self.headers = {"X-Forwarded-For": address}

    async def log_in(self, login: str, password: str) -> tuple[int, str]:
        """The login form, filled in and sent; the session a previous login opened is dropped first (the device
        cookie stays, as in a browser after the session has ended)."""
        self.http.cookie_jar.clear(lambda cookie: cookie.key == auth.SESSION_COOKIE)
        async with self.http.get(self.w.base + "/login", headers=self.headers) as page:
            token = _LOGIN_CSRF.search(await page.text())
        assert token is not None
        form = {"login": login, "password": password, "login_csrf": token.group(1)}
        async with self.http.post(
            self.w.base + "/login", data=form, headers=self.headers, allow_redirects=False
        ) as answer:
            return answer.status, await answer.text()


def checked(status: int) -> bool:
    """Whether an answer to a login means its password was checked (303 right, 400 wrong; 429: a wait, unchecked)."""
    assert status in (303, 400, 429), status
    return status != 429


async def test_a_hundred_parallel_guesses_cost_a_handful_of_password_checks(web_world: WebWorld) -> None:
    w = web_world
    attacker = Browser(w, "203.0.113.7")
    answers = await asyncio.gather(*(attacker.log_in("dir", f"угадываю-{i}") for i in range(100)))
    statuses = [status for status, _ in answers]
    assert sum(map(checked, statuses)) <= 10, statuses
    assert statuses.count(429) >= 90
    waits = [html for status, html in answers if status == 429]
    assert all("Слишком много неудачных попыток входа. Повторите через" in html for html in waits)


async def test_the_owner_gets_in_from_elsewhere_while_the_account_is_hammered(web_world: WebWorld) -> None:
    w = web_world
    clock: ManualClock = w.gateway.clock
    attacker = Browser(w, "203.0.113.7")
    await asyncio.gather(*(attacker.log_in("dir", f"угадываю-{i}") for i in range(100)))
    assert (await attacker.log_in("dir", PASSWORDS["dir"]))[0] == 429  # the attacker's address waits
    owner = Browser(w, "198.51.100.20")
    assert (await owner.log_in("dir", PASSWORDS["dir"]))[0] == 303  # the owner, from the school, does not
    # The attack goes on from many addresses, each waiting out its waits, until the account itself must wait.
    for round_ in range(12):
        clock.advance(timedelta(minutes=16))  # past the longest wait
        for n in range(4):
            await Browser(w, f"192.0.2.{round_ * 4 + n + 1}").log_in("dir", "снова-мимо")
    stranger = Browser(w, "198.51.100.99")  # the right password from a browser the account never used
    assert (await stranger.log_in("dir", PASSWORDS["dir"]))[0] == 429
    for n in range(4):
        await Browser(w, f"192.0.2.{100 + n}").log_in("dir", "снова-мимо")
    assert (await owner.log_in("dir", PASSWORDS["dir"]))[0] == 303  # the owner's browser is paced on its own


async def test_made_up_logins_never_reset_an_account_wait(web_world: WebWorld) -> None:
    w = web_world
    attacker = Browser(w, "203.0.113.7")
    for i in range(5):
        assert (await attacker.log_in("kt5a", f"мимо-{i}"))[0] == 400
    status, html = await attacker.log_in("kt5a", PASSWORDS["kt5a"])
    assert status == 429 and "Повторите через 1 с" in html
    # 10,000 attempts for made-up logins, from 10,000 addresses, through the same throttle a login goes through
    gateway = w.gateway
    for i in range(10_000):
        keys = await auth.throttle_keys(gateway, "s1", f"user{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
        assert await auth.admit(gateway, keys) == 0
    status, html = await attacker.log_in("kt5a", PASSWORDS["kt5a"])
    assert status == 429 and "Повторите через 1 с" in html  # the account's wait is still there


async def test_waits_are_shared_by_every_process_and_kept_over_a_restart(web_world: WebWorld) -> None:
    w = web_world
    attacker = Browser(w, "203.0.113.7")
    for i in range(5):
        await attacker.log_in("kt5a", f"мимо-{i}")
    keys = await auth.throttle_keys(w.gateway, "s1", "kt5a", "203.0.113.7")
    other = await Gateway.open(w.gateway.config, clock=w.gateway.clock)  # another process on the same database
    try:
        assert await auth.admit(other, await auth.throttle_keys(other, "s1", "kt5a", "203.0.113.7")) == 1.0
    finally:
        await other.close()
    assert await auth.admit(w.gateway, keys) == 1.0


async def test_unknown_and_known_logins_take_the_same_time(web_world: WebWorld) -> None:
    w = web_world

    async def timed(login: str, address: str) -> float:
        start = time.perf_counter()
        found = await auth.login(w.gateway, "s1", login, "не тот пароль", address=address)
        assert found.principal is None and not found.retry_after
        return time.perf_counter() - start

    known, unknown = [], []
    for i in range(7):  # alternating, each from its own address (no waits)
        known.append(await timed("dir", f"198.51.100.{i}"))
        unknown.append(await timed(f"nobody{i}", f"198.51.100.{100 + i}"))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, (known, unknown)  # without the dummy hash an unknown login answers ~50x sooner


async def test_a_wait_is_answered_with_retry_after(web_world: WebWorld) -> None:
    w = web_world
    http = w.client()
    for i in range(6):
        async with http.get(w.base + "/login", headers={"X-Forwarded-For": "203.0.113.9"}) as page:
            token = _LOGIN_CSRF.search(await page.text())
        assert token is not None
        form = aiohttp.FormData({"login": "it", "password": f"мимо-{i}", "login_csrf": token.group(1)})
        async with http.post(w.base + "/login", data=form, headers={"X-Forwarded-For": "203.0.113.9"}) as r:
            if i < 5:
                assert r.status == 400
            else:
                assert r.status == 429 and r.headers["Retry-After"] == "1"
