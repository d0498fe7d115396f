"""`zvonok demo`: the demo school of `config/demo`, end to end, on this machine only.

It starts the MAX and VK emulators and a local SMTP server in this process, points the configuration at them,
makes a fresh SQLite database, imports the demo roster, posts two announcements as the deputy director,
delivers them with a progress bar and prints the reports. Then it checks what the emulated chats and the SMTP
server actually received against the roster file (not against our own plan): every guardian who is not in a
working parents' chat must have exactly one e-mail per announcement, and every chat exactly one message.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from adapters.emulators.max import MaxEmulator
from adapters.emulators.smtp import SmtpEmulator
from adapters.emulators.vk import VkEmulator
from gateway.app import Gateway
from gateway.cli import deliver
from gateway.clock import ShiftedClock
from gateway.config import Config, load_config
from gateway.domain import AnnouncementRequest, Audience, ChatKind, Group, Kind, School
from gateway.reports import render_text
from gateway.roster import read_roster
from schedules.windows import is_allowed, next_allowed

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "config" / "demo"
VK_GROUP_ID = 1
WEEKDAYS = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье")


def demo_requests(school_id: str) -> list[AnnouncementRequest]:
    return [
        AnnouncementRequest(
            school_id=school_id,
            author="sokolov",
            kind=Kind.SCHEDULE_CHANGE,
            title="Сокращённые уроки в пятницу",
            text=(
                "Уважаемые родители и ученики! В пятницу уроки сокращены до 30 минут в связи с "
                "педагогическим советом. Занятия заканчиваются в 12:20, продлёнка работает как обычно."
            ),
            audience=Audience(frozenset({Group.PARENTS, Group.STUDENTS})),
            idempotency_key="demo-1",
        ),
        AnnouncementRequest(
            school_id=school_id,
            author="sokolov",
            kind=Kind.EVENT,
            title="Родительское собрание 5-х классов",
            text="Собрание родителей 5-х классов — во вторник в 18:00 в актовом зале. Тема: итоги первой четверти.",
            audience=Audience(frozenset({Group.PARENTS}), parallels=frozenset({5})),
            idempotency_key="demo-2",
        ),
    ]


async def run_demo(*, once: bool, data_dir: Path, stream: TextIO = sys.stdout, listen: str | None = None) -> int:
    config = load_config(DEMO_CONFIG)
    database = _fresh_database(data_dir)
    # Without --once the staff site is served too: its socket is bound first, so that the letters' links
    # («Ознакомлен», unsubscribe) can point at it.
    site = None if once else _bind(listen or config.settings.listen, stream)
    async with SmtpEmulator() as smtp, MaxEmulator() as max_api, VkEmulator() as vk_api:
        _seed_emulators(config, max_api, vk_api)
        settings = config.settings
        config = replace(
            config,
            settings=replace(
                settings,
                database=f"sqlite:///{database}",
                public_url="" if site is None else "http://{}:{}".format(*site.getsockname()[:2]),
                email=replace(settings.email, host=smtp.host, port=smtp.port),
                max=replace(settings.max, base_url=max_api.base_url),
                vk=replace(settings.vk, base_url=vk_api.base_url),
            ),
        )
        clock = demo_clock(next(iter(config.schools.values())))
        gateway = await Gateway.open(config, clock=clock)
        try:
            school = next(iter(config.schools.values()))
            print(f"Демо: {school.name}, база {data_dir / 'zvonok.db'}", file=stream)
            local = clock.now().astimezone(school.zone)
            day = WEEKDAYS[local.weekday()]
            print(f"Время демо: {day}, {local:%d.%m.%Y %H:%M} ({school.zone}) — окно рассылки открыто.", file=stream)
            print(f"Эмуляторы: MAX {max_api.base_url}, VK {vk_api.base_url}, SMTP {smtp.host}:{smtp.port}", file=stream)
            roster = read_roster(config.rosters[school.id], school)
            change = await gateway.import_roster(school.id, roster)
            print(f"Список родителей загружен: {change.added} представителей.", file=stream)
            ids = []
            for request in demo_requests(school.id):
                posted = await gateway.post(request)
                ids.append(posted.id)
                print(f"Объявление № {posted.id} «{request.title}» принято.", file=stream)
            await deliver(gateway, ids, stream)
            for announcement_id in ids:
                print("", file=stream)
                print(render_text(await gateway.report(announcement_id)), file=stream)
            ok = _check_received(config, smtp, max_api, vk_api, stream)
            if once or site is None:
                return 0 if ok else 1
            return await _serve_site(gateway, site, stream)
        finally:
            await gateway.close()


DEMO_FORWARD = AnnouncementRequest(
    school_id="",
    author="sokolov",
    kind=Kind.EVENT,
    title="Экскурсия 5-х классов в краеведческий музей",
    text="В четверг 5-е классы едут в краеведческий музей. Сбор в 9:00 у школы, возвращение к 14:00.",
    audience=Audience(frozenset({Group.PARENTS, Group.STUDENTS}), parallels=frozenset({5})),
    idempotency_key="demo-3",
    via_class_teachers=True,
)


def demo_password(staff_id: str) -> str:
    return f"demo-{staff_id}-2026"


def _bind(listen: str, stream: TextIO) -> socket.socket:
    """A listening socket for the demo's site: the configured address, or a free port when it is taken."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError:
        print(f"Порт {port} занят: сайт демо откроется на другом.", file=stream)
        sock.bind((host, 0))
    return sock


