"""`python -m reliability.hostile`: hostile input and login storms against the staff site, on each backend.

The app runs as in the tests (tests/web.py: the emulators, a real SMTP server, the app on a free port), with
127.0.0.1 as its trusted proxy so that each client can claim an address with X-Forwarded-For. Measured:
- a login storm: 100 wrong passwords for one account sent at once (how many were checked, how many told to
  wait), then the right one from another address; 10,000 attempts for made-up logins from 10,000 addresses
  through the throttle, and whether the account's wait survived them; unknown and known wrong logins timed;
- a corpus of hostile requests (Unicode digits in ids, limits, forms and links; JSON nested thousands deep; send
  times in year 9999 and before the epoch; NUL bytes in titles, texts, notes and rosters; a roster with an
  unclosed quote; an Idempotency-Key reused with another body): every answer's status, and how many were 5xx.

Usage: `python -m reliability.hostile [--backend sqlite|postgresql|both]`; results in
reliability/results/hostile_<backend>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.clock import ManualClock
from gateway.web import auth
from reliability.common import machine, pg_schema, write_result
from tests.data import ROSTER_CSV
from tests.web import PASSWORDS, Session, WebWorld, running_web
from tests.world import WEBHOOK_SECRET

_LOGIN_CSRF = re.compile(r'name="login_csrf" value="([^"]+)"')
ANNOUNCEMENT = {"title": "Уроки сокращены", "text": "Завтра уроки по 30 минут.", "groups": ["parents"]}


async def log_in(w: WebWorld, login: str, password: str, address: str) -> int:
    http = w.client()
    headers = {"X-Forwarded-For": address}
    async with http.get(w.base + "/login", headers=headers) as page:
        found = _LOGIN_CSRF.search(await page.text())
    assert found is not None
    form = {"login": login, "password": password, "login_csrf": found.group(1)}
    async with http.post(w.base + "/login", data=form, headers=headers, allow_redirects=False) as answer:
        return answer.status


async def login_storm(w: WebWorld) -> dict[str, Any]:
    started = time.perf_counter()
    statuses = await asyncio.gather(*(log_in(w, "dir", f"угадываю-{i}", "203.0.113.7") for i in range(100)))
    storm_seconds = time.perf_counter() - started
    owner = await log_in(w, "dir", PASSWORDS["dir"], "198.51.100.20")
    for i in range(5):
        await log_in(w, "kt5a", f"мимо-{i}", "203.0.113.8")
    started = time.perf_counter()
    for i in range(10_000):
        keys = await auth.throttle_keys(w.gateway, "s1", f"user{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
        await auth.admit(w.gateway, keys)
    spray_seconds = time.perf_counter() - started
    kept = await log_in(w, "kt5a", PASSWORDS["kt5a"], "203.0.113.8")
    known: list[float] = []
    unknown: list[float] = []
    for i in range(15):
        for login, times in (("dep", known), (f"nobody{i}", unknown)):
            started = time.perf_counter()
            await auth.login(w.gateway, "s1", login, "не тот пароль", address=f"192.0.2.{len(known) + len(unknown)}")
            times.append(time.perf_counter() - started)
    counts = Counter(statuses)
    return {
        "parallel_wrong": 100,
        "password_checks": counts[400],
        "told_to_wait": counts[429],
        "storm_seconds": round(storm_seconds, 2),
        "owner_from_elsewhere": owner,
        "made_up_attempts": 10_000,
        "made_up_ms_each": round(1000 * spray_seconds / 10_000, 3),
        "account_wait_kept": kept == 429,
        "known_wrong_ms": round(1000 * statistics.median(known), 1),
        "unknown_ms": round(1000 * statistics.median(unknown), 1),
    }


def corpus(dep: Session, it: Session, kt: Session, now: datetime) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(what, method, path, request keywords) of every hostile request."""
    cases: list[tuple[str, str, str, dict[str, Any]]] = []
    for digits in ("²", "١", "１", "١٢", "12²"):
        cases += [
            ("Unicode digits in an id", "GET", f"/api/announcements/{digits}", {}),
            ("Unicode digits in an id", "GET", f"/announcements/{digits}", {}),
            ("Unicode digits in an id", "POST", f"/api/tasks/{digits}/forward", {"json": {}}),
            ("Unicode digits in an id", "DELETE", f"/api/tokens/{digits}", {}),
            ("Unicode digits in `limit`", "GET", f"/api/announcements?limit={digits}", {}),
            ("Unicode digits in a form field", "POST", "/compose", {"data": {
                "csrf": dep.csrf, "action": "preview", "title": "Т", "text": "Т", "groups": "parents",
                "scope": "parallels", "parallels": digits}}),
            ("Unicode digits in a parents' link", "GET", f"/p/ack/{digits}.1.x", {}),
            ("Unicode digits in a parents' link", "POST", f"/p/unsubscribe/1.{digits}.x", {}),
        ]  # fmt: skip
    for depth in (33, 1_000, 30_000):
        body = b'{"title": ' + b"[" * depth + b"]" * depth + b"}"
        json_kw = {"data": body, "headers": {"Content-Type": "application/json"}}
        webhook = {"headers": {"Content-Type": "application/json", "X-Max-Bot-Api-Secret": WEBHOOK_SECRET}}
        cases += [
            ("JSON nested deep (API)", "POST", "/api/announcements", json_kw),
            ("JSON nested deep (API)", "POST", "/api/announcements/preview", json_kw),
            ("JSON nested deep (webhook)", "POST", "/webhooks/max/s1", {**webhook, "data": body, "anonymous": True}),
        ]
    for send_at in ("9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00",
                    "1969-12-31T23:59:59+00:00", (now + timedelta(days=400)).isoformat()):  # fmt: skip
        cases.append(
            ("send_at out of range", "POST", "/api/announcements", {"json": {**ANNOUNCEMENT, "send_at": send_at}})
        )
    nul_roster = ROSTER_CSV.replace("Сидоров Олег", "Сидоров\x00Олег").encode()
    lines = ROSTER_CSV.splitlines()
    lines[2] = lines[2].replace(";", ';"', 1)
    unclosed = ("\n".join(lines) + "\n").encode()
    csv = {"headers": {"Content-Type": "text/csv"}}
    cases += [
        ("NUL in a title", "POST", "/api/announcements", {"json": {**ANNOUNCEMENT, "title": "Уроки\x00"}}),
        ("NUL in a text", "POST", "/api/announcements", {"json": {**ANNOUNCEMENT, "text": "Уроки\x00"}}),
        ("NUL in a form", "POST", "/compose", {"data": {"csrf": dep.csrf, "action": "send", "key": "k\x00",
                                                       "title": "Т\x00", "text": "Т", "groups": "parents"}}),
        ("NUL in a roster name", "POST", "/api/roster/preview", {"data": nul_roster, **csv, "as": "it"}),
        ("NUL in a roster name", "POST", "/api/roster", {"data": nul_roster, **csv, "as": "it"}),
        ("roster with an unclosed quote", "POST", "/api/roster/preview", {"data": unclosed, **csv, "as": "it"}),
        ("Idempotency-Key reused with another body", "POST", "/api/announcements",
         {"json": {**ANNOUNCEMENT, "text": "Другое."}, "headers": {"Idempotency-Key": "k1"}}),
        ("NUL in a forwarding note", "POST", "/api/tasks/1/forward", {"json": {"note": "сменка\x00"}, "as": "kt"}),
    ]  # fmt: skip
    return cases


