"""`zvonok`: the command line. Messages are Russian; errors are one clear line, never a traceback.

Exit codes: 0 done; 1 failed (e.g. a delivery check of the demo); 2 invalid input or usage; 3 refused by the
school's rules; 4 not found; 70 internal error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from gateway.app import CONSOLE, Gateway, Preview, freeze_startup_objects
from gateway.config import Config, load_config
from gateway.domain import (
    FINAL_STATUSES,
    AnnouncementRequest,
    Audience,
    ChatKind,
    Group,
    Kind,
    School,
    parse_class_name,
    parse_number,
)
from gateway.errors import Conflict, InvalidInput, NotFound, PolicyViolation, Problem, ZvonokError
from gateway.logs import setup_logging
from gateway.reports import render_text
from gateway.roster import read_roster
from gateway.store import unavailable
from gateway.store.base import ClassWindowRow

log = logging.getLogger("zvonok.cli")

WAIT_AHEAD = timedelta(minutes=1)
"""`announce --wait` does not wait for deliveries due later than this (a window, a send time, a long retry)."""

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_INTERNAL = 0, 1, 2, 3, 4, 5, 70

KIND_NAMES = {
    "schedule": Kind.SCHEDULE_CHANGE,
    "расписание": Kind.SCHEDULE_CHANGE,
    "event": Kind.EVENT,
    "мероприятие": Kind.EVENT,
    "force-majeure": Kind.FORCE_MAJEURE,
    "срочно": Kind.FORCE_MAJEURE,
    "general": Kind.GENERAL,
    "объявление": Kind.GENERAL,
}
GROUP_NAMES = {
    "parents": Group.PARENTS,
    "родители": Group.PARENTS,
    "students": Group.STUDENTS,
    "ученики": Group.STUDENTS,
    "teachers": Group.TEACHERS,
    "учителя": Group.TEACHERS,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"zvonok: ошибка в параметрах: {message}", file=sys.stderr)
        sys.exit(EXIT_INVALID)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zvonok", description="Zvonok — рассылка объявлений школы в MAX, VK и по e-mail.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="подробный журнал (-vv ещё подробнее)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            type=Path,
            default=os.environ.get("ZVONOK_CONFIG"),
            help="папка конфигурации (по умолчанию $ZVONOK_CONFIG)",
        )

    demo = sub.add_parser("demo", help="демо-школа на эмуляторах MAX/VK и локальном SMTP-сервере")
    demo.add_argument("--once", action="store_true", help="выйти, когда все доставки завершены (для скриптов)")
    demo.add_argument("--data-dir", type=Path, default=Path(".zvonok-demo"), help="куда положить базу демо")
    demo.add_argument("--listen", help="адрес:порт сайта демо (по умолчанию listen из config/demo/zvonok.yaml)")

    check = sub.add_parser("check", help="проверить конфигурацию и списки родителей")
    with_config(check)

    roster = sub.add_parser("roster", help="списки родителей (выгрузка из электронного журнала)")
    roster_sub = roster.add_subparsers(dest="roster_command", required=True, parser_class=_Parser)
    imp = roster_sub.add_parser("import", help="загрузить CSV-выгрузку (заменяет прежний список школы)")
    with_config(imp)
    imp.add_argument("--school", help="id школы (если их несколько)")
    imp.add_argument("file", type=Path, help="CSV: Класс;Ученик;Представитель;E-mail;Телефон;В чате")

    ann = sub.add_parser("announce", help="опубликовать объявление")
    with_config(ann)
    ann.add_argument("--school", help="id школы (если их несколько)")
    ann.add_argument("--author", required=True, help="id сотрудника из конфигурации школы")
    ann.add_argument("--kind", default="general", help="schedule | event | force-majeure | general")
    ann.add_argument("--to", default="parents", help="кому: parents,students,teachers (через запятую)")
    ann.add_argument("--classes", default="", help="классы через запятую, например 7Б,8А")
    ann.add_argument("--parallels", default="", help="параллели через запятую, например 5,6")
    ann.add_argument("--title", required=True, help="заголовок")
    text = ann.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="текст объявления")
    text.add_argument("--text-file", type=Path, help="файл с текстом объявления (UTF-8)")
    ann.add_argument("--at", help="время отправки, ISO 8601 с часовым поясом, например 2026-11-23T08:00+05:00")
    ann.add_argument("--key", default="", help="ключ идемпотентности: повтор с тем же ключом не создаст дубль")
    ann.add_argument("--reason", default="", help="причина форс-мажора (для журнала аудита)")
    ann.add_argument(
        "--via-teachers", action="store_true", help="через классных руководителей: каждый пересылает в свой класс"
    )
    ann.add_argument("--dry-run", action="store_true", help="показать план рассылки и ничего не отправлять")
    ann.add_argument("--wait", action="store_true", help="отправить сразу и показать ход доставки")

    chats = sub.add_parser("chats", help="чаты школы: список, привязка к классу, проверка бота")
    chats_sub = chats.add_subparsers(dest="chats_command", required=True, parser_class=_Parser)
    for name, summary in (
        ("list", "известные чаты и их состояние"),
        ("check", "проверить, может ли бот писать в чаты"),
    ):
        p = chats_sub.add_parser(name, help=summary)
        with_config(p)
        p.add_argument("--school", help="id школы (если их несколько)")
    cmap = chats_sub.add_parser("map", help="привязать зарегистрированный чат к классу")
    with_config(cmap)
    cmap.add_argument("--school", help="id школы (если их несколько)")
    cmap.add_argument("--channel", default="max", help="max | vk")
    cmap.add_argument("--chat", required=True, help="id чата (MAX chat_id или VK peer_id)")
    cmap.add_argument("--class", dest="class_name", default="", help="класс, например 7Б (пусто для чата учителей)")
    cmap.add_argument("--kind", required=True, help="parents | students | teachers")

    alerts = sub.add_parser("alerts", help="открытые предупреждения для администратора")
    with_config(alerts)

    hook = sub.add_parser("webhook", help="вебхук бота MAX (регистрация чатов)")
    hook_sub = hook.add_subparsers(dest="webhook_command", required=True, parser_class=_Parser)
    reg = hook_sub.add_parser("register", help="подписать бота школы на события bot_added/bot_removed")
    with_config(reg)
    reg.add_argument("--school", help="id школы (если их несколько)")
    reg.add_argument(
        "--url", required=True, help="https-адрес, например https://zvonok.school.ru/webhooks/max/school-1"
    )

    tasks = sub.add_parser("tasks", help="задачи пересылки классным руководителям")
    with_config(tasks)
    tasks.add_argument("--teacher", help="только задачи этого классного руководителя (id сотрудника)")
    tasks.add_argument("--school", help="id школы (если их несколько)")
    fwd = sub.add_parser("forward", help="переслать объявление в чаты своего класса")
    with_config(fwd)
    fwd.add_argument("task", type=int, help="номер задачи")
    fwd.add_argument("--teacher", required=True, help="кто пересылает (id сотрудника)")
    fwd.add_argument("--note", default="", help="комментарий классного руководителя к объявлению")
    audit = sub.add_parser("audit", help="журнал аудита: кто и почему отправлял вне правил")
    with_config(audit)
    audit.add_argument("--school", help="id школы (если их несколько)")

    rep = sub.add_parser("report", help="отчёт о доставке объявления")
    with_config(rep)
    rep.add_argument("id", type=int, help="номер объявления")

    serve = sub.add_parser("serve", help="работать как служба: рассылать всё, что пора отправить")
    with_config(serve)

    staff = sub.add_parser("staff", help="сотрудники: пароль для входа на сайт, токены API для интеграций")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True, parser_class=_Parser)
    pwd = staff_sub.add_parser("password", help="задать пароль (спросит дважды; без терминала — строка из stdin)")
    tok = staff_sub.add_parser("token", help="выдать токен API (показывается один раз)")
    tok.add_argument("--label", default="", help="для чего токен (например, «электронный журнал»)")
    for p in (pwd, tok):
        with_config(p)
        p.add_argument("--school", help="id школы (если их несколько)")
        p.add_argument("id", help="id сотрудника из конфигурации школы")
    toks = staff_sub.add_parser("tokens", help="токены API школы: чьи, для чего, действуют ли (сами токены не видны)")
    rev = staff_sub.add_parser("revoke", help="отозвать токен API: он перестаёт действовать сразу")
    rev.add_argument("id", type=int, help="номер токена (из zvonok staff tokens)")
    for p in (toks, rev):
        with_config(p)
        p.add_argument("--school", help="id школы (если их несколько)")

    cw = sub.add_parser(
        "class-window", help="окно рассылки в чатах класса: показать, сузить (например 09:00-18:00) или сбросить"
    )
    with_config(cw)
    cw.add_argument("--school", help="id школы (если их несколько)")
    cw.add_argument("--class", dest="class_name", default="", help="класс, например 7Б (без него — все классы)")
    cw.add_argument("window", nargs="?", default="", help="новое окно ЧЧ:ММ-ЧЧ:ММ, например 09:00-18:00")
    cw.add_argument("--reset", action="store_true", help="сбросить: снова действует окно из файла школы")
    cw.add_argument("--by", default="", help="кто меняет (id сотрудника; для журнала аудита и проверки прав)")

    data = sub.add_parser("data", help="персональные данные: удаление по истечении срока хранения (retention)")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    purge = data_sub.add_parser(
        "purge", help="удалить персональные данные старше срока хранения (это же служба делает раз в сутки)"
    )
    with_config(purge)
    purge.add_argument("--dry-run", action="store_true", help="только показать, что будет удалено, ничего не меняя")

    worker = sub.add_parser(
        "worker", help="рассылка и периодические задачи без HTTP (процессов может быть несколько, с PostgreSQL)"
    )
    with_config(worker)
    store = sub.add_parser("store", help="база данных: перенос из SQLite в PostgreSQL")
    store_sub = store.add_subparsers(dest="store_command", required=True, parser_class=_Parser)
    copy = store_sub.add_parser("copy", help="перенести все данные из SQLite в пустую базу PostgreSQL")
    copy.add_argument("--from", dest="source", required=True, help="откуда: sqlite:///путь/к/zvonok.db")
    copy.add_argument("--to", dest="target", required=True, help="куда: postgresql://пользователь@сервер:5432/база")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        print("\nпрервано", file=sys.stderr)
        return 130
    except InvalidInput as exc:
        print("Ошибки во входных данных (ничего не изменено):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  • {problem}", file=sys.stderr)
        return EXIT_INVALID
    except PolicyViolation as exc:
        print(f"Отказано: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except NotFound as exc:
        print(f"Не найдено: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except Conflict as exc:
        print(f"Конфликт: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ZvonokError as exc:
        print(f"Ошибка: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        reason = unavailable(exc)
        if reason is not None:
            print(f"База данных недоступна: {reason}. Ничего не изменено.", file=sys.stderr)
            return EXIT_UNAVAILABLE
        print(f"Внутренняя ошибка: {type(exc).__name__}. Запустите с -vv, чтобы увидеть подробности.", file=sys.stderr)
        return EXIT_INTERNAL


async def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from gateway.demo import run_demo

        return await run_demo(once=args.once, data_dir=args.data_dir, listen=args.listen)
    if args.command == "store":
        return await _store_copy(args.source, args.target)
    config = _config(args.config)
    setup_logging(args.verbose, _secrets(config))
    if args.command == "check":
        return _check(config)
    gateway = await Gateway.open(config)
    try:
        if args.command == "roster":
            school = config.school(args.school)
            roster = read_roster(args.file, school)
            _print_warnings(roster.warnings)
            change = await gateway.import_roster(school.id, roster)
            print(
                f"Список школы «{school.name}» загружен: новых {change.added}, изменённых {change.updated}, "
                f"выбывших {change.left}, без изменений {change.unchanged}."
            )
            if change.left:
                print("Выбывших родителей удалите из чатов классов (так требует регламент).")
            return EXIT_OK
        if args.command == "announce":
            return await _announce(gateway, args)
        if args.command == "report":
            print(render_text(await gateway.report(args.id)))
            return EXIT_OK
        if args.command == "chats":
            return await _chats(gateway, args)
        if args.command == "tasks":
            return await _tasks(gateway, args)
        if args.command == "forward":
            task = await gateway.forward(args.task, args.teacher, args.note)
            late = task.done_at is not None and task.done_at > task.deadline
            print(f"Объявление переслано в чаты класса {task.class_name}" + (" (после срока)." if late else "."))
            return EXIT_OK
        if args.command == "audit":
            school = gateway.school(args.school)
            rows = await gateway.store.audit_log(school.id)
            for row in rows:
                ref = f" объявление № {row.announcement_id}" if row.announcement_id else ""
                actor = school.staff[row.actor].name if row.actor in school.staff else row.actor
                print(f"{row.at.astimezone(school.zone):%d.%m.%Y %H:%M} {actor}{ref}: {row.details}")
            if not rows:
                print("Журнал аудита пуст.")
            return EXIT_OK
        if args.command == "alerts":
            found = await gateway.store.alerts()
            for alert in found:
                local = alert.created_at.astimezone(gateway.config.school(alert.school_id).zone)
                print(f"{local:%d.%m.%Y %H:%M} [{alert.school_id}] {alert.message}")
            if not found:
                print("Открытых предупреждений нет.")
            return EXIT_OK
        if args.command == "webhook":
            return await _register_webhook(gateway, args)
        if args.command == "serve":
            return await _serve(gateway)
        if args.command == "staff":
            return await _staff(gateway, args)
        if args.command == "class-window":
            return await _class_window(gateway, args)
        if args.command == "worker":
            return await _worker(gateway)
        if args.command == "data":
            return await _purge(gateway, dry_run=args.dry_run)
    finally:
        await gateway.close()
    return EXIT_INVALID


def _config(path: Path | None) -> Config:
    if path is None:
        raise ZvonokError("не указана папка конфигурации: --config ПАПКА или переменная ZVONOK_CONFIG")
    if not path.is_dir():
        raise NotFound(f"папка конфигурации {path} не существует")
    config = load_config(path)
    db = os.environ.get("ZVONOK_DB")
    if db:
        from dataclasses import replace

        config = replace(config, settings=replace(config.settings, database=db))
    return config


def _secrets(config: Config) -> list[str]:
    found = [config.settings.email.password, config.settings.secret]
    for tokens in config.tokens.values():
        found.extend(tokens.values())
    return found


def _check(config: Config) -> int:
    problems: list[Problem] = []
    for school in config.schools.values():
        print(f"Школа «{school.name}» ({school.id}): классов {len(school.classes)}, чатов {len(school.chats())}.")
        path = config.rosters.get(school.id)
        if path is None:
            continue
        try:
            roster = read_roster(path, school)
        except InvalidInput as exc:
            problems.extend(exc.problems)
            continue
        _print_warnings(roster.warnings)
        print(f"  список {path.name}: строк {len(roster.entries)}, представителей {len(roster.guardians(school.id))}.")
    if problems:
        raise InvalidInput(problems)
    print("Конфигурация в порядке.")
    return EXIT_OK


def _print_warnings(warnings: list[Problem]) -> None:
    for warning in warnings:
        print(f"  предупреждение: {warning}")


def parse_request(args: argparse.Namespace, school_id: str) -> AnnouncementRequest:
    problems: list[Problem] = []

    def bad(field: str, message: str) -> None:
        problems.append(Problem("параметры", message, None, field))

    kind = KIND_NAMES.get(args.kind.strip().lower())
    if kind is None:
        bad("--kind", f"вид «{args.kind}» неизвестен; допустимы: schedule, event, force-majeure, general")
    groups = set()
    for raw in filter(None, (g.strip().lower() for g in args.to.split(","))):
        if raw in GROUP_NAMES:
            groups.add(GROUP_NAMES[raw])
        else:
            bad("--to", f"«{raw}»: ожидается parents, students или teachers")
    classes = set()
    for raw in filter(None, (c.strip() for c in args.classes.split(","))):
        parsed = parse_class_name(raw)
        if parsed is None:
            bad("--classes", f"«{raw}» не похоже на класс")
        else:
            classes.add(parsed[0])
    parallels = set()
    for raw in filter(None, (p.strip() for p in args.parallels.split(","))):
        number = parse_number(raw)
        if number is not None and 1 <= number <= 11:
            parallels.add(number)
        else:
            bad("--parallels", f"«{raw}»: ожидается номер параллели от 1 до 11")
    text = args.text
    if args.text_file is not None:
        try:
            text = args.text_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            bad("--text-file", f"файл не читается как текст UTF-8: {exc}")
            text = ""
    send_at = None
    if args.at:
        try:
            send_at = datetime.fromisoformat(args.at)
            if send_at.tzinfo is None:
                bad("--at", "укажите часовой пояс, например 2026-11-23T08:00+05:00")
        except ValueError:
            bad("--at", f"«{args.at}» — не дата и время ISO 8601")
    if problems or kind is None:
        raise InvalidInput(problems)
    return AnnouncementRequest(
        school_id=school_id,
        author=args.author,
        kind=kind,
        title=args.title.strip(),
        text=text or "",
        audience=Audience(frozenset(groups), frozenset(parallels), frozenset(classes)),
        send_at=send_at,
        idempotency_key=args.key,
        reason=args.reason,
        via_class_teachers=args.via_teachers,
    )


async def _announce(gateway: Gateway, args: argparse.Namespace) -> int:
    school = gateway.school(args.school)
    request = parse_request(args, school.id)
    if args.dry_run:
        print(describe_preview(await gateway.preview(request, check_chats=True), school))
        return EXIT_OK
    posted = await gateway.post(request, check_chats=True)
    verb = "создано" if posted.created else "уже было создано с этим ключом"
    print(f"Объявление № {posted.id} {verb}. {describe_preview(posted.preview, school)}")
    if args.wait:
        later = await deliver(gateway, [posted.id], sys.stdout, until_waiting=True)
        print(render_text(await gateway.report(posted.id)))
        if later is not None:
            print(
                f"Остальные доставки ждут: первые уйдут {later.astimezone(school.zone):%d.%m.%Y в %H:%M} "
                "(их отправит работающий zvonok serve или zvonok worker)."
            )
    return EXIT_OK


def describe_preview(preview: Preview, school: School) -> str:
    planned = preview.plan
    chats = len(planned.deliveries) - planned.count("email")
    lines = [f"План: чатов {chats}, писем {planned.count('email')}, без связи {len(planned.unreachable())}."]
    if planned.gaps:
        lines[0] += f" Классов без нужного чата: {len({(g.class_name, g.chat_kind) for g in planned.gaps})}."
    if planned.tasks:
        lines.append(f"Пересылка через классных руководителей: задач {len(planned.tasks)}.")
    held = [d.not_before for d in planned.deliveries if d.held]
    if held:
        lines.append(f"Чаты получат его в начале окна рассылки: {min(held).astimezone(school.zone):%d.%m.%Y %H:%M}.")
    if preview.estimate.last is not None:
        lines.append(
            f"Последний получатель — примерно {preview.estimate.last.astimezone(school.zone):%d.%m.%Y %H:%M:%S}."
        )
    lines.extend(f"Внимание: {w}." for w in preview.estimate.warnings)
    for finding in preview.findings:
        prefix = "Запрещено" if finding.blocking else "Замечание"
        lines.append(f"{prefix} ({finding.rule.label}): {finding.message}")
    if preview.audit:
        lines.append(f"Будет записано в журнал аудита: {preview.audit}.")
    return "\n".join(lines)


async def _tasks(gateway: Gateway, args: argparse.Namespace) -> int:
    school = gateway.school(args.school)
    rows = await gateway.store.tasks(school_id=school.id, teacher=args.teacher)
    labels = {"open": "ждёт пересылки", "forwarded": "переслано", "auto_forwarded": "переслано автоматически"}
    labels["escalated"] = "срок истёк, передано завучу"
    for task in rows:
        record = await gateway.announcement(task.announcement_id)
        deadline = task.deadline.astimezone(school.zone)
        print(
            f"№ {task.id}: объявление № {record.id} «{record.title}» → {task.class_name} "
            f"({', '.join(task.groups)}), срок {deadline:%d.%m %H:%M}: {labels.get(task.status, task.status)}"
        )
    if not rows:
        print("Задач пересылки нет.")
    return EXIT_OK


async def deliver(gateway: Gateway, ids: Sequence[int], out: TextIO, *, until_waiting: bool = False) -> datetime | None:
    """Run the dispatcher until every delivery of `ids` is final, drawing a progress bar. With `until_waiting`,
    stop as soon as everything not final waits for a later moment (a window opening, a send time, a retry more
    than `WAIT_AHEAD` away), and return the earliest of them; None when everything is final."""
    stop = asyncio.Event()
    runner = asyncio.create_task(gateway.dispatcher.run(stop))
    later: datetime | None = None
    try:
        while True:
            done = total = 0
            waiting: list[datetime] = []
            for announcement_id in ids:
                counts = await gateway.store.progress(announcement_id)
                total += sum(counts.values())
                done += sum(n for s, n in counts.items() if s in FINAL_STATUSES)
                if until_waiting and done < total:
                    horizon = gateway.clock.now() + WAIT_AHEAD
                    rows = await gateway.store.deliveries(announcement_id)
                    waiting += [r.not_before for r in rows if r.status not in FINAL_STATUSES and r.not_before > horizon]
            if waiting and len(waiting) == total - done:
                later = min(waiting)
            _bar(out, done, total, final=later is not None)
            if done == total or later is not None:
                break
            if runner.done():
                runner.result()
                raise ZvonokError("рассылка остановилась раньше времени")
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await runner
    out.write("\n")
    return later


def _bar(out: TextIO, done: int, total: int, *, final: bool = False) -> None:
    width = 30
    filled = width if total == 0 else width * done // total
    line = f"Доставка: [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
    if out.isatty():
        out.write("\r" + line)
    elif done == total or final:
        out.write(line)
    out.flush()


async def _chats(gateway: Gateway, args: argparse.Namespace) -> int:
    school = gateway.school(args.school)
    if args.chats_command == "map":
        kinds = {k.value for k in ChatKind}
        if args.kind not in kinds:
            raise InvalidInput(
                [Problem("параметры", f"«{args.kind}»: ожидается parents, students или teachers", None, "--kind")]
            )
        class_name = ""
        if args.kind != ChatKind.TEACHERS.value:
            parsed = parse_class_name(args.class_name)
            if parsed is None or parsed[0] not in school.classes:
                raise InvalidInput([Problem("параметры", f"класса «{args.class_name}» нет в школе", None, "--class")])
            class_name = parsed[0]
        await gateway.store.map_chat(school.id, args.channel, args.chat, class_name, args.kind, gateway.clock.now())
        print(f"Чат {args.channel.upper()} {args.chat} привязан: {class_name or 'школа'}, {ChatKind(args.kind).label}.")
        return EXIT_OK
    if args.chats_command == "check":
        results = await gateway.check_chats(school.id)
        broken = 0
        for r in results:
            where = (
                f"{r.class_name or 'школа'}, {r.binding.kind.label}, {r.binding.channel.upper()} {r.binding.address}"
            )
            if r.health is None:
                print(f"  ?  {where}: {r.error}")
            else:
                broken += not r.health.ok
                print(f"  {'ок' if r.health.ok else 'НЕТ'}  {where}: {r.health.explanation}")
        print(f"Проверено чатов: {len(results)}, неисправных: {broken}.")
        return EXIT_OK if broken == 0 else EXIT_FAILED
    view = await gateway.school_view(school.id)
    in_use = {(c.channel, c.address) for c in view.chats()}
    rows = await gateway.store.chats(school.id)
    for row in rows:
        mapped = f"{row.class_name or 'школа'}, {ChatKind(row.kind).label}" if row.kind else "не привязан"
        state = "работает" if row.status == "active" else f"НЕДОСТУПЕН: {row.status_reason}"
        note = "" if (row.channel, row.address) in in_use or not row.kind else " (в конфигурации указан другой чат)"
        title = f" «{row.title}»" if row.title else ""
        print(f"{row.channel.upper()} {row.address}{title}: {mapped}{note} — {state}")
    if not rows:
        print("Чатов пока нет.")
    return EXIT_OK


async def _register_webhook(gateway: Gateway, args: argparse.Namespace) -> int:
    school = gateway.school(args.school)
    secret = gateway.config.webhook_secrets.get(school.id)
    if not secret:
        raise ZvonokError(f"у школы «{school.id}» не задан секрет вебхука (max.webhook_secret_env)")
    if not args.url.startswith("https://"):
        raise InvalidInput([Problem("параметры", "MAX вызывает только https-адреса на порту 443", None, "--url")])
    channel = gateway.channels.get("max")
    from adapters.max import MaxChannel

    if not isinstance(channel, MaxChannel):
        raise ZvonokError("у школы нет чатов MAX")
    await channel.register_webhook(school.id, args.url, secret)
    print(f"Бот школы «{school.name}» подписан на события по адресу {args.url}.")
    return EXIT_OK


async def _serve(gateway: Gateway) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from aiohttp import web

    from gateway.web.app import make_app
    from gateway.web.app import runner as app_runner
    from schedules.jobs import start_scheduler

    runner = app_runner(make_app(gateway))  # the staff pages, the API, the parents' pages and the MAX webhook
    await runner.setup()
    host, _, port = gateway.config.settings.listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    print(
        f"Zvonok работает: рассылка по мере наступления сроков, страницы, API и вебхуки на http://{host}:{port}. "
        "Ctrl+C — остановить."
    )
    sys.stdout.flush()
    scheduler = start_scheduler(gateway)
    freeze_startup_objects()
    try:
        await gateway.dispatcher.run(stop)
    finally:
        scheduler.shutdown(wait=False)
        await runner.cleanup()
    return EXIT_OK


async def _staff(gateway: Gateway, args: argparse.Namespace) -> int:
    from gateway.web import auth

    if args.staff_command == "password":
        if sys.stdin.isatty():
            import getpass

            password = getpass.getpass("Новый пароль: ")
            if getpass.getpass("Ещё раз: ") != password:
                raise InvalidInput([Problem("пароль", "пароли не совпадают")])
        else:
            password = sys.stdin.readline().rstrip("\r\n")
        member = await auth.set_password(gateway, args.school, args.id, password)
        print(f"Пароль сотрудника «{member.name}» ({member.id}) задан; его прежние сессии завершены.")
        return EXIT_OK
    if args.staff_command == "tokens":
        school = gateway.school(args.school)
        rows = await gateway.store.api_tokens(school.id)
        for row in rows:
            owner = school.staff.get(row.staff_id)
            who = f"{owner.name} ({row.staff_id})" if owner else row.staff_id
            label = f" «{row.label}»" if row.label else ""
            state = (
                "действует"
                if row.revoked_at is None
                else f"отозван {row.revoked_at.astimezone(school.zone):%d.%m.%Y %H:%M}"
            )
            print(f"№ {row.id}{label} — {who}, выдан {row.created_at.astimezone(school.zone):%d.%m.%Y %H:%M}: {state}")
        if not rows:
            print("Токенов API нет.")
        return EXIT_OK
    if args.staff_command == "revoke":
        school = gateway.school(args.school)
        row, revoked = await auth.revoke_token(gateway, school, args.id, CONSOLE)
        owner = school.staff.get(row.staff_id)
        what = f"Токен API № {row.id}" + (f" «{row.label}»" if row.label else "")
        what += f" ({owner.name if owner else row.staff_id})"
        print(f"{what} отозван: он больше не действует." if revoked else f"{what} уже был отозван.")
        return EXIT_OK
    member, token = await auth.create_token(gateway, args.school, args.id, args.label)
    print(f"Токен API для «{member.name}» ({member.role.label}); сохраните его, он показан один раз:")
    print(token)
    return EXIT_OK


_WINDOW_ARG = re.compile(r"^\s*([^-–—\s]+)\s*[-–—]\s*([^-–—\s]+)\s*$")


async def _class_window(gateway: Gateway, args: argparse.Namespace) -> int:
    """Show, narrow or reset class chat windows; a running service applies a change within a minute."""
    school = gateway.school(args.school)
    if args.by and args.by not in school.staff:
        raise NotFound(f"сотрудник «{args.by}» не описан в школе «{school.name}»")
    actor = args.by or CONSOLE
    if not args.class_name:
        if args.window or args.reset:
            raise InvalidInput([Problem("параметры", "укажите класс: --class 7Б", None, "--class")])
        rows = await gateway.class_windows(school.id)
        view = gateway.current_school(school.id)
        print(f"Окно школы «{school.name}»: {school.window} ({school.zone}).")
        for name in school.classes:
            print(f"  {name}: {view.window_for(name)} — {_window_source(school, name, rows.get(name))}")
        return EXIT_OK
    name = gateway.find_class(school, args.class_name)
    if args.by and not school.may_set_class_window(args.by, name):
        raise PolicyViolation(
            f"окно класса {name} меняет его классный руководитель, администрация школы или администратор"
        )
    if args.reset == bool(args.window):
        raise InvalidInput(
            [Problem("параметры", "укажите новое окно (например 09:00-18:00) или --reset, одно из двух", None, "окно")]
        )
    if args.reset:
        view, removed = await gateway.reset_class_window(school.id, name, actor)
        if removed:
            print(f"Окно рассылки чатов класса {name} сброшено: действует {view.window_for(name)} (из файла школы).")
        else:
            print(f"У класса {name} не было заданного окна: действует {view.window_for(name)}.")
    else:
        m = _WINDOW_ARG.match(args.window)
        if m is None:
            raise InvalidInput(
                [Problem("параметры", f"«{args.window}»: ожидается ЧЧ:ММ-ЧЧ:ММ, например 09:00-18:00", None, "окно")]
            )
        view = await gateway.set_class_window(school.id, name, m.group(1), m.group(2), actor)
        print(f"Окно рассылки чатов класса {name}: {view.window_for(name)}; записано в журнал аудита.")
    print("Работающая служба (zvonok serve, zvonok worker) применит изменение в течение минуты.")
    return EXIT_OK


def _window_source(school: School, name: str, row: ClassWindowRow | None) -> str:
    if row is not None and school.window.contains(row.window):
        setter = school.staff.get(row.set_by)
        return f"задано ({setter.name if setter else row.set_by}, {row.set_at.astimezone(school.zone):%d.%m.%Y %H:%M})"
    if school.classes[name].window is not None:
        return "из файла школы"
    return "окно школы"


async def _purge(gateway: Gateway, *, dry_run: bool) -> int:
    """Remove (or, dry, show) the personal data past the retention period; the audit log records a removal."""
    days = gateway.config.settings.retention.days
    cutoff, purged = await gateway.purge_personal_data(dry_run=dry_run)
    print(
        f"Срок хранения персональных данных: {days} дн. (retention.days); "
        f"граница — {cutoff.astimezone(UTC):%d.%m.%Y %H:%M} UTC."
    )
    if not purged:
        print("Удалять нечего: персональных данных старше срока хранения нет.")
        return EXIT_OK
    will = "будут удалены" if dry_run else "удалены"
    for p in purged:
        school = gateway.config.schools.get(p.school_id)
        name = f"«{school.name}» ({p.school_id})" if school else p.school_id
        print(
            f"Школа {name}: {will} данные получателей объявлений: {p.announcements} "
            f"(адресов в письмах {p.letters}, строк отчётов {p.people}); "
            f"выбывших представителей: {p.former_guardians}."
        )
    if dry_run:
        print("Это проверка: ничего не изменено. Без --dry-run данные будут удалены и это запишется в журнал аудита.")
    else:
        print("Удаление записано в журнал аудита каждой школы (zvonok audit). Отчёты сохранили числа, но не имена.")
    return EXIT_OK


async def _worker(gateway: Gateway) -> int:
    """The dispatcher and the periodic jobs, without HTTP: one of several processes sharing a PostgreSQL store."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from schedules.jobs import start_scheduler

    scheduler = start_scheduler(gateway)
    backend = "PostgreSQL" if gateway.store.shares_rate_limits else "SQLite"
    print(f"Zvonok: обработчик рассылки работает (база {backend}). Ctrl+C — остановить.")
    sys.stdout.flush()
    freeze_startup_objects()
    try:
        await gateway.dispatcher.run(stop)
    finally:
        scheduler.shutdown(wait=False)
    return EXIT_OK


async def _store_copy(source: str, target: str) -> int:
    from gateway.store.copy import copy_store

    copied = await copy_store(source, target, base_dir=Path.cwd())
    total = sum(copied.values())
    print(f"Перенесено в PostgreSQL: строк {total} из {len(copied)} таблиц.")
    for table, count in copied.items():
        if count:
            print(f"  {table}: {count}")
    print(
        "Идентификатор установки сохранён. Укажите новую базу в zvonok.yaml (database:) или в ZVONOK_DB, "
        "запустите службы и больше не запускайте их на прежнем файле SQLite."
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
