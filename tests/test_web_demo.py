"""`zvonok demo` without --once, as a user runs it: it serves the staff site on the demo school, prints the demo
accounts, and a deputy and a class teacher can log in with them; Ctrl+C (SIGTERM) stops it cleanly."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import aiohttp

from gateway.demo import demo_password


async def login(http: aiohttp.ClientSession, base: str, staff_id: str) -> None:
    async with http.get(base + "/login") as page:
        token = re.search(r'name="login_csrf" value="([^"]+)"', await page.text())
    assert token is not None
    form = {"login": staff_id, "password": demo_password(staff_id), "login_csrf": token.group(1)}
    async with http.post(base + "/login", data=form, allow_redirects=False) as r:
        assert r.status == 303, await r.text()


async def test_demo_serves_the_staff_site_with_the_accounts_it_prints(tmp_path: Path) -> None:
    demo = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gateway.cli", "demo", "--data-dir", str(tmp_path / "demo"), "--listen", "127.0.0.1:0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert demo.stdout is not None and demo.stderr is not None
    out = ""
    try:
        while "Демо работает" not in out:
            line = await asyncio.wait_for(demo.stdout.readline(), timeout=120)
            assert line, out + (await demo.stderr.read()).decode()
            out += line.decode()
        site = re.search(r"Сайт для сотрудников: (http://127\.0\.0\.1:\d+)/", out)
        assert site is not None, out
        base = site.group(1)
        assert f"sokolov   {demo_password('sokolov')}" in out and "заместитель директора" in out
        assert f"petrova   {demo_password('petrova')}" in out
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as deputy:
            await login(deputy, base, "sokolov")
            async with deputy.get(base + "/announcements") as page:
                html = await page.text()
            assert "Сокращённые уроки в пятницу" in html and "Родительское собрание 5-х классов" in html
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as teacher:
            await login(teacher, base, "petrova")
            async with teacher.get(base + "/tasks") as page:
                html = await page.text()
            assert "Экскурсия 5-х классов в краеведческий музей" in html and "Переслать в чаты 5А" in html
    finally:
        demo.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(demo.wait(), timeout=30)
    err = (await demo.stderr.read()).decode()
    assert code == 0, err
    assert "Traceback" not in err
