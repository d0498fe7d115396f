"""The school's rules end to end, with an injected clock: windows (class windows set at run time too, and the
wake-ups at their openings), force majeure and its audit, one message rather than many, retries that slip past
the window, and forwarding by class teachers.

The school (tests/data.py) is in Asia/Yekaterinburg (UTC+5): 5А has MAX chats, 5Б a VK parents' chat, 7Б none.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.domain import AnnouncementRequest, Audience, Group, Kind, Status
from gateway.errors import InvalidInput, NotFound, PolicyViolation
from schedules.jobs import start_scheduler
from schedules.windows import MessagingWindow
from tests.data import SCHOOL_YAML
from tests.world import World, running_world


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of November 2026 in the school's zone (UTC+5), as UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=5)


MON_21 = local(23, 21)  # Monday evening
TUE_0800 = local(24, 8)


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    async with running_world(tmp_path, clock) as w:
        yield w


def chat_texts(world: World) -> dict[str, list[str]]:
    return {
        "5А parents": [m.text for m in world.max.messages(-501)],
        "5А students": [m.text for m in world.max.messages(-502)],
        "5Б parents": [m.text for m in world.vk.messages(2000000001)],
    }


async def test_posted_at_21_reaches_chats_at_08_the_next_school_day(world: World, clock: ManualClock) -> None:
    clock.set(MON_21)
    announcement_id = await world.post({Group.PARENTS, Group.STUDENTS}, parallels=frozenset({5}))
    await world.deliver()
    # E-mail is not held to the chat window (the school's default): Анна has hers at once.
    assert world.letters() == {"anna@mail.test": 1}
    assert chat_texts(world) == {"5А parents": [], "5А students": [], "5Б parents": []}
    rows = [d for d in await world.gateway.store.deliveries(announcement_id) if d.channel != "email"]
    assert {d.not_before for d in rows} == {TUE_0800}
    clock.set(TUE_0800 - timedelta(seconds=1))
    await world.deliver()
    assert chat_texts(world)["5А parents"] == []
    clock.set(TUE_0800)
    await world.deliver()
    assert [len(v) for v in chat_texts(world).values()] == [1, 1, 1]
    assert (await world.gateway.report(announcement_id)).complete


async def test_the_0800_wake_up_sends_what_was_held_without_waiting_for_the_poll(
    world: World, clock: ManualClock
) -> None:
    """The window-open job is what wakes a running dispatcher at the opening: with a poll of an hour and the
    dispatcher asleep until the next due time (11 hours away by the injected clock), only the job's wake-up can
    make it send at 08:00."""
    gateway = world.gateway
    gateway.dispatcher.settings = replace(gateway.dispatcher.settings, poll_seconds=3600)
    clock.set(MON_21)
    await world.post({Group.PARENTS}, classes=frozenset({"5А"}))
    scheduler = start_scheduler(gateway)
    scheduler.pause()  # fired by hand below, at the injected clock's 08:00
    stop = asyncio.Event()
    running = asyncio.create_task(gateway.dispatcher.run(stop))
    try:
        job = scheduler.get_job("window-open:s1:0800")
        assert job is not None and job.trigger.get_next_fire_time(None, MON_21) == TUE_0800
        await asyncio.sleep(0.5)  # every lane has looked and gone to sleep
        assert world.letters() == {"anna@mail.test": 1} and chat_texts(world)["5А parents"] == []
        clock.set(TUE_0800)
        job.func()
        for _ in range(100):
            if chat_texts(world)["5А parents"]:
                break
            await asyncio.sleep(0.05)
        assert len(chat_texts(world)["5А parents"]) == 1
    finally:
        stop.set()
        await running
        scheduler.shutdown(wait=False)


async def test_school_can_hold_email_to_the_window_too(tmp_path: Path, clock: ManualClock) -> None:
    async with running_world(tmp_path, clock, school_yaml=SCHOOL_YAML + "email_in_window: true\n") as world:
        clock.set(MON_21)
        await world.post(classes=frozenset({"5А"}))
        await world.deliver()
        assert world.letters() == {}
        clock.set(TUE_0800)
        await world.deliver()
        assert world.letters() == {"anna@mail.test": 1}


async def test_force_majeure_at_0630_goes_at_once_and_is_audited(world: World, clock: ManualClock) -> None:
    clock.set(local(24, 6, 30))
    announcement_id = await world.post(
        {Group.PARENTS, Group.STUDENTS},
        author="dir",
        kind=Kind.FORCE_MAJEURE,
        title="Актированный день",
        classes=frozenset({"5А"}),
    )
    await world.deliver()
    assert [len(v) for v in chat_texts(world).values()] == [1, 1, 0]
    assert "Срочно: Актированный день" in chat_texts(world)["5А parents"][0]
    [entry] = await world.gateway.store.audit_log("s1")
    assert (entry.actor, entry.action, entry.announcement_id) == ("dir", "force_majeure", announcement_id)
    assert entry.at == local(24, 6, 30)
    assert "форс-мажор: Актированный день" in entry.details
    assert "вне окна рассылки 08:00–19:00 (в 06:30)" in entry.details


async def test_force_majeure_on_a_day_off_names_the_day_off(world: World, clock: ManualClock) -> None:
    clock.set(local(22, 12))  # Sunday
    request = AnnouncementRequest(
        "s1", "dep", Kind.FORCE_MAJEURE, "Прорыв трубы", "Школа закрыта в понедельник.",
        Audience(frozenset({Group.PARENTS})), reason="авария водопровода",
    )  # fmt: skip
    await world.gateway.post(request)
    await world.deliver()
    assert len(chat_texts(world)["5А parents"]) == 1
    [entry] = await world.gateway.store.audit_log("s1")
    assert entry.details.startswith("форс-мажор: авария водопровода; отправка в нерабочий день (выходной)")


async def test_only_the_administration_may_post_force_majeure(world: World, clock: ManualClock) -> None:
    clock.set(local(24, 6, 30))
    with pytest.raises(PolicyViolation, match="только директор и его заместители"):
        await world.post(author="kt5a", kind=Kind.FORCE_MAJEURE, classes=frozenset({"5А"}))
    assert await world.gateway.store.announcements() == []
    assert await world.gateway.store.audit_log("s1") == []


async def test_a_class_window_holds_only_that_class(tmp_path: Path, clock: ManualClock) -> None:
    narrow = SCHOOL_YAML.replace("    teacher: kt5a\n", "    teacher: kt5a\n    window: 09:00-18:00\n")
    async with running_world(tmp_path, clock, school_yaml=narrow) as world:
        clock.set(local(24, 8, 30))
        await world.post(parallels=frozenset({5}))
        await world.deliver()
        assert chat_texts(world) == {
            "5А parents": [],
            "5А students": [],
            "5Б parents": [chat_texts(world)["5Б parents"][0]],
        }
        clock.set(local(24, 9))
        await world.deliver()
        assert len(chat_texts(world)["5А parents"]) == 1


async def test_a_window_narrowed_in_another_process_holds_what_was_planned_before(
    world: World, clock: ManualClock
) -> None:
    clock.set(MON_21)
    await world.post(parallels=frozenset({5}))  # the chats wait for Tuesday 08:00
    other = await Gateway.open(world.gateway.config, clock=clock)  # another process on the same store
    try:
        await other.set_class_window("s1", "5А", "09:00", "18:00", "kt5a")
    finally:
        await other.close()
    assert await world.gateway.refresh_class_windows()  # what this process's per-minute job does
    assert not await world.gateway.refresh_class_windows()  # nothing new since
    clock.set(TUE_0800)
    await world.deliver()
    assert chat_texts(world)["5А parents"] == [] and len(chat_texts(world)["5Б parents"]) == 1
    clock.set(local(24, 9))
    await world.deliver()
    assert len(chat_texts(world)["5А parents"]) == 1


async def test_planning_reads_a_window_set_in_another_process_at_once(world: World, clock: ManualClock) -> None:
    narrow = MessagingWindow(time(9), time(18))
    await world.gateway.store.set_class_window("s1", "5А", narrow, "kt5a", clock.now(), audit="в другом процессе")
    clock.set(MON_21)
    request = AnnouncementRequest(
        "s1", "dep", Kind.GENERAL, "Собрание", "В среду в 18:00.",
        Audience(frozenset({Group.PARENTS}), parallels=frozenset({5})),
    )  # fmt: skip
    preview = await world.gateway.preview(request)  # no minute's wait: planning reads the windows itself
    held = {d.class_name: d.not_before for d in preview.plan.deliveries if d.channel != "email"}
    assert held == {"5А": local(24, 9), "5Б": TUE_0800}


async def test_a_class_window_set_at_run_time_plans_estimates_and_sets_deadlines(
    world: World, clock: ManualClock
) -> None:
    gateway = world.gateway
    school = await gateway.set_class_window("s1", "5а", "10:00", "17:00", "kt5a")
    assert school.window_for("5А") == MessagingWindow(time(10), time(17))
    assert school.window_for("7Б") == MessagingWindow(time(9), time(18))  # its school-file window stays
    clock.set(local(24, 8, 30))
    request = AnnouncementRequest(
        "s1", "dep", Kind.GENERAL, "Собрание", "В среду в 18:00.",
        Audience(frozenset({Group.PARENTS}), parallels=frozenset({5})), via_class_teachers=True,
    )  # fmt: skip
    preview = await gateway.preview(request)
    assert {t.class_name: t.deadline for t in preview.plan.tasks} == {"5А": local(24, 17), "5Б": local(24, 19)}
    direct = await gateway.preview(replace(request, via_class_teachers=False))
    held = {d.class_name: d.not_before for d in direct.plan.deliveries if d.channel != "email"}
    assert held == {"5А": local(24, 10), "5Б": local(24, 8, 30)}
    assert direct.estimate.last is not None and direct.estimate.last >= local(24, 10)
    view, removed = await gateway.reset_class_window("s1", "5А", "dir")
    assert removed and view.window_for("5А") == view.window
    assert (await gateway.reset_class_window("s1", "5А", "dir"))[1] is False
    entries = await gateway.store.audit_log("s1")
    assert [(e.actor, e.action) for e in entries] == [("dir", "class_window"), ("kt5a", "class_window")]
    assert entries[1].details == "окно рассылки чатов класса 5А: 10:00–17:00 (было 08:00–19:00)"
    assert entries[0].details == "окно рассылки чатов класса 5А сброшено: 08:00–19:00 по файлу школы (было 10:00–17:00)"


async def test_a_class_window_must_be_whole_minutes_inside_the_school_window(world: World) -> None:
    cases = [
        ("07:30", "18:00", "start", "должно лежать внутри окна рассылки школы 08:00–19:00"),
        ("09:00", "19:30", "end", "должно лежать внутри окна рассылки школы 08:00–19:00"),
        ("18:00", "09:00", "start", "начало окна 18:00 должно быть раньше конца 09:00"),
        ("09:00:30", "18:00", "start", "не время в формате ЧЧ:ММ"),
        ("9", "18:00", "start", "не время в формате ЧЧ:ММ"),
        ("09:00", "24:00", "end", "не время в формате ЧЧ:ММ"),
    ]
    for start, end, field, message in cases:
        with pytest.raises(InvalidInput) as caught:
            await world.gateway.set_class_window("s1", "5А", start, end, "kt5a")
        [problem] = caught.value.problems
        assert (problem.field, message in problem.message) == (field, True), (start, end, problem)
    with pytest.raises(NotFound, match="класса «9Я» нет"):
        await world.gateway.set_class_window("s1", "9Я", "09:00", "18:00", "dep")
    assert await world.gateway.store.class_windows() == [] and await world.gateway.store.audit_log("s1") == []


async def test_window_openings_follow_the_class_windows(world: World, clock: ManualClock) -> None:
    gateway = world.gateway
    scheduler = start_scheduler(gateway)
    scheduler.pause()  # the test looks at the jobs; it does not wait for them

    def openings() -> list[str]:
        return sorted(j.id for j in scheduler.get_jobs() if j.id.startswith("window-open:"))

    try:
        assert openings() == ["window-open:s1:0800", "window-open:s1:0900"]  # the school's, 7Б's configured one
        await gateway.set_class_window("s1", "5А", "10:30", "18:00", "kt5a")
        assert openings() == ["window-open:s1:0800", "window-open:s1:0900", "window-open:s1:1030"]
        job = scheduler.get_job("window-open:s1:1030")
        assert job is not None and job.trigger.get_next_fire_time(None, local(24, 9)) == local(24, 10, 30)
        await gateway.set_class_window("s1", "7Б", "10:30", "17:00", "kt7b")  # nobody opens at 09:00 any more
        assert openings() == ["window-open:s1:0800", "window-open:s1:1030"]
        await gateway.reset_class_window("s1", "5А", "dir")
        assert openings() == ["window-open:s1:0800", "window-open:s1:1030"]  # 7Б still opens at 10:30
        # another process resets 7Б: this one hears of it at its next class-windows run
        await gateway.store.reset_class_window("s1", "7Б", "dir", clock.now(), audit="сброшено в другом процессе")
        assert openings() == ["window-open:s1:0800", "window-open:s1:1030"]
        refresh = scheduler.get_job("class-windows")
        assert refresh is not None and refresh.trigger.interval == timedelta(minutes=1)
        await refresh.func()
        assert openings() == ["window-open:s1:0800", "window-open:s1:0900"]
    finally:
        scheduler.shutdown(wait=False)
    await gateway.set_class_window("s1", "5А", "10:30", "18:00", "kt5a")  # a stopped scheduler is left alone:
    assert openings() == []  # nothing queued on it for a start that never comes


async def test_announcements_waiting_for_the_same_opening_are_one_message(world: World, clock: ManualClock) -> None:
    clock.set(MON_21)
    first = await world.post(parallels=frozenset({5}), title="Сокращённые уроки", text="Уроки по 30 минут.")
    clock.set(MON_21 + timedelta(hours=1))
    second = await world.post(classes=frozenset({"5А"}), kind=Kind.EVENT, title="Собрание", text="В среду в 18:00.")
    clock.set(TUE_0800)
    await world.deliver()
    [merged] = chat_texts(world)["5А parents"]
    assert "1. Изменение расписания: Сокращённые уроки" in merged
    assert "2. Мероприятие: Собрание" in merged
    assert "объявления № 1, 2" in merged
    assert len(chat_texts(world)["5Б parents"]) == 1  # only the first was for 5Б
    for announcement_id in (first, second):
        report = await world.gateway.report(announcement_id)
        assert report.complete and report.chats_delivered == report.chats_total


async def test_a_retry_that_slips_past_19_waits_for_the_next_school_day(world: World, clock: ManualClock) -> None:
    clock.set(
        local(
            23,
            18,
            59,
        )
    )
    world.max.fail_next(1, status=503, code="service.unavailable", message="busy", chat_id=-501)
    announcement_id = await world.post(classes=frozenset({"5А"}))
    await world.deliver()
    [row] = [d for d in await world.gateway.store.deliveries(announcement_id) if d.target == "-501"]
    assert row.status is Status.TEMPORARY_FAILURE
    clock.set(local(23, 19, 1))  # the retry is due, but the window has closed
    await world.deliver()
    assert world.max.messages(-501) == []
    [row] = [d for d in await world.gateway.store.deliveries(announcement_id) if d.target == "-501"]
    assert (row.status, row.not_before, row.attempts) == (Status.PENDING, TUE_0800, 1)
    clock.set(TUE_0800)
    await world.deliver()
    assert len(world.max.messages(-501)) == 1


async def test_a_dispatcher_down_over_the_opening_catches_up(world: World, clock: ManualClock) -> None:
    clock.set(MON_21)
    await world.post(classes=frozenset({"5А"}))
    clock.set(local(24, 9, 30))  # nothing ran at 08:00
    await world.deliver()
    assert len(world.max.messages(-501)) == 1


async def test_forwarding_through_class_teachers(world: World, clock: ManualClock) -> None:
    announcement_id = await world.post(parallels=frozenset({5}), via_class_teachers=True)
    await world.deliver()
    assert chat_texts(world) == {"5А parents": [], "5А students": [], "5Б parents": []}
    # Not in the 5А chat, and (forwarding being per class) not reached through it for 5Б: e-mailed at once.
    assert world.letters() == {"anna@mail.test": 1, "maria@mail.test": 1}
    tasks = {t.class_name: t for t in await world.gateway.store.tasks(announcement_id=announcement_id)}
    assert set(tasks) == {"5А", "5Б"}
    assert (tasks["5А"].teacher, tasks["5А"].groups, tasks["5А"].deadline) == ("kt5a", ("parents",), local(23, 19))
    with pytest.raises(PolicyViolation, match="только его классный руководитель"):
        await world.gateway.forward(tasks["5А"].id, "kt7b")
    done = await world.gateway.forward(tasks["5А"].id, "kt5a", "Не забудьте сменную обувь.")
    assert (done.status, done.done_by) == ("forwarded", "kt5a")
    with pytest.raises(PolicyViolation, match="уже переслано"):
        await world.gateway.forward(tasks["5А"].id, "kt5a")
    await world.deliver()
    [text] = chat_texts(world)["5А parents"]
    assert "Комментарий классного руководителя: Не забудьте сменную обувь." in text
    assert chat_texts(world)["5Б parents"] == []  # 5Б has not forwarded
    report = await world.gateway.report(announcement_id)
    lines = {c.name: c.forwarding for c in report.classes}
    assert lines["5А"].startswith("переслано 23.11 10:00 (Классова Вера), с комментарием")
    assert lines["5Б"] == "ждёт пересылки классным руководителем до 23.11 19:00"
    maria_5a = next(p for c in report.classes if c.name == "5А" for p in c.people if p.name == "Иванова Мария")
    assert maria_5a.bucket == "in_chat"


async def test_a_missed_deadline_is_escalated_to_the_author(world: World, clock: ManualClock) -> None:
    announcement_id = await world.post(classes=frozenset({"5А"}), author="dir", via_class_teachers=True)
    await world.deliver()
    clock.set(local(23, 18, 59))
    assert await world.gateway.handle_overdue_tasks() == 0
    clock.set(local(23, 19))
    assert await world.gateway.handle_overdue_tasks() == 1
    assert await world.gateway.handle_overdue_tasks() == 0  # handled once
    await world.deliver()
    [letter] = world.smtp.mailbox("dir@s1.test")
    assert "не переслано" in letter.subject
    assert "не переслано классам в срок: 5А (Классова Вера)" in letter.text
    [alert] = [a for a in await world.gateway.store.alerts("s1") if a.kind == "forwarding_late"]
    assert "5А" in alert.message
    report = await world.gateway.report(announcement_id)
    assert next(c for c in report.classes if c.name == "5А").forwarding.startswith("не переслано до 23.11 19:00")
    # The class teacher may still forward late; it waits for the next window and the report says "late".
    clock.set(local(23, 20))
    task = await world.gateway.forward((await world.gateway.store.tasks())[0].id, "kt5a")
    clock.set(TUE_0800)
    await world.deliver()
    assert len(world.max.messages(-501)) == 1
    assert task.status == "forwarded"
    report = await world.gateway.report(announcement_id)
    assert "(после срока)" in next(c for c in report.classes if c.name == "5А").forwarding


async def test_a_missed_deadline_auto_forwards_when_the_school_says_so(tmp_path: Path, clock: ManualClock) -> None:
    async with running_world(tmp_path, clock, school_yaml=SCHOOL_YAML + "forwarding_deadline: auto\n") as world:
        announcement_id = await world.post(parallels=frozenset({5}), via_class_teachers=True)
        clock.set(local(23, 19))
        assert await world.gateway.handle_overdue_tasks() == 2
        clock.set(TUE_0800)
        await world.deliver()
        assert len(world.max.messages(-501)) == 1
        assert len(world.vk.messages(2000000001)) == 1
        statuses = {t.status for t in await world.gateway.store.tasks(announcement_id=announcement_id)}
        assert statuses == {"auto_forwarded"}


async def test_blocking_content_rules_refuse_and_warnings_do_not(tmp_path: Path, clock: ManualClock) -> None:
    strict = SCHOOL_YAML + "lint: {blocking: [caps]}\n"
    async with running_world(tmp_path, clock, school_yaml=strict) as world:
        with pytest.raises(PolicyViolation, match="правила школы"):
            await world.post(title="ВНИМАНИЕ ВСЕМ", text="ЗАВТРА УРОКОВ НЕ БУДЕТ, ОСТАВАЙТЕСЬ ДОМА")
        request = AnnouncementRequest(
            "s1", "dep", Kind.GENERAL, "Домашнее задание", "Выучить правило на стр. 45, упр. 125.",
            Audience(frozenset({Group.PARENTS}), classes=frozenset({"5А"})),
        )  # fmt: skip
        preview = await world.gateway.preview(request)
        assert [f.rule.value for f in preview.findings] == ["homework"]
        assert not preview.blocking
        assert (await world.gateway.post(request)).created


async def test_forwarding_to_a_dead_parents_chat_emails_the_parents(world: World, clock: ManualClock) -> None:
    announcement_id = await world.post(classes=frozenset({"5А"}), via_class_teachers=True)
    await world.gateway.store.chat_seen(
        "s1", "max", "-501", alive=False, reason="бот удалён", title="", source="webhook", now=clock.now()
    )
    [task] = await world.gateway.store.tasks(announcement_id=announcement_id)
    await world.gateway.forward(task.id, "kt5a")
    await world.deliver()
    assert world.max.messages(-501) == []
    assert world.letters() == {"anna@mail.test": 1, "maria@mail.test": 1}
    report = await world.gateway.report(announcement_id)
    maria = next(p for c in report.classes for p in c.people if p.name == "Иванова Мария")
    assert (maria.bucket, maria.reason) == ("emailed", "чат недоступен (бот удалён или чат закрыт)")
