"""The staff pages in a real headless Chromium (Debian's `chromium`, driven by Playwright): a deputy composes,
previews and sends an announcement and watches it complete; a class teacher forwards a task with a note; the IT
admin checks the chats and previews a roster; a parent acknowledges a letter. Each page is photographed into
docs/screenshots/ (the README links them), on a desktop and, for the report, on a phone-sized screen.

`./run tests` installs Chromium when it is missing; without it these tests fail, saying so."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from gateway.clock import ManualClock
from tests.data import ROSTER_CSV
from tests.web import PASSWORDS, WebWorld, running_web
from tests.world import MAX_TOKEN

SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
async def web_world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[WebWorld]:
    async with running_web(tmp_path, clock) as w:
        yield w


async def new_page(browser: Browser, w: WebWorld, viewport: dict[str, int] = DESKTOP) -> Page:
    context = await browser.new_context(viewport=viewport, locale="ru-RU", base_url=w.base)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    async def no_dialogs(dialog: object) -> None:  # an alert() would mean injected script ran
        raise AssertionError(f"a dialog opened: {dialog}")

    page.on("dialog", no_dialogs)
    page.context.errors = errors  # type: ignore[attr-defined]
    return page


async def log_in(page: Page, staff_id: str, *, shot: str = "") -> None:
    await page.goto("/login")
    await page.get_by_label("Логин").fill(staff_id)
    await page.get_by_label("Пароль").fill(PASSWORDS[staff_id])
    if shot:
        await page.screenshot(path=SHOTS / shot, full_page=True)
    await page.get_by_role("button", name="Войти").click()
    await page.wait_for_load_state()
    assert "/login" not in page.url


async def shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SHOTS / name, full_page=True)
    assert (SHOTS / name).stat().st_size > 5_000


async def test_deputy_composes_previews_sends_and_watches_it_complete(browser: Browser, web_world: WebWorld) -> None:
    w = web_world
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = await new_page(browser, w)
    await page.goto("/announcements")
    assert "/login?next=" in page.url  # not signed in: the login page, then back
    await log_in(page, "dep", shot="login.png")
    await page.goto("/compose")
    title = 'Сокращённые уроки <script>alert("x")</script>'
    await page.get_by_label("Заголовок").fill(title)
    await page.get_by_label("Текст").fill("В пятницу уроки по 30 минут: педагогический совет. Продлёнка работает.")
    await page.get_by_label("Вид").select_option("schedule_change")
    await page.get_by_label("ученикам").check()
    await page.get_by_label("параллели:").check()
    await page.get_by_label("все 5-е").check()
    await page.get_by_role("button", name="Предпросмотр").click()
    preview = page.locator("#preview")
    await expect(preview).to_contain_text("Аудитория: все 5-е; родители, ученики")
    await expect(preview).to_contain_text("чатов MAX: 2")  # 5А: parents and students
    await expect(preview).to_contain_text("чатов VK: 1")  # 5Б: parents
    await expect(preview).to_contain_text("писем: 1")  # Петрова Анна is not in the 5А chat
    await expect(preview).to_contain_text("5Б: чат учеников — нет такого чата")
    await expect(preview).to_contain_text("Последний получатель — примерно")
    await expect(page.get_by_label("Заголовок")).to_have_value(title)  # the form keeps what was typed
    await shoot(page, "compose-preview.png")
    await page.get_by_role("button", name="Отправить").click()
    await page.wait_for_url(re.compile(r"/announcements/\d+\?done=created"))
    await expect(page.locator("p.ok")).to_contain_text("Объявление принято")
    await expect(page.locator(".progress-text")).to_contain_text("завершено", timeout=20_000)
    await expect(page.locator("h1")).to_have_text(f"№ 1 · {title}")  # shown as text, never run
    table = page.locator("table.summary")
    await expect(table).to_contain_text("5А")
    await expect(table).to_contain_text("5Б")
    await shoot(page, "report.png")
    calls = page.locator("#class-1 .calls")
    await expect(calls).to_contain_text("Сидоров Олег")
    await expect(calls).to_contain_text("+79000000003")
    phone = await new_page(browser, w, PHONE)
    await phone.context.add_cookies(await page.context.cookies())
    await phone.goto(page.url)
    await expect(phone.locator(".progress-text")).to_contain_text("завершено")
    await shoot(phone, "report-phone.png")
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Скачать отчёт (CSV)").click()
    download = await download_info.value
    csv = await asyncio.to_thread(Path(await download.path()).read_text, encoding="utf-8-sig")
    assert csv.startswith("Класс;Представитель;Ученик;Телефон") and "Сидоров Олег" in csv
    await page.goto("/announcements")
    await expect(page.locator(".progress-text").first).to_contain_text("завершено")
    await shoot(page, "announcements.png")
    # what the chats and the SMTP server got
    assert len(w.world.max.messages(-501)) == len(w.world.max.messages(-502)) == 1
    assert w.world.letters() == {"anna@mail.test": 1}
    assert len(w.world.vk.messages(2000000001)) == 1
    assert page.context.errors == []  # type: ignore[attr-defined]


async def test_list_shows_live_progress_of_a_scheduled_announcement(browser: Browser, web_world: WebWorld) -> None:
    w = web_world
    dep = await w.session("dep")
    clock: ManualClock = w.gateway.clock
    later = clock.now().replace(hour=13)  # 18:00 in Yekaterinburg: the chats wait for that
    async with await dep.post(
        "/api/announcements",
        json={
            "title": "Собрание",
            "text": "В 18:00.",
            "groups": ["parents"],
            "classes": ["5А"],
            "send_at": later.isoformat(),
        },
    ) as r:
        assert r.status == 201
    page = await new_page(browser, w)
    await log_in(page, "dir")
    await page.goto("/announcements")
    text = page.locator(".progress-text").first
    await expect(text).to_contain_text("0 из 2 — идёт доставка")
    clock.set(later)
    w.gateway.dispatcher.wake()
    await expect(text).to_contain_text("2 из 2 — завершено", timeout=20_000)  # polled, no reload


async def test_class_teacher_forwards_a_task_with_a_note(browser: Browser, web_world: WebWorld) -> None:
    w = web_world
    dep = await w.session("dep")
    body = {
        "title": "Экскурсия в музей",
        "text": "В четверг экскурсия, сбор в 9:00 у школы.",
        "groups": ["parents", "students"],
        "parallels": [5],
        "via_class_teachers": True,
    }
    async with await dep.post("/api/announcements", json=body) as r:
        assert r.status == 201
    assert w.world.max.messages(-501) == []  # waits for the class teacher
    page = await new_page(browser, w)
    await log_in(page, "kt5a")
    assert page.url.endswith("/tasks")  # the class teacher's home is the inbox
    task = page.locator("section.task").first
    await expect(task).to_contain_text("Экскурсия в музей")
    await expect(task).to_contain_text("ждёт пересылки")
    await expect(page.locator("section.task")).to_have_count(1)  # 5Б's task is not hers
    await task.get_by_label("Комментарий").fill("Возьмите сменную обувь и перекус.")
    await shoot(page, "tasks.png")
    await task.get_by_role("button", name="Переслать в чаты 5А").click()
    await expect(page.locator("p.ok")).to_contain_text("Объявление переслано в чаты класса.")
    await expect(page.locator("section.task").first).to_contain_text("переслано")
    await expect(page.locator("section.task").first).to_contain_text("Комментарий: Возьмите сменную обувь")
    for _ in range(100):
        if w.world.max.messages(-501) and w.world.max.messages(-502):
            break
        await page.wait_for_timeout(100)
    [message] = w.world.max.messages(-501)
    assert message.text is not None and "Комментарий классного руководителя: Возьмите сменную обувь" in message.text
    await page.goto("/announcements/1")
    await expect(page.locator("#class-1")).to_contain_text("переслано")
    await expect(page.locator("table.summary tbody tr")).to_have_count(1)  # only her class


async def test_admin_checks_chats_and_previews_a_roster(browser: Browser, web_world: WebWorld, tmp_path: Path) -> None:
    w = web_world
    await w.world.max.remove_bot_from_chat(-502, MAX_TOKEN)  # 5А's students' chat lost the bot
    page = await new_page(browser, w)
    await log_in(page, "it")
    assert page.url.endswith("/chats")
    await page.get_by_role("button", name="Проверить, может ли бот писать в чаты").click()
    await expect(page.locator("#check-results")).to_contain_text("Проверено чатов: 4, неисправных: 1.")
    await expect(page.locator("tr.dead")).to_contain_text("-502")
    await expect(page.locator("body")).to_contain_text("верните бота в чат")  # the open alert
    await shoot(page, "chats.png")
    roster = tmp_path / "roster.csv"
    roster.write_text(
        ROSTER_CSV.replace("5Б;Кузнецов Дима;Кузнецова Ольга;olga@mail.test;;да\n", "")
        + "7Б;Новиков Саша;Новикова Дарья;daria@mail.test;;нет\n",
        encoding="utf-8",
    )
    await page.goto("/roster")
    await page.get_by_label("Выгрузка из электронного журнала").set_input_files(roster)
    await page.get_by_role("button", name="Показать, что изменится").click()
    preview = page.locator("#roster-preview")
    await expect(preview).to_contain_text("Новые (1)")
    await expect(preview).to_contain_text("Новикова Дарья")
    await expect(preview.locator("ul.left")).to_contain_text("Кузнецова Ольга (5Б) — удалите из чата родителей 5Б")
    await shoot(page, "roster-preview.png")
    await page.get_by_role("button", name="Загрузить этот список").click()
    await expect(page.locator("#roster-result")).to_contain_text("новых 1, изменённых 0, выбывших 1")
    assert "Новикова Дарья" in {g.name for g in await w.gateway.store.guardians("s1")}


async def test_parent_acknowledges_from_the_letter(browser: Browser, web_world: WebWorld) -> None:
    w = web_world
    dep = await w.session("dep")
    async with await dep.post(
        "/api/announcements", json={"title": "Собрание", "text": "Во вторник в 18:00.", "groups": ["parents"]}
    ) as r:
        announcement_id = (await r.json())["id"]
    for _ in range(100):
        if w.world.smtp.mailbox("anna@mail.test"):
            break
        await dep.http.get(w.base + "/api/me")
    [letter] = w.world.smtp.mailbox("anna@mail.test")
    found = re.search(r"http://127\.0\.0\.1:\d+/p/ack/\S+", letter.text)
    assert found is not None, letter.text
    page = await new_page(browser, w, PHONE)
    await page.goto(found.group(0))
    await expect(page.locator("h1")).to_have_text("«Собрание»")
    await page.get_by_role("button", name="Ознакомлен(а)").click()
    await expect(page.locator("p.ok")).to_contain_text("Спасибо!")
    await shoot(page, "parent-ack.png")
    assert len(await w.gateway.store.acknowledgements(announcement_id)) == 1


async def test_class_teacher_narrows_her_class_window_on_the_settings_page(
    browser: Browser, web_world: WebWorld
) -> None:
    w = web_world
    page = await new_page(browser, w)
    await log_in(page, "kt5a")
    await page.get_by_role("link", name="Настройки").click()
    await page.wait_for_url(re.compile(r"/settings$"))
    section = page.locator("#class-5А")
    await expect(section.locator("strong.window")).to_have_text("08:00–19:00")
    await expect(page.locator("form.window-form")).to_have_count(1)  # her class only
    await section.get_by_label("Начало").fill("09:00")
    await section.get_by_label("Конец").fill("18:00")
    await section.get_by_role("button", name="Сохранить окно 5А").click()
    await expect(page.locator("p.ok")).to_contain_text("Окно рассылки класса сохранено.")
    section = page.locator("#class-5А")
    await expect(section.locator("strong.window")).to_have_text("09:00–18:00")
    await expect(section).to_contain_text("задано на сайте: Классова Вера")
    await shoot(page, "settings.png")
    [row] = await w.gateway.store.class_windows("s1")
    assert (row.class_name, str(row.window), row.set_by) == ("5А", "09:00–18:00", "kt5a")
    assert w.gateway.current_school("s1").window_for("5А") == row.window  # the send-time check has it too
    phone = await new_page(browser, w, PHONE)
    await phone.context.add_cookies(await page.context.cookies())
    await phone.goto("/settings")
    await expect(phone.locator("#class-5А strong.window")).to_have_text("09:00–18:00")
    await shoot(phone, "settings-phone.png")
    # a window wider than the school's: a Russian error where she typed it, and nothing changes
    await section.get_by_label("Начало").fill("07:00")
    await section.get_by_role("button", name="Сохранить окно 5А").click()
    error = page.locator("#class-5А .error")
    await expect(error).to_contain_text("окно класса 07:00–18:00 должно лежать внутри окна рассылки школы 08:00–19:00")
    assert [str(r.window) for r in await w.gateway.store.class_windows("s1")] == ["09:00–18:00"]
    await page.locator("#class-5А").get_by_role("button", name="Сбросить").click()
    await expect(page.locator("p.ok")).to_contain_text("Окно рассылки класса сброшено")
    await expect(page.locator("#class-5А strong.window")).to_have_text("08:00–19:00")
    assert await w.gateway.store.class_windows("s1") == []
    assert page.context.errors == []  # type: ignore[attr-defined]
