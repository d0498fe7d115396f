"""The `zvonok` command line: exit codes, Russian messages, no tracebacks, nothing changed on bad input."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.emulators.smtp import SmtpEmulator
from gateway.cli import main
from gateway.store.sqlite import SqliteStore
from tests.data import ROSTER_CSV, SCHOOL_YAML, ZVONOK_YAML, write_config
from tests.fleet import fill_disk


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    settings = ZVONOK_YAML + f"database: sqlite:///{tmp_path / 'z.db'}\n"
    return write_config(tmp_path / "config", settings=settings, roster=ROSTER_CSV)


def guardian_names(db: Path) -> set[str]:
    async def read() -> set[str]:
        store = await SqliteStore.open(db)
        try:
            return {g.name for g in await store.guardians("s1")}
        finally:
            await store.close()

    return asyncio.run(read())


def test_check_passes_on_a_good_config(capsys: pytest.CaptureFixture[str], cfg: Path) -> None:
    code, out, _ = run(capsys, "check", "--config", str(cfg))
    assert code == 0
    assert "Школа «Школа № 1» (s1): классов 3" in out
    assert "список s1.csv: строк 6, представителей 5" in out
    assert "Конфигурация в порядке." in out


def test_check_names_the_telegram_ban(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    school = SCHOOL_YAML.replace(
        "students: {channel: max, chat_id: -502}", "students: {channel: telegram, chat_id: -502}"
    )
    root = write_config(tmp_path / "c", school=school)
    code, _, err = run(capsys, "check", "--config", str(root))
    assert code == 2
    assert "Ошибки во входных данных (ничего не изменено):" in err
    assert "строка 18, поле «classes[1].chats.students.channel»: канал «Telegram» запрещён" in err
    assert "149-ФЗ" in err


def test_check_reports_roster_problems(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = write_config(tmp_path / "c", roster=ROSTER_CSV + "9Я;Ученик;Родитель;x@y.ru;;да\n")
    code, _, err = run(capsys, "check", "--config", str(root))
    assert code == 2
    assert "s1.csv, строка 8, поле «Класс»: класса 9Я нет в описании школы «s1»" in err


def test_roster_import_is_all_or_nothing(capsys: pytest.CaptureFixture[str], cfg: Path, tmp_path: Path) -> None:
    good = cfg / "rosters" / "s1.csv"
    code, out, _ = run(capsys, "roster", "import", "--config", str(cfg), str(good))
    assert code == 0
    assert "новых 5, изменённых 0, выбывших 0" in out
    before = guardian_names(tmp_path / "z.db")
    bad = tmp_path / "bad.csv"
    # one good new row, one good changed row, and one bad row: nothing of it may land
    bad.write_text(
        ROSTER_CSV.replace("Петрова Анна", "Петрова Анна Ивановна")
        + "7Б;Новый;Новая Мама;new@x.ru;;да\n5А;;Без ученика;;;нет\n",
        encoding="utf-8",
    )
    code, _, err = run(capsys, "roster", "import", "--config", str(cfg), str(bad))
    assert code == 2
    assert "строка 9, поле «Ученик»: не указан ученик" in err
    assert guardian_names(tmp_path / "z.db") == before


def test_announce_dry_run_commits_nothing(capsys: pytest.CaptureFixture[str], cfg: Path, tmp_path: Path) -> None:
    run(capsys, "roster", "import", "--config", str(cfg), str(cfg / "rosters" / "s1.csv"))
    code, out, _ = run(
        capsys,
        "announce",
        "--config",
        str(cfg),
        "--author",
        "dep",
        "--to",
        "parents",
        "--title",
        "Т",
        "--text",
        "Текст",
        "--dry-run",
    )
    assert code == 0
    assert "План: чатов 2, писем 2, без связи 1. Классов без нужного чата: 1." in out
    code, _, err = run(capsys, "report", "--config", str(cfg), "1")
    assert code == 4
    assert "объявление № 1 не найдено" in err


def test_announce_then_report(capsys: pytest.CaptureFixture[str], cfg: Path) -> None:
    run(capsys, "roster", "import", "--config", str(cfg), str(cfg / "rosters" / "s1.csv"))
    args = ["announce", "--config", str(cfg), "--author", "dep", "--kind", "schedule", "--to", "parents,students"]
    args += ["--parallels", "5", "--title", "Уроки сокращены", "--text", "Завтра по 30 минут.", "--key", "k1"]
    code, out, _ = run(capsys, *args)
    assert code == 0
    assert out.startswith("Объявление № 1 создано.")
    code, out, _ = run(capsys, *args)
    assert "Объявление № 1 уже было создано с этим ключом." in out
    code, out, _ = run(capsys, "report", "--config", str(cfg), "1")
    assert code == 0
    assert "Объявление № 1 · Изменение расписания · «Уроки сокращены»" in out
    assert "Класс 5А (кл. рук. Классова Вера)" in out
    assert "чат родителей MAX: ожидает отправки" in out
    assert "чат учеников: у класса нет такого чата" in out  # 5Б has no students' chat
    assert "Сидоров Олег  +79000000003 (ученик: Сидоров Ваня) — нет в чате родителей; нет e-mail" in out


async def test_announce_wait_sends_and_reports_and_does_not_wait_for_later(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with SmtpEmulator() as smtp:
        db = f"database: sqlite:///{tmp_path / 'z.db'}\n"
        cfg = write_config(
            tmp_path / "config", settings=ZVONOK_YAML.replace("2525", str(smtp.port)) + db, roster=ROSTER_CSV
        )
        base = ["announce", "--config", str(cfg), "--author", "dep", "--to", "parents", "--classes", "7Б", "--wait"]

        def cli(*args: str) -> tuple[int, str, str]:  # the command runs its own event loop: in a thread here
            return run(capsys, *args)

        roster = str(cfg / "rosters" / "s1.csv")
        assert (await asyncio.to_thread(cli, "roster", "import", "--config", str(cfg), roster))[0] == 0
        # 7Б has no chats: its parent is e-mailed at once, and --wait shows it done and prints the report
        code, out, _ = await asyncio.to_thread(cli, *base, "--title", "Собрание", "--text", "В среду.")
        assert code == 0, out
        assert "Доставка: [##############################] 1/1" in out and "Класс 7Б" in out
        assert [m.recipients for m in smtp.messages] == [("irina@mail.test",)]
        # to be sent in three days at 10:00: nothing is due now, and --wait says when it starts, not waiting days
        day = (datetime.now(UTC) + timedelta(days=3)).astimezone(ZoneInfo("Asia/Yekaterinburg")).date()
        later = [*base, "--title", "Ярмарка", "--text", "В субботу.", "--at", f"{day} 10:00+05:00"]
        code, out, _ = await asyncio.wait_for(asyncio.to_thread(cli, *later), 60)
        assert code == 0, out
        assert "Доставка: [..............................] 0/1" in out
        assert f"Остальные доставки ждут: первые уйдут {day:%d.%m.%Y} в 10:00" in out
        assert len(smtp.messages) == 1


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (
            ["--author", "kt5a", "--classes", "5Б"],
            3,
            "классный руководитель публикует только в свой класс (ваши классы: 5А)",
        ),
        (
            ["--author", "kt5a", "--classes", "5А", "--kind", "force-majeure"],
            3,
            "могут только директор и его заместители",
        ),
        (["--author", "it"], 3, "администратор не может публиковать объявления"),
        (["--author", "nobody"], 3, "сотрудник «nobody» не найден"),
        (["--author", "dep", "--classes", "9Я"], 2, "класса 9Я нет в школе"),
        (["--author", "dep", "--to", "соседи"], 2, "«соседи»: ожидается parents, students или teachers"),
        (["--author", "dep", "--at", "2026-11-23 08:00"], 2, "укажите часовой пояс"),
        (["--author", "dep", "--kind", "спам"], 2, "вид «спам» неизвестен"),
    ],
    ids=[
        "other class",
        "teacher force majeure",
        "admin",
        "unknown author",
        "unknown class",
        "bad group",
        "naive time",
        "bad kind",
    ],
)
def test_announce_refusals(
    capsys: pytest.CaptureFixture[str], cfg: Path, args: list[str], code: int, fragment: str
) -> None:
    got, _, err = run(capsys, "announce", "--config", str(cfg), "--title", "Т", "--text", "Текст", *args)
    assert got == code
    assert fragment in err


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["announce"])
    assert caught.value.code == 2
    assert "ошибка в параметрах" in capsys.readouterr().err
    code, _, err = run(capsys, "check")
    assert code == 1
    assert "не указана папка конфигурации" in err
    code, _, err = run(capsys, "check", "--config", str(tmp_path / "missing"))
    assert code == 4


def test_forwarding_and_audit_from_the_command_line(capsys: pytest.CaptureFixture[str], cfg: Path) -> None:
    run(capsys, "roster", "import", "--config", str(cfg), str(cfg / "rosters" / "s1.csv"))
    base = ["announce", "--config", str(cfg), "--title", "Собрание", "--text", "В среду в 18:00."]
    code, out, _ = run(capsys, *base, "--author", "dep", "--parallels", "5", "--via-teachers")
    assert code == 0
    assert "Пересылка через классных руководителей: задач 2." in out
    code, out, _ = run(capsys, "tasks", "--config", str(cfg), "--teacher", "kt5a")
    assert code == 0
    assert "№ 1: объявление № 1 «Собрание» → 5А (parents)" in out
    assert "ждёт пересылки" in out
    code, out, _ = run(capsys, "forward", "--config", str(cfg), "1", "--teacher", "kt5a", "--note", "Приходите все.")
    assert (code, out.startswith("Объявление переслано в чаты класса 5А")) == (0, True)
    code, _, err = run(capsys, "forward", "--config", str(cfg), "1", "--teacher", "kt5a")
    assert code == 3
    assert "уже переслано" in err
    code, out, _ = run(capsys, "audit", "--config", str(cfg))
    assert out.strip() == "Журнал аудита пуст."
    code, out, _ = run(capsys, *base, "--author", "dir", "--kind", "force-majeure", "--reason", "прорыв трубы")
    assert code == 0
    assert "Будет записано в журнал аудита: форс-мажор: прорыв трубы;" in out
    code, out, _ = run(capsys, "audit", "--config", str(cfg))
    assert "Директорова Анна объявление № 2: форс-мажор: прорыв трубы;" in out


def store_read(db: Path, what: str) -> object:
    async def read() -> object:
        store = await SqliteStore.open(db)
        try:
            if what == "windows":
                return {r.class_name: (str(r.window), r.set_by) for r in await store.class_windows("s1")}
            if what == "audit":
                return [(a.actor, a.action, a.details) for a in await store.audit_log("s1")]
            return [(t.id, t.staff_id, t.revoked_at is not None) for t in await store.api_tokens("s1")]
        finally:
            await store.close()

    return asyncio.run(read())


def test_class_window_narrows_shows_and_resets(capsys: pytest.CaptureFixture[str], cfg: Path, tmp_path: Path) -> None:
    base = ["class-window", "--config", str(cfg)]
    code, out, _ = run(capsys, *base)
    assert code == 0
    assert "Окно школы «Школа № 1»: 08:00–19:00 (Asia/Yekaterinburg)." in out
    assert "  5А: 08:00–19:00 — окно школы" in out and "  7Б: 09:00–18:00 — из файла школы" in out
    code, out, _ = run(capsys, *base, "--class", "5а", "09:00-18:00", "--by", "kt5a")
    assert code == 0, out
    assert "Окно рассылки чатов класса 5А: 09:00–18:00; записано в журнал аудита." in out
    assert "применит изменение в течение минуты" in out
    assert store_read(tmp_path / "z.db", "windows") == {"5А": ("09:00–18:00", "kt5a")}
    code, out, _ = run(capsys, *base)
    assert re.search(r"  5А: 09:00–18:00 — задано \(Классова Вера, \d\d\.\d\d\.\d{4} \d\d:\d\d\)\n", out), out
    code, out, _ = run(capsys, *base, "--class", "7Б", "10:00 – 17:30")  # on the server, without --by
    assert code == 0
    assert store_read(tmp_path / "z.db", "windows") == {
        "5А": ("09:00–18:00", "kt5a"),
        "7Б": ("10:00–17:30", "командная строка"),
    }
    code, out, _ = run(capsys, *base, "--class", "5А", "--reset", "--by", "dep")
    assert code == 0
    assert "Окно рассылки чатов класса 5А сброшено: действует 08:00–19:00 (из файла школы)." in out
    code, out, _ = run(capsys, *base, "--class", "5А", "--reset")
    assert code == 0 and "У класса 5А не было заданного окна: действует 08:00–19:00." in out
    assert [(actor, action) for actor, action, _ in store_read(tmp_path / "z.db", "audit")] == [  # type: ignore[misc]
        ("dep", "class_window"),
        ("командная строка", "class_window"),
        ("kt5a", "class_window"),
    ]
    code, out, _ = run(capsys, "audit", "--config", str(cfg))
    assert "Классова Вера: окно рассылки чатов класса 5А: 09:00–18:00 (было 08:00–19:00)" in out


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--class", "7Б", "09:00-18:00", "--by", "kt5a"], 3, "окно класса 7Б меняет его классный руководитель"),
        (["--class", "5А", "09:00-18:00", "--by", "t-nobody"], 4, "сотрудник «t-nobody» не описан"),
        (["--class", "5А", "07:00-18:00"], 2, "окно класса 07:00–18:00 должно лежать внутри окна рассылки школы"),
        (["--class", "5А", "18:00-09:00"], 2, "начало окна 18:00 должно быть раньше конца 09:00"),
        (["--class", "5А", "с девяти"], 2, "«с девяти»: ожидается ЧЧ:ММ-ЧЧ:ММ"),
        (["--class", "5А"], 2, "укажите новое окно (например 09:00-18:00) или --reset"),
        (["--class", "5А", "09:00-18:00", "--reset"], 2, "одно из двух"),
        (["09:00-18:00"], 2, "укажите класс: --class 7Б"),
        (["--class", "9Я", "09:00-18:00"], 4, "класса «9Я» нет в школе"),
    ],
    ids=["other class", "unknown staff", "outside", "backwards", "not a window", "nothing", "both", "no class", "9Я"],
)
def test_class_window_refusals(
    capsys: pytest.CaptureFixture[str], cfg: Path, tmp_path: Path, args: list[str], code: int, fragment: str
) -> None:
    got, _, err = run(capsys, "class-window", "--config", str(cfg), *args)
    assert (got, fragment in err) == (code, True), err
    assert store_read(tmp_path / "z.db", "windows") == {}


def test_staff_tokens_lists_without_secrets_and_revoke_ends_one(
    capsys: pytest.CaptureFixture[str], cfg: Path, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "staff", "tokens", "--config", str(cfg))
    assert (code, out.strip()) == (0, "Токенов API нет.")
    tokens = []
    for staff_id, label in (("dep", "журнал"), ("it", "")):
        code, out, _ = run(capsys, "staff", "token", "--config", str(cfg), staff_id, "--label", label)
        assert code == 0
        tokens.append(out.strip().splitlines()[-1])
    code, out, _ = run(capsys, "staff", "tokens", "--config", str(cfg))
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("№ 1 «журнал» — Завучева Ольга (dep), выдан ")
    assert lines[0].endswith(": действует") and lines[1].startswith("№ 2 — Админов Иван (it), выдан ")
    assert all(token not in out for token in tokens) and "zv_" not in out
    code, out, _ = run(capsys, "staff", "revoke", "--config", str(cfg), "1")
    assert (code, out.strip()) == (0, "Токен API № 1 «журнал» (Завучева Ольга) отозван: он больше не действует.")
    code, out, _ = run(capsys, "staff", "revoke", "--config", str(cfg), "1")
    assert (code, out.strip()) == (0, "Токен API № 1 «журнал» (Завучева Ольга) уже был отозван.")
    code, _, err = run(capsys, "staff", "revoke", "--config", str(cfg), "7")
    assert code == 4 and "токен API № 7 не найден" in err
    assert store_read(tmp_path / "z.db", "tokens") == [(1, "dep", True), (2, "it", False)]
    code, out, _ = run(capsys, "staff", "tokens", "--config", str(cfg))
    assert ": отозван " in out.splitlines()[0] and out.splitlines()[1].endswith(": действует")
    [entry] = store_read(tmp_path / "z.db", "audit")  # type: ignore[misc]
    assert entry == ("командная строка", "token_revoke", "отозван токен API № 1 «журнал» сотрудника Завучева Ольга")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A file system of 2 MiB of its own (tmpfs), to fill up; mounting one needs root, as the CI machines are."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a small tmpfs and needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["/usr/bin/umount", "-l", str(folder)], check=False)


def test_announce_on_a_full_disk_says_so_and_exits_5(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small_disk: Path
) -> None:
    settings = ZVONOK_YAML + f"database: sqlite:///{small_disk / 'z.db'}\n"
    cfg = write_config(tmp_path / "config", settings=settings, roster=ROSTER_CSV)
    assert run(capsys, "roster", "import", "--config", str(cfg), str(cfg / "rosters" / "s1.csv"))[0] == 0
    args = ["announce", "--config", str(cfg), "--author", "dep", "--to", "parents", "--title", "Уроки сокращены"]
    args += ["--text", "Завтра по 30 минут.", "--key", "k1"]
    filler = fill_disk(small_disk)
    code, out, err = run(capsys, *args)
    assert code == 5, (out, err)
    [line] = err.splitlines()  # one clear line: the disk, not a traceback or "OperationalError"
    assert line.startswith("База данных недоступна: диск с базой данных SQLite") and "место" in line, line
    assert line.endswith("Ничего не изменено.")
    filler.unlink()  # space again: the same command goes through, once
    assert run(capsys, *args)[0] == 0
    assert "уже было создано" in run(capsys, *args)[1]
