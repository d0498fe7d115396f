"""Reading the roster an electronic journal exports: one row per guardian of a student.

Accepted as journals write them: UTF-8 (with or without BOM) or Windows-1251; `;`, `,` or tab separated; the
header in Russian or English, in any column order:

    Класс;Ученик;Представитель;E-mail;Телефон;В чате
    7Б;Смирнов Артём;Смирнова Ольга Ивановна;o.smirnova@mail.ru;+7 900 000-00-01;да

`Телефон` is optional; `В чате` (member of the class's parents' chat) takes да/нет, 1/0, +/-, yes/no, and an
empty cell means "нет". Every problem is reported with its line; a file with any problem imports nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.config import valid_email
from gateway.domain import ChatKind, Guardian, RosterEntry, School, has_control_characters, parse_class_name
from gateway.errors import InvalidInput, Problem, Unprocessable

MAX_BYTES = 20 * 1024 * 1024

_COLUMNS: dict[str, tuple[str, ...]] = {
    "class": ("класс", "class"),
    "student": ("ученик", "обучающийся", "учащийся", "фио ученика", "фио обучающегося", "student"),
    "guardian": (
        "представитель",
        "законный представитель",
        "родитель",
        "фио родителя",
        "фио представителя",
        "guardian",
        "parent",
    ),
    "email": ("e-mail", "email", "эл. почта", "электронная почта", "почта", "адрес почты"),
    "phone": ("телефон", "тел.", "phone"),
    "in_chat": ("в чате", "в чате родителей", "чат", "in_chat", "in chat"),
}
_REQUIRED = ("class", "student", "guardian", "email", "in_chat")
_LABELS = {
    "class": "Класс",
    "student": "Ученик",
    "guardian": "Представитель",
    "email": "E-mail",
    "phone": "Телефон",
    "in_chat": "В чате",
}
_YES = {"да", "1", "+", "yes", "y", "true", "д", "в чате"}
_NO = {"нет", "0", "-", "no", "n", "false", "н", ""}


@dataclass(frozen=True, slots=True)
class Roster:
    """A validated roster: its rows, and notes worth showing that do not stop the import."""

    entries: list[RosterEntry]
    warnings: list[Problem]

    def guardians(self, school_id: str) -> list[Guardian]:
        return group_guardians(school_id, self.entries)


def parse_roster(data: bytes, school: School, *, source: str = "roster.csv") -> Roster:
    """Parse and validate a roster file's bytes against the school's classes; InvalidInput on any problem."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    if len(data) > MAX_BYTES:
        raise InvalidInput([Problem(source, f"файл больше {MAX_BYTES // (1024 * 1024)} МБ")])
    text = _decode(data, source)
    _control_characters(text, source)
    if not text.strip():
        raise InvalidInput([Problem(source, "файл пуст")])
    dialect = _sniff(text)
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise InvalidInput([_csv_problem(exc, 1, source)]) from None
    columns = _map_header(header, source, problems)
    if problems:
        raise InvalidInput(problems)
    entries: list[RosterEntry] = []
    seen: set[tuple[str, str, str]] = set()
    try:
        while True:
            line = reader.line_num + 1  # where the record starts (a quoted cell may span lines)
            row = next(reader, None)
            if row is None:
                break
            if not any(cell.strip() for cell in row):
                continue
            entry = _entry(row, columns, line, school, source, problems)
            if entry is None:
                continue
            key = (entry.class_name, entry.student.casefold(), entry.guardian.casefold())
            if key in seen:
                warnings.append(Problem(source, "строка повторяет одну из предыдущих и будет учтена один раз", line))
                continue
            seen.add(key)
            if entry.in_chat and ChatKind.PARENTS not in school.classes[entry.class_name].chats:
                warnings.append(
                    Problem(
                        source,
                        f"отмечен «в чате», но у класса {entry.class_name} не подключён чат родителей: "
                        "будет получать письма",
                        line,
                    )
                )
            if not entry.email and not entry.in_chat:
                warnings.append(
                    Problem(
                        source,
                        f"у представителя «{entry.guardian}» нет ни чата, ни e-mail: только звонок",
                        line,
                    )
                )
            entries.append(entry)
    except csv.Error as exc:
        problems.append(_csv_problem(exc, line, source))
    if problems:
        raise InvalidInput(problems)
    if not entries:
        raise InvalidInput([Problem(source, "в файле нет ни одной строки с данными")])
    return Roster(entries, warnings)


def read_roster(path: Path, school: School) -> Roster:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput([Problem(str(path), f"файл не читается: {exc.strerror}")]) from None
    return parse_roster(data, school, source=str(path))


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1251")
    except UnicodeDecodeError:
        raise InvalidInput([Problem(source, "кодировка не распознана: сохраните файл в UTF-8")]) from None
    if "\x00" in text:
        raise InvalidInput([Problem(source, "это не текстовый файл CSV")])
    return text


def _control_characters(text: str, source: str) -> None:
    """Unprocessable, naming the lines, for characters nobody types (a NUL in a name, say): no store keeps them."""
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if has_control_characters(line)]
    if lines:
        message = "недопустимый управляющий символ (например, NUL): удалите его"
        raise Unprocessable([Problem(source, message, n) for n in lines[:10]])


