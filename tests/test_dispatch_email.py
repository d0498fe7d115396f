"""The pipeline end to end on e-mail: post → SQLite outbox → dispatcher → real SMTP server → report.

The audience is class 7Б, which has no chats, so every guardian with an address is e-mailed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.email import EmailChannel
from adapters.emulators.smtp import SmtpEmulator
from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.config import load_config
from gateway.domain import AnnouncementRequest, Audience, Group, Kind, Status
from gateway.roster import parse_roster
from tests.data import write_config

ROSTER = """\
Класс;Ученик;Представитель;E-mail;Телефон;В чате
7Б;Ученик 1;Родитель Один;one@mail.test;+7 900 000-00-11;нет
7Б;Ученик 2;Родитель Два;two@mail.test;+7 900 000-00-12;нет
7Б;Ученик 3;Родитель Три;three@mail.test;+7 900 000-00-13;нет
7Б;Ученик 3;Родитель Три Второй;three@mail.test;;нет
7Б;Ученик 4;Без Почты;;+7 900 000-00-14;нет
"""
EXPECTED = {"one@mail.test", "two@mail.test", "three@mail.test"}


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpEmulator]:
    async with SmtpEmulator() as server:
        yield server


@pytest.fixture
async def gateway(tmp_path: Path, smtp: SmtpEmulator, clock: ManualClock) -> AsyncIterator[Gateway]:
    config = load_config(write_config(tmp_path / "config"))
    config = replace(config, settings=replace(config.settings, database=f"sqlite:///{tmp_path / 'z.db'}"))
    channel = EmailChannel(replace(config.settings.email, host=smtp.host, port=smtp.port), clock=clock.now)
    gw = await Gateway.open(config, clock=clock, channels={"email": channel})
    school = config.schools["s1"]
    await gw.import_roster("s1", parse_roster(ROSTER.encode(), school))
    yield gw
    await gw.close()


async def post(gw: Gateway, key: str = "") -> int:
    request = AnnouncementRequest(
        "s1",
        "dep",
        Kind.SCHEDULE_CHANGE,
        "Уроки сокращены",
        "Завтра уроки по 30 минут, продлёнка работает.",
        Audience(frozenset({Group.PARENTS}), classes=frozenset({"7Б"})),
        idempotency_key=key,
    )
    return (await gw.post(request)).id


def received(smtp: SmtpEmulator) -> Counter[str]:
    return Counter(r for m in smtp.messages for r in m.recipients)


async def test_every_guardian_outside_chats_gets_exactly_one_letter(gateway: Gateway, smtp: SmtpEmulator) -> None:
    announcement_id = await post(gateway)
    assert await gateway.dispatcher.run_once() == 3
    assert received(smtp) == Counter({a: 1 for a in EXPECTED})
    letter = smtp.mailbox("two@mail.test")[0]
    assert "Уроки сокращены" in letter.subject
    assert "Завтра уроки по 30 минут" in letter.text
    report = await gateway.report(announcement_id)
    assert report.complete
    counts = report.counts()
    assert (counts["emailed"], counts["unreachable"]) == (3, 1)  # the two sharing three@ are one family
    assert [(p.name, p.phone) for p in report.to_call()] == [("Без Почты", "+79000000014")]
    # a second round finds nothing to do: committed results are never sent again
    assert await gateway.dispatcher.run_once() == 0
    assert sum(received(smtp).values()) == 3


async def test_4xx_is_retried_later_and_delivered_once(
    gateway: Gateway, smtp: SmtpEmulator, clock: ManualClock
) -> None:
    smtp.refuse(451, count=3, stage="mail")
    announcement_id = await post(gateway)
    await gateway.dispatcher.run_once()
    rows = await gateway.store.deliveries(announcement_id)
    assert sorted(d.status for d in rows) == [Status.TEMPORARY_FAILURE] * 3
    assert all(d.error_code == "smtp:451" for d in rows)
    assert received(smtp) == Counter()
    assert await gateway.dispatcher.run_once() == 0  # not before the retry time
    clock.advance(60)  # retry_cap_seconds in the test config
    await gateway.dispatcher.run_once()
    assert received(smtp) == Counter({a: 1 for a in EXPECTED})
    attempts = await gateway.store.attempts(rows[0].id)
    assert [a.outcome for a in attempts] == ["transient", "delivered"]


async def test_5xx_is_permanent_and_the_report_says_whom_to_call(gateway: Gateway, smtp: SmtpEmulator) -> None:
    smtp.reject_recipient("two@mail.test", code=550)
    announcement_id = await post(gateway)
    await gateway.dispatcher.run_once()
    rows = {d.target: d for d in await gateway.store.deliveries(announcement_id)}
    assert rows["two@mail.test"].status is Status.PERMANENT_FAILURE
    assert rows["two@mail.test"].error_code == "smtp:550"
    report = await gateway.report(announcement_id)
    assert report.complete
    calls = {p.name: p for p in report.to_call()}
    assert set(calls) == {"Родитель Два", "Без Почты"}
    assert calls["Родитель Два"].bucket == "bounced"
    assert calls["Родитель Два"].phone == "+79000000012"


async def test_connection_dropped_mid_data_is_retried(gateway: Gateway, smtp: SmtpEmulator, clock: ManualClock) -> None:
    smtp.drop_during_data(1)
    announcement_id = await post(gateway)
    await gateway.dispatcher.run_once()
    statuses = Counter(d.status for d in await gateway.store.deliveries(announcement_id))
    assert statuses[Status.DELIVERED] == 2
    assert statuses[Status.TEMPORARY_FAILURE] + statuses[Status.UNKNOWN] == 1
    clock.advance(60)
    await gateway.dispatcher.run_once()
    assert received(smtp) == Counter({a: 1 for a in EXPECTED})


async def test_expired_lease_is_sent_again_by_the_next_worker(
    gateway: Gateway, smtp: SmtpEmulator, clock: ManualClock
) -> None:
    announcement_id = await post(gateway)
    # A worker claims everything and dies before sending anything.
    lost = await gateway.store.claim(clock.now(), 100, lease_seconds=30)
    assert len(lost) == 3
    assert await gateway.dispatcher.run_once() == 0  # still leased
    clock.advance(31)
    # Taken over: its sender may be alive after all (a clock stepped past its lease), so it is looked at only
    # one lease later, when that sender must be done, counting no attempt.
    assert await gateway.dispatcher.run_once() == 3
    assert received(smtp) == Counter()
    assert {d.status for d in await gateway.store.deliveries(announcement_id)} == {Status.UNKNOWN}
    assert await gateway.dispatcher.run_once() == 0
    clock.advance(30)
    assert await gateway.dispatcher.run_once() == 3
    assert received(smtp) == Counter({a: 1 for a in EXPECTED})
    assert all(d.attempts == 2 for d in await gateway.store.deliveries(announcement_id))


async def test_attempts_are_bounded(gateway: Gateway, smtp: SmtpEmulator, clock: ManualClock) -> None:
    smtp.refuse(421, count=None, seconds=3600, stage="connect")
    announcement_id = await post(gateway)
    for _ in range(gateway.config.settings.dispatch.max_attempts):
        await gateway.dispatcher.run_once()
        clock.advance(120)
    rows = await gateway.store.deliveries(announcement_id)
    assert {d.status for d in rows} == {Status.PERMANENT_FAILURE}
    assert all(d.last_error.startswith("попытки исчерпаны (4)") for d in rows)
    report = await gateway.report(announcement_id)
    assert report.counts()["bounced"] == 3


async def test_idempotent_post(gateway: Gateway, smtp: SmtpEmulator) -> None:
    first = await post(gateway, key="same")
    second = await post(gateway, key="same")
    assert first == second
    await gateway.dispatcher.run_once()
    assert sum(received(smtp).values()) == 3
