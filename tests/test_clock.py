"""Clock trouble, end to end: the real gateway on the MAX, VK and SMTP emulators with a manual clock that jumps.

- Backward jumps (an NTP correction of −10 min or −1 h) after sending, around the window's opening, while a dead
  sender's leases run and while a send is in flight: nothing is sent twice, nothing is lost.
- Forward jumps (+2 h past the window's end, over a weekend, onto a public holiday): deliveries wait for the next
  opening of a school day, or go at once when one has come, each once.
- The Russian zones keep no daylight-saving time: a window opens at the same UTC time in January and in July.
- A gateway that was down over the 08:00 opening, restarted on the same store (SQLite file or PostgreSQL), sends
  what was held, once, and finds out what an unanswered send before the shutdown did rather than resend it.

A backward jump makes leases and retry times lie further ahead: the work waits as long as the jump, and is then
done once (not lost, but late by the jump). A forward jump longer than the lease while a send is on the wire
lets another process take the delivery over (leases are judged by the wall clock of whoever claims); it then
looks for the message only one lease later, when the first send must be over, and finds it rather than post it
again (MAX reconciliation cannot see a request that has not been answered yet).

The windows' arithmetic itself is in tests/test_windows.py; a retry slipping past 19:00 and a dispatcher that did
not run at 08:00 (same process) in tests/test_rules.py. The school is tests/data.py's, in Asia/Yekaterinburg
(UTC+5): 5А has MAX chats (-501 parents, -502 students), 5Б a VK parents' chat, 7Б none.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.domain import Group, Status
from schedules.calendar import SchoolCalendar
from schedules.windows import DEFAULT_WINDOW, next_allowed
from tests.data import SCHOOL_YAML
from tests.world import MAX_TOKEN, World, running_world

PARENTS_5A, STUDENTS_5A, PARENTS_5B = -501, -502, 2000000001


def local(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A moment in the school's zone (UTC+5), as UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC) - timedelta(hours=5)


MON, TUE = date(2026, 11, 23), date(2026, 11, 24)
FRI, SAT, NEXT_MON = date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 30)


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    async with running_world(tmp_path, clock) as w:
        yield w


def chats(world: World) -> dict[int, int]:
    """How many messages each chat holds."""
    return {
        PARENTS_5A: len(world.max.messages(PARENTS_5A)),
        STUDENTS_5A: len(world.max.messages(STUDENTS_5A)),
        PARENTS_5B: len(world.vk.messages(PARENTS_5B)),
    }


def letters(world: World) -> Counter[tuple[str, str]]:
    """(recipient, Message-ID) → copies."""
    return Counter((r, str(m.message["Message-ID"])) for m in world.smtp.messages for r in m.recipients)


async def on_the_wire(world: World) -> None:
    """Return once MAX has received a request (a test made it slow: it is still being answered)."""
    for _ in range(2000):  # the emulator has no hook for this: look every 5 ms, for 10 s at most
        if world.max.request_count(MAX_TOKEN):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("MAX received nothing")


async def reopen(world: World) -> None:
    """Stop the gateway (the process ends) and start a new one on the same configuration and store."""
    config, clock = world.gateway.config, world.gateway.clock
    await world.gateway.close()
    world.gateway = await Gateway.open(config, clock=clock)


# ---------------------------------------------------------------------------------------------- backward jumps


async def test_backward_jumps_around_the_opening_send_nothing_twice(
    tmp_path: Path, clock: ManualClock, database: str
) -> None:
    async with running_world(tmp_path, clock, database=database) as world:
        clock.set(local(MON, 21))
        first = await world.post({Group.PARENTS, Group.STUDENTS}, parallels=frozenset({5}))
        await world.deliver()
        clock.set(local(TUE, 8, 2))
        await world.deliver()
        assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 1, PARENTS_5B: 1}

        clock.set(local(TUE, 7, 52))  # NTP: the clock was 10 minutes fast
        await world.deliver()
        assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 1, PARENTS_5B: 1}
        second = await world.post(parallels=frozenset({5}), title="Собрание", text="В среду в 18:00.")
        rows = await world.gateway.store.deliveries(second)
        assert {d.not_before for d in rows if d.channel != "email"} == {local(TUE, 8)}  # before the window again
        clock.set(local(TUE, 7, 59, 59))
        await world.deliver()
        assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 1, PARENTS_5B: 1}
        clock.set(local(TUE, 8))
        await world.deliver()
        assert chats(world) == {PARENTS_5A: 2, STUDENTS_5A: 1, PARENTS_5B: 2}

        clock.set(local(TUE, 7))  # and an hour back
        await world.deliver()
        clock.set(local(TUE, 10))
        await world.deliver()
        assert chats(world) == {PARENTS_5A: 2, STUDENTS_5A: 1, PARENTS_5B: 2}
        assert [(m.text or "").count("Собрание") for m in world.max.messages(PARENTS_5A)] == [0, 1]
        assert Counter(r for r, _ in letters(world)) == {"anna@mail.test": 2}  # one letter per announcement
        assert max(letters(world).values()) == 1
        for announcement_id in (first, second):
            rows = await world.gateway.store.deliveries(announcement_id)
            assert {(d.status, d.attempts) for d in rows} == {(Status.DELIVERED, 1)}


async def test_backward_jump_while_a_dead_senders_leases_run(world: World, clock: ManualClock) -> None:
    """A sender claims everything at 10:00, posts to the 5А parents' chat and dies before recording it. The clock is
    then set back an hour: its leases (until 10:00:30) now run an hour longer. Nothing is taken over early; once
    they run out (and one lease more), the chat that has the message is reconciled, not posted to again, and the
    rest go once."""
    announcement_id = await world.post(parallels=frozenset({5}))
    lost = await world.gateway.store.claim(clock.now(), 100, lease_seconds=30)
    assert len(lost) == 3
    announcements = {c.announcement_id: await world.gateway.announcement(c.announcement_id) for c in lost}
    posted = next(c for c in lost if c.target == str(PARENTS_5A))
    await world.gateway.channels["max"].send(world.gateway.render([posted], announcements))
    assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 0}

    clock.advance(timedelta(hours=-1))
    for _ in range(3):
        assert await world.gateway.dispatcher.run_once() == 0
        clock.advance(20 * 60)
    assert await world.gateway.store.next_due() == local(MON, 10, 0, 30)  # the dispatcher knows when to look
    clock.set(local(MON, 10, 0, 30))
    await world.deliver()  # taken over: looked at one lease later, when a sender still alive would be done
    assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 0}
    clock.advance(30)
    await world.deliver()
    assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 1}
    assert Counter(r for r, _ in letters(world)) == {"anna@mail.test": 1}
    rows = {d.target: d for d in await world.gateway.store.deliveries(announcement_id)}
    assert {d.status for d in rows.values()} == {Status.DELIVERED}
    outcomes = [a.outcome for a in await world.gateway.store.attempts(rows[str(PARENTS_5A)].id)]
    assert outcomes == ["reconciled"]


async def test_backward_jump_while_a_send_is_in_flight(tmp_path: Path, clock: ManualClock) -> None:
    """The clock is set back an hour while a slow MAX send is on the wire. Its outcome is recorded (by lease, not by
    time), and neither this process nor another one on the same store sends it again, at any time after."""
    async with running_world(tmp_path, clock) as world:
        world.max.delay_next(1, 0.5, chat_id=PARENTS_5A)
        announcement_id = await world.post(classes=frozenset({"5А"}))
        sending = asyncio.create_task(world.gateway.dispatcher.run_once())
        await on_the_wire(world)
        clock.advance(timedelta(hours=-1))
        assert not sending.done()
        assert await sending == 2
        assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 0}
        rows = {d.target: d for d in await world.gateway.store.deliveries(announcement_id)}
        assert {(d.status, d.attempts) for d in rows.values()} == {(Status.DELIVERED, 1)}
        [attempt] = await world.gateway.store.attempts(rows[str(PARENTS_5A)].id)
        assert (attempt.outcome, attempt.finished_at - attempt.started_at) == ("delivered", timedelta(hours=-1))

        other = await Gateway.open(world.gateway.config, clock=clock)  # a second process on the same SQLite file
        try:
            for when in (local(MON, 9), local(MON, 10, 1), local(MON, 12)):
                clock.set(when)
                assert await other.dispatcher.run_once() == 0
                assert await world.gateway.dispatcher.run_once() == 0
        finally:
            await other.close()
        assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 0}
        assert Counter(r for r, _ in letters(world)) == {"anna@mail.test": 1}


# ----------------------------------------------------------------------------------------------- forward jumps


async def test_forward_jump_while_a_send_is_in_flight_is_not_posted_twice(
    tmp_path: Path, clock: ManualClock, database: str
) -> None:
    """NTP steps the clock two hours forward while a MAX request is on the wire; a second worker finds the lease
    run out and takes the delivery over. It does not look at once (the request, still unanswered, would not be
    found, and the message would be posted again): it looks one lease later, finds the message and records it."""
    async with running_world(tmp_path, clock, database=database) as world:
        world.max.delay_next(1, 1.0, chat_id=PARENTS_5A)
        announcement_id = await world.post(classes=frozenset({"5А"}))
        sending = asyncio.create_task(world.gateway.dispatcher.run_once())
        await on_the_wire(world)
        clock.advance(timedelta(hours=2))  # the lease was 30 s
        other = await Gateway.open(world.gateway.config, clock=clock)  # a second worker on the same database
        try:
            assert await other.dispatcher.run_once() == 1  # taken over, and put off
            await sending  # the first worker's answer comes: its lease is gone, so it records nothing
            assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 0}
            [row] = [d for d in await world.gateway.store.deliveries(announcement_id) if d.target == str(PARENTS_5A)]
            assert (row.status, row.attempts) == (Status.UNKNOWN, 1)
            clock.advance(timedelta(seconds=30))
            await other.dispatcher.run_once()
        finally:
            await other.close()
        assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 0}
        [row] = [d for d in await world.gateway.store.deliveries(announcement_id) if d.target == str(PARENTS_5A)]
        assert row.status == Status.DELIVERED


async def test_forward_jump_past_19_and_over_the_weekend_waits_for_monday(world: World, clock: ManualClock) -> None:
    """Friday 18:55: the 5А parents' chat stores the message but the answer is lost, the students' chat answers
    503. The clock then jumps two hours (past 19:00) and later to Saturday noon: both wait for Monday 08:00 without
    using up attempts; on Monday the parents' chat is found to have the message and the students' chat gets it."""
    clock.set(local(FRI, 18, 55))
    world.max.drop_next(1, chat_id=PARENTS_5A)
    world.max.fail_next(1, 503, chat_id=STUDENTS_5A)
    announcement_id = await world.post({Group.PARENTS, Group.STUDENTS}, classes=frozenset({"5А"}))
    await world.deliver()
    assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 0}

    async def chat_rows() -> dict[int, tuple[Status, datetime, int]]:
        rows = await world.gateway.store.deliveries(announcement_id)
        return {int(d.target): (d.status, d.not_before, d.attempts) for d in rows if d.channel != "email"}

    before = await chat_rows()
    assert before[PARENTS_5A][0] is Status.UNKNOWN and before[STUDENTS_5A][0] is Status.TEMPORARY_FAILURE
    for jump in (local(FRI, 20, 55), local(SAT, 12), local(NEXT_MON, 7, 59, 59)):
        clock.set(jump)
        await world.deliver()
        assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 0}
        assert await chat_rows() == {
            PARENTS_5A: (Status.UNKNOWN, local(NEXT_MON, 8), 1),  # still "may have gone": checked before any send
            STUDENTS_5A: (Status.PENDING, local(NEXT_MON, 8), 1),
        }
    clock.set(local(NEXT_MON, 8))
    await world.deliver()
    assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 1, PARENTS_5B: 0}
    rows = {d.target: d for d in await world.gateway.store.deliveries(announcement_id)}
    assert {d.status for d in rows.values()} == {Status.DELIVERED}
    parents = [a.outcome for a in await world.gateway.store.attempts(rows[str(PARENTS_5A)].id)]
    assert parents == ["unknown", "reconciled"]
    students = [a.outcome for a in await world.gateway.store.attempts(rows[str(STUDENTS_5A)].id)]
    assert students == ["transient", "delivered"]


async def test_forward_jump_over_a_weekend_sends_what_is_due_at_once(world: World, clock: ManualClock) -> None:
    clock.set(local(FRI, 21))
    announcement_id = await world.post(parallels=frozenset({5}))
    await world.deliver()
    assert Counter(r for r, _ in letters(world)) == {"anna@mail.test": 1}  # e-mail is not held to the window
    clock.set(local(NEXT_MON, 12))  # the machine slept over the weekend
    await world.deliver()
    assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 1}
    clock.advance(timedelta(days=3))
    await world.deliver()
    assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 1}
    assert Counter(r for r, _ in letters(world)) == {"anna@mail.test": 1}
    assert (await world.gateway.report(announcement_id)).complete


async def test_forward_jump_onto_a_public_holiday_waits_for_the_next_school_day(
    world: World, clock: ManualClock
) -> None:
    clock.set(local(date(2026, 11, 3), 20))  # Tuesday evening; Wednesday 4 November is a public holiday
    announcement_id = await world.post(parallels=frozenset({5}))
    clock.set(local(date(2026, 11, 4), 12))
    await world.deliver()
    assert chats(world) == {PARENTS_5A: 0, STUDENTS_5A: 0, PARENTS_5B: 0}
    rows = [d for d in await world.gateway.store.deliveries(announcement_id) if d.channel != "email"]
    assert {d.not_before for d in rows} == {local(date(2026, 11, 5), 8)}
    clock.set(local(date(2026, 11, 5), 8))
    await world.deliver()
    assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 1}


# -------------------------------------------------------------------------------------------- the Russian zones

# The zones' standard offsets, written out rather than taken from zoneinfo: what the law says (no DST since 2014).
RUSSIAN_ZONES = {
    "Europe/Kaliningrad": 2,
    "Europe/Moscow": 3,
    "Europe/Samara": 4,
    "Asia/Yekaterinburg": 5,
    "Asia/Omsk": 6,
    "Asia/Krasnoyarsk": 7,
    "Asia/Irkutsk": 8,
    "Asia/Yakutsk": 9,
    "Asia/Vladivostok": 10,
    "Asia/Magadan": 11,
    "Asia/Kamchatka": 12,
}
SUMMER_DAY = date(2026, 7, 15)  # in the summer vacation: the school makes it a school day (a summer camp)


@pytest.mark.parametrize(("zone", "offset"), RUSSIAN_ZONES.items())
async def test_the_window_opens_at_the_same_utc_time_in_january_and_july(
    tmp_path: Path, clock: ManualClock, zone: str, offset: int
) -> None:
    school = SCHOOL_YAML.replace("timezone: Asia/Yekaterinburg", f"timezone: {zone}") + (
        f"calendar:\n  extra_school_days:\n    - {{date: {SUMMER_DAY.isoformat()}, reason: летний лагерь}}\n"
    )
    async with running_world(tmp_path, clock, school_yaml=school) as world:
        for sent, day in enumerate((date(2026, 1, 21), SUMMER_DAY)):  # Wednesdays
            opening = datetime(day.year, day.month, day.day, 8, tzinfo=UTC) - timedelta(hours=offset)
            clock.set(opening - timedelta(hours=11))  # 21:00 local the evening before
            announcement_id = await world.post(parallels=frozenset({5}))
            rows = [d for d in await world.gateway.store.deliveries(announcement_id) if d.channel != "email"]
            assert {d.not_before for d in rows} == {opening}
            assert opening.astimezone(ZoneInfo(zone)).hour == 8
            clock.set(opening - timedelta(seconds=1))
            await world.deliver()
            assert chats(world) == {PARENTS_5A: sent, STUDENTS_5A: 0, PARENTS_5B: sent}
            clock.set(opening)
            await world.deliver()
            assert chats(world) == {PARENTS_5A: sent + 1, STUDENTS_5A: 0, PARENTS_5B: sent + 1}


@pytest.mark.parametrize(("zone", "offset"), RUSSIAN_ZONES.items())
def test_every_opening_of_2026_is_at_the_same_utc_time(zone: str, offset: int) -> None:
    calendar = SchoolCalendar(six_day_week=True)
    z = ZoneInfo(zone)
    day, openings = date(2026, 1, 1), set()
    while day.year == 2026:
        midnight = datetime(day.year, day.month, day.day, tzinfo=z)
        if calendar.is_school_day(day):
            opening = next_allowed(midnight, zone=z, window=DEFAULT_WINDOW, calendar=calendar)
            assert opening.date() == day
            openings.add(opening.astimezone(UTC).time())
        day += timedelta(days=1)
    assert openings == {datetime(2026, 1, 1, 8 - offset if offset <= 8 else 32 - offset).time()}


# ---------------------------------------------------------------------------------------- down over the opening


async def test_a_gateway_down_over_the_opening_sends_what_was_held_once_after_restart(
    tmp_path: Path, clock: ManualClock, database: str
) -> None:
    """Monday 18:58 an announcement to 5А goes out, but the answer from MAX is lost (the chat has it). At 21:00
    another is posted to the 5th grade and held for Tuesday 08:00. The gateway is stopped at 21:05 and started
    again at 09:30 on Tuesday: the held one goes to every chat once, the unanswered one is found in the chat and
    not posted again. Another restart sends nothing."""
    async with running_world(tmp_path, clock, database=database) as world:
        clock.set(local(MON, 18, 58))
        world.max.drop_next(1, chat_id=PARENTS_5A)
        unanswered = await world.post(classes=frozenset({"5А"}), title="Ранний выход", text="Уроки до 12:00.")
        await world.deliver()
        clock.set(local(MON, 21))
        held = await world.post(parallels=frozenset({5}))
        await world.deliver()
        assert chats(world) == {PARENTS_5A: 1, STUDENTS_5A: 0, PARENTS_5B: 0}
        assert Counter(r for r, _ in letters(world)) == {"anna@mail.test": 2}
        clock.set(local(MON, 21, 5))
        await world.gateway.close()

        clock.set(local(TUE, 9, 30))
        world.gateway = await Gateway.open(world.gateway.config, clock=clock)
        await world.deliver()
        assert chats(world) == {PARENTS_5A: 2, STUDENTS_5A: 0, PARENTS_5B: 1}
        assert ["Ранний выход" in (m.text or "") for m in world.max.messages(PARENTS_5A)] == [True, False]
        await reopen(world)
        clock.advance(3600)
        await world.deliver()
        assert chats(world) == {PARENTS_5A: 2, STUDENTS_5A: 0, PARENTS_5B: 1}
        assert Counter(r for r, _ in letters(world)) == {"anna@mail.test": 2}
        assert max(letters(world).values()) == 1

        rows = {(a, d.target): d for a in (unanswered, held) for d in await world.gateway.store.deliveries(a)}
        assert {d.status for d in rows.values()} == {Status.DELIVERED}
        reconciled = rows[(unanswered, str(PARENTS_5A))]
        assert [a.outcome for a in await world.gateway.store.attempts(reconciled.id)] == ["unknown", "reconciled"]
        for target in (str(PARENTS_5A), str(PARENTS_5B)):
            late = rows[(held, target)]
            assert (late.not_before, late.attempts) == (local(TUE, 8), 1)
            assert late.finished_at == local(TUE, 9, 30)