def _csv_problem(exc: csv.Error, line: int, source: str) -> Problem:
    """A CSV error in Russian, at the line where the broken record starts (where an unclosed quote opens)."""
    text = str(exc)
    if "unexpected end of data" in text or "EOF" in text:
        message = "кавычка, открытая в этой строке, не закрыта до конца файла: закройте её или уберите"
    elif "field larger than field limit" in text:
        message = "слишком длинное поле (скорее всего, не закрыта кавычка в этой строке)"
    elif "new-line character" in text:
        message = "перевод строки внутри поля без кавычек: сохраните файл из журнала заново"
    else:
        message = "строка не читается как CSV (проверьте кавычки и разделители)"
    return Problem(source, f"ошибка в CSV: {message}", line)


def _sniff(text: str) -> type[csv.Dialect]:
    first = text.splitlines()[0]
    delimiter = max((";", ",", "\t"), key=first.count)

    class Journal(csv.excel):
        pass

    Journal.delimiter = delimiter
    Journal.strict = True
    return Journal


def _map_header(header: list[str], source: str, problems: list[Problem]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, raw in enumerate(header):
        name = re.sub(r"\s+", " ", raw.strip().strip('"').casefold())
        for field, aliases in _COLUMNS.items():
            if name in aliases:
                if field in columns:
                    problems.append(Problem(source, f"столбец «{raw.strip()}» повторяется", 1))
                columns[field] = index
    missing = [_LABELS[f] for f in _REQUIRED if f not in columns]
    if missing:
        found = ", ".join(f"«{h.strip()}»" for h in header)
        problems.append(
            Problem(
                source,
                f"в заголовке нет столбцов: {', '.join(missing)} (найдены: {found}); "
                "ожидается, например: Класс;Ученик;Представитель;E-mail;Телефон;В чате",
                1,
            )
        )
    return columns


def _entry(
    row: list[str], columns: dict[str, int], line: int, school: School, source: str, problems: list[Problem]
) -> RosterEntry | None:
    def cell(field: str) -> str:
        index = columns.get(field)
        if index is None or index >= len(row):
            return ""
        return re.sub(r"\s+", " ", row[index]).strip()

    before = len(problems)

    def bad(field: str, message: str) -> None:
        problems.append(Problem(source, message, line, _LABELS[field]))

    raw_class = cell("class")
    parsed = parse_class_name(raw_class) if raw_class else None
    if not raw_class:
        bad("class", "не указан класс")
    elif parsed is None:
        bad("class", f"«{raw_class}» не похоже на класс (например, 7Б)")
    elif parsed[0] not in school.classes:
        bad("class", f"класса {parsed[0]} нет в описании школы «{school.id}»")
    student, guardian = cell("student"), cell("guardian")
    if not student:
        bad("student", "не указан ученик")
    if not guardian:
        bad("guardian", "не указан представитель")
    email = cell("email").lower()
    if email and not valid_email(email):
        bad("email", f"«{email}» — не адрес электронной почты")
    flag = cell("in_chat").casefold()
    if flag not in _YES and flag not in _NO:
        bad("in_chat", f"«{cell('in_chat')}»: ожидается «да» или «нет»")
    phone = _phone(cell("phone"))
    if phone is None:
        bad("phone", f"«{cell('phone')}» — не номер телефона")
    if len(problems) > before or parsed is None:
        return None
    return RosterEntry(parsed[0], student, guardian, email, phone or "", flag in _YES, line)


def _phone(raw: str) -> str | None:
    """+7XXXXXXXXXX for a Russian number, the digits for others; "" when empty; None when not a number."""
    if not raw:
        return ""
    digits = re.sub(r"[\s()\-.]", "", raw)
    if not re.fullmatch(r"\+?\d{6,15}", digits):
        return None
    bare = digits.lstrip("+")
    if len(bare) == 11 and bare[0] in "78":
        return "+7" + bare[1:]
    if len(bare) == 10 and bare[0] == "9":
        return "+7" + bare
    return digits


def guardian_key(school_id: str, entry: RosterEntry) -> str:
    """A stable key for a guardian across imports, without the personal data itself.

    The same e-mail is one mailbox, so one family; without e-mail, the same name and phone is one person;
    with neither, the name within the class.
    """
    if entry.email:
        basis = f"e|{entry.email}"
    elif entry.phone:
        basis = f"p|{entry.guardian.casefold()}|{entry.phone}"
    else:
        basis = f"n|{entry.guardian.casefold()}|{entry.class_name}"
    return hashlib.sha256(f"{school_id}|{basis}".encode()).hexdigest()[:24]


def group_guardians(school_id: str, entries: Iterable[RosterEntry]) -> list[Guardian]:
    """Merge rows into guardians: one per key, with chat membership per class."""
    merged: dict[str, Guardian] = {}
    for entry in entries:
        key = guardian_key(school_id, entry)
        known = merged.get(key)
        if known is None:
            merged[key] = Guardian(
                key, entry.guardian, entry.email, entry.phone, False, {entry.class_name: entry.in_chat}
            )
        else:
            classes = dict(known.classes)
            classes[entry.class_name] = classes.get(entry.class_name, False) or entry.in_chat
            merged[key] = Guardian(key, known.name, known.email, known.phone or entry.phone, False, classes)
    return list(merged.values())