async def hostile_requests(w: WebWorld) -> dict[str, Any]:
    dep, it, kt = await w.session("dep"), await w.session("it"), await w.session("kt5a")
    async with await dep.post("/api/announcements", json=ANNOUNCEMENT, headers={"Idempotency-Key": "k1"}) as r:
        assert r.status == 201
    body = {**ANNOUNCEMENT, "via_class_teachers": True, "classes": ["5А"]}
    async with await dep.post("/api/announcements", json=body) as r:
        assert r.status == 201
    before = len(await w.gateway.store.announcements())
    by_case: dict[str, Counter[int]] = {}
    for what, method, path, kw in corpus(dep, it, kt, w.gateway.clock.now()):
        kw = dict(kw)
        who = {"it": it, "kt": kt}.get(kw.pop("as", ""), dep)
        if kw.pop("anonymous", False):
            async with w.client().request(method, w.base + path, **kw) as r:
                status = r.status
        else:
            async with await who.send(method, path, **kw) as r:
                status = r.status
        by_case.setdefault(what, Counter())[status] += 1
    statuses = sum(by_case.values(), Counter())
    return {
        "requests": sum(statuses.values()),
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "by_case": {what: {str(s): n for s, n in sorted(c.items())} for what, c in by_case.items()},
        "announcements_added": len(await w.gateway.store.announcements()) - before,
    }


async def run(backend: str) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"zvonok-hostile-{backend}-")))
        database = await stack.enter_async_context(pg_schema()) if backend == "postgresql" else None
        clock = ManualClock(datetime(2026, 11, 23, 5, 0, tzinfo=UTC))  # Monday 10:00 in Yekaterinburg
        w = await stack.enter_async_context(
            running_web(folder, clock, database=database, trusted_proxies=("127.0.0.1/32",))
        )
        return {"backend": backend, "machine": await machine(), "login": await login_storm(w),
                "input": await hostile_requests(w)}  # fmt: skip
    raise AssertionError("unreachable")


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    ok = True
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        result = await run(backend)
        path = write_result(f"hostile_{backend}", result)
        login, found = result["login"], result["input"]
        print(
            f"[{backend}] 100 parallel wrong logins: {login['password_checks']} checked, {login['told_to_wait']} "
            f"told to wait; {found['requests']} hostile requests, {found['server_errors']} server errors -> {path}"
        )
        ok &= found["server_errors"] == 0 and login["password_checks"] <= 10 and login["account_wait_kept"]
        ok &= login["owner_from_elsewhere"] == 303 and found["announcements_added"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
