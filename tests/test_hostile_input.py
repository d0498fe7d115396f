"""Hostile input on both backends: every request a person or a script can make gets a 4xx with a Russian reason,
never a 5xx, and changes nothing. Unicode digits, JSON nested thousands deep, send times in year 9999, NUL
bytes, a roster with an unclosed quote, an Idempotency-Key reused with another body."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import jsontext
from gateway.clock import ManualClock
from gateway.domain import parse_number
from gateway.web import links
from tests.data import ROSTER_CSV
from tests.web import SECRET, WebWorld, running_web
from tests.world import WEBHOOK_SECRET

ANNOUNCEMENT = {"title": "Уроки сокращены", "text": "Завтра уроки по 30 минут.", "groups": ["parents"]}
UNICODE_DIGITS = ["²", "١", "１", "١٢", "12²", "٣"]  # superscript, Arabic-Indic, full-width


@pytest.fixture
async def web_world(tmp_path: Path, clock: ManualClock, database: str) -> AsyncIterator[WebWorld]:
    async with running_web(tmp_path, clock, database=database) as w:
        yield w


def nested(depth: int) -> bytes:
    return b'{"title": ' + b"[" * depth + b"]" * depth + b"}"


async def answer(response: Any) -> tuple[int, str]:
    """The status (never a 5xx) and the body as text (JSON with its Russian unescaped)."""
    text = await response.text()
    assert response.status < 500, text[:500]
    if response.content_type == "application/json":
        text = json.dumps(json.loads(text), ensure_ascii=False)
    return response.status, text


async def test_unicode_digits_are_not_numbers(web_world: WebWorld) -> None:
    w = web_world
    dep, it = await w.session("dep"), await w.session("it")
    async with await dep.post("/api/announcements", json=ANNOUNCEMENT) as r:
        assert r.status == 201 and (await r.json())["id"] == 1
    for digits in UNICODE_DIGITS:
        for path in (f"/api/announcements/{digits}", f"/api/announcements/{digits}/report", f"/announcements/{digits}"):
            async with await dep.get(path) as r:
                assert (await answer(r))[0] == 404, path  # «١» is not announcement 1
        async with await dep.get(f"/api/announcements?limit={digits}") as r:
            status, text = await answer(r)
            assert status == 400 and "ожидается число от 1 до 200" in text
        async with await dep.post(f"/api/tasks/{digits}/forward", json={}) as r:
            assert (await answer(r))[0] == 404
        async with await it.send("DELETE", f"/api/tokens/{digits}") as r:
            assert (await answer(r))[0] == 404
        async with await it.post(f"/settings/tokens/{digits}/revoke", data={"csrf": it.csrf}) as r:
            assert (await answer(r))[0] == 404
        form = {"csrf": dep.csrf, "action": "preview", "title": "Т", "text": "Т", "groups": "parents"}
        async with await dep.post("/compose", data={**form, "scope": "parallels", "parallels": digits}) as r:
            status, text = await answer(r)
            assert status == 400 and "не номер параллели" in text
        for token in (f"{digits}.1.x", f"1.{digits}.x"):
            async with w.client().get(f"{w.base}/p/ack/{token}") as r:
                status, text = await answer(r)
                assert status == 400 and "ссылка повреждена" in text
    assert len(await w.gateway.store.announcements()) == 1


async def test_json_nested_thousands_deep_is_refused(web_world: WebWorld) -> None:
    w = web_world
    dep = await w.session("dep")
    for depth in (jsontext.MAX_DEPTH + 1, 5_000, 30_000):  # 30,000 deep: past the interpreter's recursion limit
        body = nested(depth)
        for path in ("/api/announcements", "/api/announcements/preview"):
            async with await dep.post(path, data=body, headers={"Content-Type": "application/json"}) as r:
                status, text = await answer(r)
                assert status == 400 and "вложено глубже 32 уровней" in json.loads(text)["error"]
        async with w.client().post(
            f"{w.base}/webhooks/max/s1",
            data=b'{"update_type": "bot_added", "x": ' + b"[" * depth + b"]" * depth + b"}",
            headers={"X-Max-Bot-Api-Secret": WEBHOOK_SECRET, "Content-Type": "application/json"},
        ) as r:
            status, text = await answer(r)
            assert status == 400 and "вложено глубже" in text
    assert await w.gateway.store.announcements() == []


async def test_send_times_outside_any_school_year_are_refused(web_world: WebWorld) -> None:
    w = web_world
    dep = await w.session("dep")
    now = w.gateway.clock.now()
    for send_at in (
        "9999-12-31T23:59:59+00:00",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00+05:00",
        "1969-12-31T23:59:59+00:00",
        (now + timedelta(days=400)).isoformat(),
        (now - timedelta(days=31)).isoformat(),
    ):
        for path in ("/api/announcements", "/api/announcements/preview"):
            async with await dep.post(path, json={**ANNOUNCEMENT, "send_at": send_at}) as r:
                status, text = await answer(r)
                assert status == 422, (send_at, text)
                assert "время отправки должно быть не раньше чем за 30 дней" in text, text
    form = {"csrf": dep.csrf, "action": "send", "key": "k", "title": "Т", "text": "Т", "groups": "parents"}
    async with await dep.post("/compose", data={**form, "scope": "all", "send_at": "9999-12-31T23:59"}) as r:
        status, text = await answer(r)
        assert status == 422 and "время отправки должно быть" in text
    async with await dep.post("/api/announcements", json={**ANNOUNCEMENT, "send_at": now.isoformat()}) as r:
        assert r.status == 201  # a time within the year is fine
    assert len(await w.gateway.store.announcements()) == 1


async def test_nul_bytes_are_refused_on_both_backends(web_world: WebWorld) -> None:
    w = web_world
    dep, it = await w.session("dep"), await w.session("it")
    for field in ("title", "text"):
        body = {**ANNOUNCEMENT, field: "Уроки\x00сокращены"}
        async with await dep.post("/api/announcements", json=body) as r:
            status, text = await answer(r)
            assert status == 422 and "недопустимый управляющий символ" in text
            assert json.loads(text)["problems"][0]["field"] == field
    form = {"csrf": dep.csrf, "action": "send", "key": "k\x00", "title": "Т\x00", "text": "Т", "groups": "parents"}
    async with await dep.post("/compose", data={**form, "scope": "all"}) as r:
        status, text = await answer(r)
        assert status == 422 and "недопустимый управляющий символ" in text
    roster = ROSTER_CSV.replace("Сидоров Олег", "Сидоров\x00Олег").encode()
    async with await it.post("/api/roster/preview", data=roster, headers={"Content-Type": "text/csv"}) as r:
        status, text = await answer(r)
        assert status == 422 and "недопустимый управляющий символ" in text and "строка" in text
    async with await it.post("/api/roster", data=roster, headers={"Content-Type": "text/csv"}) as r:
        assert (await answer(r))[0] == 422
    assert await w.gateway.store.announcements() == []
    assert "Сидоров Олег" in {g.name for g in await w.gateway.store.guardians("s1")}  # the roster unchanged
    body = {**ANNOUNCEMENT, "via_class_teachers": True, "groups": ["parents"], "classes": ["5А"]}
    async with await dep.post("/api/announcements", json=body) as r:
        assert r.status == 201
    [task] = await w.gateway.store.tasks(school_id="s1")
    kt = await w.session("kt5a")
    async with await kt.post(f"/api/tasks/{task.id}/forward", json={"note": "сменка\x00"}) as r:
        status, text = await answer(r)
        assert status == 422 and "недопустимый управляющий символ" in text
    assert (await w.gateway.store.tasks(school_id="s1"))[0].status == "open"


async def test_a_roster_with_an_unclosed_quote_names_the_line_where_it_opens(web_world: WebWorld) -> None:
    w = web_world
    it = await w.session("it")
    lines = ROSTER_CSV.splitlines()
    lines[2] = lines[2].replace(";", ';"', 1)  # the second data row opens a quote it never closes
    roster = ("\n".join(lines) + "\n").encode()
    async with await it.post("/api/roster/preview", data=roster, headers={"Content-Type": "text/csv"}) as r:
        status, text = await answer(r)
    assert status == 400
    [problem] = json.loads(text)["problems"]
    assert "строка 3" in problem["message"] and "кавычка, открытая в этой строке, не закрыта" in problem["message"]
    assert "unexpected" not in text  # Russian, not the csv module's English


async def test_an_idempotency_key_reused_with_another_body_is_a_conflict(web_world: WebWorld) -> None:
    w = web_world
    dep = await w.session("dep")
    key = {"Idempotency-Key": "понедельник"}
    async with await dep.post("/api/announcements", json=ANNOUNCEMENT, headers=key) as r:
        assert r.status == 201
    async with await dep.post("/api/announcements", json={**ANNOUNCEMENT, "text": "Уроки отменены."}, headers=key) as r:
        status, text = await answer(r)
    assert status == 409 and "Idempotency-Key" in json.loads(text)["error"]
    async with await dep.post("/api/announcements", json=ANNOUNCEMENT, headers=key) as r:
        assert r.status == 200  # the same body again: the same announcement
    form = {"csrf": dep.csrf, "action": "send", "key": "понедельник", "scope": "all", "groups": "parents"}
    async with await dep.post("/compose", data={**form, "title": "Другое", "text": "Другое."}) as r:
        status, text = await answer(r)
    assert status == 409 and "уже использован" in text
    fresh = text.split('name="key" value="')[1].split('"')[0]
    assert fresh != "понедельник"  # the form comes back with a new key: sending it again makes the new one
    async with await dep.post("/compose", data={**form, "key": fresh, "title": "Другое", "text": "Другое."}) as r:
        assert r.status == 303
    assert len(await w.gateway.store.announcements()) == 2


async def test_a_server_error_on_a_parents_link_logs_no_token(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_web(tmp_path, clock) as w:
        dep = await w.session("dep")
        async with await dep.post("/api/announcements", json=ANNOUNCEMENT) as r:
            announcement_id = (await r.json())["id"]
        email = next(d for d in await w.gateway.store.deliveries(announcement_id) if d.channel == "email")
        token = links.sign(SECRET, links.ACK, email.id, clock.now() + timedelta(days=1))
        with sqlite3.connect(tmp_path / "z.db") as conn:  # the database breaks under the running app
            conn.execute("DROP TABLE acknowledgements")
        with caplog.at_level(logging.ERROR, logger="zvonok.web"):
            async with w.client().post(f"{w.base}/p/ack/{token}") as r:
                assert r.status == 500
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "internal error" in logged and "/p/ack/{token}" in logged
    assert token not in logged and token not in caplog.text


@given(st.text(max_size=20))
def test_only_ascii_digits_make_a_number(raw: str) -> None:
    number = parse_number(raw)
    if raw and len(raw) <= 15 and all(c in "0123456789" for c in raw):
        assert number == int(raw)
    else:
        assert number is None


@given(st.integers(min_value=1, max_value=200), st.sampled_from("[{"))
def test_json_deeper_than_the_limit_is_refused(depth: int, opener: str) -> None:
    inner = "1"
    for _ in range(depth):
        inner = f"[{inner}]" if opener == "[" else f'{{"a": {inner}}}'
    if depth <= jsontext.MAX_DEPTH:
        assert jsontext.loads(inner) is not None
    else:
        with pytest.raises(ValueError, match="nested too deep"):
            jsontext.loads(inner)