async def _serve_site(gateway: Gateway, sock: socket.socket, stream: TextIO) -> int:
    """Serve the staff site, the API and the parents' pages with the dispatcher and the periodic jobs, until
    Ctrl+C; the demo's staff get passwords, printed here, and the class teachers a task to forward."""
    from aiohttp import web

    from gateway.web import auth
    from gateway.web.app import make_app
    from gateway.web.app import runner as app_runner
    from schedules.jobs import start_scheduler

    school = next(iter(gateway.config.schools.values()))
    for member in school.staff.values():
        await auth.set_password(gateway, school.id, member.id, demo_password(member.id))
    await gateway.post(replace(DEMO_FORWARD, school_id=school.id))
    runner = app_runner(make_app(gateway))
    await runner.setup()
    await web.SockSite(runner, sock).start()
    url = gateway.config.settings.public_url
    print(f"\nСайт для сотрудников: {url}/ (и API: {url}/api/openapi.json)", file=stream)
    print("Демо-учётные записи (логин — пароль — роль):", file=stream)
    for member in school.staff.values():
        print(f"  {member.id:<9} {demo_password(member.id):<20} {member.role.label} ({member.name})", file=stream)
    print(
        "Классные руководители 5А (petrova) и 5Б (orlova) получили задачу переслать объявление об экскурсии.",
        file=stream,
    )
    print("Демо работает (сайт, служба рассылки и эмуляторы запущены). Остановить: Ctrl+C.", file=stream)
    stream.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    scheduler = start_scheduler(gateway)
    try:
        await gateway.dispatcher.run(stop)
    finally:
        scheduler.shutdown(wait=False)
        await runner.cleanup()
    return 0


def demo_clock(school: School) -> ShiftedClock:
    """Real time, moved if need be to 10:00 of the next school day, so that the chats' window is open."""
    now = datetime.now(UTC)
    narrowest = max(
        (c.window for c in school.classes.values() if c.window), key=lambda w: w.start, default=school.window
    )
    if is_allowed(now, zone=school.zone, window=narrowest, calendar=school.calendar) and is_allowed(
        now + timedelta(minutes=10), zone=school.zone, window=narrowest, calendar=school.calendar
    ):
        return ShiftedClock(timedelta(0))
    opening = next_allowed(now, zone=school.zone, window=narrowest, calendar=school.calendar).astimezone(school.zone)
    target = opening.replace(hour=max(opening.hour, 10), minute=0, second=0, microsecond=0)
    return ShiftedClock(target - now)


def _fresh_database(data_dir: Path) -> Path:
    """The demo database's path, with any database of an earlier run removed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for leftover in data_dir.glob("zvonok.db*"):
        leftover.unlink()
    return (data_dir / "zvonok.db").resolve()


def _seed_emulators(config: Config, max_api: MaxEmulator, vk_api: VkEmulator) -> None:
    """Give the emulators the demo school's bots and chats, with the bot an admin everywhere."""
    for school in config.schools.values():
        max_token = config.tokens["max"].get(school.id)
        vk_token = config.tokens["vk"].get(school.id)
        if max_token:
            max_api.add_bot(max_token, f"Бот: {school.name}")
        if vk_token:
            vk_api.add_community(vk_token, VK_GROUP_ID)
        for chat in school.chats():
            title = f"{school.name}: {chat.kind.label}"
            if chat.channel == "max" and max_token:
                max_api.add_chat(int(chat.address), title, token=max_token)
            elif chat.channel == "vk" and vk_token:
                vk_api.add_chat(int(chat.address) - 2_000_000_000, title, group_id=VK_GROUP_ID)


def _check_received(
    config: Config, smtp: SmtpEmulator, max_api: MaxEmulator, vk_api: VkEmulator, stream: TextIO
) -> bool:
    """Compare what arrived with what the roster file says should have arrived."""
    school = next(iter(config.schools.values()))
    roster = read_roster(config.rosters[school.id], school)
    expected_mail: Counter[str] = Counter()
    expected_chat: Counter[tuple[str, str]] = Counter()
    for request in demo_requests(school.id):
        classes = request.audience.class_names(school)
        addresses = set()
        for entry in roster.entries:
            has_chat = ChatKind.PARENTS in school.classes[entry.class_name].chats
            if entry.class_name in classes and entry.email and not (entry.in_chat and has_chat):
                addresses.add(entry.email)
        expected_mail.update(addresses)
        for name in classes:
            for kind, chat in school.classes[name].chats.items():
                if Group(kind.value) in request.audience.groups:
                    expected_chat[(chat.channel, chat.address)] += 1
    received_mail = Counter(address for mail in smtp.messages for address in mail.recipients)
    received_chat: Counter[tuple[str, str]] = Counter()
    for channel, address in expected_chat:
        if channel == "max":
            received_chat[(channel, address)] = len(max_api.messages(int(address)))
        else:
            received_chat[(channel, address)] = len(vk_api.messages(int(address)))
    mail_ok = received_mail == expected_mail
    chat_ok = received_chat == expected_chat
    print("", file=stream)
    print(
        f"Проверка по списку родителей: писем ожидалось {sum(expected_mail.values())} "
        f"({len(expected_mail)} адресов), пришло на SMTP-сервер {sum(received_mail.values())} — "
        + ("совпадает: каждому вне чата ровно одно письмо на объявление." if mail_ok else "НЕ СОВПАДАЕТ."),
        file=stream,
    )
    print(
        f"Сообщений в чатах ожидалось {sum(expected_chat.values())} в {len(expected_chat)} чатах, пришло "
        f"{sum(received_chat.values())} — " + ("совпадает, без дублей." if chat_ok else "НЕ СОВПАДАЕТ."),
        file=stream,
    )
    return mail_ok and chat_ok
